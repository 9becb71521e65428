//! Plans between configs: only what differs, in the right order, with
//! in-place changes where the running objects allow them.

use super::*;
use crate::config;

const BASE: &str = r#"
version: 1
ports:
  - { name: eth0, device: veth0, management: true, host_interface: host0 }
  - { name: eth1, device: veth1 }
network_instances:
  - { name: flat, type: switch, port: eth0 }
  - { name: lan, type: local, subnet: 10.50.0.0/24, uplinks: [eth1] }
apps:
  - name: web
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430c8
    interfaces:
      - { ni: lan, tap: web0 }
      - { ni: flat, tap: web1 }
  - name: db
    uuid: 6ba7b811-9dad-11d1-80b4-00c04fd430c8
    interfaces:
      - { ni: lan, tap: db0 }
"#;

fn cfg(text: &str) -> Config {
    config::parse(text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn plan(old: &str, new: &str) -> Vec<Step> {
    diff(&cfg(old), &cfg(new), &Damaged::default()).steps
}

fn empty() -> Config {
    cfg("version: 1\n")
}

#[test]
fn the_same_config_changes_nothing() {
    assert!(plan(BASE, BASE).is_empty());
}

#[test]
fn a_start_adds_everything_ports_first() {
    let steps = diff(&empty(), &cfg(BASE), &Damaged::default()).steps;
    let s = |x: &str| x.to_string();
    assert_eq!(
        steps,
        vec![
            Step::AddPort(s("eth0")),
            Step::AddPort(s("eth1")),
            Step::AddNi(s("flat")),
            Step::AddNi(s("lan")),
            Step::AddVif(s("db0")),
            Step::AddVif(s("web0")),
            Step::AddVif(s("web1")),
        ]
    );
    // And a stop removes everything, interfaces first.
    let back = diff(&cfg(BASE), &empty(), &Damaged::default()).steps;
    assert_eq!(back.first(), Some(&Step::RemoveVif(s("db0"))));
    assert_eq!(back.last(), Some(&Step::RemovePort(s("eth1"))));
}

#[test]
fn adding_an_app_touches_only_it_and_tells_the_router() {
    let new = format!(
        "{BASE}  - name: cache\n    uuid: 6ba7b812-9dad-11d1-80b4-00c04fd430c8\n    interfaces: [{{ ni: lan, tap: cache0 }}]\n"
    );
    assert_eq!(
        plan(BASE, &new),
        vec![
            Step::RefreshRouter("lan".into()),
            Step::AddVif("cache0".into())
        ]
    );
}

#[test]
fn acls_and_port_maps_change_in_place() {
    let new = BASE.replace(
        "{ ni: lan, tap: db0 }",
        "{ ni: lan, tap: db0, acls: [{ match: { protocol: tcp }, action: allow }] }",
    );
    assert_eq!(plan(BASE, &new), vec![Step::UpdateVif("db0".into())]);
    let mapped = BASE.replace(
        "{ ni: lan, tap: db0 }",
        "{ ni: lan, tap: db0, port_maps: [{ protocol: tcp, uplink_port: 8080, app_port: 80 }] }",
    );
    assert_eq!(
        plan(BASE, &mapped),
        vec![
            Step::RefreshRouter("lan".into()),
            Step::UpdateVif("db0".into())
        ]
    );
}

#[test]
fn a_new_mac_or_ni_makes_the_interface_again() {
    let new = BASE.replace(
        "{ ni: lan, tap: db0 }",
        "{ ni: lan, tap: db0, mac: 02:00:00:00:00:42 }",
    );
    assert_eq!(
        plan(BASE, &new),
        vec![
            Step::RemoveVif("db0".into()),
            Step::RefreshRouter("lan".into()),
            Step::AddVif("db0".into())
        ]
    );
    let moved = BASE.replace("{ ni: lan, tap: db0 }", "{ ni: flat, tap: db0 }");
    let steps = plan(BASE, &moved);
    assert_eq!(steps[0], Step::RemoveVif("db0".into()));
    assert!(steps.contains(&Step::AddVif("db0".into())));
}

#[test]
fn dns_changes_in_place_other_local_ni_changes_restart_its_router() {
    let dns = BASE.replace(
        "subnet: 10.50.0.0/24,",
        "subnet: 10.50.0.0/24, dns: { records: [{ name: a.example, ip: 10.50.0.9 }] },",
    );
    assert_eq!(plan(BASE, &dns), vec![Step::UpdateNi("lan".into())]);
    let new = BASE.replace(
        "subnet: 10.50.0.0/24,",
        "subnet: 10.50.0.0/24, lease_time: 60,",
    );
    assert_eq!(
        plan(BASE, &new),
        vec![
            Step::StopRouter("lan".into()),
            Step::StartRouter("lan".into())
        ]
    );
}

#[test]
fn an_mtu_change_makes_the_port_and_its_nis_again() {
    let new = BASE.replace(
        "{ name: eth1, device: veth1 }",
        "{ name: eth1, device: veth1, mtu: 1400 }",
    );
    assert_eq!(
        plan(BASE, &new),
        vec![
            Step::StopRouter("lan".into()),
            Step::RemovePort("eth1".into()),
            Step::AddPort("eth1".into()),
            Step::StartRouter("lan".into())
        ]
    );
}

#[test]
fn a_flood_limit_changes_in_place() {
    let new = BASE.replace(
        "{ name: flat, type: switch, port: eth0 }",
        "{ name: flat, type: switch, port: eth0, flood_limit: 100 }",
    );
    assert_eq!(plan(BASE, &new), vec![Step::UpdateNi("flat".into())]);
}

#[test]
fn cost_changes_in_place_but_its_routers_restart() {
    let new = BASE.replace(
        "{ name: eth1, device: veth1 }",
        "{ name: eth1, device: veth1, cost: 5 }",
    );
    assert_eq!(
        plan(BASE, &new),
        vec![
            Step::StopRouter("lan".into()),
            Step::UpdatePort("eth1".into()),
            Step::StartRouter("lan".into())
        ]
    );
}

#[test]
fn a_replaced_port_moves_its_switch_ni_and_keeps_the_taps() {
    let new = BASE.replace("device: veth0,", "device: veth9,");
    assert_eq!(
        plan(BASE, &new),
        vec![
            Step::DetachVif("web1".into()),
            Step::RemoveNi("flat".into()),
            Step::RemovePort("eth0".into()),
            Step::AddPort("eth0".into()),
            Step::AddNi("flat".into()),
            Step::AttachVif("web1".into()),
        ]
    );
}

#[test]
fn interfaces_that_failed_are_tried_again() {
    let failed = Damaged {
        vifs: ["db0".to_string()].into(),
        routers: ["lan".to_string()].into(),
    };
    let steps = diff(&cfg(BASE), &cfg(BASE), &failed).steps;
    assert_eq!(
        steps,
        vec![Step::StartRouter("lan".into()), Step::AddVif("db0".into())]
    );
}

#[test]
fn steps_read_as_sentences() {
    let steps = diff(&empty(), &cfg(BASE), &Damaged::default()).steps;
    assert_eq!(steps[0].to_string(), "add port eth0");
    assert_eq!(
        Step::RefreshRouter("lan".into()).to_string(),
        "update the DHCP clients, names and port maps of lan"
    );
}

#[test]
fn dataplane_tuning_is_one_step_that_touches_nothing_else() {
    let tuned = format!("{BASE}dataplane: {{ busy_poll_us: 500 }}\n");
    assert_eq!(plan(BASE, &tuned), vec![Step::UpdateDataplane]);
    assert!(plan(&tuned, &tuned).is_empty());
    assert_eq!(plan(&tuned, BASE), vec![Step::UpdateDataplane]);
}

#[test]
fn vlans_change_in_place_and_a_port_joining_a_tree_is_made_again() {
    let s = |x: &str| x.to_string();
    // A VIF's VLAN, an access port and the host's VLAN: in place.
    let vlans = BASE
        .replace(
            "{ ni: flat, tap: web1 }",
            "{ ni: flat, tap: web1, vlan: 100 }",
        )
        .replace(
            "port: eth0 }",
            "port: eth0, vlan_access_ports: [{ port: eth0, vlan: 200 }] }",
        )
        .replace(
            "host_interface: host0 }",
            "host_interface: host0, host_vlan: 300 }",
        );
    assert_eq!(
        plan(BASE, &vlans),
        vec![
            Step::UpdatePort(s("eth0")),
            Step::UpdateNi(s("flat")),
            // The app changed, so each of its interfaces is looked at again.
            Step::UpdateVif(s("web0")),
            Step::UpdateVif(s("web1")),
        ]
    );
    // flat spans eth0 and a new eth2: eth0 changes domains (made again),
    // and so does the NI, whose interfaces move.
    let tree = BASE
        .replace(
            "  - { name: eth1, device: veth1 }",
            "  - { name: eth1, device: veth1 }\n  - { name: eth2, device: veth2 }",
        )
        .replace("port: eth0 }", "ports: [eth0, eth2] }");
    let steps = plan(BASE, &tree);
    for want in [
        Step::RemovePort(s("eth0")),
        Step::AddPort(s("eth0")),
        Step::AddPort(s("eth2")),
        Step::RemoveNi(s("flat")),
        Step::AddNi(s("flat")),
        Step::DetachVif(s("web1")),
        Step::AttachVif(s("web1")),
    ] {
        assert!(steps.contains(&want), "{want:?} in {steps:?}");
    }
    assert!(!steps.contains(&Step::RemovePort(s("eth1"))), "{steps:?}");
    // BPDU guard changes in place; a new bridge priority restarts the tree.
    let guard = tree.replace(
        "ports: [eth0, eth2] }",
        "ports: [eth0, eth2], stp: { bpdu_guard: [eth2] } }",
    );
    assert_eq!(plan(&tree, &guard), vec![Step::UpdateNi(s("flat"))]);
    let priority = tree.replace(
        "ports: [eth0, eth2] }",
        "ports: [eth0, eth2], stp: { priority: 4096 } }",
    );
    assert!(plan(&tree, &priority).contains(&Step::AddNi(s("flat"))));
}
