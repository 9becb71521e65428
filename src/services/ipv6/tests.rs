use super::*;
use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

fn mac() -> Mac {
    Mac([0x02, 0x16, 0x3e, 1, 2, 3])
}

fn advert(default_router: bool) -> Advert {
    Advert {
        mac: mac(),
        prefix: "fd00:50::/64".parse().unwrap(),
        mtu: 1400,
        dns: vec!["fe80::16:3eff:fe01:203".parse().unwrap()],
        default_router,
    }
}

/// The options of a router advertisement: (type, body).
fn options(m: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 16;
    while i + 2 <= m.len() {
        let len = m[i + 1] as usize * 8;
        assert!(len > 0 && i + len <= m.len(), "option length");
        out.push((m[i], m[i + 2..i + len].to_vec()));
        i += len;
    }
    assert_eq!(i, m.len(), "options fill the message");
    out
}

#[test]
fn the_link_local_address_is_modified_eui64() {
    assert_eq!(
        link_local(mac()),
        "fe80::16:3eff:fe01:203".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn an_advert_carries_prefix_mtu_dns_and_the_source_mac() {
    let m = router_advert(&advert(true));
    assert_eq!(m[0], ROUTER_ADVERT);
    assert_eq!(m[5], 0x40, "other-config, no managed flag");
    assert_eq!(u16::from_be_bytes([m[6], m[7]]), 1800);
    let o = options(&m);
    assert_eq!(o[0], (1, mac().0.to_vec()));
    assert_eq!(o[1], (5, [0, 0, 0, 0, 0x05, 0x78].to_vec()));
    let (t, p) = &o[2];
    assert_eq!(
        (*t, p[0], p[1]),
        (3, 64, 0xc0),
        "a /64, on-link and autonomous"
    );
    assert_eq!(
        &p[14..30],
        &"fd00:50::".parse::<Ipv6Addr>().unwrap().octets()
    );
    let (t, r) = &o[3];
    assert_eq!(*t, 25);
    assert_eq!(&r[6..22], &advert(true).dns[0].octets());
    let gapped = router_advert(&advert(false));
    assert_eq!(
        u16::from_be_bytes([gapped[6], gapped[7]]),
        0,
        "no default router"
    );
}

#[test]
fn information_requests_get_dns_and_the_domain() {
    let mut q = Message::new_with_id(MessageType::InformationRequest, [1, 2, 3]);
    q.opts_mut()
        .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 9]));
    let dns: Vec<Ipv6Addr> = vec!["fd00:50::1".parse().unwrap()];
    let server = duid(mac());
    let r = dhcpv6_reply(&q.to_vec().unwrap(), &server, &dns, Some("lan"))
        .unwrap()
        .expect("a reply");
    let r = Message::decode(&mut Decoder::new(&r)).unwrap();
    assert_eq!((r.msg_type(), r.xid()), (MessageType::Reply, [1, 2, 3]));
    assert!(
        matches!(r.opts().get(OptionCode::DomainNameServers), Some(DhcpOption::DomainNameServers(d)) if *d == dns)
    );
    assert!(
        matches!(r.opts().get(OptionCode::ServerId), Some(DhcpOption::ServerId(s)) if *s == server)
    );
    assert!(matches!(
        r.opts().get(OptionCode::ClientId),
        Some(DhcpOption::ClientId(_))
    ));
    assert!(r.opts().get(OptionCode::DomainSearchList).is_some());
    // Stateful requests, others' servers and garbage get nothing.
    let solicit = Message::new(MessageType::Solicit).to_vec().unwrap();
    assert_eq!(dhcpv6_reply(&solicit, &server, &dns, None), Ok(None));
    q.opts_mut()
        .insert(DhcpOption::ServerId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9]));
    assert_eq!(
        dhcpv6_reply(&q.to_vec().unwrap(), &server, &dns, None),
        Ok(None)
    );
    assert_eq!(dhcpv6_reply(&[11, 0], &server, &dns, None), Err(Malformed));
    // An option longer than the message (what once made a decoder panic).
    let cut = [135, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(dhcpv6_reply(&cut, &server, &dns, None), Err(Malformed));
    let mut long = vec![INFORMATION_REQUEST, 1, 2, 3, 0, 16, 0, 9];
    long.extend([0u8; 4]);
    assert_eq!(dhcpv6_reply(&long, &server, &dns, None), Err(Malformed));
}

#[test]
fn an_app_claims_its_source_or_the_target_of_its_dad() {
    let a: Ipv6Addr = "fd00:50::a".parse().unwrap();
    assert_eq!(claimed(a, None), Some(a));
    let mut ns = vec![NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
    ns.extend(a.octets());
    assert_eq!(claimed(Ipv6Addr::UNSPECIFIED, Some(&ns)), Some(a));
    assert_eq!(claimed(Ipv6Addr::UNSPECIFIED, Some(&ns[..10])), None);
    assert_eq!(claimed(Ipv6Addr::UNSPECIFIED, None), None);
}

#[test]
fn neighbour_messages_read_back() {
    let t: Ipv6Addr = "fe80::1".parse().unwrap();
    let ns = read_nd(&neighbor_solicit(t, mac())).unwrap();
    assert_eq!(
        (ns.kind, ns.target, ns.mac),
        (NEIGHBOR_SOLICIT, Some(t), Some(mac()))
    );
    let na = read_nd(&neighbor_advert(t, mac())).unwrap();
    assert_eq!(
        (na.kind, na.target, na.mac),
        (NEIGHBOR_ADVERT, Some(t), Some(mac()))
    );
    let ra = read_nd(&router_advert(&advert(true))).unwrap();
    assert_eq!(
        (ra.kind, ra.mac, ra.lifetime),
        (ROUTER_ADVERT, Some(mac()), 1800)
    );
    assert_eq!(
        solicited_node("fd00:50::12:3456".parse().unwrap()),
        "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
    );
    // A zero-length option or a cut message is refused.
    let mut bad = neighbor_solicit(t, mac());
    bad[25] = 0;
    assert_eq!(read_nd(&bad), None);
    assert_eq!(read_nd(&[NEIGHBOR_ADVERT, 0, 0]), None);
    assert_eq!(read_nd(&[128, 0, 0, 0]), None, "not neighbour discovery");
}
