//! `niswitch demo`: builds a sandbox of namespaces (prefix `nswdemo`) — two
//! upstream LAN hosts, a device running niswitch on two veth "NICs", five
//! apps and the device's own host interface — then shows, step by step, that
//! the apps get addresses, reach each other and the upstream host (directly
//! on the flat network, through NAT from the local one), that a port map
//! reaches an app from the LAN, that traffic keeps flowing while the
//! first NIC's link is down (the local NI fails over to the second uplink),
//! and that a live `niswitch apply` adds an app without disturbing the
//! others, while an invalid config is refused.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config;
use crate::control::{self, Request, status};
use crate::sandbox::{Sandbox, wait_until};

const PREFIX: &str = "nswdemo";
const UPSTREAM_IP: &str = "192.0.2.1";
/// The second uplink's LAN and its host.
const UPSTREAM2_IP: &str = "198.51.100.1";
const HOST_IP: &str = "192.0.2.2";
const APPS: [(&str, &str, &str); 3] = [
    ("app1", "6ba7b810-9dad-11d1-80b4-00c04fd430c1", "192.0.2.11"),
    ("app2", "6ba7b810-9dad-11d1-80b4-00c04fd430c2", "192.0.2.12"),
    ("app3", "6ba7b810-9dad-11d1-80b4-00c04fd430c3", "192.0.2.13"),
];

/// Apps on the local NI `lan`, served by niswitch's own DHCP and DNS.
const LOCAL_APPS: [(&str, &str); 2] = [
    ("web", "6ba7b810-9dad-11d1-80b4-00c04fd430d1"),
    ("db", "6ba7b810-9dad-11d1-80b4-00c04fd430d2"),
];
const LOCAL_SUBNET: &str = "10.50.0.0/24";
const LOCAL_GATEWAY: &str = "10.50.0.1";

struct Steps {
    passed: u32,
    failed: u32,
    keep_going: bool,
}

impl Steps {
    /// Prints a step's outcome; Err stops the demo unless keep_going.
    fn check(&mut self, what: &str, ok: bool) -> Result<()> {
        if ok {
            self.passed += 1;
            println!("  [ ok ] {what}");
            Ok(())
        } else {
            self.failed += 1;
            println!("  [FAIL] {what}");
            if self.keep_going {
                Ok(())
            } else {
                anyhow::bail!("step failed: {what}")
            }
        }
    }
}

fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The app a live apply adds to the local NI.
const ADDED_APP: (&str, &str) = ("cache", "6ba7b810-9dad-11d1-80b4-00c04fd430d3");

/// The bundled config; `added`: with the app a live apply brings.
fn demo_config(added: bool) -> String {
    let mut apps = String::new();
    let mut local_apps = String::new();
    let extra = added.then_some(ADDED_APP);
    for (name, uuid) in LOCAL_APPS.into_iter().chain(extra) {
        // web's HTTP server is reachable from the LAN on the uplink address, port 8080.
        let maps = if name == "web" {
            ", port_maps: [{ protocol: tcp, uplink_port: 8080, app_port: 80 }]"
        } else {
            ""
        };
        local_apps.push_str(&format!("  - name: {name}\n    uuid: {uuid}\n    interfaces:\n      - {{ ni: lan, tap: {PREFIX}-{name}, netns: {PREFIX}-{name}{maps} }}\n"));
    }
    for (name, uuid, _) in APPS {
        apps.push_str(&format!("  - name: {name}\n    uuid: {uuid}\n    interfaces:\n      - {{ ni: flat, tap: {PREFIX}-{name}, netns: {PREFIX}-{name} }}\n"));
    }
    format!(
        "version: 1\nports:\n  - {{ name: uplink, device: {PREFIX}-nic, management: true, host_interface: {PREFIX}-host }}\n\
         \x20 - {{ name: wan2, device: {PREFIX}-nic2, cost: 10 }}\n\
         network_instances:\n  - {{ name: flat, uuid: 2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b, type: switch, port: uplink }}\n\
         \x20 - {{ name: lan, type: local, subnet: {LOCAL_SUBNET}, dns: {{ domain: lan }}, uplinks: [uplink, wan2], probe: {{ target: gateway, interval: 1, failures: 2 }} }}\napps:\n{apps}{local_apps}"
    )
}

