//! Every node-ip rule against hand-built addresses and routes.

use super::*;
use crate::ports::rtnl::{IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_TENTATIVE};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A global, permanent address `cidr` on interface `ifindex`.
fn addr(ifindex: u32, cidr: &str) -> AddrInfo {
    let net: IpNet = cidr.parse().expect("cidr");
    AddrInfo {
        ifindex,
        addr: net.addr(),
        prefix: net.prefix_len(),
        scope: 0,
        flags: 0x80,
    }
}

fn flagged(mut a: AddrInfo, flags: u32) -> AddrInfo {
    a.flags |= flags;
    a
}

/// A main-table default route.
fn default(gw: Option<&str>, oif: u32, src: Option<&str>) -> RouteInfo {
    RouteInfo {
        dst: None,
        gateway: gw.map(ip),
        oif: Some(oif),
        prefsrc: src.map(ip),
        table: RT_TABLE_MAIN,
        priority: 0,
    }
}

fn net(addrs: Vec<AddrInfo>, routes4: Vec<RouteInfo>, routes6: Vec<RouteInfo>) -> Net {
    let names = [(2, "eth0".to_string()), (3, "eth1".to_string())].into();
    Net {
        addrs,
        routes4,
        routes6,
        names,
    }
}

/// `node_ip` for `--vip vips` and `--family family`.
fn pick(n: &Net, vips: &[&str], family: Option<Family>) -> Result<String, String> {
    let vips: Vec<IpAddr> = vips.iter().map(|v| ip(v)).collect();
    select(n, &vips, family).map(|r| r.node_ip)
}

/// eth0 (2): 10.1.0.5/24 and 10.1.0.6/24; eth1 (3): 10.2.0.5/24 and
/// 2001:db8:2::5/64; IPv4 default via 10.1.0.1 dev eth0.
fn two_nics() -> Net {
    net(
        vec![
            addr(1, "127.0.0.1/8"),
            addr(2, "10.1.0.5/24"),
            flagged(addr(2, "10.1.0.6/24"), IFA_F_SECONDARY),
            addr(3, "10.2.0.5/24"),
            addr(3, "2001:db8:2::5/64"),
        ],
        vec![default(Some("10.1.0.1"), 2, None)],
        vec![],
    )
}

#[test]
fn the_default_routes_prefsrc_wins() {
    let mut n = two_nics();
    n.routes4[0].prefsrc = Some(ip("10.1.0.6"));
    assert_eq!(pick(&n, &[], None), Ok("10.1.0.6".into()));
}

#[test]
fn without_prefsrc_the_primary_address_on_the_route_interface() {
    assert_eq!(pick(&two_nics(), &[], None), Ok("10.1.0.5".into()));
    // The one whose subnet holds the gateway comes first.
    let mut n = two_nics();
    n.addrs.insert(1, addr(2, "192.0.2.9/24"));
    assert_eq!(pick(&n, &[], None), Ok("10.1.0.5".into()));
    n.routes4[0].gateway = Some(ip("192.0.2.1"));
    assert_eq!(pick(&n, &[], None), Ok("192.0.2.9".into()));
}

#[test]
fn a_prefsrc_that_is_not_a_usable_address_here_is_passed_over() {
    let mut n = two_nics();
    n.routes4[0].prefsrc = Some(ip("10.9.9.9"));
    assert_eq!(pick(&n, &[], None), Ok("10.1.0.5".into()));
    n.addrs.push(addr(2, "169.254.3.3/16"));
    n.routes4[0].prefsrc = Some(ip("169.254.3.3"));
    assert_eq!(pick(&n, &[], None), Ok("10.1.0.5".into()));
}

#[test]
fn the_lowest_metric_main_table_default_route_counts() {
    let mut n = two_nics();
    n.routes4[0].priority = 200;
    n.routes4.push(RouteInfo {
        priority: 100,
        ..default(Some("10.2.0.1"), 3, None)
    });
    n.routes4.push(RouteInfo {
        table: 100,
        ..default(None, 1, Some("127.0.0.1"))
    });
    assert_eq!(pick(&n, &[], None), Ok("10.2.0.5".into()));
    n.routes4.retain(|r| r.table != RT_TABLE_MAIN);
    let e = pick(&n, &[], Some(Family::Ipv4)).expect_err("only another table");
    assert_eq!(e, "no IPv4 default route in this network namespace");
}

#[test]
fn link_local_loopback_deprecated_tentative_never_qualify() {
    let bad = [
        addr(2, "169.254.1.5/16"),
        addr(2, "127.0.0.2/8"),
        flagged(addr(2, "10.1.0.7/24"), IFA_F_DEPRECATED),
        flagged(addr(2, "10.1.0.8/24"), IFA_F_TENTATIVE),
        flagged(addr(2, "10.1.0.9/24"), IFA_F_DADFAILED),
        AddrInfo {
            scope: RT_SCOPE_LINK,
            ..addr(2, "10.1.0.10/24")
        },
    ];
    for a in bad {
        let n = net(
            vec![a.clone()],
            vec![default(Some("10.1.0.1"), 2, None)],
            vec![],
        );
        let e = pick(&n, &[], None).expect_err("nothing qualifies");
        assert!(
            e.contains("IPv4 default route via 10.1.0.1 dev eth0 has no usable source"),
            "{e}"
        );
        let mut n = n;
        n.routes4[0].prefsrc = Some(a.addr);
        assert!(pick(&n, &[], None).is_err(), "{a:?} as prefsrc");
    }
    let v6 = net(
        vec![addr(2, "fe80::1/64"), addr(1, "::1/128")],
        vec![],
        vec![default(Some("fe80::ff"), 2, None)],
    );
    assert!(pick(&v6, &[], None).is_err_and(|e| !e.contains('\n')));
}

