//! `niswitch check` refuses each kind of config mistake of SPEC §2 with its
//! own message naming the field, and prints derived values for a good one.

use std::process::Command;

mod common;
use common::allowed_cpus;

const BIN: &str = env!("CARGO_BIN_EXE_niswitch");

fn check(yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, yaml).expect("write");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const NI: &str = "2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b";

fn refused(yaml: &str, path: &str, words: &str) {
    let (ok, _, err) = check(yaml);
    assert!(!ok, "accepted:\n{yaml}");
    assert!(
        err.contains(path) && err.contains(words),
        "expected `{path}` and `{words}` in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn good_config_prints_derived_values() {
    let yaml = format!(
        "version: 1\nports: [{{device: eth0, management: true}}]\nnetwork_instances:\n  - {{name: flat, uuid: {NI}, type: switch, port: eth0}}\n  - {{name: lan, type: local, subnet: 10.50.0.0/24}}\napps:\n  - name: web\n    uuid: {APP}\n    interfaces: [{{ni: flat}}, {{ni: lan, ip: 10.50.0.20}}]\n"
    );
    let (ok, out, err) = check(&yaml);
    assert!(ok, "{err}");
    assert!(out.contains("02:16:3e:87:5f:dc"), "SPEC §4 MAC in:\n{out}");
    assert!(out.contains("tap: nbu"), "derived TAP in:\n{out}");
    assert!(out.contains("renamed_to: keth0"), "{out}");
    assert!(out.contains("dhcp_range: 10.50.0.128-10.50.0.254"), "{out}");
    assert!(out.contains("gateway: 10.50.0.1"), "{out}");
}

#[test]
fn unknown_fields_and_bad_types() {
    refused("version: 1\nbogus: 1\n", "", "unknown field `bogus`");
    refused(
        "version: 1\nports: [{device: eth0, colour: red}]\n",
        "ports[0]",
        "unknown field `colour`",
    );
    refused(
        "version: 1\nports: [{device: eth0, cost: 300}]\n",
        "ports[0].cost",
        "",
    );
    refused("version: 2\n", "version", "unsupported version");
    refused(
        "version: 1\nnetwork_instances: [{name: l, type: local, subnet: '10.0.0.0/24', gateway: '::10.0.0.1'}]\n",
        "network_instances[0].gateway",
        "IPv4-compatible",
    );
}

#[test]
fn duplicates() {
    refused(
        "version: 1\nports: [{device: eth0}, {device: eth1, name: eth0}]\n",
        "ports[1].name",
        "duplicate port name",
    );
    refused(
        &format!(
            "version: 1\nnetwork_instances: [{{name: a, type: switch, uuid: {NI}}}, {{name: b, type: switch, uuid: {NI}}}]\n"
        ),
        "network_instances[1].uuid",
        "duplicate network instance UUID",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: a, type: switch}, {name: a, type: switch}]\n",
        "network_instances[1].name",
        "duplicate network instance name",
    );
    refused(
        &format!(
            "version: 1\nnetwork_instances: [{{name: a, type: switch}}]\napps: [{{name: x, uuid: {APP}, interfaces: [{{ni: a}}]}}, {{name: x, uuid: {NI}, interfaces: []}}]\n"
        ),
        "apps[1].name",
        "duplicate app name",
    );
    refused(
        &format!(
            "version: 1\nnetwork_instances: [{{name: a, type: switch}}]\napps: [{{name: x, uuid: {APP}}}, {{name: y, uuid: {APP}}}]\n"
        ),
        "apps[1].uuid",
        "duplicate app UUID",
    );
    refused(
        &format!(
            "version: 1\nnetwork_instances: [{{name: a, type: switch}}]\napps: [{{name: x, uuid: {APP}, interfaces: [{{ni: a, tap: t1}}, {{ni: a, tap: t1}}]}}]\n"
        ),
        "apps[0].interfaces[1].tap",
        "duplicate TAP name",
    );
}

