//! VLAN membership rules, frame forms, and a VLAN-aware domain on in-memory ports.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::config::Mac;
use crate::frame::VNET_HDR_LEN;
use crate::ports::memory::{MemoryPort, Shared};
use crate::switch::tests::{frame, mac};
use crate::switch::{Domain, PortEntry, PortRole, PortSpec, Switch, now_secs};

fn vlans(v: &[u16]) -> Vlans {
    Vlans::new(&v.iter().copied().collect(), None, 300, 16)
}

fn tagged(dst: Mac, src: Mac, tci: u16, len: usize) -> Vec<u8> {
    let mut v = frame(dst, src, len);
    let at = VNET_HDR_LEN + 12;
    v.splice(at..at, [0x81, 0x00, (tci >> 8) as u8, tci as u8]);
    v
}

/// (VLAN id, frame payload after the Ethernet header) of a frame a port got.
fn seen(buf: &[u8]) -> (Option<u16>, usize) {
    let p = Packet::new_checked(buf).unwrap();
    let body = if p.tci().is_some() { 18 } else { 14 };
    (p.tci().map(|t| t & 0xfff), p.frame().len() - body)
}

#[test]
fn membership_follows_the_access_and_trunk_rules() {
    let v = vlans(&[100, 200]);
    // Trunk: untagged and priority-tagged are VLAN 1; carried tags pass.
    assert_eq!(ingress(0, None, &v), Ok(1));
    assert_eq!(ingress(0, Some(0x6000), &v), Ok(1));
    assert_eq!(ingress(0, Some(100), &v), Ok(100));
    assert_eq!(ingress(0, Some(1), &v), Ok(1));
    assert_eq!(ingress(0, Some(300), &v), Err(DropReason::VlanUnknown));
    // Access: untagged (or priority-tagged) is the access VLAN; tags are refused.
    assert_eq!(ingress(100, None, &v), Ok(100));
    assert_eq!(ingress(100, Some(0x2000), &v), Ok(100));
    assert_eq!(ingress(100, Some(100), &v), Err(DropReason::VlanTagged));
    assert_eq!(ingress(100, Some(200), &v), Err(DropReason::VlanTagged));
    // Egress.
    assert_eq!(egress(0, 1, &v), Form::Untagged);
    assert_eq!(egress(0, 100, &v), Form::Tagged);
    assert_eq!(egress(0, 300, &v), Form::Not);
    assert_eq!(egress(100, 100, &v), Form::Untagged);
    assert_eq!(egress(100, 200, &v), Form::Not);
    assert_eq!(egress(100, 1, &v), Form::Not);
}

#[test]
fn forms_are_made_once_and_keep_offsets_and_priority() {
    // A TSO frame: hdr_len and csum_start shift with the tag.
    let mut b = frame(mac(2), mac(1), 1000);
    b[..VNET_HDR_LEN].copy_from_slice(&[1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0]);
    let p = Packet::new_checked(&b).unwrap();
    let mut s = Scratch::default();
    let mut f = Forms::new(p, 100, &mut s);
    assert_eq!(f.get(Form::Untagged).unwrap().bytes(), &b[..], "as it came");
    assert!(f.get(Form::Not).is_none());
    let t = f.get(Form::Tagged).unwrap();
    assert_eq!(t.tci(), Some(100));
    assert_eq!((t.hdr_len(), t.csum_start()), (70, 38));
    assert_eq!(&t.frame()[16..], &p.frame()[12..], "payload unchanged");
    assert_eq!(t.wire_l3_len(), p.wire_l3_len());

    // A priority-tagged frame in VLAN 100: tagged keeps the priority,
    // untagged loses the tag and the offsets move back.
    let mut b = tagged(mac(2), mac(1), 0xa000, 1000);
    b[..VNET_HDR_LEN].copy_from_slice(&[1, 0, 0, 0, 0, 0, 38, 0, 16, 0]);
    let p = Packet::new_checked(&b).unwrap();
    let mut s = Scratch::default();
    let mut f = Forms::new(p, 100, &mut s);
    assert_eq!(f.get(Form::Tagged).unwrap().tci(), Some(0xa000 | 100));
    let u = f.get(Form::Untagged).unwrap();
    assert_eq!((u.tci(), u.csum_start()), (None, 34));
    assert_eq!(u.ethertype(), 0x0800);
    assert_eq!(u.frame().len() + 4, p.frame().len());
}

