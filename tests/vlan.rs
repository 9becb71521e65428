//! VLANs on a switch NI (SPEC §3.1), against VLAN endpoints built in
//! userspace (this kernel has no 802.1Q): the upstream LAN carries VLAN 100
//! and 200 tagged on the NIC's wire and VLAN 1 untagged. Apps on access
//! VLANs reach only their VLAN, see untagged frames and are flooded only
//! within their VLAN; the wire carries tags; a trunk app has endpoints of
//! its own; the host's interface is an access member too; a NIC access
//! port and pass-through without access VLANs follow by live apply.

mod common;
use common::*;
use std::time::Duration;

const P: &str = "nswvl";
const RELAY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vlan_endpoints.py");

/// `vlans`: a1, a2 in VLAN 100 and b in 200 (else no `vlan:` at all);
/// `access_port`: the NIC's access VLAN. a1 and b hold addresses of two
/// subnets each, so their port security is off: only VLANs keep them apart.
fn config(vlans: bool, access_port: Option<u16>) -> String {
    let v = |n: u16| {
        if vlans {
            format!(", vlan: {n}")
        } else {
            String::new()
        }
    };
    let access = access_port
        .map(|n| format!(", vlan_access_ports: [{{ port: lan, vlan: {n} }}]"))
        .unwrap_or_default();
    let host_vlan = if vlans { ", host_vlan: 100" } else { "" };
    format!(
        "version: 1
ports:
  - {{ name: lan, device: {P}-nic, management: true, host_interface: {P}-host{host_vlan} }}
network_instances:
  - {{ name: plant, type: switch, port: lan{access} }}
apps:
  - {{ name: a1, uuid: 7ba7b810-9dad-11d1-80b4-00c04fd430c1, interfaces: [{{ ni: plant, tap: {P}-a1, netns: {P}-a1, port_security: false{} }}] }}
  - {{ name: a2, uuid: 7ba7b810-9dad-11d1-80b4-00c04fd430c2, interfaces: [{{ ni: plant, tap: {P}-a2, netns: {P}-a2{} }}] }}
  - {{ name: b, uuid: 7ba7b810-9dad-11d1-80b4-00c04fd430c3, interfaces: [{{ ni: plant, tap: {P}-b, netns: {P}-b, port_security: false{} }}] }}
  - {{ name: t, uuid: 7ba7b810-9dad-11d1-80b4-00c04fd430c4, interfaces: [{{ ni: plant, tap: {P}-t, netns: {P}-t }}] }}
",
        v(100),
        v(100),
        v(200)
    )
}