#[test]
fn references_and_switch_ports() {
    refused(
        "version: 1\nnetwork_instances: [{name: a, type: switch, port: eth9}]\n",
        "network_instances[0].port",
        "unknown port `eth9`",
    );
    refused(
        "version: 1\nports: [{device: e1}, {device: e2}]\nnetwork_instances: [{name: a, type: switch, port: [e1, e2]}]\n",
        "network_instances[0].port",
        "listed as `ports: [X, Y]`",
    );
    refused(
        &format!("version: 1\napps: [{{name: x, uuid: {APP}, interfaces: [{{ni: nope}}]}}]\n"),
        "apps[0].interfaces[0].ni",
        "unknown network instance `nope`",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth7]}]\n",
        "network_instances[0].uplinks[0]",
        "unknown port `eth7`",
    );
}

#[test]
fn addresses_and_ranges() {
    refused(
        "version: 1\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, gateway: 10.1.0.1}]\n",
        "network_instances[0].gateway",
        "outside the subnet",
    );
    let lan = "version: 1\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, dhcp_range: 10.0.0.100-10.0.0.199}]\n";
    refused(
        &format!("{lan}apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: l, ip: 10.9.0.5}}]}}]\n"),
        "apps[0].interfaces[0].ip",
        "outside the subnet",
    );
    refused(
        &format!(
            "{lan}apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: l, ip: 10.0.0.150}}]}}]\n"
        ),
        "apps[0].interfaces[0].ip",
        "inside the DHCP range",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: a, type: local, subnet: 10.0.0.0/16}, {name: b, type: local, subnet: 10.0.5.0/24}]\n",
        "network_instances[1].subnet",
        "overlaps 10.0.0.0/16",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: a, type: local, subnet: 10.0.0.1/24}]\n",
        "network_instances[0].subnet",
        "host bits set",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: a, type: local, subnet: 10.0.0.0/24, dns: {upstream: [192.0.2.53]}}]\n",
        "network_instances[0].dns.upstream",
        "air-gapped",
    );
}

#[test]
fn taps_and_macs() {
    let ni = "version: 1\nnetwork_instances: [{name: a, type: switch}]\n";
    refused(
        &format!(
            "{ni}apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: a, tap: averyveryverylongname}}]}}]\n"
        ),
        "apps[0].interfaces[0].tap",
        "at most 15 bytes",
    );
    refused(
        &format!(
            "{ni}apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: a, mac: '01:00:5e:00:00:01'}}]}}]\n"
        ),
        "apps[0].interfaces[0].mac",
        "multicast",
    );
    refused(
        &format!(
            "{ni}apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: a, mac: '00:00:00:00:00:00'}}]}}]\n"
        ),
        "apps[0].interfaces[0].mac",
        "not a usable MAC",
    );
    refused(
        "version: 1\nports: [{device: averyveryverylongname}]\n",
        "ports[0].device",
        "at most 15 bytes",
    );
}