struct Lan {
    sw: Arc<Switch>,
    d: Arc<Domain>,
    ports: Vec<(Arc<PortEntry>, Arc<MemoryPort>)>,
}

/// Ports with these access VLANs (0: trunk); the domain carries every one.
fn lan(access: &[u16]) -> Lan {
    let sw = Switch::new();
    let d = Domain::new("d");
    let ports = (access.iter().enumerate())
        .map(|(i, _)| {
            let m = MemoryPort::capturing();
            let spec = PortSpec::new(
                format!("p{i}"),
                PortRole::Other,
                Box::new(Shared(m.clone())),
                1500,
            );
            (sw.add_port(&d, spec).unwrap(), m)
        })
        .collect::<Vec<_>>();
    let carried: BTreeSet<u16> = access.iter().copied().filter(|v| *v != 0).collect();
    let by_name = |e: &PortEntry| access[e.name[1..].parse::<usize>().unwrap()];
    d.set_vlans(&carried, by_name);
    Lan { sw, d, ports }
}

impl Lan {
    fn send(&self, i: usize, buf: &[u8]) {
        self.sw.process(&self.ports[i].0, buf, now_secs());
    }
    fn got(&self, i: usize) -> Vec<(Option<u16>, usize)> {
        self.ports[i].1.take().iter().map(|b| seen(b)).collect()
    }
}

#[test]
fn a_vlan_aware_domain_keeps_vlans_apart_and_tags_on_trunks() {
    // p0, p1: access 100; p2: access 200; p3: trunk (the NIC).
    let l = lan(&[100, 100, 200, 0]);
    // A broadcast from p0 reaches p1 untagged and the trunk tagged 100.
    l.send(0, &frame(Mac::BROADCAST, mac(1), 60));
    assert_eq!(l.got(1), vec![(None, 46)]);
    assert!(l.got(2).is_empty(), "VLAN 200 never sees VLAN 100");
    assert_eq!(l.got(3), vec![(Some(100), 46)]);
    // From the trunk, tagged 200: only p2, untagged.
    l.send(3, &tagged(Mac::BROADCAST, mac(9), 200, 60));
    assert_eq!(l.got(2), vec![(None, 46)]);
    assert!(l.got(0).is_empty() && l.got(1).is_empty());
    // Untagged on the trunk is VLAN 1: no access port is in it.
    l.send(3, &frame(Mac::BROADCAST, mac(9), 60));
    assert!(l.got(0).is_empty() && l.got(1).is_empty() && l.got(2).is_empty());
    // Learning is per VLAN: mac(9) is known in 200 (on p3), not in 100.
    l.send(0, &frame(mac(9), mac(1), 60));
    assert_eq!(l.got(1).len(), 1, "unknown in VLAN 100: flooded there");
    assert_eq!(l.got(3), vec![(Some(100), 46)]);
    l.send(2, &frame(mac(9), mac(3), 60));
    assert_eq!(l.got(3), vec![(Some(200), 46)], "known in VLAN 200");
    assert!(l.got(0).is_empty() && l.got(1).is_empty());
    // Tagged frames on an access port and unknown VLANs on the trunk are dropped.
    l.send(0, &tagged(Mac::BROADCAST, mac(1), 100, 60));
    l.send(3, &tagged(Mac::BROADCAST, mac(9), 300, 60));
    assert!((0..4).all(|i| l.got(i).is_empty()));
    assert_eq!(l.ports[0].0.stats.drops(DropReason::VlanTagged), 1);
    assert_eq!(l.ports[3].0.stats.drops(DropReason::VlanUnknown), 1);
    // Counters and the table per VLAN.
    let v = l.d.vlans().unwrap();
    assert_eq!(v.get(100).unwrap().frames(), 2);
    assert_eq!(v.get(100).unwrap().flooded(), 2);
    let rows = l.d.mac_rows(now_secs());
    assert!(
        rows.iter()
            .any(|r| (r.0, r.1, r.2) == (Some(200), mac(9), l.ports[3].0.id))
    );
    assert!(!rows.iter().any(|r| r.0 == Some(100) && r.1 == mac(9)));
}

