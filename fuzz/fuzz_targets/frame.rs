//! Any bytes from a port (virtio-net header + Ethernet frame): the frame
//! check, the switch core (learning, own-MAC and pinned MACs, flooding,
//! address sightings) and the router's frame helpers. Whatever the switch
//! delivers must be the received packet, byte for byte; in a VLAN-aware
//! domain, the received frame with only its tag put in or taken out.
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
/// A domain carrying VLAN 100, made VLAN-aware once.
static VLANS: LazyLock<(Arc<Switch>, Arc<Domain>)> = LazyLock::new(|| {
    let d = Domain::new("fuzz-vlan");
    d.set_vlans(&[100].into(), |_| 0);
    (Switch::new(), d)
});

/// The MAC addresses and what follows the tag (if any): what retagging keeps.
fn untagged(b: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let p = Packet::new_checked(b).expect("a delivered packet is valid");
    let rest = if p.tci().is_some() { 16 } else { 12 };
    (p.frame()[..12].to_vec(), p.frame()[rest..].to_vec())
}

/// The VIF on access VLAN 100, the NIC a trunk.
fn vlan_domain(data: &[u8]) {
    let (sw, d) = &*VLANS;
    let ports = ports(sw, d, 100);
    for (now, (port, _)) in ports.iter().enumerate() {
        sw.process(port, data, now as u32 + 1);
    }
    let [(vif, vif_mem), (nic, nic_mem)] = &ports;
    for sent in vif_mem.take() {
        let p = Packet::new_checked(&sent).expect("valid");
        assert!(p.tci().is_none(), "tagged to an access port");
        assert_eq!(untagged(&sent), untagged(data));
    }
    for sent in nic_mem.take() {
        let p = Packet::new_checked(&sent).expect("valid");
        assert!(
            p.tci().is_none_or(|t| t & 0xfff == 100),
            "VLAN to the trunk"
        );
        assert_eq!(untagged(&sent), untagged(data));
    }
    sw.remove_port(vif);
    sw.remove_port(nic);
}

/// An app's VIF (its own MAC) and a NIC (a pinned MAC behind it, a larger
/// MTU), each capturing what the switch sends it.
/// `vlan`: the VIF's access VLAN in a VLAN-aware domain (0: none).
fn ports(sw: &Switch, d: &Arc<Domain>, vlan: u16) -> [(Arc<PortEntry>, Arc<MemoryPort>); 2] {
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
    .own_mac(Mac([2, 0, 0, 0, 0, 1]))
    .vlan(vlan);
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
    let ports = ports(sw, d, 0);
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

    vlan_domain(data);

    if let Some(f) = wire::finish_frame(data) {
        assert_eq!(f.len() + VNET_HDR_LEN, data.len());
        let _ = wire::parse_udp(&f);
    }
});