#[test]
fn port_maps_and_acls() {
    let lan = "version: 1\nports: [{device: eth0}]\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth0]}]\n";
    refused(
        &format!(
            "{lan}apps:\n  - {{name: x, uuid: {APP}, interfaces: [{{ni: l, port_maps: [{{protocol: tcp, uplink_port: 8080, app_port: 80}}]}}]}}\n  - {{name: y, uuid: {NI}, interfaces: [{{ni: l, port_maps: [{{protocol: tcp, uplink_port: 8080, app_port: 81}}]}}]}}\n"
        ),
        "apps[1].interfaces[0].port_maps[0].uplink_port",
        "already mapped",
    );
    refused(
        &format!(
            "{lan}apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: l, acls: [{{match: {{fport: 443}}, action: allow}}]}}]}}]\n"
        ),
        "apps[0].interfaces[0].acls[0].match.fport",
        "needs `protocol`",
    );
    refused(
        &format!(
            "{lan}apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: l, acls: [{{match: {{lport: 22}}, action: drop}}]}}]}}]\n"
        ),
        "apps[0].interfaces[0].acls[0].match.lport",
        "needs `protocol`",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let (ok, _, err) = check(
        "version: 1\nports: [{device: averyveryverylongname}]\nnetwork_instances: [{name: a, type: switch, port: nope}]\n",
    );
    assert!(!ok);
    assert!(
        err.contains("ports[0].device") && err.contains("network_instances[0].port"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn dataplane_tuning() {
    let (ok, out, err) = check("version: 1\ndataplane: { workers: 2, busy_poll_us: 200 }\n");
    assert!(ok, "{err}");
    assert!(out.contains("workers: 2"), "{out}");
    assert!(out.contains("busy_poll_us: 200"), "{out}");
    let (ok, out, err) = check("version: 1\n");
    assert!(ok, "{err}");
    assert!(
        out.contains("busy_poll_us: 0"),
        "the default is shown:\n{out}"
    );
    let workers = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("workers: "))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        workers.is_some_and(|n| n >= 1),
        "this machine's count is shown:\n{out}"
    );
    // By default one worker is pinned to each CPU this process may use,
    // also with a dataplane section that names neither workers nor cpus.
    let cpus = allowed_cpus();
    let (ok, tuned, err) = check("version: 1\ndataplane: { busy_poll_us: 10 }\n");
    assert!(ok, "{err}");
    for out in [&out, &tuned] {
        let listed: Vec<u64> = out
            .lines()
            .skip_while(|l| l.trim() != "cpus:")
            .skip(1)
            .map_while(|l| l.trim().strip_prefix("- ")?.parse().ok())
            .collect();
        if cpus.len() >= 2 {
            assert_eq!(listed, cpus, "a worker pinned to each CPU:\n{out}");
            let n = format!("workers: {}", cpus.len());
            assert!(out.contains(&n), "{out}");
        } else {
            assert!(!out.contains("cpus:"), "one CPU: a floating worker:\n{out}");
        }
    }
    for n in [1, 2] {
        let (ok, out, err) = check(&format!("version: 1\ndataplane: {{ workers: {n} }}\n"));
        assert!(ok, "{err}");
        assert!(
            out.contains(&format!("workers: {n}")) && !out.contains("cpus:"),
            "with workers given they float:\n{out}"
        );
    }
    refused(
        "version: 1\ndataplane: { workers: 0 }\n",
        "dataplane.workers",
        "1 to 64",
    );
    refused(
        "version: 1\ndataplane: { busy_poll_us: 20000 }\n",
        "dataplane.busy_poll_us",
        "at most 10000",
    );
    refused(
        "version: 1\ndataplane: { threads: 2 }\n",
        "dataplane",
        "unknown field `threads`",
    );
}

#[test]
fn pinned_workers_are_one_per_listed_cpu() {
    let (ok, out, err) = check("version: 1\ndataplane: { cpus: [1, 0] }\n");
    assert!(ok, "{err}");
    assert!(out.contains("workers: 2"), "one worker per CPU:\n{out}");
    assert!(out.contains("- 1\n") && out.contains("- 0\n"), "{out}");
    let (ok, _, err) = check("version: 1\ndataplane: { cpus: [3], workers: 1 }\n");
    assert!(ok, "a matching worker count is fine: {err}");
    refused(
        "version: 1\ndataplane: { cpus: [0, 1], workers: 3 }\n",
        "dataplane.workers",
        "3 workers but 2 CPUs",
    );
    refused(
        "version: 1\ndataplane: { cpus: [0, 2, 0] }\n",
        "dataplane.cpus[2]",
        "CPU 0 is listed twice",
    );
    refused(
        "version: 1\ndataplane: { cpus: [5000] }\n",
        "dataplane.cpus[0]",
        "at most 1023",
    );
    refused(
        "version: 1\ndataplane: { cpus: [] }\n",
        "dataplane.cpus",
        "give 1 to 64",
    );
    refused("version: 1\ndataplane: { cpus: [-1] }\n", "dataplane", "");
}

#[test]
fn subnet6_is_a_global_or_unique_local_64() {
    let ni = |s6: &str| {
        format!(
            "version: 1\nnetwork_instances: [{{name: l, type: local, subnet: 10.0.0.0/24, subnet6: '{s6}'}}]\n"
        )
    };
    let (ok, out, err) = check(&ni("fd00:50::/64"));
    assert!(ok && out.contains("subnet6: fd00:50::/64"), "{out}{err}");
    refused(
        &ni("fd00:50::/56"),
        "network_instances[0].subnet6",
        "SLAAC needs a /64",
    );
    refused(&ni("10.1.0.0/24"), "network_instances[0].subnet6", "IPv4");
    refused(
        &ni("fe80::/64"),
        "network_instances[0].subnet6",
        "not a global or unique local",
    );
    // Routed to the uplinks: needs subnet6 and an uplink; a gateway only with it.
    let up = |extra: &str| {
        format!(
            "version: 1\nports: [{{device: eth1}}]\nnetwork_instances: [{{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth1]{extra}}}]\n"
        )
    };
    let (ok, out, err) = check(&up(
        ", subnet6: 'fd00:50::/64', uplink_prefix6: true, uplink_gateway6: 'fe80::1'",
    ));
    assert!(
        ok && out.contains("uplink_prefix6: true") && out.contains("uplink_gateway6: fe80::1"),
        "{out}{err}"
    );
    refused(
        &up(", uplink_prefix6: true"),
        "network_instances[0].uplink_prefix6",
        "set subnet6",
    );
    refused(
        &ni("fd00:50::/64").replace("subnet6:", "uplink_prefix6: true, subnet6:"),
        "network_instances[0].uplink_prefix6",
        "needs an uplink",
    );
    refused(
        &up(", subnet6: 'fd00:50::/64', uplink_gateway6: 'fe80::1'"),
        "network_instances[0].uplink_gateway6",
        "only used with `uplink_prefix6: true`",
    );
    refused(
        &up(", subnet6: 'fd00:50::/64', uplink_prefix6: true, uplink_gateway6: 192.0.2.1"),
        "network_instances[0].uplink_gateway6",
        "IPv4",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: s, type: switch, subnet6: 'fd00::/64'}]\n",
        "network_instances[0].subnet6",
        "only applies to `type: local`",
    );
}

