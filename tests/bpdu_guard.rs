//! Link-local control frames on a switch NI (SPEC §3.1): a BPDU from an
//! app interface disables that interface (counted, logged, in status)
//! while the other apps go on, until the next apply; STP and LACP frames
//! are never forwarded, LLDP only with `forward_lldp: true`. Frames are
//! sent from the app namespaces by a raw packet socket.

mod common;
use common::*;
use std::time::Duration;

const P: &str = "nswbpdu";

fn config(extra: &str) -> String {
    let app = |n: &str, i: u8| {
        format!(
            "  - {{ name: {n}, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd438{i:02x}, interfaces: [{{ ni: flat, tap: {P}-{n}, netns: {P}-{n} }}] }}\n"
        )
    };
    format!(
        "version: 1
ports:
  - {{ name: lan, device: {P}-nic }}
network_instances:
  - {{ name: flat, type: switch, port: lan{extra} }}
apps:
{}{}",
        app("a", 1),
        app("b", 2)
    )
}

/// Sends one frame to `dst` with `ethertype` (a length below 1536: an
/// 802.3 frame with an LLC header) and `payload` (hex) from `ifname`.
fn send_frame(sb: &Sandbox, ns: &str, ifname: &str, dst: &str, ethertype: u16, payload: &str) {
    let py = format!(
        "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('{ifname}', 0)); \
         src = open('/sys/class/net/{ifname}/address').read().strip(); \
         f = bytes.fromhex('{dst}'.replace(':', '') + src.replace(':', '') + '{ethertype:04x}' + '{payload}'); \
         s.send(f + bytes(max(0, 60 - len(f))))"
    );
    assert!(
        sb.ok(ns, &format!("python3 -c \"{py}\"")),
        "sending from {ifname}"
    );
}

/// An 802.1D configuration BPDU behind its LLC header (DSAP/SSAP 0x42).
const BPDU: &str = "424203000000000080000200000000010000000080000200000000018001000014000200";
const STP: &str = "01:80:c2:00:00:00";
const LACP: &str = "01:80:c2:00:00:02";
const LLDP: &str = "01:80:c2:00:00:0e";

fn vif(st: &serde_json::Value, app: usize) -> &serde_json::Value {
    &st["apps"][app]["interfaces"][0]
}

#[test]
fn a_bpdu_from_an_app_disables_its_interface_until_the_next_apply() {
    if !root_or_skip("a_bpdu_from_an_app_disables_its_interface_until_the_next_apply") {
        return;
    }
    need(&["tcpdump", "ping", "python3"]);
    let mut sb = Sandbox::new(P).unwrap();
    let lan = format!("{P}-lan");
    let (dev, up) = dev_and_up(&mut sb, &format!("{P}-nic"), &lan);
    let (a, b) = (sb.ns("a").unwrap(), sb.ns("b").unwrap());
    let (ta, tb) = (format!("{P}-a"), format!("{P}-b"));
    assert!(sb.ok(&up, &format!("ip addr add 192.0.2.1/24 dev {lan}")));
    let d = start(&mut sb, &dev, &config(""), "nsw");
    for (ns, tap, ip) in [(&a, &ta, "192.0.2.11"), (&b, &tb, "192.0.2.12")] {
        assert!(sb.ok(ns, &format!("ip addr add {ip}/24 dev {tap}")));
    }
    assert!(
        ping(&sb, &a, "192.0.2.1") && ping(&sb, &b, "192.0.2.1"),
        "both apps reach the LAN"
    );

    // A BPDU from a: never on the LAN, and a is cut off; b goes on.
    let cap = capture(&mut sb, &up, &lan, "ether dst 01:80:c2:00:00:00", "stp.txt");
    send_frame(&sb, &a, &ta, STP, 38, BPDU);
    assert!(
        wait_until(
            Duration::from_secs(3),
            || vif(&d.status(), 0)["bpdu_guard_tripped"] == true
        ),
        "a is disabled: {}",
        vif(&d.status(), 0)
    );
    assert!(!ping(&sb, &a, "192.0.2.1"), "a is cut off");
    assert!(ping(&sb, &b, "192.0.2.1"), "b goes on");
    let seen = captured(&mut sb, cap, "stp.txt");
    assert!(
        !seen.contains("01:80:c2:00:00:00"),
        "a BPDU reached the LAN:\n{seen}"
    );
    assert!(d.drops(&ta, "bpdu_guard") >= 1);
    assert!(sb.log(&d.log).contains("BPDU guard"), "logged");
    assert!(
        vif(&d.status(), 1).get("bpdu_guard_tripped").is_none(),
        "b is not"
    );

    // LACP and LLDP from b are not forwarded; LLDP is with forward_lldp.
    let cap = capture(
        &mut sb,
        &up,
        &lan,
        "ether dst 01:80:c2:00:00:02 or ether dst 01:80:c2:00:00:0e",
        "ll.txt",
    );
    send_frame(&sb, &b, &tb, LACP, 0x8809, "0101");
    send_frame(&sb, &b, &tb, LLDP, 0x88cc, "0207");
    let seen = captured(&mut sb, cap, "ll.txt");
    assert!(
        !seen.contains("01:80:c2"),
        "control frames reached the LAN:\n{seen}"
    );
    assert!(d.drops(&tb, "link_local") >= 2);
    assert!(ping(&sb, &b, "192.0.2.1"), "b was not disabled by them");

    // An apply (with LLDP forwarding now) enables a again.
    let f = write_file(&sb, "lldp.yaml", &config(", forward_lldp: true"));
    let out = apply(&sb, &d, &f, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(vif(&d.status(), 0).get("bpdu_guard_tripped").is_none());
    assert!(ping(&sb, &a, "192.0.2.1"), "a is back after the apply");
    let cap = capture(
        &mut sb,
        &up,
        &lan,
        "ether dst 01:80:c2:00:00:0e",
        "lldp.txt",
    );
    send_frame(&sb, &b, &tb, LLDP, 0x88cc, "0207");
    let seen = captured(&mut sb, cap, "lldp.txt");
    assert!(
        seen.contains("01:80:c2:00:00:0e"),
        "LLDP forwarded with forward_lldp:\n{seen}"
    );
}
