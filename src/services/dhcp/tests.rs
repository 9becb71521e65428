//! DHCP server logic against hand-built client messages.

use super::*;

fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

fn pool() -> Pool {
    Pool {
        subnet: "10.50.0.0/24".parse().unwrap(),
        gateway: "10.50.0.1".parse().unwrap(),
        start: "10.50.0.100".parse().unwrap(),
        end: "10.50.0.102".parse().unwrap(),
        lease_secs: 3600,
        domain: Some("lan".into()),
        mtu: 1500,
        air_gapped: false,
        ntp: Vec::new(),
        routes: Vec::new(),
    }
}

fn clients() -> Vec<Client> {
    let mut v: Vec<Client> = (1..=5)
        .map(|n| Client {
            mac: mac(n),
            app: format!("app{n}"),
            fixed: None,
        })
        .collect();
    v.push(Client {
        mac: mac(9),
        app: "fixed".into(),
        fixed: Some("10.50.0.20".parse().unwrap()),
    });
    v
}

fn msg(
    kind: MessageType,
    m: Mac,
    ciaddr: &str,
    requested: Option<&str>,
    server: Option<&str>,
) -> Message {
    let mut x = Message::new_with_id(
        7,
        ciaddr.parse().unwrap(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &m.0,
    );
    x.opts_mut().insert(DhcpOption::MessageType(kind));
    if let Some(r) = requested {
        x.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(r.parse().unwrap()));
    }
    if let Some(s) = server {
        x.opts_mut()
            .insert(DhcpOption::ServerIdentifier(s.parse().unwrap()));
    }
    x
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn discover_request_ack_with_options() {
    let (p, c) = (pool(), clients());
    let mut l = Leases::default();
    let offer = l
        .handle(
            &p,
            &c,
            mac(1),
            &msg(MessageType::Discover, mac(1), "0.0.0.0", None, None),
            100,
        )
        .unwrap();
    assert_eq!(kind(&offer.msg), Some(MessageType::Offer));
    let got = offer.msg.yiaddr();
    assert_eq!(got, ip("10.50.0.100"));
    assert_eq!(offer.dest, Dest::Unicast(got, mac(1)));
    let ack = l
        .handle(
            &p,
            &c,
            mac(1),
            &msg(
                MessageType::Request,
                mac(1),
                "0.0.0.0",
                Some("10.50.0.100"),
                Some("10.50.0.1"),
            ),
            101,
        )
        .unwrap();
    assert_eq!(kind(&ack.msg), Some(MessageType::Ack));
    let o = ack.msg.opts();
    assert!(
        matches!(o.get(OptionCode::SubnetMask), Some(DhcpOption::SubnetMask(m)) if *m == ip("255.255.255.0"))
    );
    assert!(
        matches!(o.get(OptionCode::Router), Some(DhcpOption::Router(r)) if r == &vec![ip("10.50.0.1")])
    );
    assert!(
        matches!(o.get(OptionCode::DomainNameServer), Some(DhcpOption::DomainNameServer(r)) if r == &vec![ip("10.50.0.1")])
    );
    assert!(matches!(o.get(OptionCode::DomainName), Some(DhcpOption::DomainName(d)) if d == "lan"));
    assert!(matches!(
        o.get(OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(1500))
    ));
    assert!(
        matches!(o.get(OptionCode::ClasslessStaticRoute), Some(DhcpOption::ClasslessStaticRoute(r)) if r.len() == 2)
    );
    assert_eq!(l.ip_of(mac(1), 102), Some(got));
    // Encodes and decodes.
    assert_eq!(decode(&encode(&ack.msg)).unwrap().yiaddr(), got);
}

#[test]
fn air_gapped_has_no_router_or_dns() {
    let mut p = pool();
    p.air_gapped = true;
    let mut l = Leases::default();
    let r = l
        .handle(
            &p,
            &clients(),
            mac(1),
            &msg(MessageType::Discover, mac(1), "0.0.0.0", None, None),
            1,
        )
        .unwrap();
    assert!(r.msg.opts().get(OptionCode::Router).is_none());
    assert!(r.msg.opts().get(OptionCode::DomainNameServer).is_none());
    // Only the subnet and the metadata server's host route.
    let Some(DhcpOption::ClasslessStaticRoute(routes)) =
        r.msg.opts().get(OptionCode::ClasslessStaticRoute)
    else {
        panic!("no option 121");
    };
    let want: Vec<(Ipv4Net, Ipv4Addr)> = vec![
        ("10.50.0.0/24".parse().unwrap(), ip("0.0.0.0")),
        ("169.254.169.254/32".parse().unwrap(), ip("10.50.0.1")),
    ];
    assert_eq!(routes, &want);
}

#[test]
fn ntp_static_routes_and_mtu_are_offered() {
    let mut p = pool();
    p.ntp = vec![ip("192.0.2.123")];
    p.routes = vec![("10.99.0.0/16".parse().unwrap(), ip("10.50.0.5"))];
    p.mtu = 1400;
    let offer = |p: &Pool| {
        let mut l = Leases::default();
        let m = msg(MessageType::Discover, mac(1), "0.0.0.0", None, None);
        l.handle(p, &clients(), mac(1), &m, 1).unwrap().msg
    };
    let m = offer(&p);
    let o = m.opts();
    assert!(
        matches!(o.get(OptionCode::NtpServers), Some(DhcpOption::NtpServers(n)) if n == &vec![ip("192.0.2.123")])
    );
    assert!(matches!(
        o.get(OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(1400))
    ));
    let Some(DhcpOption::ClasslessStaticRoute(r)) = o.get(OptionCode::ClasslessStaticRoute) else {
        panic!("no option 121");
    };
    let want: Vec<(Ipv4Net, Ipv4Addr)> = vec![
        ("10.50.0.0/24".parse().unwrap(), ip("0.0.0.0")),
        ("10.99.0.0/16".parse().unwrap(), ip("10.50.0.5")),
        ("0.0.0.0/0".parse().unwrap(), ip("10.50.0.1")),
    ];
    assert_eq!(r, &want, "the subnet, the static route, then the default");
    assert_eq!(
        decode(&encode(&m))
            .unwrap()
            .opts()
            .get(OptionCode::NtpServers),
        o.get(OptionCode::NtpServers)
    );
    // Air-gapped: the static route is still given, with no default route.
    p.air_gapped = true;
    let m = offer(&p);
    let Some(DhcpOption::ClasslessStaticRoute(r)) = m.opts().get(OptionCode::ClasslessStaticRoute)
    else {
        panic!("no option 121 on an air-gapped NI with a route");
    };
    let metadata = ("169.254.169.254/32".parse().unwrap(), ip("10.50.0.1"));
    assert_eq!(r, &[&want[..2], &[metadata]].concat());
}

#[test]
fn fixed_address_and_foreign_clients() {
    let (p, c) = (pool(), clients());
    let mut l = Leases::default();
    let r = l
        .handle(
            &p,
            &c,
            mac(9),
            &msg(MessageType::Discover, mac(9), "0.0.0.0", None, None),
            1,
        )
        .unwrap();
    assert_eq!(r.msg.yiaddr(), ip("10.50.0.20"));
    // chaddr differing from the sender's MAC is ignored.
    assert_eq!(
        l.handle(
            &p,
            &c,
            mac(2),
            &msg(MessageType::Discover, mac(1), "0.0.0.0", None, None),
            1
        ),
        Err(Ignored::ForeignClient)
    );
    // Unknown MACs get nothing.
    assert_eq!(
        l.handle(
            &p,
            &c,
            mac(77),
            &msg(MessageType::Discover, mac(77), "0.0.0.0", None, None),
            1
        ),
        Err(Ignored::ForeignClient)
    );
    // A client cannot take another's fixed address.
    let r = l
        .handle(
            &p,
            &c,
            mac(1),
            &msg(
                MessageType::Request,
                mac(1),
                "0.0.0.0",
                Some("10.50.0.20"),
                None,
            ),
            1,
        )
        .unwrap();
    assert_eq!(kind(&r.msg), Some(MessageType::Nak));
}

#[test]
fn full_range_gets_no_offer_and_no_duplicates() {
    let (p, c) = (pool(), clients());
    let mut l = Leases::default();
    let mut ips = Vec::new();
    for n in 1..=3 {
        let r = l
            .handle(
                &p,
                &c,
                mac(n),
                &msg(MessageType::Discover, mac(n), "0.0.0.0", None, None),
                1,
            )
            .unwrap();
        let a = r.msg.yiaddr();
        l.handle(
            &p,
            &c,
            mac(n),
            &msg(
                MessageType::Request,
                mac(n),
                "0.0.0.0",
                Some(&a.to_string()),
                Some("10.50.0.1"),
            ),
            1,
        )
        .unwrap();
        ips.push(a);
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3);
    assert_eq!(
        l.handle(
            &p,
            &c,
            mac(4),
            &msg(MessageType::Discover, mac(4), "0.0.0.0", None, None),
            2
        ),
        Err(Ignored::PoolExhausted)
    );
    // Asking for a taken address is refused.
    let r = l
        .handle(
            &p,
            &c,
            mac(4),
            &msg(
                MessageType::Request,
                mac(4),
                "0.0.0.0",
                Some("10.50.0.100"),
                None,
            ),
            2,
        )
        .unwrap();
    assert_eq!(kind(&r.msg), Some(MessageType::Nak));
    // A release frees one.
    l.handle(
        &p,
        &c,
        mac(1),
        &msg(
            MessageType::Release,
            mac(1),
            &ips[0].to_string(),
            None,
            Some("10.50.0.1"),
        ),
        3,
    )
    .unwrap_err();
    let r = l
        .handle(
            &p,
            &c,
            mac(4),
            &msg(MessageType::Discover, mac(4), "0.0.0.0", None, None),
            4,
        )
        .unwrap();
    assert_eq!(r.msg.yiaddr(), ips[0]);
}

#[test]
fn renew_rebind_after_restart_decline_and_other_server() {
    let (p, c) = (pool(), clients());
    let saved = vec![Lease {
        mac: mac(2),
        ip: ip("10.50.0.101"),
        expires: 5000,
        offered: false,
    }];
    let mut l = Leases::from_list(saved, 100);
    // RENEW (ciaddr set) keeps the IP, unicast to the client.
    let r = l
        .handle(
            &p,
            &c,
            mac(2),
            &msg(MessageType::Request, mac(2), "10.50.0.101", None, None),
            200,
        )
        .unwrap();
    assert_eq!(kind(&r.msg), Some(MessageType::Ack));
    assert_eq!(r.dest, Dest::Unicast(ip("10.50.0.101"), mac(2)));
    // Another client renewing the same address is refused.
    let r = l
        .handle(
            &p,
            &c,
            mac(3),
            &msg(MessageType::Request, mac(3), "10.50.0.101", None, None),
            200,
        )
        .unwrap();
    assert_eq!(kind(&r.msg), Some(MessageType::Nak));
    assert_eq!(r.dest, Dest::Broadcast);
    // DECLINE takes the address out of use.
    l.handle(
        &p,
        &c,
        mac(2),
        &msg(
            MessageType::Decline,
            mac(2),
            "0.0.0.0",
            Some("10.50.0.101"),
            Some("10.50.0.1"),
        ),
        300,
    )
    .unwrap_err();
    let r = l
        .handle(
            &p,
            &c,
            mac(2),
            &msg(MessageType::Discover, mac(2), "0.0.0.0", None, None),
            301,
        )
        .unwrap();
    assert_ne!(r.msg.yiaddr(), ip("10.50.0.101"));
    // A REQUEST for another server withdraws our offer silently.
    assert_eq!(
        l.handle(
            &p,
            &c,
            mac(2),
            &msg(
                MessageType::Request,
                mac(2),
                "0.0.0.0",
                Some("10.50.0.100"),
                Some("10.9.9.9")
            ),
            302
        ),
        Err(Ignored::Silent)
    );
    // INFORM gets options but no lease.
    let r = l
        .handle(
            &p,
            &c,
            mac(3),
            &msg(MessageType::Inform, mac(3), "10.50.0.30", None, None),
            303,
        )
        .unwrap();
    assert!(r.msg.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(r.dest, Dest::Unicast(ip("10.50.0.30"), mac(3)));
    // Expired leases are dropped when loading.
    let l = Leases::from_list(
        vec![Lease {
            mac: mac(2),
            ip: ip("10.50.0.101"),
            expires: 50,
            offered: false,
        }],
        100,
    );
    assert!(l.list().is_empty());
}

#[test]
fn declines_are_bounded_per_client_and_saved_leases_rechecked() {
    let (p, c) = (pool(), clients());
    let mut l = Leases::default();
    // A client declining every offer cannot empty the range for others.
    for _ in 0..3 {
        let r = l
            .handle(
                &p,
                &c,
                mac(1),
                &msg(MessageType::Discover, mac(1), "0.0.0.0", None, None),
                1,
            )
            .unwrap();
        let ip = r.msg.yiaddr().to_string();
        l.handle(
            &p,
            &c,
            mac(1),
            &msg(
                MessageType::Request,
                mac(1),
                "0.0.0.0",
                Some(&ip),
                Some("10.50.0.1"),
            ),
            1,
        )
        .unwrap();
        l.handle(
            &p,
            &c,
            mac(1),
            &msg(
                MessageType::Decline,
                mac(1),
                "0.0.0.0",
                Some(&ip),
                Some("10.50.0.1"),
            ),
            1,
        )
        .unwrap_err();
    }
    assert!(
        l.handle(
            &p,
            &c,
            mac(2),
            &msg(MessageType::Discover, mac(2), "0.0.0.0", None, None),
            2
        )
        .is_ok(),
        "range not exhausted by declines"
    );
    // Saved leases for unknown clients or out-of-range addresses are dropped.
    let saved = vec![
        Lease {
            mac: mac(3),
            ip: ip("10.50.0.101"),
            expires: 5000,
            offered: false,
        },
        Lease {
            mac: mac(77),
            ip: ip("10.50.0.102"),
            expires: 5000,
            offered: false,
        },
        Lease {
            mac: mac(4),
            ip: ip("10.50.0.150"),
            expires: 5000,
            offered: false,
        },
    ];
    let mut l = Leases::from_list(saved, 100);
    l.retain_valid(&p, &c);
    assert_eq!(l.bindings(), vec![(mac(3), ip("10.50.0.101"))]);
}

#[test]
fn oversized_hardware_length_is_ignored() {
    let mut bytes = encode(&msg(MessageType::Discover, mac(1), "0.0.0.0", None, None));
    bytes[2] = 40;
    if let Some(m) = decode(&bytes) {
        assert_eq!(
            Leases::default().handle(&pool(), &clients(), mac(1), &m, 1),
            Err(Ignored::ForeignClient)
        );
    }
}

#[test]
fn fixed_size_options_with_wrong_length_are_refused_not_trusted() {
    // Found by the `dhcp` fuzz target: the codec asserted on this input.
    let bytes = include_bytes!("../../../tests/data/dhcp-bad-option-length.bin");
    assert!(decode(bytes).is_none());
    let mut ok = Message::new_with_id(
        1,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac(1).0,
    );
    ok.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    assert!(decode(&encode(&ok)).is_some());
}

#[test]
fn a_bound_client_keeps_its_binding_through_discover_and_foreign_requests() {
    let (p, c) = (pool(), clients());
    let mut l = Leases::default();
    let send = |l: &mut Leases, kind, ci: &str, req: Option<&str>, now| {
        l.handle(&p, &c, mac(1), &msg(kind, mac(1), ci, req, None), now)
    };
    send(&mut l, MessageType::Discover, "0.0.0.0", None, 100).unwrap();
    let ack = send(
        &mut l,
        MessageType::Request,
        "0.0.0.0",
        Some("10.50.0.100"),
        101,
    )
    .unwrap();
    assert_eq!(kind(&ack.msg), Some(MessageType::Ack));
    let bound = vec![(mac(1), ip("10.50.0.100"))];

    // RFC 2131 4.3.1: a DISCOVER from a bound client is offered its
    // address, and the binding stays (not turned back into an offer).
    let offer = send(
        &mut l,
        MessageType::Discover,
        "0.0.0.0",
        Some("10.50.0.101"),
        200,
    )
    .unwrap();
    assert_eq!(offer.msg.yiaddr(), ip("10.50.0.100"));
    assert_eq!(l.bindings(), bound);
    // Long after the offer would have lapsed, the binding is still there.
    assert!(!l.expire(200 + 120));
    assert_eq!(l.bindings(), bound);

    // A REQUEST for another (free) address is refused; the binding stays.
    let nak = send(
        &mut l,
        MessageType::Request,
        "0.0.0.0",
        Some("10.50.0.102"),
        300,
    )
    .unwrap();
    assert_eq!(kind(&nak.msg), Some(MessageType::Nak));
    assert_eq!(l.bindings(), bound);
    // Renewing its own address still works.
    let renew = send(&mut l, MessageType::Request, "10.50.0.100", None, 400).unwrap();
    assert_eq!(kind(&renew.msg), Some(MessageType::Ack));
    // A malformed message (no message type) changes nothing.
    let mut junk = msg(MessageType::Discover, mac(1), "0.0.0.0", None, None);
    junk.opts_mut().remove(OptionCode::MessageType);
    assert!(l.handle(&p, &c, mac(1), &junk, 500).is_err());
    assert_eq!(l.bindings(), bound);
    // RELEASE ends it.
    let _ = send(&mut l, MessageType::Release, "10.50.0.100", None, 600);
    assert!(l.bindings().is_empty());
}
