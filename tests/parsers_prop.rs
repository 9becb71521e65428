//! Property tests: the parsers that see untrusted input (frames from ports,
//! netlink messages, config text) never panic, whatever the bytes.

use proptest::prelude::*;

use niswitch::config;
use niswitch::frame::Packet;
use niswitch::nodeip::{self, Family, Net};
use niswitch::ports::afpacket::insert_vlan;
use niswitch::ports::linkwatch;
use niswitch::ports::memory::{MemoryPort, Shared};
use niswitch::ports::rtnl;
use niswitch::switch::{Domain, PortRole, PortSpec, Switch, iplearn};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(p) = Packet::new_checked(&bytes) {
            let _ = (p.src(), p.dst(), p.ethertype(), p.wire_l3_len(), p.is_gso());
            let _ = iplearn::sighting(&p);
        }
    }

    #[test]
    fn switch_survives_any_frame(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let sw = Switch::new();
        let d = Domain::new("p");
        let mk = |n: &str| sw.add_port(&d, PortSpec::new(n, PortRole::Other, Box::new(Shared(MemoryPort::sink())), 1500)).unwrap();
        let a = mk("a");
        let _b = mk("b");
        sw.process(&a, &bytes, 1);
        prop_assert_eq!(a.stats.rx_packets(), 1);
    }

    #[test]
    fn vlan_insert_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), extra in 0usize..8, tci in any::<u16>()) {
        let n = bytes.len();
        let mut buf = bytes.clone();
        buf.resize(n + extra, 0);
        let m = insert_vlan(&mut buf, n, (0x8100, tci));
        prop_assert!(m == n || m == n + 4);
    }

    #[test]
    fn netlink_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = linkwatch::parse(&bytes);
    }

    #[test]
    fn rtnetlink_dumps_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = (rtnl::parse_addresses(&bytes), rtnl::parse_routes(&bytes));
        let _ = (rtnl::parse_address(&bytes), rtnl::parse_route(&bytes));
    }

    /// Well-framed RTM_NEWADDR/RTM_NEWROUTE messages of an IP family with
    /// arbitrary bodies: the attribute walk and node-ip's choice on what
    /// it yields never panic.
    #[test]
    fn rtnetlink_messages_never_panic(
        route in any::<bool>(),
        v6 in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        vip in any::<[u8; 4]>(),
    ) {
        let mut m = ((16 + 1 + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend((if route { 24u16 } else { 20u16 }).to_ne_bytes());
        m.extend([0u8; 10]);
        m.push(if v6 { libc::AF_INET6 as u8 } else { libc::AF_INET as u8 });
        m.extend(&body);
        let net = Net {
            addrs: rtnl::parse_addresses(&m),
            routes4: rtnl::parse_routes(&m),
            routes6: rtnl::parse_routes(&m),
            names: Default::default(),
        };
        for family in [None, Some(Family::Ipv4), Some(Family::Ipv6), Some(Family::Dual)] {
            let _ = nodeip::select(&net, &[], family);
            let _ = nodeip::select(&net, &[std::net::IpAddr::from(vip)], family);
        }
    }

    #[test]
    fn config_text_never_panics(text in "\\PC{0,300}") {
        let _ = config::parse(&text);
    }

    #[test]
    fn config_like_yaml_never_panics(
        ver in 0u32..3,
        dev in "[a-z0-9]{0,20}",
        subnet in "[0-9./:a-f]{0,24}",
        ip in "[0-9./:a-f]{0,24}",
        mac in "[0-9a-f:]{0,20}",
    ) {
        let text = format!(
            "version: {ver}\nports: [{{device: '{dev}'}}]\nnetwork_instances: [{{name: l, type: local, subnet: '{subnet}', uplinks: ['{dev}']}}]\napps: [{{name: a, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430c8, interfaces: [{{ni: l, ip: '{ip}', mac: '{mac}'}}]}}]\n"
        );
        let _ = config::parse(&text);
    }
}