#[test]
fn ipv4_mapped_addresses_count_as_ipv4() {
    let n = net(
        vec![addr(2, "::ffff:10.1.0.5/120")],
        vec![default(Some("10.1.0.1"), 2, None)],
        vec![],
    );
    let r = select(&n, &[], None).expect("mapped address");
    assert_eq!((r.ipv4, r.ipv6), (Some(ip("10.1.0.5")), None));
    // A mapped prefsrc of the IPv6 default route is not IPv6.
    let n = net(
        vec![addr(2, "::ffff:10.1.0.5/120"), addr(2, "2001:db8::5/64")],
        vec![],
        vec![default(Some("2001:db8::1"), 2, Some("::ffff:10.1.0.5"))],
    );
    assert_eq!(pick(&n, &[], None), Ok("2001:db8::5".into()));
}

#[test]
fn the_family_defaults_to_ipv4_or_to_the_only_one_with_a_default_route() {
    let mut n = two_nics();
    n.routes6.push(default(Some("2001:db8:2::1"), 3, None));
    assert_eq!(pick(&n, &[], None), Ok("10.1.0.5".into()));
    n.routes4.clear();
    assert_eq!(pick(&n, &[], None), Ok("2001:db8:2::5".into()));
    n.routes6.clear();
    let e = pick(&n, &[], None).expect_err("no default route");
    assert_eq!(
        e,
        "no default route (IPv4 or IPv6) in this network namespace"
    );
    let e = pick(&n, &[], Some(Family::Ipv6)).expect_err("no IPv6 default route");
    assert_eq!(e, "no IPv6 default route in this network namespace");
}

#[test]
fn dual_prints_ipv4_first_and_needs_both() {
    let mut n = two_nics();
    n.routes6.push(default(Some("2001:db8:2::1"), 3, None));
    assert_eq!(
        pick(&n, &[], Some(Family::Dual)),
        Ok("10.1.0.5,2001:db8:2::5".into())
    );
    n.routes4.clear();
    let e = pick(&n, &[], Some(Family::Dual)).expect_err("no IPv4");
    assert_eq!(e, "no IPv4 default route in this network namespace");
}

#[test]
fn a_vip_picks_the_interface_whose_subnet_holds_it() {
    let n = two_nics();
    assert_eq!(pick(&n, &["10.2.0.100"], None), Ok("10.2.0.5".into()));
    assert_eq!(
        pick(&n, &["::ffff:10.2.0.100"], None),
        Ok("10.2.0.5".into())
    );
    assert_eq!(
        pick(&n, &["2001:db8:2::100"], None),
        Ok("2001:db8:2::5".into())
    );
    assert_eq!(
        pick(&n, &["2001:db8:2::100", "10.2.0.100"], None),
        Ok("10.2.0.5,2001:db8:2::5".into())
    );
    assert_eq!(
        pick(&n, &["10.9.9.9"], None),
        Err("no interface subnet holds the VIP 10.9.9.9".into())
    );
    assert_eq!(
        pick(&n, &["::ffff:10.9.9.9"], None),
        Err("no interface subnet holds the VIP 10.9.9.9".into())
    );
}

#[test]
fn a_vip_is_never_its_own_node_ip_and_the_primary_wins() {
    let mut n = two_nics();
    n.addrs.push(addr(2, "10.1.0.100/32"));
    n.addrs
        .push(flagged(addr(2, "10.1.0.200/24"), IFA_F_SECONDARY));
    assert_eq!(pick(&n, &["10.1.0.100"], None), Ok("10.1.0.5".into()));
    assert_eq!(pick(&n, &["10.1.0.5"], None), Ok("10.1.0.6".into()));
    // The most specific subnet wins.
    n.addrs.push(addr(3, "10.1.0.130/25"));
    assert_eq!(pick(&n, &["10.1.0.140"], None), Ok("10.1.0.130".into()));
}

#[test]
fn vips_and_family_must_agree() {
    let mut n = two_nics();
    n.routes6.push(default(Some("2001:db8:2::1"), 3, None));
    // The family without a VIP comes from its default route.
    assert_eq!(
        pick(&n, &["10.2.0.100"], Some(Family::Dual)),
        Ok("10.2.0.5,2001:db8:2::5".into())
    );
    let e = pick(&n, &["10.2.0.100"], Some(Family::Ipv6)).expect_err("IPv4 VIP");
    assert_eq!(
        e,
        "the VIP 10.2.0.100 is IPv4 but --family does not ask for IPv4"
    );
    let e = pick(&n, &["10.2.0.100", "::ffff:10.1.0.9"], None).expect_err("two IPv4");
    assert!(e.starts_with("two IPv4 VIPs"), "{e}");
}

#[test]
fn json_has_node_ip_and_both_families() {
    let mut n = two_nics();
    n.routes6.push(default(Some("2001:db8:2::1"), 3, None));
    let one = select(&n, &[], None).expect("ipv4");
    assert_eq!(
        render(&one, true),
        r#"{"node_ip":"10.1.0.5","ipv4":"10.1.0.5","ipv6":null}"#
    );
    assert_eq!(render(&one, false), "10.1.0.5");
    let dual = select(&n, &[], Some(Family::Dual)).expect("dual");
    assert_eq!(
        render(&dual, true),
        r#"{"node_ip":"10.1.0.5,2001:db8:2::5","ipv4":"10.1.0.5","ipv6":"2001:db8:2::5"}"#
    );
}