fn ping(sb: &Sandbox, ns: &str, ip: &str) -> bool {
    sb.ok(ns, &format!("ping -c 2 -i 0.2 -W 1 {ip}"))
}

/// The local NI: leases from niswitch itself, names from its DNS.
fn local_steps(sb: &Sandbox, st: &mut Steps, ns: &[String]) -> Result<()> {
    let mut ips = Vec::new();
    let mut all = true;
    for ((name, _), n) in LOCAL_APPS.iter().zip(ns) {
        all &= sb.ok(
            n,
            &format!("udhcpc -i {PREFIX}-{name} -n -q -t 6 -T 1 >/dev/null 2>&1"),
        );
        ips.push(sb.out(
            n,
            &format!("ip -4 -o addr show dev {PREFIX}-{name} | awk '{{print $4}}' | cut -d/ -f1"),
        ));
    }
    st.check(&format!("web ({}) and db ({}) got leases from niswitch's DHCP server on local NI `lan` ({LOCAL_SUBNET})", ips[0], ips[1]), all)?;
    let answer = sb.out(
        &ns[0],
        &format!("dig +short +time=2 @{LOCAL_GATEWAY} -q db.lan"),
    );
    st.check(
        &format!("web resolves db.lan on the gateway's DNS: {answer}"),
        answer == ips[1],
    )?;
    st.check("web pings db by name", ping(sb, &ns[0], "db"))?;
    st.check(
        &format!("db pings its gateway {LOCAL_GATEWAY}"),
        ping(sb, &ns[1], LOCAL_GATEWAY),
    )
}

/// The local NI's active uplink and its address, from the daemon's status.
fn active_uplink(ctl: &Path) -> Option<(String, String)> {
    let v = control::call(ctl, &Request::Status).ok()?;
    let s = serde_json::from_value::<status::Status>(v).ok()?;
    let ni = s.network_instances.iter().find(|n| n.name == "lan")?;
    let u = ni.uplinks.iter().find(|u| u.active)?;
    let addr = u.address.as_deref()?.split('/').next()?.to_string();
    Some((u.port.clone(), addr))
}

/// Waits until the local NI's active uplink is `port`; its address.
fn wait_active(ctl: &Path, port: &str, secs: u64) -> Option<String> {
    let mut addr = None;
    wait_until(Duration::from_secs(secs), || {
        addr = active_uplink(ctl).filter(|a| a.0 == port).map(|a| a.1);
        addr.is_some()
    });
    addr
}

fn curl(sb: &Sandbox, ns: &str, url: &str) -> bool {
    sb.ok(ns, &format!("curl -sf -m 5 -o /dev/null {url}"))
}

/// The local NI's way out: NAT to the upstream web server and a port map in.
fn nat_steps(sb: &Sandbox, st: &mut Steps, ctl: &Path, web: &str, up: &str) -> Result<()> {
    let Some(ext) = wait_active(ctl, "uplink", 15) else {
        return st.check("local NI `lan` has an active uplink with an address", false);
    };
    st.check(
        &format!("local NI `lan`: the router leased {ext} on `uplink`, which is active"),
        true,
    )?;
    let ok = curl(sb, web, &format!("http://{UPSTREAM_IP}:8080/"));
    let seen = sb.log("http-up.log").contains(&format!("{ext} - - "));
    st.check(
        &format!("web fetches http://{UPSTREAM_IP}:8080/ through NAT; the server sees {ext}"),
        ok && seen,
    )?;
    let ok = wait_until(Duration::from_secs(5), || {
        curl(sb, up, &format!("http://{ext}:8080/"))
    });
    st.check(
        &format!("port map: the LAN host fetches http://{ext}:8080/ from web's port 80"),
        ok,
    )
}

