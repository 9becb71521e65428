//! `niswitch node-ip` run inside network namespaces (SPEC §7.1): the
//! default route's preferred source, IPv6-only and dual-stack nodes, VIPs
//! (also IPv4-mapped), link-local addresses never chosen, one line and exit 1
//! when nothing qualifies, and the JSON shape.

mod common;
use common::*;

/// e0's IPv4 address and default route, then its IPv6 address and default route.
const V4_ADDR: &str = "ip addr add 10.1.0.5/24 dev e0";
const V4_ROUTE: &str = "ip route add default via 10.1.0.1 dev e0";
const V6_ADDR: &str = "ip -6 addr add 2001:db8:1::5/64 dev e0 nodad";
const V6_ROUTE: &str = "ip -6 route add default via 2001:db8:1::1 dev e0";

/// A namespace `node` whose links e0 and e1 are veths to a namespace `peer`.
fn node(sb: &mut Sandbox) -> String {
    let node = sb.ns("node").expect("node namespace");
    let peer = sb.ns("peer").expect("peer namespace");
    sb.veth(&node, "e0", &peer, "p0").expect("veth e0");
    sb.veth(&node, "e1", &peer, "p1").expect("veth e1");
    node
}

/// A sandbox `prefix` with the namespace `node`, set up by `cmds`.
fn lab(prefix: &str, cmds: &[&str]) -> (Sandbox, String) {
    let mut sb = Sandbox::new(prefix).expect("sandbox");
    let n = node(&mut sb);
    setup(&sb, &n, cmds);
    (sb, n)
}

/// Runs each command in `ns`; a failure fails the test.
fn setup(sb: &Sandbox, ns: &str, cmds: &[&str]) {
    for c in cmds {
        let o = sb.sh(ns, c);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "`{c}`: {err}");
    }
}

