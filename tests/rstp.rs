//! A switch NI with two NIC ports to one LAN (SPEC §3.1): the Rapid
//! Spanning Tree keeps the loop from storming, fails over to the other port
//! within 3 s when the forwarding port's link goes, and takes it back; it
//! interoperates with the kernel's 802.1D bridge as the root; BPDU guard on
//! a port disables it when a BPDU arrives there.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const UUID: &str = "8ba7b810-9dad-11d1-80b4-00c04fd430c1";

fn config(p: &str, stp: &str) -> String {
    format!(
        "version: 1
ports:
  - {{ name: p1, device: {p}-n1 }}
  - {{ name: p2, device: {p}-n2 }}
network_instances:
  - {{ name: plant, type: switch, ports: [p1, p2]{stp} }}
apps:
  - {{ name: a, uuid: {UUID}, interfaces: [{{ ni: plant, tap: {p}-a, netns: {p}-a }}] }}
"
    )
}

/// The LAN: a kernel bridge in `up` holding the far ends of both NICs, with
/// 10.0.0.254; `bridge_opts` sets its spanning tree.
fn lan(sb: &mut Sandbox, p: &str, bridge_opts: &str) -> (String, String, String) {
    let (dev, up) = dev_and_up(sb, &format!("{p}-n1"), &format!("{p}-l1"));
    sb.veth(&dev, &format!("{p}-n2"), &up, &format!("{p}-l2"))
        .unwrap();
    let cmd = format!(
        "ip link add {p}-br type bridge {bridge_opts} && ip link set {p}-l1 master {p}-br && \
         ip link set {p}-l2 master {p}-br && ip link set {p}-l1 up && ip link set {p}-l2 up && \
         ip link set {p}-br up && ip addr add 10.0.0.254/24 dev {p}-br"
    );
    assert!(sb.ok(&up, &cmd), "{cmd}");
    let app = sb.ns("a").unwrap();
    (dev, up, app)
}

fn port_stp(st: &Value, i: usize) -> (String, String) {
    let s = &st["ports"][i]["stp"];
    (
        s["role"].as_str().unwrap_or("-").to_string(),
        s["state"].as_str().unwrap_or("-").to_string(),
    )
}

/// The index of the forwarding port, once exactly one forwards.
fn forwarding(st: &Value) -> Option<usize> {
    let f: Vec<usize> = (0..2)
        .filter(|i| port_stp(st, *i).1 == "forwarding")
        .collect();
    (f.len() == 1).then(|| f[0])
}

/// The longest run of unanswered pings in a `ping -i 0.05 -c COUNT` log,
/// in seconds, from the first answer on: only echo replies count as
/// answers, and pings never answered at the end are a run too.
fn longest_gap(log: &str, count: u64) -> f64 {
    let mut seqs: Vec<u64> = (log.lines())
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    seqs.push(count + 1);
    let gap = (seqs.windows(2).map(|w| w[1] - w[0]).max()).unwrap_or(count + 1);
    (gap.saturating_sub(1)) as f64 * 0.05
}

/// Sets `link` in `up` down or up while the app pings the LAN every 50 ms;
/// the longest outage must stay within 3 s (SPEC §3.1). The status after.
fn set_link(
    sb: &mut Sandbox,
    d: &Daemon,
    (up, app): (&str, &str),
    link: &str,
    state: &str,
) -> Value {
    let log = format!("{link}-{state}.log");
    let ping = Path::new("/usr/bin/ping");
    let count = 160;
    let count_arg = count.to_string();
    let args = [
        "-n",
        "-i",
        "0.05",
        "-c",
        &count_arg,
        "-W",
        "1",
        "10.0.0.254",
    ];
    let pid = sb.spawn(app, ping, &args, &log).unwrap();
    // A baseline first: twenty answered pings before the change.
    let answered = wait_until(Duration::from_secs(10), || {
        sb.log(&log).contains("icmp_seq=20 ")
    });
    assert!(answered, "no baseline before the change:\n{}", sb.log(&log));
    let cmd = format!("ip link set {link} {state}");
    assert!(sb.ok(up, &cmd), "{cmd}");
    sb.wait(pid, Duration::from_secs(20));
    let out = sb.log(&log);
    assert!(
        out.contains(&format!("{count} packets transmitted")),
        "ping did not finish:\n{out}"
    );
    let gap = longest_gap(&out, count);
    let st = d.status();
    assert!(gap <= 3.0, "outage {gap:.2} s after {link} {state}; {st}");
    eprintln!("{link} {state}: longest outage {gap:.2} s");
    st
}