/// Starts VLAN endpoints on `parent` in `ns`: a TAP per (VLAN, name,
/// address), up and addressed.
fn endpoints(sb: &mut Sandbox, ns: &str, parent: &str, eps: &[(u16, &str, &str)]) {
    let mut args = vec![RELAY.to_string(), parent.to_string()];
    args.extend(eps.iter().map(|(vid, name, _)| format!("{vid}:{name}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = format!("relay-{parent}.log");
    let five = Duration::from_secs(5);
    spawn_until(sb, ns, "/usr/bin/python3", &args, &log, "ready", five);
    for (_, name, addr) in eps {
        let cmd = format!("ip link set {name} up && ip addr add {addr} dev {name}");
        assert!(sb.ok(ns, &cmd), "{cmd}");
    }
}

fn addr(sb: &Sandbox, ns: &str, ifname: &str, addrs: &[&str]) {
    for a in addrs {
        let cmd = format!("ip addr add {a} dev {ifname}");
        assert!(sb.ok(ns, &cmd), "{cmd}");
    }
}

/// ARP requests from `mac` that a capture saw.
fn arps_from(text: &str, mac: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(&format!(" {mac} >")))
        .filter(|l| l.contains("ARP") && l.contains("Request"))
        .count()
}

#[test]
fn vlans_keep_apps_apart_tag_the_wire_and_change_live() {
    if !root_or_skip("vlans_keep_apps_apart_tag_the_wire_and_change_live") {
        return;
    }
    need(&["python3", "tcpdump", "ping"]);
    let mut sb = Sandbox::new(P).unwrap();
    let (dev, up) = dev_and_up(&mut sb, &format!("{P}-nic"), &format!("{P}-lan"));
    let [a1, a2, b, t] = ["a1", "a2", "b", "t"].map(|n| sb.ns(n).unwrap());
    let lan = format!("{P}-lan");
    // Upstream: VLAN 1 on the veth itself, VLAN 100 and 200 on relayed TAPs.
    addr(&sb, &up, &lan, &["10.1.0.254/24"]);
    let (u100, u200) = (format!("{P}-u100"), format!("{P}-u200"));
    endpoints(
        &mut sb,
        &up,
        &lan,
        &[
            (100, &u100, "10.100.0.254/24"),
            (200, &u200, "10.200.0.254/24"),
        ],
    );
    let d = start(&mut sb, &dev, &config(true, None), "nsw");
    let cfg = niswitch::config::load(&d.config).unwrap();
    let mac = |i: usize| cfg.apps[i].interfaces[0].mac.to_string();
    let tap = |n: &str| format!("{P}-{n}");
    addr(&sb, &a1, &tap("a1"), &["10.100.0.1/24", "10.1.0.1/24"]);
    addr(&sb, &a2, &tap("a2"), &["10.100.0.2/24"]);
    // b is in VLAN 200 but also numbered in VLAN 100's subnet: only L2
    // isolation keeps a1 from reaching it.
    addr(&sb, &b, &tap("b"), &["10.200.0.1/24", "10.100.0.9/24"]);
    // The trunk app: VLAN 1 on its TAP, VLAN 100 and 200 on its own endpoints.
    addr(&sb, &t, &tap("t"), &["10.1.0.3/24"]);
    let (t100, t200) = (format!("{P}-t100"), format!("{P}-t200"));
    endpoints(
        &mut sb,
        &t,
        &tap("t"),
        &[(100, &t100, "10.100.0.3/24"), (200, &t200, "10.200.0.3/24")],
    );
    // The host's interface is an access member of VLAN 100.
    addr(&sb, &dev, &tap("host"), &["10.100.0.50/24"]);

    // Reachability within a VLAN, across the tagged wire and the trunk app.
    let reach = [
        (&a1, "10.100.0.2", "a1 -> a2 (VLAN 100, local)"),
        (&a1, "10.100.0.254", "a1 -> upstream VLAN 100 (tagged wire)"),
        (&b, "10.200.0.254", "b -> upstream VLAN 200"),
        (&t, "10.100.0.1", "trunk app's VLAN 100 -> a1"),
        (&t, "10.200.0.1", "trunk app's VLAN 200 -> b"),
        (&t, "10.1.0.254", "trunk app's VLAN 1 -> upstream untagged"),
        (&dev, "10.100.0.254", "host VLAN 100 -> upstream"),
    ];
    for (ns, ip, what) in reach {
        assert!(ping(&sb, ns, ip), "{what}; status {}", d.status());
    }
    // ... and nothing across VLANs.
    let apart = [
        (&a1, "10.100.0.9", "a1 -> b's address in VLAN 100's subnet"),
        (&b, "10.100.0.254", "b (VLAN 200) -> upstream VLAN 100"),
        (&a1, "10.1.0.254", "a1 (VLAN 100) -> upstream VLAN 1"),
    ];
    for (ns, ip, what) in apart {
        assert!(!ping(&sb, ns, ip), "{what} must fail");
    }

    // Tags on the wire; untagged at access interfaces.
    let wire = capture(&mut sb, &up, &lan, "icmp or (vlan and icmp)", "wire.txt");
    let at_a1 = capture(&mut sb, &a1, &tap("a1"), "icmp", "a1.txt");
    assert!(ping(&sb, &a1, "10.100.0.254"));
    assert!(ping(&sb, &b, "10.200.0.254"));
    assert!(ping(&sb, &t, "10.100.0.1"));
    let wire = captured(&mut sb, wire, "wire.txt");
    let at_a1 = captured(&mut sb, at_a1, "a1.txt");
    let from = |text: &str, m: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(&format!(" {m} >")))
            .map(String::from)
            .collect()
    };
    let (a1_out, b_out) = (from(&wire, &mac(0)), from(&wire, &mac(2)));
    assert!(
        !a1_out.is_empty() && a1_out.iter().all(|l| l.contains("vlan 100")),
        "a1's frames on the wire carry VLAN 100:\n{wire}"
    );
    assert!(
        !b_out.is_empty() && b_out.iter().all(|l| l.contains("vlan 200")),
        "b's frames on the wire carry VLAN 200:\n{wire}"
    );
    assert!(
        at_a1.lines().count() >= 4 && !at_a1.contains("vlan"),
        "a1 sees its VLAN untagged:\n{at_a1}"
    );

    // Flooding stays within a VLAN: a1's ARP broadcasts reach a2, not b.
    let at_a2 = capture(&mut sb, &a2, &tap("a2"), "arp", "a2-arp.txt");
    let at_b = capture(&mut sb, &b, &tap("b"), "arp", "b-arp.txt");
    // An address nobody holds: the kernel broadcasts ARP requests for it.
    sb.sh(&a1, "ping -c 2 -W 3 10.100.0.77");
    let (at_a2, at_b) = (
        captured(&mut sb, at_a2, "a2-arp.txt"),
        captured(&mut sb, at_b, "b-arp.txt"),
    );
    assert!(
        arps_from(&at_a2, &mac(0)) >= 1,
        "a2 hears a1's ARP:\n{at_a2}"
    );
    assert_eq!(
        arps_from(&at_b, &mac(0)),
        0,
        "b never hears VLAN 100:\n{at_b}"
    );

    // status: each VIF's VLAN, the host's, the VLANs and a MAC table per VLAN.
    let st = d.status();
    let vif = |i: usize| st["apps"][i]["interfaces"][0].clone();
    assert_eq!(
        (vif(0)["vlan"].as_u64(), vif(2)["vlan"].as_u64()),
        (Some(100), Some(200))
    );
    assert!(
        vif(3).get("vlan").is_none(),
        "the trunk app has no access VLAN"
    );
    assert_eq!(st["ports"][0]["host_interface"]["vlan"], 100);
    let ni = &st["network_instances"][0];
    let vlans: Vec<u64> = (ni["vlans"].as_array().unwrap().iter())
        .filter_map(|v| v["vlan"].as_u64())
        .collect();
    assert_eq!(vlans, vec![1, 100, 200], "{ni}");
    let in_vlan = |v: u64, m: &str| {
        (ni["mac_table"].as_array().unwrap().iter()).any(|e| e["vlan"] == v && e["mac"] == m)
    };
    assert!(in_vlan(100, &mac(0)) && in_vlan(200, &mac(2)), "{ni}");
    assert!(!in_vlan(200, &mac(0)), "a1 is not known in VLAN 200");

    // The NIC as an access port of VLAN 100, live: the upstream's untagged
    // VLAN is now VLAN 100 for the apps.
    apply_ok(&sb, &d, "access.yaml", &config(true, Some(100)));
    assert!(
        ping(&sb, &a1, "10.1.0.254"),
        "a1 -> untagged upstream via the access port"
    );
    assert!(
        !ping(&sb, &a1, "10.100.0.254"),
        "the tagged VLAN 100 is gone from the wire"
    );
    assert_eq!(d.status()["ports"][0]["vlan"], 100);

    // No access VLAN at all: tagged frames pass through unchanged, so the
    // trunk app's VLAN 100 reaches the upstream's VLAN 100 directly.
    apply_ok(&sb, &d, "plain.yaml", &config(false, None));
    assert!(
        ping(&sb, &t, "10.100.0.254"),
        "tagged pass-through; {}",
        d.status()
    );
    assert!(ping(&sb, &a1, "10.1.0.254"), "untagged pass-through");
    let st = d.status();
    assert!(st["network_instances"][0].get("vlans").is_none(), "{st}");
}
