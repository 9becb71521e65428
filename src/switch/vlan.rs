//! VLANs of a domain (SPEC §3.1): which VLANs its trunks carry, a MAC table
//! for each, the VLAN a frame belongs to as it enters a port, and the form,
//! tagged or untagged, in which it leaves each port. A port with an access
//! VLAN sends and receives that VLAN untagged; every other port is a trunk
//! that carries, tagged, each VLAN with an access member, and VLAN 1
//! untagged. A domain with no access VLAN is not VLAN-aware at all: tagged
//! frames pass through unchanged.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::mactable::MacTable;
use super::stats::{DropReason, Tally};
use crate::frame::{Packet, retag};

/// The VLAN of untagged frames on a trunk.
pub const DEFAULT_VLAN: u16 = 1;
const VID_MASK: u16 = 0x0fff;
/// MAC table slots of one VLAN (VLAN 1 uses the domain's own table).
const VLAN_SLOTS: usize = 4096;

/// One VLAN of a VLAN-aware domain.
pub struct Vlan {
    /// Its stations; None for VLAN 1, which uses the domain's table.
    pub table: Option<MacTable>,
    /// Frames that entered the domain in this VLAN, and those flooded.
    counts: Tally<2>,
}

impl Vlan {
    /// Frames that entered the domain in this VLAN.
    pub fn frames(&self) -> u64 {
        self.counts.get(0)
    }
    /// Of those, the frames flooded (unknown or group destination).
    pub fn flooded(&self) -> u64 {
        self.counts.get(1)
    }
    #[inline]
    pub(super) fn note_frame(&self) {
        self.counts.add(0);
    }
    #[inline]
    pub(super) fn note_flood(&self) {
        self.counts.add(1);
    }
}

/// The VLANs a domain carries, indexed by VLAN id.
pub struct Vlans {
    by_id: Box<[Option<Arc<Vlan>>]>,
}

impl Vlans {
    /// VLAN 1 and `carried`; a VLAN `old` already had keeps what it learned.
    pub fn new(carried: &BTreeSet<u16>, old: Option<&Vlans>, aging: u32, ports: usize) -> Vlans {
        let mut by_id: Box<[Option<Arc<Vlan>>]> = (0..=VID_MASK).map(|_| None).collect();
        for &vid in carried.iter().chain([&DEFAULT_VLAN]) {
            let kept = old.and_then(|o| o.get(vid).cloned());
            by_id[(vid & VID_MASK) as usize] = Some(kept.unwrap_or_else(|| {
                Arc::new(Vlan {
                    table: (vid != DEFAULT_VLAN).then(|| MacTable::new(VLAN_SLOTS, aging, ports)),
                    counts: Tally::default(),
                })
            }));
        }
        Vlans { by_id }
    }

    #[inline]
    pub fn get(&self, vid: u16) -> Option<&Arc<Vlan>> {
        self.by_id.get(vid as usize).and_then(|v| v.as_ref())
    }

    /// Whether trunks carry `vid` tagged.
    #[inline]
    fn carries(&self, vid: u16) -> bool {
        vid != DEFAULT_VLAN && self.get(vid).is_some()
    }

    /// Every VLAN with its id, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Vlan)> {
        self.by_id
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_deref().map(|v| (i as u16, v)))
    }
}

/// The VLAN of a frame with tag `tci` entering a port whose access VLAN is
/// `access` (0: a trunk). A priority tag (VLAN 0) counts as no tag.
#[inline]
pub fn ingress(access: u16, tci: Option<u16>, vlans: &Vlans) -> Result<u16, DropReason> {
    let vid = tci.map_or(0, |t| t & VID_MASK);
    match (access, vid) {
        (0, 0) => Ok(DEFAULT_VLAN),
        (0, v) if v == DEFAULT_VLAN || vlans.carries(v) => Ok(v),
        (0, _) => Err(DropReason::VlanUnknown),
        (a, 0) => Ok(a),
        _ => Err(DropReason::VlanTagged),
    }
}

/// A frame whose outer tag is only a priority tag or VLAN 1's and that
/// carries another tag inside: leaving untagged would show the inner tag
/// (VLAN hopping), so it is not switched.
#[inline]
pub fn hides_a_tag(p: &Packet) -> bool {
    let Some(t) = p.tci() else {
        return false;
    };
    let inner = p.frame().get(16..18);
    t & VID_MASK <= DEFAULT_VLAN
        && inner.is_some_and(|e| matches!(u16::from_be_bytes([e[0], e[1]]), 0x8100 | 0x88a8))
}

/// How a frame leaves a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Untagged,
    Tagged,
    /// The port is not a member of the frame's VLAN.
    Not,
}

/// How a frame of VLAN `vid` leaves a port whose access VLAN is `access`.
#[inline]
pub fn egress(access: u16, vid: u16, vlans: &Vlans) -> Form {
    match access {
        0 if vid == DEFAULT_VLAN => Form::Untagged,
        0 if vlans.carries(vid) => Form::Tagged,
        a if a == vid => Form::Untagged,
        _ => Form::Not,
    }
}

/// Buffers for the forms of one frame that differ from how it arrived.
#[derive(Default)]
pub struct Scratch {
    untagged: Vec<u8>,
    tagged: Vec<u8>,
}

/// One frame of VLAN `vid` in the forms its ports need, each made at most
/// once (one copy of the payload) and only when a port needs it.
pub struct Forms<'a, 's> {
    pkt: Packet<'a>,
    vid: u16,
    scratch: &'s mut Scratch,
    made: [bool; 2],
}

impl<'a, 's> Forms<'a, 's> {
    pub fn new(pkt: Packet<'a>, vid: u16, scratch: &'s mut Scratch) -> Self {
        Forms {
            pkt,
            vid,
            scratch,
            made: [false; 2],
        }
    }

    /// The frame as a port with `form` takes it.
    #[inline]
    pub fn get(&mut self, form: Form) -> Option<Packet<'_>> {
        let tci = self.pkt.tci();
        match form {
            Form::Not => None,
            Form::Untagged if tci.is_none() => Some(self.pkt),
            Form::Tagged if tci.is_some_and(|t| t & VID_MASK == self.vid) => Some(self.pkt),
            Form::Untagged => {
                if !self.made[0] {
                    retag(&self.pkt, None, &mut self.scratch.untagged);
                    self.made[0] = true;
                }
                Packet::new_checked(&self.scratch.untagged).ok()
            }
            Form::Tagged => {
                if !self.made[1] {
                    // Keep the priority of a priority-tagged frame.
                    let tci = tci.map_or(0, |t| t & !VID_MASK) | self.vid;
                    retag(&self.pkt, Some(tci), &mut self.scratch.tagged);
                    self.made[1] = true;
                }
                Packet::new_checked(&self.scratch.tagged).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests;
