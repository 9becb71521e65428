//! Shared helpers of the integration tests: root check, starting niswitch in
//! a sandbox namespace, asking it for status, and the namespaces, DHCP
//! clients and servers, captures and background programs of the labs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use niswitch::control::{self, Request};
pub use niswitch::sandbox::{Sandbox, wait_until};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_niswitch");

/// True when the test can run; prints why it is skipped otherwise. Where
/// skipping is not allowed (CI sets NISWITCH_REQUIRE_ROOT), it fails instead.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("NISWITCH_REQUIRE_ROOT").is_none(),
            "{test} needs root to create network namespaces, and NISWITCH_REQUIRE_ROOT is set"
        );
        eprintln!("SKIPPED {test}: needs root to create network namespaces");
        return false;
    }
    true
}

/// Fails (does not skip) when a required tool is missing: scripts/install-deps installs them all.
pub fn need(tools: &[&str]) {
    for t in tools {
        let ok = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "`{t}` is missing: run scripts/install-deps");
    }
}

/// A niswitch process running inside a namespace of a sandbox.
pub struct Daemon {
    pub ns: String,
    pub ctl: PathBuf,
    pub pid: u32,
    pub log: String,
    pub config: PathBuf,
    /// Its `--state-dir`.
    pub state: PathBuf,
}

impl Daemon {
    pub fn status(&self) -> Value {
        control::call(&self.ctl, &Request::Status).unwrap_or(Value::Null)
    }
    /// A drop counter of a VIF (by TAP name) or port (by name); panics when
    /// status has no such port or reason.
    pub fn drops(&self, port: &str, reason: &str) -> u64 {
        let s = self.status();
        let mut all: Vec<&Value> = Vec::new();
        if let Some(ps) = s["ports"].as_array() {
            all.extend(ps.iter().filter(|p| p["name"] == port));
        }
        if let Some(apps) = s["apps"].as_array() {
            for a in apps {
                if let Some(ifs) = a["interfaces"].as_array() {
                    all.extend(ifs.iter().filter(|v| v["tap"] == port));
                }
            }
        }
        let found = all.first().and_then(|v| v["drops"][reason].as_u64());
        // A missing port or reason must not read as "no drops".
        found.unwrap_or_else(|| panic!("no drop count {reason} for {port}: {s}"))
    }
}

/// Writes `config` and starts niswitch with it in `ns`; waits until it answers.
pub fn start(sb: &mut Sandbox, ns: &str, config: &str, name: &str) -> Daemon {
    start_with(sb, ns, config, name, &[], &[])
}

/// `start` with more `run` arguments (say `--metrics ADDR`) and environment
/// variables for the daemon.
pub fn start_with(
    sb: &mut Sandbox,
    ns: &str,
    config: &str,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
    let cfg = sb.path(&format!("{name}.yaml"));
    std::fs::write(&cfg, config).expect("write config");
    let d = Daemon {
        ns: ns.to_string(),
        ctl: sb.path(&format!("{name}.sock")),
        pid: 0,
        log: format!("{name}.log"),
        config: cfg,
        state: sb.path(&format!("{name}-state")),
    };
    let pid = spawn_daemon(sb, &d, &d.log, args, env);
    running(sb, &d, &d.log, pid)
}

/// Starts niswitch again with the files of `d` (config file, control socket,
/// state directory) after it stopped; its output goes to `log`.
pub fn restart(sb: &mut Sandbox, d: &Daemon, log: &str, env: &[(&str, &str)]) -> Daemon {
    let pid = spawn_daemon(sb, d, log, &[], env);
    running(sb, d, log, pid)
}

/// Waits until niswitch `pid`, started with the files of `d`, answers; it as a `Daemon`.
fn running(sb: &Sandbox, d: &Daemon, log: &str, pid: u32) -> Daemon {
    let up = wait_until(Duration::from_secs(15), || {
        control::call(&d.ctl, &Request::Status).is_ok()
    });
    assert!(up, "niswitch did not come up:\n{}", sb.log(log));
    Daemon {
        ns: d.ns.clone(),
        ctl: d.ctl.clone(),
        pid,
        log: log.to_string(),
        config: d.config.clone(),
        state: d.state.clone(),
    }
}

