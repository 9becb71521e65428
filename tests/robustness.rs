//! One app's problem stays that app's: a missing namespace or a name taken
//! by an interface niswitch did not make leaves the rest running, and the
//! foreign interface is left alone.

mod common;
use common::*;
use std::time::Duration;

const P: &str = "nswrob";

#[test]
fn a_broken_vif_leaves_the_rest_running_and_foreign_taps_alone() {
    if !root_or_skip("a_broken_vif_leaves_the_rest_running_and_foreign_taps_alone") {
        return;
    }
    let mut sb = Sandbox::new(P).unwrap();
    let dev = sb.ns("dev").unwrap();
    let a = sb.ns("a").unwrap();
    let b = sb.ns("b").unwrap();
    // An interface someone else made, with the name a VIF asks for.
    assert!(sb.ok(&dev, &format!("ip tuntap add dev {P}-x mode tap")));
    let cfg = format!(
        "version: 1
network_instances: [{{ name: n, type: switch }}]
apps:
  - {{ name: a, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43101, interfaces: [{{ ni: n, tap: {P}-a, netns: {P}-a }}] }}
  - {{ name: b, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43102, interfaces: [{{ ni: n, tap: {P}-b, netns: {P}-b }}] }}
  - {{ name: gone, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43103, interfaces: [{{ ni: n, tap: {P}-g, netns: {P}-nosuchns }}] }}
  - {{ name: clash, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43104, interfaces: [{{ ni: n, tap: {P}-x }}] }}
"
    );
    let d = start(&mut sb, &dev, &cfg, "nsw");
    assert!(sb.ok(&a, &format!("ip addr add 10.7.0.1/24 dev {P}-a")));
    assert!(sb.ok(&b, &format!("ip addr add 10.7.0.2/24 dev {P}-b")));
    assert!(ping(&sb, &a, "10.7.0.2"), "the healthy apps talk");
    let st = d.status();
    let apps = st["apps"].to_string();
    assert!(
        apps.contains("network namespace") && apps.contains("nosuchns"),
        "{apps}"
    );
    assert!(apps.contains("niswitch did not make it"), "{apps}");
    // The foreign TAP keeps its MAC and survives niswitch's exit.
    let mac = sb.out(&dev, &format!("cat /sys/class/net/{P}-x/address"));
    sb.signal(d.pid, libc::SIGTERM);
    assert_eq!(sb.wait(d.pid, Duration::from_secs(10)), Some(0));
    assert!(
        sb.ok(&dev, &format!("ip link show {P}-x")),
        "foreign TAP left alone"
    );
    assert_eq!(
        sb.out(&dev, &format!("cat /sys/class/net/{P}-x/address")),
        mac
    );
}