#[test]
fn forward_lldp_is_off_unless_asked() {
    let ni = |extra: &str| {
        format!("version: 1\nnetwork_instances: [{{name: s, type: switch{extra}}}]\n")
    };
    let (ok, out, err) = check(&ni(""));
    assert!(ok && !out.contains("forward_lldp"), "{out}{err}");
    let (ok, out, err) = check(&ni(", forward_lldp: true"));
    assert!(ok && out.contains("forward_lldp: true"), "{out}{err}");
}

#[test]
fn user_data_is_kept_and_bounded() {
    let app = |ud: &str| {
        format!(
            "version: 1\nnetwork_instances: [{{name: l, type: local, subnet: 10.0.0.0/24}}]\napps:\n  - name: a\n    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430c8\n    user_data: \"{ud}\"\n    interfaces: [{{ni: l}}]\n"
        )
    };
    let (ok, out, err) = check(&app("#cloud-config\\nhostname: a\\n"));
    assert!(ok && out.contains("hostname: a"), "{out}{err}");
    refused(
        &app(&"x".repeat(70_000)),
        "apps[0].user_data",
        "larger than 65535 bytes",
    );
}

#[test]
fn ntp_static_routes_and_mtu() {
    let lan = "version: 1\nports: [{device: eth1}]\nnetwork_instances:\n  - {name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth1]";
    let (ok, out, err) = check(&format!(
        "{lan}, ntp: [192.0.2.123], mtu: 1400, static_routes: [{{dst: 10.99.0.0/16, gateway: 10.0.0.5}}, {{dst: 172.16.0.0/12, gateway: 192.0.2.254}}]}}\n"
    ));
    assert!(ok, "{err}");
    for want in [
        "192.0.2.123",
        "mtu: 1400",
        "10.99.0.0/16",
        "gateway: 192.0.2.254",
    ] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
    refused(
        &format!("{lan}, mtu: 1000}}\n"),
        "network_instances[0].mtu",
        "1280 to 9000",
    );
    refused(
        &format!("{lan}, ntp: ['2001:db8::1']}}\n"),
        "network_instances[0].ntp[0]",
        "IPv6",
    );
    refused(
        &format!("{lan}, static_routes: [{{dst: '2001:db8::/32', gateway: 10.0.0.5}}]}}\n"),
        "network_instances[0].static_routes[0].dst",
        "IPv6",
    );
    refused(
        &format!("{lan}, static_routes: [{{dst: 10.99.0.0/16}}]}}\n"),
        "network_instances[0].static_routes[0]",
        "missing field `gateway`",
    );
    // Without an uplink, a gateway outside the subnet cannot be reached.
    refused(
        "version: 1\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, static_routes: [{dst: 10.99.0.0/16, gateway: 10.1.0.1}]}]\n",
        "network_instances[0].static_routes[0].gateway",
        "no uplink",
    );
    // Never larger than the MTU of a port the NI leaves through.
    refused(
        "version: 1\nports: [{device: eth1, mtu: 1400}]\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth1], mtu: 1500}]\n",
        "network_instances[0].mtu",
        "larger than the mtu 1400 of uplink `eth1`",
    );
    let (ok, _, err) = check(
        "version: 1\nports: [{device: eth1, mtu: 1500}]\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth1], mtu: 1500}]\n",
    );
    assert!(ok, "an equal MTU is fine: {err}");
    refused(
        "version: 1\nnetwork_instances: [{name: s, type: switch, mtu: 1400}]\n",
        "network_instances[0].mtu",
        "only applies to `type: local`",
    );
    let (ok, out, err) = check(&format!("{lan}}}\n"));
    assert!(
        ok && out.contains("flow_log: true"),
        "on by default:\n{out}{err}"
    );
    let (ok, out, err) = check(&format!("{lan}, flow_log: false}}\n"));
    assert!(ok && out.contains("flow_log: false"), "{out}{err}");
    refused(
        "version: 1\nnetwork_instances: [{name: s, type: switch, flow_log: false}]\n",
        "network_instances[0].flow_log",
        "only applies to `type: local`",
    );
}

