//! A NIC's original settings come back even after a crash: its MTU, IPv6
//! state and name are recorded before niswitch changes them, restored on a
//! clean exit after a kill -9 and restart, and restored at start when the
//! config no longer names the NIC.

mod common;
use common::*;
use std::time::Duration;

fn config(p: &str, with_port: bool) -> String {
    let port = if with_port {
        format!(
            "ports: [{{ name: lan, device: {p}n, management: true, host_interface: {p}n, mtu: 1400 }}]\n"
        )
    } else {
        String::new()
    };
    format!("version: 1\n{port}network_instances: []\n")
}

fn mtu(sb: &Sandbox, ns: &str, dev: &str) -> String {
    sb.out(ns, &format!("cat /sys/class/net/{dev}/mtu"))
}

fn ipv6_off(sb: &Sandbox, ns: &str, dev: &str) -> String {
    sb.out(
        ns,
        &format!("cat /proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
    )
}

#[test]
fn mtu_ipv6_and_name_come_back_after_a_crash() {
    if !root_or_skip("mtu_ipv6_and_name_come_back_after_a_crash") {
        return;
    }
    let p = "nswnr";
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let lan = sb.ns("lan").unwrap();
    sb.veth(&dev, &format!("{p}n"), &lan, &format!("{p}l"))
        .unwrap();
    let nic = format!("{p}n");
    let knic = format!("k{nic}");
    assert_eq!(
        (
            mtu(&sb, &dev, &nic).as_str(),
            ipv6_off(&sb, &dev, &nic).as_str()
        ),
        ("1500", "0")
    );

    let d = start(&mut sb, &dev, &config(p, true), "nsw");
    assert_eq!(mtu(&sb, &dev, &knic), "1400", "{}", sb.log(&d.log));
    assert_eq!(ipv6_off(&sb, &dev, &knic), "1");
    // Crash, and start again with the same config: a clean exit then gives
    // back the original MTU and IPv6 state, not what the crash left.
    sb.signal(d.pid, libc::SIGKILL);
    sb.wait(d.pid, Duration::from_secs(5));
    let d = restart(&mut sb, &d, "nsw2.log", &[]);
    sb.signal(d.pid, libc::SIGTERM);
    assert_eq!(
        sb.wait(d.pid, Duration::from_secs(10)),
        Some(0),
        "clean exit\n{}",
        sb.log("nsw2.log")
    );
    assert_eq!(
        mtu(&sb, &dev, &nic),
        "1500",
        "MTU back\n{}",
        sb.log("nsw2.log")
    );
    assert_eq!(ipv6_off(&sb, &dev, &nic), "0", "IPv6 back");

    // Crash, then start with a config that no longer names the NIC.
    let d = restart(&mut sb, &d, "nsw3.log", &[]);
    assert_eq!(mtu(&sb, &dev, &knic), "1400");
    sb.signal(d.pid, libc::SIGKILL);
    sb.wait(d.pid, Duration::from_secs(5));
    std::fs::write(&d.config, config(p, false)).unwrap();
    let d = restart(&mut sb, &d, "nsw4.log", &[]);
    // The NIC itself (not the host TAP left from the crash, which has its
    // name while niswitch runs).
    let back = wait_until(Duration::from_secs(5), || {
        has_link(&sb, &dev, &nic) && !is_tap(&sb, &dev, &nic) && !has_link(&sb, &dev, &knic)
    });
    assert!(back, "the NIC has its name back\n{}", sb.log("nsw4.log"));
    assert_eq!(
        mtu(&sb, &dev, &nic),
        "1500",
        "MTU back\n{}",
        sb.log("nsw4.log")
    );
    assert_eq!(ipv6_off(&sb, &dev, &nic), "0", "IPv6 back");
    sb.signal(d.pid, libc::SIGTERM);
    sb.wait(d.pid, Duration::from_secs(10));
}
