//! The flat network (SPEC §3, management ports): the host keeps its lease
//! through the TAP that takes the NIC's name, host and apps keep talking with
//! the NIC's link down, a crashed niswitch is replaced within seconds without
//! the host losing its address, and a clean exit gives the NIC its name back.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const P: &str = "nswmg";

fn config(p: &str) -> String {
    format!(
        "version: 1
ports:
  - {{ device: {p}e0, management: true }}
network_instances:
  - {{ name: flat, type: switch, port: {p}e0 }}
apps:
  - {{ name: a, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430a1, interfaces: [{{ ni: flat, tap: {p}-a, netns: {p}-a }}] }}
"
    )
}

fn udhcpc(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    assert!(
        sb.ok(
            ns,
            &format!("udhcpc -i {ifname} -n -q -t 10 -T 1 >/dev/null 2>&1")
        ),
        "no lease on {ifname}"
    );
    ipv4_of(sb, ns, ifname)
}

fn is_tap(sb: &Sandbox, ns: &str, ifname: &str) -> bool {
    sb.ok(ns, &format!("test -e /sys/class/net/{ifname}/tun_flags"))
}

#[test]
fn host_lease_link_loss_crash_and_clean_exit() {
    if !root_or_skip("host_lease_link_loss_crash_and_clean_exit") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "ping"]);
    let p = P;
    let nic = format!("{p}e0");
    let knic = format!("k{nic}");
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let up = sb.ns("up").unwrap();
    let app = sb.ns("a").unwrap();
    sb.veth(&dev, &nic, &up, &format!("{p}-lan")).unwrap();
    lan_dnsmasq(
        &mut sb,
        &up,
        &format!("{p}-lan"),
        "192.0.2",
        "dnsmasq",
        &["--port=0"],
    );

    // Before niswitch: the host's DHCP client on the NIC.
    let nic_mac = sb.out(&dev, &format!("cat /sys/class/net/{nic}/address"));
    let before = udhcpc(&sb, &dev, &nic);
    assert!(before.starts_with("192.0.2."), "{before}");

    let d = start(&mut sb, &dev, &config(p), "nsw");
    // The NIC is renamed and keeps its MAC; the host TAP has the NIC's name and MAC.
    assert_eq!(
        sb.out(&dev, &format!("cat /sys/class/net/{knic}/address")),
        nic_mac
    );
    assert!(is_tap(&sb, &dev, &nic), "{nic} is now the host TAP");
    assert_eq!(
        sb.out(&dev, &format!("cat /sys/class/net/{nic}/address")),
        nic_mac
    );
    let nic_addrs = sb.out(&dev, &format!("ip -o addr show dev {knic}"));
    assert!(
        !nic_addrs.contains("inet"),
        "the NIC carries no address: {nic_addrs}"
    );
    // The host's DHCP client on the TAP gets the very same lease.
    let after = udhcpc(&sb, &dev, &nic);
    assert_eq!(after, before, "same lease through the host TAP");

    // The app joins the LAN.
    let app_ip = udhcpc(&sb, &app, &format!("{p}-a"));
    assert!(ping(&sb, &app, &after), "app -> host");
    assert!(ping(&sb, &app, "192.0.2.1"), "app -> upstream");
    assert_eq!(d.status()["ports"][0]["device"], knic.as_str());

    // Link down: host <-> app keeps working without loss; the outside does not.
    sb.sh(&up, &format!("ip link set {p}-lan down"));
    assert!(
        wait_until(Duration::from_secs(3), || d.status()["ports"][0]["link_up"]
            == false),
        "status shows the link down"
    );
    let out = sb.out(
        &dev,
        &format!("ping -c 30 -i 0.05 -W 1 {app_ip} | grep 'packet loss'"),
    );
    assert!(
        out.contains(" 0% packet loss"),
        "host -> app while down: {out}"
    );
    let out = sb.out(
        &app,
        &format!("ping -c 30 -i 0.05 -W 1 {after} | grep 'packet loss'"),
    );
    assert!(
        out.contains(" 0% packet loss"),
        "app -> host while down: {out}"
    );
    assert!(!sb.ok(&app, "ping -c 1 -W 1 192.0.2.1"));
    sb.sh(&up, &format!("ip link set {p}-lan up"));
    assert!(
        wait_until(Duration::from_secs(10), || sb
            .ok(&app, "ping -c 1 -W 1 192.0.2.1")),
        "outside reachable again, no restart"
    );

    // Crash: the host TAP keeps its address; a new niswitch adopts what it finds.
    sb.signal(d.pid, libc::SIGKILL);
    sb.wait(d.pid, Duration::from_secs(5));
    assert!(is_tap(&sb, &dev, &nic), "host TAP survives the crash");
    assert_eq!(ipv4_of(&sb, &dev, &nic), after, "with its address");
    let t0 = Instant::now();
    let state = sb.path("nsw-state");
    let pid2 = sb
        .spawn(
            &dev,
            Path::new(BIN),
            &[
                "run",
                "--config",
                &d.config.to_string_lossy(),
                "--control",
                &d.ctl.to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
            ],
            "nsw2.log",
        )
        .unwrap();
    let resumed = wait_until(Duration::from_secs(5), || {
        sb.ok(&app, &format!("ping -c 1 -W 0.2 {after}"))
    });
    let took = t0.elapsed();
    eprintln!("traffic resumed {took:?} after the new niswitch started");
    assert!(
        resumed && took < Duration::from_secs(2),
        "traffic resumed after {took:?}; log:\n{}",
        sb.log("nsw2.log")
    );
    assert!(
        sb.log("nsw2.log").contains("adopting NIC"),
        "{}",
        sb.log("nsw2.log")
    );
    assert!(ping(&sb, &app, "192.0.2.1"));

    // Clean exit: the NIC gets its name back, the TAPs go.
    sb.signal(pid2, libc::SIGTERM);
    assert_eq!(
        sb.wait(pid2, Duration::from_secs(10)),
        Some(0),
        "{}",
        sb.log("nsw2.log")
    );
    assert!(!is_tap(&sb, &dev, &nic), "{nic} is the NIC again");
    assert_eq!(
        sb.out(&dev, &format!("cat /sys/class/net/{nic}/address")),
        nic_mac
    );
    assert!(
        !sb.ok(&dev, &format!("ip link show {knic}")),
        "no renamed NIC left behind"
    );
    assert!(
        !sb.ok(&app, &format!("ip link show {p}-a")),
        "app TAP removed"
    );
}