#[test]
fn vlans_are_checked_with_their_paths() {
    let cfg = |port: &str, ni: &str, vif: &str| {
        format!(
            "version: 1\nports: [{{device: eth0{port}}}, {{device: eth1}}]\nnetwork_instances:\n  - {{name: plant, type: switch, port: eth0{ni}}}\n  - {{name: lan, type: local, subnet: 10.50.0.0/24}}\napps:\n  - {{name: plc, uuid: {APP}, interfaces: [{vif}]}}\n"
        )
    };
    let (ok, out, err) = check(&cfg(
        ", management: true, host_vlan: 300",
        ", vlan_access_ports: [{port: eth0, vlan: 200}]",
        "{ni: plant, vlan: 100}",
    ));
    assert!(ok, "{err}");
    for want in ["vlan: 100", "host_vlan: 300", "port: eth0", "vlan: 200"] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
    let vif = "{ni: plant}";
    refused(
        &cfg("", "", "{ni: plant, vlan: 1}"),
        "apps[0].interfaces[0].vlan",
        "allowed 2..4093",
    );
    refused(
        &cfg("", "", "{ni: plant, vlan: 4094}"),
        "apps[0].interfaces[0].vlan",
        "out of range",
    );
    refused(
        &cfg("", "", "{ni: lan, vlan: 100}"),
        "apps[0].interfaces[0].vlan",
        "switch network instances",
    );
    refused(
        &cfg("", ", vlan_access_ports: [{port: eth1, vlan: 100}]", vif),
        "network_instances[0].vlan_access_ports[0].port",
        "not a port of this network instance",
    );
    refused(
        &cfg("", ", vlan_access_ports: [{port: eth0, vlan: 0}]", vif),
        "network_instances[0].vlan_access_ports[0].vlan",
        "out of range",
    );
    refused(
        &cfg(
            "",
            ", vlan_access_ports: [{port: eth0, vlan: 5}, {port: eth0, vlan: 6}]",
            vif,
        ),
        "network_instances[0].vlan_access_ports[1].port",
        "duplicate",
    );
    refused(
        &cfg(", host_vlan: 100", "", vif),
        "ports[0].host_vlan",
        "management: true",
    );
    let local = "version: 1\nnetwork_instances:\n  - {name: lan, type: local, subnet: 10.50.0.0/24, vlan_access_ports: []}\n";
    refused(
        local,
        "network_instances[0].vlan_access_ports",
        "switch network instances",
    );
}

