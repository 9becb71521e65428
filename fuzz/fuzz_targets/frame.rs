//! Any bytes from a port: the switch core and the router's frame helpers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::ipstack::wire;
use niswitch::ports::memory::{MemoryPort, Shared};
use niswitch::switch::{Domain, PortRole, PortSpec, Switch};

fuzz_target!(|data: &[u8]| {
    let sw = Switch::new();
    let d = Domain::new("fuzz");
    let mk = |n: &str| {
        sw.add_port(&d, PortSpec { name: n.into(), role: PortRole::Other, io: Box::new(Shared(MemoryPort::sink())), mtu: 1500, own_mac: None, pinned: None, link_up: true })
            .expect("port")
    };
    let a = mk("a");
    let _b = mk("b");
    sw.process(&a, data, 1);
    if let Some(f) = wire::finish_frame(data) {
        let _ = wire::parse_udp(&f);
    }
});