/// Runs `niswitch apply` on the demo's daemon; its exit status and output.
fn apply(exe: &Path, ctl: &Path, cfg: &Path) -> Result<(bool, String)> {
    let o = std::process::Command::new(exe)
        .args(["apply", "--probe-timeout", "10", "--config"])
        .arg(cfg)
        .arg("--control")
        .arg(ctl)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok((o.status.success(), text))
}

/// A live apply: `cache` joins the local NI while db pings web at 20 a
/// second; then a broken config is refused and nothing changes.
fn apply_steps(sb: &Sandbox, st: &mut Steps, exe: &Path, ctl: &Path, ns: &[String]) -> Result<()> {
    let ifindex =
        |sb: &Sandbox| sb.out(&ns[0], &format!("cat /sys/class/net/{PREFIX}-web/ifindex"));
    let before = ifindex(sb);
    let pings = sb.path("pings.txt");
    let bg = format!("ping -i 0.05 -c 60 -q web > {} 2>&1 &", pings.display());
    sb.sh(&ns[1], &bg);
    let new = sb.path("demo-added.yaml");
    std::fs::write(&new, demo_config(true))?;
    let (ok, out) = apply(exe, ctl, &new)?;
    let timing = out
        .lines()
        .find(|l| l.starts_with("applied"))
        .unwrap_or("")
        .to_string();
    st.check(
        &format!("niswitch apply adds app `cache` live ({timing})"),
        ok,
    )?;
    let lease = sb.ok(
        &ns[2],
        &format!("udhcpc -i {PREFIX}-cache -n -q -t 6 -T 1 >/dev/null 2>&1"),
    );
    st.check(
        "cache gets a lease at once, and pings web by name",
        lease && ping(sb, &ns[2], "web"),
    )?;
    st.check(
        "web kept its TAP (same ifindex) across the apply",
        ifindex(sb) == before,
    )?;
    let done = wait_until(Duration::from_secs(10), || {
        sb.log("pings.txt").contains("packet loss")
    });
    let summary = sb.log("pings.txt");
    let line = summary
        .lines()
        .find(|l| l.contains("packet loss"))
        .unwrap_or("")
        .trim()
        .to_string();
    let lost = line.split(',').find_map(|p| {
        p.trim()
            .strip_suffix("% packet loss")
            .and_then(|v| v.parse::<f64>().ok())
    });
    st.check(
        &format!("db's 20 pings a second to web went on: {line}"),
        done && lost.is_some_and(|l| l <= 2.0),
    )?;
    let bad = sb.path("demo-bad.yaml");
    std::fs::write(
        &bad,
        demo_config(true).replace("type: local", "type: locall"),
    )?;
    let (ok, out) = apply(exe, ctl, &bad)?;
    let first = out.lines().next().unwrap_or("").to_string();
    st.check(
        &format!("a broken config is refused, nothing changes: {first}"),
        !ok,
    )
}

/// Runs the demo; Ok(true) when every step passed.
pub fn run(keep_going: bool) -> Result<bool> {
    let exe = std::env::current_exe().context("locating the niswitch binary")?;
    let mut st = Steps {
        passed: 0,
        failed: 0,
        keep_going,
    };
    let result = steps(&exe, &mut st);
    if let Err(e) = &result {
        println!("  stopped: {e:#}");
    }
    println!("\nsummary: {} passed, {} failed", st.passed, st.failed);
    Ok(result.is_ok() && st.failed == 0)
}

