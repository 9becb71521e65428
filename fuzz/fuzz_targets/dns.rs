//! Any bytes as a DNS query to a local NI (`services::dns::answer` from its
//! zone), and through the forwarder: relayed upstream, its answer (the same
//! bytes marked as a response) accepted only on the relay port it left
//! from and restored to the client's id; the bytes as an unsolicited
//! upstream answer; then the expiry of what still waits. The bytes also as
//! a TCP stream of framed queries, and as a query whose UDP size is read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::services::dns::{self, Forwarder, Zone};

fuzz_target!(|data: &[u8]| {
    let mut zone = Zone {
        domain: Some("lan".into()),
        router: Some("10.50.0.1".parse().expect("ip")),
        ttl: 30,
        subnet: "10.50.0.0/24".parse().ok(),
        ..Default::default()
    };
    zone.hosts
        .insert("web".into(), vec!["10.50.0.20".parse().expect("ip")]);
    zone.records
        .push(("*.apps.example".into(), "10.50.0.11".parse().expect("ip")));
    zone.records
        .push(("db.lan".into(), "fd00::11".parse().expect("ip")));
    let _ = dns::answer(&zone, data);

    let mut next = 0u16;
    let mut f: Forwarder = Forwarder::new(move || {
        next = next.wrapping_add(1);
        next
    });
    let client = "10.50.0.20:5353".parse().expect("addr");
    let _ = f.incoming(data, 40000);
    if let Some(q) = f.outgoing(data, client, 0, 40000) {
        assert_eq!(
            (q.len(), &q[2..]),
            (data.len(), &data[2..]),
            "only the id is replaced"
        );
        assert!(f.waits_on(40000));
        let mut answer = q.clone();
        answer[2] |= 0x80;
        assert_eq!(
            f.incoming(&answer, 40001),
            None,
            "an answer on another port was taken"
        );
        let (back, to) = f.incoming(&answer, 40000).expect("the matching answer");
        assert_eq!(to, client);
        assert_eq!(back[..2], data[..2], "the client's id is not restored");
        assert!(!f.waits_on(40000));
    }
    let _ = f.outgoing(data, client, 0, 40002);
    let _ = f.incoming(data, 40002);
    let _ = f.expire(1_000_000);
    assert!(!f.waits_on(40002));

    let limit = dns::udp_limit(data);
    assert!((512..=dns::MAX_UDP_ANSWER).contains(&limit));
    let mut stream = data.to_vec();
    while let Some(q) = dns::take_framed(&mut stream) {
        assert_eq!(dns::framed(&q).len(), q.len() + 2);
    }
    assert!(stream.len() < 2 + u16::MAX as usize);
});
