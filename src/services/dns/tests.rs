//! DNS answers built from a zone, checked by decoding them again.

use super::*;
use hickory_proto::op::Query;

fn zone() -> Zone {
    let mut hosts = HashMap::new();
    hosts.insert("web".to_string(), vec!["10.50.0.20".parse().unwrap()]);
    Zone {
        domain: Some("lan".into()),
        router: Some("10.50.0.1".parse().unwrap()),
        hosts,
        records: vec![
            ("api.cluster.example".into(), "10.50.0.10".parse().unwrap()),
            (
                "*.apps.cluster.example".into(),
                "10.50.0.11".parse().unwrap(),
            ),
            ("v6.example".into(), "2001:db8::1".parse().unwrap()),
        ],
        ttl: 60,
        subnet: Some("10.50.0.0/24".parse().unwrap()),
    }
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

fn ask(name: &str, t: RecordType) -> Message {
    match answer(&zone(), &query(name, t)) {
        Verdict::Reply(b) => Message::from_vec(&b).unwrap(),
        v => panic!("{name}: {v:?}"),
    }
}

fn addrs(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn local_names() {
    for n in ["web", "web.lan", "WEB.lan.", "web.lan."] {
        let m = ask(n, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{n}");
        assert_eq!(addrs(&m), vec!["10.50.0.20"], "{n}");
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.authoritative);
    }
    assert_eq!(addrs(&ask("router", RecordType::A)), vec!["10.50.0.1"]);
    assert_eq!(addrs(&ask("router.lan", RecordType::A)), vec!["10.50.0.1"]);
}

#[test]
fn static_and_wildcard() {
    assert_eq!(
        addrs(&ask("api.cluster.example", RecordType::A)),
        vec!["10.50.0.10"]
    );
    assert_eq!(
        addrs(&ask("x.apps.cluster.example", RecordType::A)),
        vec!["10.50.0.11"]
    );
    assert_eq!(
        addrs(&ask("a.b.apps.cluster.example", RecordType::A)),
        vec!["10.50.0.11"]
    );
    assert_eq!(
        answer(&zone(), &query("apps.cluster.example", RecordType::A)),
        Verdict::Forward,
        "the wildcard does not cover its apex"
    );
    assert_eq!(
        answer(&zone(), &query("xapps.cluster.example", RecordType::A)),
        Verdict::Forward
    );
    assert_eq!(
        addrs(&ask("v6.example", RecordType::AAAA)),
        vec!["2001:db8::1"]
    );
}

#[test]
fn nxdomain_nodata_and_forward() {
    let m = ask("nothere", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask("nothere.lan", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // The name exists: other types get NOERROR with no data.
    for t in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let m = ask("web", t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty(), "{t}");
    }
    assert_eq!(
        answer(&zone(), &query("example.com", RecordType::A)),
        Verdict::Forward
    );
}

#[test]
fn malformed() {
    assert_eq!(answer(&zone(), &[1, 2, 3]), Verdict::Drop);
    let mut garbage = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    garbage.extend([0x3f, b'x']);
    match answer(&zone(), &garbage) {
        Verdict::Reply(b) => {
            assert_eq!(&b[0..2], &[0xab, 0xcd]);
            assert_eq!(b[3] & 0x0f, 1, "FORMERR");
        }
        v => panic!("{v:?}"),
    }
    // A response is never answered.
    let mut resp = query("web", RecordType::A);
    resp[2] |= 0x80;
    assert_eq!(answer(&zone(), &resp), Verdict::Drop);
}

fn ids() -> impl FnMut() -> u16 + Send {
    let mut n = 0x4000u16;
    move || {
        n = n.wrapping_add(7);
        n
    }
}

#[test]
fn forwarder_rewrites_and_restores_ids() {
    let mut f = Forwarder::new(ids());
    let client: SocketAddr = "10.50.0.20:5353".parse().unwrap();
    let q = query("example.com", RecordType::A);
    let up = f.outgoing(&q, client, 0, 50000).unwrap();
    let new_id = [up[0], up[1]];
    assert_ne!(new_id, [0x12, 0x34]);
    let mut reply = up.clone();
    reply[2] |= 0x80;
    let (back, to) = f.incoming(&reply, 50000).unwrap();
    assert_eq!(&back[0..2], &[0x12, 0x34]);
    assert_eq!(to, client);
    assert!(f.incoming(&reply, 50000).is_none(), "answered once");
    assert!(!f.waits_on(50000));
    f.outgoing(&q, client, 0, 50001).unwrap();
    let expired = f.expire(10_000);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].0[3] & 0x0f, 2, "SERVFAIL");
    assert_eq!(expired[0].2, 50001, "its port is freed");
    assert_eq!(f.waiting(), 0);
}

#[test]
fn an_answer_counts_only_with_its_id_port_and_question() {
    let mut f = Forwarder::new(ids());
    let client: SocketAddr = "10.50.0.20:5353".parse().unwrap();
    let up = f
        .outgoing(&query("example.com", RecordType::A), client, 0, 50000)
        .unwrap();
    let mut reply = up.clone();
    reply[2] |= 0x80;
    // The right id to the wrong port: an off-path guess.
    assert!(f.incoming(&reply, 50001).is_none());
    // The right id and port, another question: a poisoning attempt.
    let mut other = query("evil.example", RecordType::A);
    other[0..2].copy_from_slice(&up[0..2]);
    other[2] |= 0x80;
    assert!(f.incoming(&other, 50000).is_none());
    let mut aaaa = up.clone();
    let n = aaaa.len();
    aaaa[n - 3] = 28;
    aaaa[2] |= 0x80;
    assert!(f.incoming(&aaaa, 50000).is_none(), "another type");
    // The misses left the query waiting: the real answer (name in another
    // case, as a resolver using 0x20 bits would send) still gets through.
    assert_eq!(f.waiting(), 1);
    reply[13] = reply[13].to_ascii_uppercase();
    assert!(f.incoming(&reply, 50000).is_some());
    // A query without exactly one question is not relayed.
    let mut two = query("example.com", RecordType::A);
    two[5] = 2;
    assert!(f.outgoing(&two, client, 0, 50002).is_none());
}

#[test]
fn oversized_answers_are_truncated_with_tc() {
    let mut z = zone();
    z.records = (0..200)
        .map(|i| {
            (
                "big.example".to_string(),
                IpAddr::V4(Ipv4Addr::new(10, 9, 0, i as u8)),
            )
        })
        .collect();
    let Verdict::Reply(r) = answer(&z, &query("big.example", RecordType::A)) else {
        panic!()
    };
    assert!(r.len() > MAX_UDP_ANSWER);
    let t = fit(r, MAX_UDP_ANSWER);
    assert!(t.len() <= MAX_UDP_ANSWER);
    let m = Message::from_vec(&t).unwrap();
    assert!(m.metadata.truncation);
    assert_eq!(m.metadata.id, 0x1234);
    assert!(m.answers.is_empty());
}

#[test]
fn reverse_names_of_the_subnet() {
    let m = ask("20.0.50.10.in-addr.arpa", RecordType::PTR);
    assert_eq!(addrs(&m), vec!["web.lan."]);
    assert_eq!(
        addrs(&ask("1.0.50.10.in-addr.arpa", RecordType::PTR)),
        vec!["router.lan."]
    );
    assert_eq!(
        ask("99.0.50.10.in-addr.arpa", RecordType::PTR)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        answer(&zone(), &query("1.1.1.1.in-addr.arpa", RecordType::PTR)),
        Verdict::Forward
    );
}

#[test]
fn tcp_frames_come_whole_and_in_order() {
    let mut input = [framed(b"first"), framed(b"second")].concat();
    input.extend_from_slice(&[0, 9, b'x']);
    assert_eq!(take_framed(&mut input).as_deref(), Some(&b"first"[..]));
    assert_eq!(take_framed(&mut input).as_deref(), Some(&b"second"[..]));
    assert_eq!(take_framed(&mut input), None, "a message not yet whole");
    assert_eq!(input, [0, 9, b'x']);
    assert_eq!(take_framed(&mut vec![0]), None);
}

#[test]
fn udp_answers_fit_what_the_client_offers() {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("a.lan.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(udp_limit(&m.to_vec().unwrap()), 512, "no EDNS: 512 bytes");
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    assert_eq!(udp_limit(&m.to_vec().unwrap()), 1232);
    let mut e = Edns::new();
    e.set_max_payload(65000);
    m.set_edns(e);
    assert_eq!(udp_limit(&m.to_vec().unwrap()), MAX_UDP_ANSWER);
    assert_eq!(udp_limit(b"junk"), 512);
}