#[test]
fn two_ports_to_one_lan_do_not_storm_and_fail_over() {
    if !root_or_skip("two_ports_to_one_lan_do_not_storm_and_fail_over") {
        return;
    }
    need(&["ping", "ip"]);
    let p = "nswst";
    let mut sb = Sandbox::new(p).unwrap();
    // A plain bridge without STP: the loop through it is real.
    let (dev, up, app) = lan(&mut sb, p, "stp_state 0");
    let t0 = Instant::now();
    let d = start(&mut sb, &dev, &config(p, ""), "nsw");
    assert!(sb.ok(&app, &format!("ip addr add 10.0.0.1/24 dev {p}-a")));
    // Converges from a cold start within 10 s.
    let ok = wait_until(Duration::from_secs(12), || {
        sb.ok(&app, "ping -c 1 -W 1 10.0.0.254")
    });
    let st = d.status();
    assert!(ok, "no path in 12 s: {st}");
    assert!(t0.elapsed() < Duration::from_secs(12));
    let f = forwarding(&st).unwrap_or_else(|| panic!("one port forwards: {st}"));
    assert_eq!(port_stp(&st, 1 - f), ("backup".into(), "discarding".into()));
    let ni = &st["network_instances"][0]["stp"];
    assert_eq!(ni["bridge"], ni["root_bridge"], "{ni}");
    let human = sb.out(&dev, &format!("{BIN} status --control {}", d.ctl.display()));
    for want in [
        "spanning tree: bridge",
        "stp designated/forwarding",
        "stp backup/discarding",
    ] {
        assert!(human.contains(want), "{want} in:\n{human}");
    }

    // No storm: broadcasts cross once, not round and round.
    let rx = |st: &Value| -> u64 {
        (0..2)
            .filter_map(|i| st["ports"][i]["rx_packets"].as_u64())
            .sum()
    };
    let from_app = |st: &Value| st["apps"][0]["interfaces"][0]["rx_packets"].as_u64();
    let st = d.status();
    let (before, app_before) = (rx(&st), from_app(&st));
    // (The bridge does not answer broadcast pings: ping's status is moot.)
    sb.sh(&app, "ping -b -c 3 -i 0.2 -W 1 10.0.0.255 >/dev/null 2>&1");
    // Read once the count has been still for 300 ms (a storm never is).
    let (mut last, mut still) = (u64::MAX, 0);
    wait_until(Duration::from_secs(3), || {
        let now = rx(&d.status());
        still = if now == last { still + 1 } else { 0 };
        last = now;
        still >= 3
    });
    let st = d.status();
    let sent = from_app(&st).zip(app_before).map(|(now, was)| now - was);
    assert!(sent >= Some(3), "the 3 broadcasts left the app: {st}");
    let grew = rx(&st) - before;
    assert!(
        grew < 60,
        "{grew} frames came back in for 3 broadcasts: a storm; {}",
        d.status()
    );

    // The forwarding port's link goes: the other forwards within 3 s.
    let pulled = format!("{p}-l{}", f + 1);
    let st = set_link(&mut sb, &d, (&up, &app), &pulled, "down");
    assert_eq!(
        port_stp(&st, 1 - f),
        ("designated".into(), "forwarding".into())
    );

    // It comes back: the better port takes over again, one port forwards.
    let st = set_link(&mut sb, &d, (&up, &app), &pulled, "up");
    assert_eq!(forwarding(&st), Some(f), "{st}");

    // BPDU guard on p2: our own BPDUs from p1 reach it, so it is disabled
    // (counted, shown) while p1 carries the traffic.
    apply_ok(
        &sb,
        &d,
        "guard.yaml",
        &config(p, ", stp: { bpdu_guard: [p2] }"),
    );
    let tripped = wait_until(Duration::from_secs(5), || {
        d.status()["ports"][1]["bpdu_guard_tripped"] == true
    });
    assert!(tripped, "{}", d.status());
    let ok = wait_until(Duration::from_secs(12), || {
        sb.ok(&app, "ping -c 1 -W 1 10.0.0.254")
    });
    assert!(ok, "p1 carries the traffic: {}", d.status());
}

#[test]
fn the_kernel_8021d_bridge_is_root_and_the_alternate_takes_over() {
    if !root_or_skip("the_kernel_8021d_bridge_is_root_and_the_alternate_takes_over") {
        return;
    }
    need(&["ping", "ip"]);
    let p = "nswsk";
    let mut sb = Sandbox::new(p).unwrap();
    // The kernel's STP (802.1D), with the best priority and short timers.
    let opts = "stp_state 1 priority 4096 forward_delay 400 hello_time 100";
    let (dev, up, app) = lan(&mut sb, p, opts);
    let d = start(&mut sb, &dev, &config(p, ""), "nsw");
    assert!(sb.ok(&app, &format!("ip addr add 10.0.0.1/24 dev {p}-a")));
    // The kernel's ports listen and learn for 2 x 4 s before forwarding.
    let ok = wait_until(Duration::from_secs(20), || {
        sb.ok(&app, "ping -c 1 -W 1 10.0.0.254")
    });
    let st = d.status();
    assert!(ok, "no path: {st}");
    let ni = &st["network_instances"][0]["stp"];
    assert_ne!(
        ni["bridge"], ni["root_bridge"],
        "the kernel bridge is root: {ni}"
    );
    assert!(
        ni["root_bridge"]
            .as_str()
            .is_some_and(|r| r.starts_with("4096.")),
        "{ni}"
    );
    let root = (0..2)
        .find(|i| port_stp(&st, *i).0 == "root")
        .unwrap_or_else(|| panic!("a root port: {st}"));
    assert_eq!(port_stp(&st, root).1, "forwarding");
    assert_eq!(
        port_stp(&st, 1 - root),
        ("alternate".into(), "discarding".into())
    );

    // The root port's link goes: the alternate is the root port at once.
    let pulled = format!("{p}-l{}", root + 1);
    let st = set_link(&mut sb, &d, (&up, &app), &pulled, "down");
    assert_eq!(
        port_stp(&st, 1 - root),
        ("root".into(), "forwarding".into())
    );
}