/// Spawns `niswitch run` with the files of `d` without waiting for it; its PID.
pub fn spawn_daemon(
    sb: &mut Sandbox,
    d: &Daemon,
    log: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> u32 {
    let (cfg, ctl, state) = (
        d.config.to_string_lossy().into_owned(),
        d.ctl.to_string_lossy().into_owned(),
        d.state.to_string_lossy().into_owned(),
    );
    let mut args: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // `env` execs niswitch, so the PID is niswitch's own.
    let program = if env.is_empty() {
        BIN
    } else {
        args.push(BIN.to_string());
        "/usr/bin/env"
    };
    for a in [
        "run",
        "--config",
        &cfg,
        "--control",
        &ctl,
        "--state-dir",
        &state,
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        args.push(a.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.spawn(&d.ns, Path::new(program), &args, log)
        .expect("spawn niswitch")
}

/// `niswitch apply` of `file` against `d` (run in the daemon's namespace).
pub fn apply(sb: &Sandbox, d: &Daemon, file: &Path, extra: &str) -> Output {
    let (file, ctl) = (file.display(), d.ctl.display());
    sb.sh(
        &d.ns,
        &format!("{BIN} apply --config {file} --control {ctl} {extra}"),
    )
}

/// Writes `text` to the file `name` and applies it; the apply must succeed.
pub fn apply_ok(sb: &Sandbox, d: &Daemon, name: &str, text: &str) {
    let f = write_file(sb, name, text);
    let out = apply(sb, d, &f, "");
    assert!(
        out.status.success(),
        "applying {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `text` to the file `name` in the sandbox's directory; its path.
pub fn write_file(sb: &Sandbox, name: &str, text: &str) -> PathBuf {
    let f = sb.path(name);
    std::fs::write(&f, text).expect("write a file of the test");
    f
}

/// The first IPv4 address on an interface in a namespace.
pub fn ipv4_of(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    sb.out(
        ns,
        &format!("ip -4 -o addr show dev {ifname} | awk '{{print $4}}' | cut -d/ -f1 | head -1"),
    )
}

pub fn ping(sb: &Sandbox, ns: &str, ip: &str) -> bool {
    sb.ok(ns, &format!("ping -c 2 -i 0.2 -W 1 {ip}"))
}

/// The MAC address of an interface in a namespace.
pub fn mac_of(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    sb.out(ns, &format!("cat /sys/class/net/{ifname}/address"))
}

/// True when the interface is a TAP.
pub fn is_tap(sb: &Sandbox, ns: &str, ifname: &str) -> bool {
    sb.ok(ns, &format!("test -e /sys/class/net/{ifname}/tun_flags"))
}

/// True when the interface exists in the namespace.
pub fn has_link(sb: &Sandbox, ns: &str, ifname: &str) -> bool {
    sb.ok(ns, &format!("ip link show dev {ifname} >/dev/null 2>&1"))
}

/// One udhcpc run on `ifname` (10 tries, 1 s apart); true when it got a lease.
pub fn udhcpc(sb: &Sandbox, ns: &str, ifname: &str) -> bool {
    sb.ok(
        ns,
        &format!("udhcpc -i {ifname} -n -q -t 10 -T 1 >/dev/null 2>&1"),
    )
}

/// A lease by udhcpc on `ifname` (the test fails without one); the address it got.
pub fn lease(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    assert!(udhcpc(sb, ns, ifname), "no lease on {ifname} in {ns}");
    ipv4_of(sb, ns, ifname)
}

/// Namespaces `dev` and `up` joined by a veth: `nic` in `dev`, `lan` in `up`.
pub fn dev_and_up(sb: &mut Sandbox, nic: &str, lan: &str) -> (String, String) {
    let dev = sb.ns("dev").expect("dev namespace");
    let up = sb.ns("up").expect("up namespace");
    sb.veth(&dev, nic, &up, lan).expect("veth dev-up");
    (dev, up)
}

/// The upstream LAN's DHCP server on `lan` in `up`: 192.0.2.0/24, no DNS, files named `tag`.
pub fn upstream_dhcp(sb: &mut Sandbox, up: &str, lan: &str, tag: &str) {
    lan_dnsmasq(sb, up, lan, "192.0.2", tag, &["--port=0"]);
}

/// Spawns `program` in `ns`; waits (at most `within`) until its log shows `ready`.
pub fn spawn_until(
    sb: &mut Sandbox,
    ns: &str,
    program: &str,
    args: &[&str],
    log: &str,
    ready: &str,
    within: Duration,
) -> u32 {
    let pid = sb
        .spawn(ns, Path::new(program), args, log)
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    wait_log(sb, log, ready, within);
    pid
}

/// Waits (at most `within`) until the background program's `log` shows `ready`.
pub fn wait_log(sb: &Sandbox, log: &str, ready: &str, within: Duration) {
    assert!(
        wait_until(within, || sb.log(log).contains(ready)),
        "{log} never said `{ready}` in {within:?}:\n{}",
        sb.log(log)
    );
}

/// Starts tcpdump on `ifname` in `ns`, writing text to `file`; waits until it listens.
pub fn capture(sb: &mut Sandbox, ns: &str, ifname: &str, filter: &str, file: &str) -> u32 {
    let args = ["-n", "-e", "-l", "-i", ifname, filter];
    let (tcpdump, five) = ("/usr/bin/tcpdump", Duration::from_secs(5));
    spawn_until(sb, ns, tcpdump, &args, file, "listening on", five)
}

/// Stops a capture once its output has been still for 200 ms (the last
/// frames printed) and returns what it saw.
pub fn captured(sb: &mut Sandbox, pid: u32, file: &str) -> String {
    let mut seen = sb.log(file);
    let mut still = 0;
    // Under steady traffic it never settles: then it stops after 3 s.
    wait_until(Duration::from_secs(3), || {
        let now = sb.log(file);
        still = if now == seen { still + 1 } else { 0 };
        seen = now;
        still >= 4
    });
    sb.signal(pid, libc::SIGTERM);
    sb.wait(pid, Duration::from_secs(3));
    sb.log(file)
}

/// The LAN's DHCP (and DNS) server: gives `ifname` in `ns` the address
/// `{net}.1/24` and runs dnsmasq there, leasing `{net}.100`–`{net}.150`.
/// `extra` adds dnsmasq options (`--port=0` turns its DNS off).
pub fn lan_dnsmasq(sb: &mut Sandbox, ns: &str, ifname: &str, net: &str, tag: &str, extra: &[&str]) {
    assert!(
        sb.ok(ns, &format!("ip addr add {net}.1/24 dev {ifname}")),
        "address on {ifname}"
    );
    let leases = sb.path(&format!("{tag}.leases"));
    let mut args = vec![
        "--keep-in-foreground".to_string(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        format!("--interface={ifname}"),
        "--bind-interfaces".into(),
        format!("--dhcp-range={net}.100,{net}.150,255.255.255.0,1h"),
        format!("--dhcp-leasefile={}", leases.display()),
        "--pid-file".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.spawn(
        ns,
        Path::new("/usr/sbin/dnsmasq"),
        &args,
        &format!("{tag}.log"),
    )
    .expect("spawn dnsmasq");
    // A DISCOVER sent before dnsmasq binds is lost, and a client waits
    // seconds before it asks again.
    wait_udp_bound(sb, ns, 67);
}

/// The flow records `niswitch flows` shows from a daemon's state directory.
pub fn flow_records(state: &Path) -> Vec<Value> {
    let out = std::process::Command::new(BIN)
        .args(["flows", "--json", "--state-dir"])
        .arg(state)
        .output()
        .expect("niswitch flows");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The CPUs this process may run on (`Cpus_allowed_list`), at most the 64
/// that niswitch gives a worker each by default.
pub fn allowed_cpus() -> Vec<u64> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_default();
    let range = |r: &str| -> Vec<u64> {
        let (a, b) = r.trim().split_once('-').unwrap_or((r.trim(), r.trim()));
        match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) => (a..=b).collect(),
            _ => Vec::new(),
        }
    };
    list.split(',').flat_map(range).take(64).collect()
}

/// Waits (5 s at most) until a TCP listener on `port` is up in `ns`.
pub fn wait_listening(sb: &Sandbox, ns: &str, port: u16) {
    wait_socket(sb, ns, "-Hltn", port);
}

/// Waits (5 s at most) until a UDP socket is bound to `port` in `ns`.
pub fn wait_udp_bound(sb: &Sandbox, ns: &str, port: u16) {
    wait_socket(sb, ns, "-Hlun", port);
}

fn wait_socket(sb: &Sandbox, ns: &str, ss_flags: &str, port: u16) {
    let cmd = format!("ss {ss_flags} 'sport = :{port}' | grep -q .");
    assert!(
        wait_until(Duration::from_secs(5), || sb.ok(ns, &cmd)),
        "nothing listens on {port} in {ns}"
    );
}