/// `niswitch node-ip ARGS` in `ns`: exit code, stdout and stderr, trimmed.
fn node_ip(sb: &Sandbox, ns: &str, args: &str) -> (Option<i32>, String, String) {
    let o = sb.sh(ns, &format!("{} node-ip {args}", common::BIN));
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// The address node-ip prints; fails the test when it exits non-zero.
fn ok(sb: &Sandbox, ns: &str, args: &str) -> String {
    let (code, out, err) = node_ip(sb, ns, args);
    assert_eq!(code, Some(0), "node-ip {args}: {err}");
    out
}

/// node-ip exits 1, printing nothing but one line on stderr that contains `want`.
fn fails_with(sb: &Sandbox, ns: &str, args: &str, want: &str) {
    let (code, out, err) = node_ip(sb, ns, args);
    assert_eq!(code, Some(1), "node-ip {args} printed {out}");
    assert!(out.is_empty(), "node-ip {args} printed {out}");
    assert_eq!(err.lines().count(), 1, "node-ip {args}: {err}");
    assert!(err.contains(want), "{err}");
}

/// node-ip's output, parsed as JSON.
fn json(sb: &Sandbox, ns: &str, args: &str) -> serde_json::Value {
    serde_json::from_str(&ok(sb, ns, args)).expect("JSON")
}

#[test]
fn ipv4_default_route_prefsrc() {
    if !root_or_skip("ipv4_default_route_prefsrc") {
        return;
    }
    let (sb, n) = lab(
        "nswnipv4",
        &[
            V4_ADDR,
            "ip addr add 10.1.0.6/24 dev e0",
            "ip addr add 10.2.0.5/24 dev e1",
            "ip route add default via 10.1.0.1 dev e0 src 10.1.0.6",
        ],
    );
    assert_eq!(ok(&sb, &n, ""), "10.1.0.6");
    assert_eq!(ok(&sb, &n, "--family ipv4"), "10.1.0.6");
    // Without a preferred source: the address on the route's interface.
    setup(&sb, &n, &["ip route replace default via 10.2.0.1 dev e1"]);
    assert_eq!(ok(&sb, &n, ""), "10.2.0.5");
}

#[test]
fn ipv6_only_default_route_means_ipv6() {
    if !root_or_skip("ipv6_only_default_route_means_ipv6") {
        return;
    }
    let (sb, n) = lab(
        "nswnipv6",
        &[
            V4_ADDR,
            V6_ADDR,
            // Deprecated, and listed first by the kernel: never chosen.
            "ip -6 addr add 2001:db8:1::7/64 dev e0 nodad preferred_lft 0",
            V6_ROUTE,
        ],
    );
    assert_eq!(ok(&sb, &n, ""), "2001:db8:1::5");
    fails_with(&sb, &n, "--family ipv4", "no IPv4 default route");
}

#[test]
fn dual_prints_ipv4_then_ipv6() {
    if !root_or_skip("dual_prints_ipv4_then_ipv6") {
        return;
    }
    let (sb, n) = lab("nswnipdu", &[V6_ADDR, V6_ROUTE, V4_ADDR, V4_ROUTE]);
    assert_eq!(ok(&sb, &n, "--family dual"), "10.1.0.5,2001:db8:1::5");
    assert_eq!(ok(&sb, &n, ""), "10.1.0.5");
    assert_eq!(ok(&sb, &n, "--family ipv6"), "2001:db8:1::5");
}

/// e0: 10.1.0.5/24 with the IPv4 default route; e1: 10.2.0.5/24,
/// 2001:db8:2::5/64 and the IPv4-mapped ::ffff:10.3.0.5/120.
const VIP_NODE: &[&str] = &[
    V4_ADDR,
    V4_ROUTE,
    "ip addr add 10.2.0.5/24 dev e1",
    "ip -6 addr add 2001:db8:2::5/64 dev e1 nodad",
    "ip -6 addr add ::ffff:10.3.0.5/120 dev e1 nodad",
];

#[test]
fn vip_picks_the_interface_whose_subnet_holds_it() {
    if !root_or_skip("vip_picks_the_interface_whose_subnet_holds_it") {
        return;
    }
    let (sb, n) = lab("nswnipvip", VIP_NODE);
    assert_eq!(ok(&sb, &n, "--vip 10.2.0.100"), "10.2.0.5");
    assert_eq!(ok(&sb, &n, "--vip 2001:db8:2::100"), "2001:db8:2::5");
    assert_eq!(
        ok(&sb, &n, "--vip 2001:db8:2::100,10.1.0.100"),
        "10.1.0.5,2001:db8:2::5"
    );
    fails_with(
        &sb,
        &n,
        "--vip 10.9.9.9",
        "no interface subnet holds the VIP 10.9.9.9",
    );
}

#[test]
fn ipv4_mapped_vip_and_address_count_as_ipv4() {
    if !root_or_skip("ipv4_mapped_vip_and_address_count_as_ipv4") {
        return;
    }
    let (sb, n) = lab("nswnipmap", VIP_NODE);
    assert_eq!(ok(&sb, &n, "--vip ::ffff:10.2.0.100"), "10.2.0.5");
    assert_eq!(ok(&sb, &n, "--vip 10.3.0.100"), "10.3.0.5");
    assert_eq!(
        json(&sb, &n, "--vip ::ffff:10.3.0.100 --json"),
        serde_json::json!({"node_ip": "10.3.0.5", "ipv4": "10.3.0.5", "ipv6": null})
    );
}

#[test]
fn link_local_is_never_the_node_ip() {
    if !root_or_skip("link_local_is_never_the_node_ip") {
        return;
    }
    let (sb, n) = lab(
        "nswniplk",
        &[
            "ip addr add 169.254.1.5/16 dev e0",
            "ip route add default via 169.254.1.1 dev e0 src 169.254.1.5",
            "ip -6 route add default via fe80::1 dev e0",
        ],
    );
    fails_with(&sb, &n, "", "IPv4 default route via 169.254.1.1 dev e0");
    // e0 has its own fe80:: address, and nothing else of IPv6.
    fails_with(
        &sb,
        &n,
        "--family ipv6",
        "IPv6 default route via fe80::1 dev e0",
    );
    setup(&sb, &n, &[V4_ADDR]);
    assert_eq!(ok(&sb, &n, ""), "10.1.0.5");
}

#[test]
fn no_default_route_is_one_line_and_exit_1() {
    if !root_or_skip("no_default_route_is_one_line_and_exit_1") {
        return;
    }
    let (sb, n) = lab("nswnipnr", &[V4_ADDR, V6_ADDR]);
    fails_with(&sb, &n, "", "no default route (IPv4 or IPv6)");
    fails_with(&sb, &n, "--family dual --json", "no IPv4 default route");
    setup(&sb, &n, &[V4_ROUTE]);
    fails_with(&sb, &n, "--family dual", "no IPv6 default route");
}

#[test]
fn json_has_node_ip_ipv4_and_ipv6() {
    if !root_or_skip("json_has_node_ip_ipv4_and_ipv6") {
        return;
    }
    let (sb, n) = lab("nswnipjs", &[V4_ADDR, V4_ROUTE, V6_ADDR, V6_ROUTE]);
    assert_eq!(
        json(&sb, &n, "--json --family dual"),
        serde_json::json!({"node_ip": "10.1.0.5,2001:db8:1::5",
                           "ipv4": "10.1.0.5", "ipv6": "2001:db8:1::5"})
    );
    assert_eq!(
        json(&sb, &n, "--json"),
        serde_json::json!({"node_ip": "10.1.0.5", "ipv4": "10.1.0.5", "ipv6": null})
    );
    assert_eq!(
        json(&sb, &n, "--json --family ipv6"),
        serde_json::json!({"node_ip": "2001:db8:1::5", "ipv4": null, "ipv6": "2001:db8:1::5"})
    );
}
