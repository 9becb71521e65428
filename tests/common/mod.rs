//! Shared helpers of the integration tests: root check, starting niswitch in
//! a sandbox namespace, asking it for status.
#![allow(dead_code)]

use std::path::PathBuf;
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
    /// A drop counter of a VIF (by TAP name) or port (by name).
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
        all.first()
            .and_then(|v| v["drops"][reason].as_u64())
            .unwrap_or(0)
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
    run_daemon(sb, &d, &d.log.clone(), args, env)
}

/// Starts niswitch again with the files of `d` (config file, control socket,
/// state directory) after it stopped; its output goes to `log`.
pub fn restart(sb: &mut Sandbox, d: &Daemon, log: &str, env: &[(&str, &str)]) -> Daemon {
    run_daemon(sb, d, log, &[], env)
}

fn run_daemon(
    sb: &mut Sandbox,
    d: &Daemon,
    log: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
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
    let pid = sb
        .spawn(&d.ns, std::path::Path::new(program), &args, log)
        .expect("spawn niswitch");
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
        std::path::Path::new("/usr/sbin/dnsmasq"),
        &args,
        &format!("{tag}.log"),
    )
    .expect("spawn dnsmasq");
}