fn steps(exe: &Path, st: &mut Steps) -> Result<()> {
    println!("niswitch demo: sandbox `{PREFIX}-*` (everything is removed at the end)\n");
    let mut sb = Sandbox::new(PREFIX)?;
    let dev = sb.ns("dev")?;
    let up = sb.ns("up")?;
    let up2 = sb.ns("up2")?;
    let mut app_ns = Vec::new();
    for (name, _, _) in APPS {
        app_ns.push(sb.ns(name)?);
    }
    let mut local_ns = Vec::new();
    for (name, _) in LOCAL_APPS.into_iter().chain([ADDED_APP]) {
        local_ns.push(sb.ns(name)?);
    }
    sb.veth(
        &dev,
        &format!("{PREFIX}-nic"),
        &up,
        &format!("{PREFIX}-lan"),
    )?;
    sb.veth(
        &dev,
        &format!("{PREFIX}-nic2"),
        &up2,
        &format!("{PREFIX}-lan2"),
    )?;
    sb.sh(
        &up,
        &format!("ip addr add {UPSTREAM_IP}/24 dev {PREFIX}-lan"),
    );
    sb.sh(
        &up2,
        &format!("ip addr add {UPSTREAM2_IP}/24 dev {PREFIX}-lan2"),
    );
    st.check(
        "sandbox: two upstream LAN hosts, a device whose two NICs are veths to them, six app namespaces",
        true,
    )?;

    let cfg_path = sb.path("demo.yaml");
    std::fs::write(&cfg_path, demo_config(false))?;
    let cfg = config::load(&cfg_path).map_err(|e| anyhow::anyhow!("bundled config: {}", e[0]))?;
    let ctl = sb.path("ctl.sock");
    let state = sb.path("state");
    let (cfg_s, ctl_s, state_s) = (
        cfg_path.to_string_lossy().to_string(),
        ctl.to_string_lossy().to_string(),
        state.to_string_lossy().to_string(),
    );
    let pid = sb.spawn(
        &dev,
        exe,
        &[
            "run",
            "--config",
            &cfg_s,
            "--control",
            &ctl_s,
            "--state-dir",
            &state_s,
        ],
        "niswitch.log",
    )?;
    let up_ok = wait_until(Duration::from_secs(10), || {
        control::call(&ctl, &Request::Status).is_ok()
    });
    st.check(
        "niswitch runs on the device (switch NI `flat` on the NIC, host TAP, three app TAPs)",
        up_ok,
    )?;
    let macs_ok = cfg.apps.iter().zip(&app_ns).all(|(a, ns)| {
        let v = &a.interfaces[0];
        sb.out(ns, &format!("cat /sys/class/net/{}/address", v.tap)) == v.mac.to_string()
    });
    st.check(
        "each app sees its TAP with the MAC derived from app and NI UUIDs",
        macs_ok,
    )?;

    sb.sh(&dev, &format!("ip addr add {HOST_IP}/24 dev {PREFIX}-host"));
    let dhcp = have("dnsmasq") && have("udhcpc");
    if dhcp {
        let pidfile = sb.path("dnsmasq.pid");
        let leases = sb.path("dnsmasq.leases");
        sb.sh(&up, &format!(
            "dnsmasq --conf-file=/dev/null --interface={PREFIX}-lan --bind-interfaces --port=0 --dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,1h --dhcp-leasefile={} --pid-file={}",
            leases.display(), pidfile.display()
        ));
        let (pidfile, leases) = (sb.path("dnsmasq2.pid"), sb.path("dnsmasq2.leases"));
        sb.sh(&up2, &format!(
            "dnsmasq --conf-file=/dev/null --interface={PREFIX}-lan2 --bind-interfaces --port=0 --dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0,1h --dhcp-leasefile={} --pid-file={}",
            leases.display(), pidfile.display()
        ));
        let mut all = true;
        for ((name, _, _), ns) in APPS.iter().zip(&app_ns) {
            all &= sb.ok(
                ns,
                &format!("udhcpc -i {PREFIX}-{name} -n -q -t 6 -T 1 >/dev/null 2>&1"),
            );
        }
        st.check(
            "apps got leases from the LAN's DHCP server (dnsmasq upstream, udhcpc in the apps)",
            all,
        )?;
    } else {
        for ((name, _, ip), ns) in APPS.iter().zip(&app_ns) {
            sb.sh(ns, &format!("ip addr add {ip}/24 dev {PREFIX}-{name}"));
        }
        st.check(
            "apps have static addresses (install dnsmasq-base and udhcpc to see DHCP)",
            true,
        )?;
    }
    let ips: Vec<String> = APPS
        .iter()
        .zip(&app_ns)
        .map(|((name, _, _), ns)| {
            sb.out(
                ns,
                &format!(
                    "ip -4 -o addr show dev {PREFIX}-{name} | awk '{{print $4}}' | cut -d/ -f1"
                ),
            )
        })
        .collect();
    for i in 0..3 {
        let j = (i + 1) % 3;
        st.check(
            &format!(
                "{} ({}) pings {} ({})",
                APPS[i].0, ips[i], APPS[j].0, ips[j]
            ),
            ping(&sb, &app_ns[i], &ips[j]),
        )?;
    }
    for i in 0..3 {
        st.check(
            &format!("{} pings the upstream host {UPSTREAM_IP}", APPS[i].0),
            ping(&sb, &app_ns[i], UPSTREAM_IP),
        )?;
    }
    st.check(
        "the device's host interface pings app1",
        ping(&sb, &dev, &ips[0]),
    )?;

    local_steps(&sb, st, &local_ns)?;
    let web_ok = dhcp && have("curl") && have("python3");
    if web_ok {
        let py = Path::new("/usr/bin/python3");
        sb.spawn(
            &up,
            py,
            &["-m", "http.server", "8080", "--bind", UPSTREAM_IP],
            "http-up.log",
        )?;
        sb.spawn(
            &up2,
            py,
            &["-m", "http.server", "8080", "--bind", UPSTREAM2_IP],
            "http-up2.log",
        )?;
        sb.spawn(
            &local_ns[0],
            py,
            &["-m", "http.server", "80"],
            "http-web.log",
        )?;
        nat_steps(&sb, st, &ctl, &local_ns[0], &up)?;
    } else {
        st.check(
            "NAT steps skipped (they need dnsmasq-base, udhcpc, curl and python3)",
            true,
        )?;
    }

    println!("\n  live status (niswitch status):");
    if let Ok(v) = control::call(&ctl, &Request::Status)
        && let Ok(s) = serde_json::from_value::<status::Status>(v)
    {
        for line in status::render(&s).lines() {
            println!("    {line}");
        }
    }
    println!();

    sb.sh(&up, &format!("ip link set {PREFIX}-lan down"));
    st.check(
        "the NIC's link is down (upstream side of the cable unplugged)",
        true,
    )?;
    if web_ok {
        let t0 = std::time::Instant::now();
        let moved = wait_active(&ctl, "wan2", 10).is_some();
        st.check(
            &format!(
                "local NI `lan` failed over to `wan2` in {:.1} s (bound: 1 × 2 + 1 s)",
                t0.elapsed().as_secs_f64()
            ),
            moved,
        )?;
        st.check(
            &format!("web fetches http://{UPSTREAM2_IP}:8080/ through NAT on `wan2`"),
            curl(&sb, &local_ns[0], &format!("http://{UPSTREAM2_IP}:8080/")),
        )?;
    }
    st.check(
        "app1 still pings app2 with the link down",
        ping(&sb, &app_ns[0], &ips[1]),
    )?;
    st.check(
        "the host still pings app3 with the link down",
        ping(&sb, &dev, &ips[2]),
    )?;
    st.check(
        "the upstream host is unreachable while the link is down",
        !sb.ok(&app_ns[0], &format!("ping -c 1 -W 1 {UPSTREAM_IP}")),
    )?;
    sb.sh(&up, &format!("ip link set {PREFIX}-lan up"));
    let back = wait_until(Duration::from_secs(10), || {
        sb.ok(&app_ns[0], &format!("ping -c 1 -W 1 {UPSTREAM_IP}"))
    });
    st.check(
        "link up again: app1 reaches the upstream host without a restart",
        back,
    )?;
    if web_ok {
        st.check(
            "local NI `lan` is back on its cheaper uplink `uplink`",
            wait_active(&ctl, "uplink", 10).is_some(),
        )?;
    }

    if dhcp {
        apply_steps(&sb, st, exe, &ctl, &local_ns)?;
    }

    sb.signal(pid, libc::SIGTERM);
    let code = sb.wait(pid, Duration::from_secs(10));
    st.check("niswitch stopped cleanly on SIGTERM", code == Some(0))?;
    let gone = !sb.ok(&app_ns[0], &format!("ip link show {PREFIX}-app1"));
    st.check("its TAPs are gone from the app namespaces", gone)?;
    drop(sb);
    st.check("sandbox removed", true)
}