#[test]
fn several_ports_and_their_spanning_tree() {
    let ni = |fields: &str| {
        format!(
            "version: 1\nports: [{{device: e1}}, {{device: e2}}, {{device: e3}}]\nnetwork_instances:\n  - {{name: plant, type: switch{fields}}}\n"
        )
    };
    let (ok, out, err) = check(&ni(
        ", ports: [e1, e2], stp: {bpdu_guard: [e2], priority: 4096}",
    ));
    assert!(ok, "{err}");
    for want in ["port: e1", "- e2", "priority: 4096", "bpdu_guard"] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
    let (ok, out, err) = check(&ni(", ports: [e1, e2]"));
    assert!(
        ok && out.contains("priority: 32768"),
        "RSTP runs by default:\n{out}{err}"
    );
    let base = "network_instances[0]";
    refused(
        &ni(", port: e1, ports: [e2, e3]"),
        &format!("{base}.ports"),
        "not both",
    );
    refused(
        &ni(", ports: [e1, e9]"),
        &format!("{base}.ports[1]"),
        "unknown port `e9`",
    );
    refused(
        &ni(", ports: [e1, e1]"),
        &format!("{base}.ports[1]"),
        "duplicate",
    );
    refused(
        &ni(", port: e1, stp: {}"),
        &format!("{base}.stp"),
        "needs several ports",
    );
    refused(
        &ni(", ports: [e1, e2], stp: {bpdu_guard: [e3]}"),
        &format!("{base}.stp.bpdu_guard[0]"),
        "not a port of this network instance",
    );
    refused(
        &ni(", ports: [e1, e2], stp: {priority: 100}"),
        &format!("{base}.stp.priority"),
        "multiple of 4096",
    );
    refused(
        &ni(", ports: [e1, e2], vlan_access_ports: [{port: e3, vlan: 10}]"),
        &format!("{base}.vlan_access_ports[0].port"),
        "not a port of this network instance",
    );
    let local = "version: 1\nports: [{device: e1}, {device: e2}]\nnetwork_instances:\n  - {name: lan, type: local, subnet: 10.50.0.0/24, ports: [e1, e2]}\n";
    refused(local, "network_instances[0].ports", "through `uplinks`");
}

#[test]
fn the_host_uplink() {
    // `host` is an uplink without a port, beside NIC uplinks, with its cost.
    let (ok, out, err) = check(
        "version: 1\nports: [{device: eth0}]\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth0, host], host_cost: 50}]\n",
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("host_cost: 50"), "{out}");
    refused(
        "version: 1\nports: [{device: eth0, name: host}]\n",
        "ports[0].name",
        "`host` is reserved",
    );
    refused(
        "version: 1\nports: [{device: eth0}]\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth0], host_cost: 5}]\n",
        "network_instances[0].host_cost",
        "add `host` to `uplinks`",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: s, type: switch, host_cost: 5}]\n",
        "network_instances[0].host_cost",
        "only applies to `type: local`",
    );
    refused(
        "version: 1\nnetwork_instances: [{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [host, host]}]\n",
        "network_instances[0].uplinks[1]",
        "uplink",
    );
    // A port map's `listen` address is for the host uplink.
    let app = format!(
        "apps: [{{name: x, uuid: {APP}, interfaces: [{{ni: l, port_maps: [{{protocol: tcp, uplink_port: 8080, app_port: 80, listen: 127.0.0.1}}]}}]}}]\n"
    );
    let (ok, out, err) = check(&format!(
        "version: 1\nnetwork_instances: [{{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [host]}}]\n{app}"
    ));
    assert!(ok, "{out}{err}");
    refused(
        &format!(
            "version: 1\nports: [{{device: eth0}}]\nnetwork_instances: [{{name: l, type: local, subnet: 10.0.0.0/24, uplinks: [eth0]}}]\n{app}"
        ),
        "apps[0].interfaces[0].port_maps[0].listen",
        "has no `host` uplink",
    );
}
