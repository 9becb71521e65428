//! The flat network (SPEC §3, management ports): the host keeps its lease
//! through the TAP that takes the NIC's name, host and apps keep talking with
//! the NIC's link down, a crashed niswitch is replaced within seconds without
//! the host losing its address, and a clean exit gives the NIC its name back.

mod common;
use common::*;
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

/// The `packet loss` line of 30 pings, 50 ms apart, from `ns` to `ip`.
fn loss(sb: &Sandbox, ns: &str, ip: &str) -> String {
    sb.out(
        ns,
        &format!("ping -c 30 -i 0.05 -W 1 {ip} | grep 'packet loss'"),
    )
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
    let lan = format!("{p}-lan");
    let mut sb = Sandbox::new(p).unwrap();
    let (dev, up) = dev_and_up(&mut sb, &nic, &lan);
    let app = sb.ns("a").unwrap();
    upstream_dhcp(&mut sb, &up, &lan, "dnsmasq");

    // Before niswitch: the host's DHCP client on the NIC.
    let nic_mac = mac_of(&sb, &dev, &nic);
    let before = lease(&sb, &dev, &nic);
    assert!(before.starts_with("192.0.2."), "{before}");

    let d = start(&mut sb, &dev, &config(p), "nsw");
    // The NIC is renamed and keeps its MAC; the host TAP has the NIC's name and MAC.
    assert_eq!(mac_of(&sb, &dev, &knic), nic_mac);
    assert!(is_tap(&sb, &dev, &nic), "{nic} is now the host TAP");
    assert_eq!(mac_of(&sb, &dev, &nic), nic_mac);
    let nic_addrs = sb.out(&dev, &format!("ip -o addr show dev {knic}"));
    assert!(
        !nic_addrs.contains("inet"),
        "the NIC carries no address: {nic_addrs}"
    );
    // The host's DHCP client on the TAP gets the very same lease.
    let after = lease(&sb, &dev, &nic);
    assert_eq!(after, before, "same lease through the host TAP");

    // The app joins the LAN.
    let app_ip = lease(&sb, &app, &format!("{p}-a"));
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
    let out = loss(&sb, &dev, &app_ip);
    assert!(
        out.contains(" 0% packet loss"),
        "host -> app while down: {out}"
    );
    let out = loss(&sb, &app, &after);
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
    let pid2 = spawn_daemon(&mut sb, &d, "nsw2.log", &[], &[]);
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
    assert_eq!(mac_of(&sb, &dev, &nic), nic_mac);
    assert!(
        !sb.ok(&dev, &format!("ip link show {knic}")),
        "no renamed NIC left behind"
    );
    assert!(
        !sb.ok(&app, &format!("ip link show {p}-a")),
        "app TAP removed"
    );
}
