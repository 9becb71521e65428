//! Any bytes as a DNS query to a local NI, and as an upstream answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::services::dns::{self, Forwarder, Zone};

fuzz_target!(|data: &[u8]| {
    let mut zone = Zone { domain: Some("lan".into()), router: Some("10.50.0.1".parse().expect("ip")), ttl: 30, subnet: "10.50.0.0/24".parse().ok(), ..Default::default() };
    zone.hosts.insert("web".into(), vec!["10.50.0.20".parse().expect("ip")]);
    zone.records.push(("*.apps.example".into(), "10.50.0.11".parse().expect("ip")));
    let _ = dns::answer(&zone, data);
    let mut f = Forwarder::new(1);
    let _ = f.outgoing(data, "10.50.0.20:5353".parse().expect("addr"), 0);
    let _ = f.incoming(data);
});
