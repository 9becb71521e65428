use super::*;
use crate::frame::VNET_HDR_LEN;

const UP: Mac = Mac([2, 0, 0, 0, 0, 0x10]);
const ROUTER: Mac = Mac([2, 0, 0, 0, 0, 0x20]);

fn prefix() -> Ipv6Net {
    "fd00:50::/64".parse().unwrap()
}

fn ll(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)
}

/// A frame as it reaches the uplink (no virtio-net header).
fn frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    body: &[u8],
) -> Vec<u8> {
    wire::ipv6_packet(src_mac, dst_mac, src, dst, next, body)[VNET_HDR_LEN..].to_vec()
}

fn app_frame() -> Vec<u8> {
    let (src, dst) = (
        "fd00:50::a".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    );
    frame(
        Mac([2, 0, 0, 0, 0, 0xa]),
        UP,
        src,
        dst,
        wire::NEXT_UDP,
        &wire::udp_datagram(1, 2, b"x"),
    )
}

#[test]
fn a_configured_router_is_solicited_then_used() {
    let mut r = Route6::new(UP, prefix(), Some(ll(1)));
    let Err(Some(ns)) = r.outbound(&app_frame(), 0) else {
        panic!("a solicitation first");
    };
    let ns = wire::parse_ipv6(&ns[VNET_HDR_LEN..]).unwrap();
    assert_eq!(ns.dst, v6::solicited_node(ll(1)));
    assert_eq!(
        r.outbound(&app_frame(), 10),
        Err(None),
        "at most one a second"
    );
    let na = v6::neighbor_advert(ll(1), ROUTER);
    let na = frame(ROUTER, UP, ll(1), r.link_local, NEXT_ICMPV6, &na);
    assert_eq!(r.take(&na, 20), Some(Vec::new()));
    let out = r.outbound(&app_frame(), 30).expect("routed");
    assert_eq!(
        &out[VNET_HDR_LEN..VNET_HDR_LEN + 12],
        &[ROUTER.0, UP.0].concat()[..]
    );
    assert_eq!(r.router(30), Some(ll(1)));
    // Another router's advertisement does not replace a configured one.
    let ra = v6::router_advert(&v6::Advert {
        mac: ROUTER,
        prefix: prefix(),
        mtu: 1500,
        dns: vec![],
        default_router: true,
    });
    r.take(&frame(ROUTER, UP, ll(2), ll(9), NEXT_ICMPV6, &ra), 40);
    assert_eq!(r.router(40), Some(ll(1)));
}

#[test]
fn an_advertised_router_holds_for_its_lifetime() {
    let mut r = Route6::new(UP, prefix(), None);
    assert_eq!(r.outbound(&app_frame(), 0), Err(None), "no router yet");
    let advert = |default_router| {
        v6::router_advert(&v6::Advert {
            mac: ROUTER,
            prefix: prefix(),
            mtu: 1500,
            dns: vec![],
            default_router,
        })
    };
    r.take(
        &frame(ROUTER, UP, ll(2), ll(9), NEXT_ICMPV6, &advert(true)),
        0,
    );
    assert_eq!(r.router(1000), Some(ll(2)));
    assert!(
        r.outbound(&app_frame(), 1000).is_ok(),
        "its MAC came with it"
    );
    assert_eq!(r.router(1_800_001), None, "expired");
    r.take(
        &frame(ROUTER, UP, ll(2), ll(9), NEXT_ICMPV6, &advert(true)),
        0,
    );
    r.take(
        &frame(ROUTER, UP, ll(2), ll(9), NEXT_ICMPV6, &advert(false)),
        1,
    );
    assert_eq!(r.router(2), None, "lifetime 0 withdraws it");
}

#[test]
fn the_uplink_answers_for_its_link_local_and_keeps_frames_for_the_prefix() {
    let mut r = Route6::new(UP, prefix(), None);
    let ns = v6::neighbor_solicit(r.link_local, ROUTER);
    let replies = r
        .take(
            &frame(
                ROUTER,
                wire::multicast_mac(v6::solicited_node(r.link_local)),
                ll(2),
                v6::solicited_node(r.link_local),
                NEXT_ICMPV6,
                &ns,
            ),
            0,
        )
        .unwrap();
    let na = wire::parse_ipv6(&replies[0][VNET_HDR_LEN..]).unwrap();
    let nd = v6::read_nd(na.payload).unwrap();
    assert_eq!(
        (nd.kind, nd.target, nd.mac),
        (v6::NEIGHBOR_ADVERT, Some(r.link_local), Some(UP))
    );
    let body = wire::udp_datagram(2, 1, b"y");
    let (from, app): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "fd00:50::a".parse().unwrap(),
    );
    r.take(&frame(ROUTER, UP, from, app, wire::NEXT_UDP, &body), 0);
    r.take(
        &frame(
            ROUTER,
            Mac([2, 0, 0, 0, 0, 0x99]),
            from,
            app,
            wire::NEXT_UDP,
            &body,
        ),
        0,
    );
    r.take(
        &frame(
            ROUTER,
            UP,
            from,
            "fd00:51::a".parse().unwrap(),
            wire::NEXT_UDP,
            &body,
        ),
        0,
    );
    assert_eq!(
        r.inbound.len(),
        1,
        "only for the prefix, to the uplink's MAC"
    );
    assert_eq!(r.take(&[0u8; 20], 0), None, "not IPv6: for the stack");
}
