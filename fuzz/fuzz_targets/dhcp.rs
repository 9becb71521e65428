//! Any bytes as a DHCP message from a known client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::config::Mac;
use niswitch::services::dhcp::{self, Client, Leases, Pool};

fuzz_target!(|data: &[u8]| {
    let pool = Pool {
        subnet: "10.50.0.0/24".parse().expect("net"),
        gateway: "10.50.0.1".parse().expect("ip"),
        start: "10.50.0.100".parse().expect("ip"),
        end: "10.50.0.110".parse().expect("ip"),
        lease_secs: 600,
        domain: Some("lan".into()),
        mtu: 1400,
        air_gapped: false,
        ntp: vec!["192.0.2.123".parse().expect("ip")],
        routes: vec![(
            "10.99.0.0/16".parse().expect("net"),
            "10.50.0.5".parse().expect("ip"),
        )],
    };
    let mac = Mac([2, 0, 0, 0, 0, 1]);
    let clients = vec![Client {
        mac,
        app: "a".into(),
        fixed: None,
    }];
    let mut leases = Leases::default();
    if let Some(m) = dhcp::decode(data)
        && let Ok(r) = leases.handle(&pool, &clients, mac, &m, 1000)
    {
        let _ = dhcp::encode(&r.msg);
    }
});