#[test]
fn without_access_vlans_tagged_frames_pass_unchanged() {
    let l = lan(&[0, 0]);
    assert!(l.d.vlans().is_none());
    let b = tagged(Mac::BROADCAST, mac(1), 300, 60);
    l.send(0, &b);
    assert_eq!(l.ports[1].1.take(), vec![b]);
}

#[test]
fn changing_vlans_keeps_what_stays_and_moves_the_pins() {
    let l = lan(&[100, 0]);
    l.send(1, &tagged(Mac::BROADCAST, mac(9), 100, 60));
    assert_eq!(l.got(0).len(), 1);
    // VLAN 200 is added and p0 moves to it: the trunk's station stays
    // known in VLAN 100, and p0 now hears only VLAN 200.
    l.d.set_vlans(&[100, 200].into(), |e| if e.name == "p0" { 200 } else { 0 });
    let rows = l.d.mac_rows(now_secs());
    assert!(
        rows.iter()
            .any(|r| (r.0, r.1, r.2) == (Some(100), mac(9), l.ports[1].0.id))
    );
    l.send(1, &tagged(Mac::BROADCAST, mac(9), 100, 60));
    assert!(l.got(0).is_empty());
    l.send(1, &tagged(Mac::BROADCAST, mac(9), 200, 60));
    assert_eq!(l.got(0), vec![(None, 46)]);
    // No access VLAN left: not VLAN-aware, tags pass.
    l.d.set_vlans(&BTreeSet::new(), |_| 0);
    assert!(l.d.vlans().is_none());
    assert_eq!(
        l.ports[0].0.vlan.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let b = tagged(Mac::BROADCAST, mac(9), 100, 60);
    l.send(1, &b);
    assert_eq!(l.ports[0].1.take(), vec![b]);
}

#[test]
fn a_tag_hidden_behind_a_priority_or_default_tag_never_leaves_shown() {
    // p0 access 100, p1 a trunk.
    let l = lan(&[100, 0]);
    for outer in [0x2000u16, 1] {
        // [outer][VLAN 999] from the trunk, or [priority][VLAN 999] from p0.
        let inner = tagged(Mac::BROADCAST, mac(9), 999, 60);
        let mut hop = inner.clone();
        let at = VNET_HDR_LEN + 12;
        hop.splice(at..at, [0x81, 0x00, (outer >> 8) as u8, outer as u8]);
        l.send(1, &hop);
        let mut from_access = inner.clone();
        from_access.splice(at..at, [0x81, 0x00, 0x20, 0x00]);
        l.send(0, &from_access);
    }
    assert!(l.got(0).is_empty() && l.got(1).is_empty());
    assert_eq!(l.ports[1].0.stats.drops(DropReason::VlanTagged), 2);
    assert_eq!(l.ports[0].0.stats.drops(DropReason::VlanTagged), 2);
}

#[test]
fn a_trunk_that_becomes_an_access_port_forgets_every_vlan() {
    let l = lan(&[100, 0, 0]);
    l.send(1, &tagged(Mac::BROADCAST, mac(7), 100, 60));
    let p1 = l.ports[1].0.id;
    let rows = l.d.mac_rows(now_secs());
    assert!(rows.iter().any(|r| (r.0, r.2) == (Some(100), p1)));
    l.d.set_vlans(&[100, 200].into(), |e| match e.name.as_str() {
        "p0" => 100,
        "p1" => 200,
        _ => 0,
    });
    let rows = l.d.mac_rows(now_secs());
    assert!(
        !rows.iter().any(|r| r.2 == p1 && r.0 == Some(100)),
        "{rows:?}"
    );
}
