//! Any bytes from a port (virtio-net header + Ethernet frame): the frame
//! check, the switch core (learning, own-MAC and pinned MACs, flooding,
//! address sightings) and the router's frame helpers. Whatever the switch
//! delivers must be the received packet, byte for byte.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use niswitch::config::Mac;
use niswitch::frame::{Packet, VNET_HDR_LEN};
use niswitch::ipstack::wire;
use niswitch::ports::memory::{MemoryPort, Shared};
use niswitch::switch::{Domain, PortEntry, PortRole, PortSpec, Switch};

/// The switch and its domain, built once: a 16384-slot MAC table per input
/// would dominate the run time. Each input attaches fresh ports and removes
/// them at the end, which leaves the table empty again.
static SWITCH: LazyLock<(Arc<Switch>, Arc<Domain>)> =
    LazyLock::new(|| (Switch::new(), Domain::new("fuzz")));

/// An app's VIF (its own MAC) and a NIC (a pinned MAC behind it, a larger
/// MTU), each capturing what the switch sends it.
fn ports(sw: &Switch, d: &Arc<Domain>) -> [(Arc<PortEntry>, Arc<MemoryPort>); 2] {
    let (vif_mem, nic_mem) = (MemoryPort::capturing(), MemoryPort::capturing());
    let vif = PortSpec::new(
        "vif",
        PortRole::Vif {
            app: "app".into(),
            ni: "ni".into(),
            ifnum: 0,
        },
        Box::new(Shared(vif_mem.clone())),
        1500,
    )
    .own_mac(Mac([2, 0, 0, 0, 0, 1]));
    let nic = PortSpec::new(
        "nic",
        PortRole::Nic {
            port: "eth0".into(),
        },
        Box::new(Shared(nic_mem.clone())),
        9000,
    )
    .pinned(Mac([2, 0, 0, 0, 0, 2]));
    [(vif, vif_mem), (nic, nic_mem)].map(|(spec, m)| (sw.add_port(d, spec).expect("port"), m))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let _ = (p.dst(), p.src(), p.ethertype(), p.wire_l3_len(), p.is_gso());
    }

    let (sw, d) = &*SWITCH;
    let ports = ports(sw, d);
    for (now, (port, _)) in ports.iter().enumerate() {
        sw.process(port, data, now as u32 + 1);
    }
    for (port, mem) in &ports {
        for sent in mem.take() {
            assert_eq!(sent, data, "the switch changed a frame it forwarded");
        }
        assert!(port.learned_ips.lock().expect("lock").len() <= 8);
        // A domain and its ports hold each other until the ports are removed.
        sw.remove_port(port);
    }

    if let Some(f) = wire::finish_frame(data) {
        assert_eq!(f.len() + VNET_HDR_LEN, data.len());
        let _ = wire::parse_udp(&f);
    }
});
