//! The switch core: L2 domains with lock-free MAC tables, ports attached to
//! them, and the forwarding decision made by the worker that received the
//! frame (learn the source, look up the destination, write to its port or
//! flood the domain). No channel hop, no lock and no allocation per frame.

pub mod guard;
pub mod iplearn;
pub mod mactable;
mod recirc;
pub mod rstp;
pub mod stats;
pub mod stp;
pub mod vlan;
pub mod workers;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::Mac;
use crate::frame::{FrameError, Packet, VNET_HDR_LEN};
use crate::ports::PortIo;
use crate::sync::lock;
pub use mactable::{Learn, MacTable, PortId};
pub use stats::{DropReason, PortStats};
use vlan::{Forms, Scratch, Vlans};

/// Most ports one switch holds (port ids are u16, the MAC table keeps +1).
pub const MAX_PORTS: usize = 4096;
/// MAC table slots per domain.
pub const TABLE_SLOTS: usize = 16384;
/// MACs a NIC port may hold in its domain; other ports hold `OTHER_QUOTA`.
pub const NIC_QUOTA: u32 = 8192;
pub const OTHER_QUOTA: u32 = 256;
pub const DEFAULT_AGING_SECS: u32 = 300;

pub use crate::clock::mono_secs_coarse as now_secs;

thread_local! {
    /// Where a worker makes the tagged or untagged form of a frame.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What a port is, for status and policy.
#[derive(Debug, Clone, PartialEq)]
pub enum PortRole {
    /// A NIC opened with AF_PACKET.
    Nic { port: String },
    /// The host's TAP on a management port.
    Host { port: String },
    /// An app interface.
    Vif { app: String, ni: String, ifnum: u8 },
    /// Anything else attached to a domain (tests, router interfaces).
    Other,
}

/// One L2 broadcast domain: a MAC table and its member ports.
pub struct Domain {
    pub name: String,
    pub table: MacTable,
    members: ArcSwap<Vec<Arc<PortEntry>>>,
    /// LLDP frames are forwarded (the NI's `forward_lldp`).
    pub forward_lldp: AtomicBool,
    /// The VLANs of a VLAN-aware domain; None: tagged frames pass unchanged.
    vlans: ArcSwapOption<Vlans>,
    /// Whether `vlans` is set: one relaxed load per frame when it is not.
    vlan_aware: AtomicBool,
    /// Where BPDUs from the ports in a spanning tree go (`stp.rs`).
    bpdus: ArcSwapOption<BpduSink>,
}

/// BPDUs received on a spanning-tree port: (port, frame without header).
pub type BpduSink = std::sync::mpsc::SyncSender<(PortId, Vec<u8>)>;

/// A port's spanning-tree state: not in a tree (or forwarding), discarding,
/// learning.
pub const STP_FORWARDING: u8 = 0;
pub const STP_DISCARDING: u8 = 1;
pub const STP_LEARNING: u8 = 2;
/// BPDUs a port hands its tree in a second at most (a bridge sends one
/// every hello, a few more on changes).
const BPDUS_PER_SECOND: u32 = 16;

/// A MAC table entry: VLAN (None in a domain without VLANs), MAC, port, age.
pub type MacRow = (Option<u16>, Mac, PortId, u32);

impl Domain {
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Domain {
            name: name.into(),
            table: MacTable::new(TABLE_SLOTS, DEFAULT_AGING_SECS, MAX_PORTS),
            members: ArcSwap::from_pointee(Vec::new()),
            forward_lldp: AtomicBool::new(false),
            vlans: ArcSwapOption::empty(),
            vlan_aware: AtomicBool::new(false),
            bpdus: ArcSwapOption::empty(),
        })
    }

    pub fn members(&self) -> Arc<Vec<Arc<PortEntry>>> {
        self.members.load_full()
    }

    /// Sends the BPDUs of the domain's spanning-tree ports to `sink` (None:
    /// no tree; BPDUs are dropped as link-local frames).
    pub fn set_bpdu_sink(&self, sink: Option<BpduSink>) {
        self.bpdus.store(sink.map(Arc::new));
    }

    /// Forgets every MAC learned on `port` (a topology change).
    pub fn flush_port(&self, port: PortId) {
        self.sweep(now_secs(), Some(port));
    }

    /// The domain's VLANs, if it is VLAN-aware.
    pub fn vlans(&self) -> Option<Arc<Vlans>> {
        self.vlans.load_full()
    }

    /// Makes the domain carry `carried` (the VLANs with an access member;
    /// none: not VLAN-aware) and gives each member its access VLAN
    /// (`access`, 0 for a trunk). What a VLAN kept learned stays.
    pub fn set_vlans(&self, carried: &BTreeSet<u16>, access: impl Fn(&PortEntry) -> u16) {
        let old = self.vlans.load_full();
        let new = (!carried.is_empty()).then(|| {
            Arc::new(Vlans::new(
                carried,
                old.as_deref(),
                DEFAULT_AGING_SECS,
                MAX_PORTS,
            ))
        });
        for p in self.members().iter() {
            let vid = if new.is_some() { access(p) } else { 0 };
            let was = p.vlan.swap(vid, Relaxed);
            if was == 0 && vid != 0 {
                // A trunk learned in every VLAN.
                self.sweep(now_secs(), Some(p.id));
            } else if was != vid {
                self.with_table(old.as_deref(), was, |t| t.sweep(now_secs(), Some(p.id)));
            }
            if let Some(m) = p.station {
                self.with_table(new.as_deref(), vid, |t| t.pin(m, p.id));
            }
        }
        self.vlan_aware.store(new.is_some(), Relaxed);
        self.vlans.store(new);
    }

    /// Runs `f` on the table of access VLAN `vid` (0: a trunk, whose
    /// untagged frames learn in the domain's own table), if there is one.
    fn with_table<R>(&self, vlans: Option<&Vlans>, vid: u16, f: impl FnOnce(&MacTable) -> R) {
        let vlan = vlans.and_then(|v| v.get(vid));
        match vlan.map(|v| v.table.as_ref()) {
            Some(Some(t)) => drop(f(t)),
            Some(None) => drop(f(&self.table)),
            None if vid == 0 => drop(f(&self.table)),
            None => {}
        }
    }

    /// Clears aged-out entries, and every entry of `gone`, in every table.
    fn sweep(&self, now: u32, gone: Option<PortId>) {
        self.table.sweep(now, gone);
        if let Some(v) = self.vlans.load().as_ref() {
            for (_, vl) in v.iter() {
                if let Some(t) = &vl.table {
                    t.sweep(now, gone);
                }
            }
        }
    }

    /// Clears aged-out entries of every VLAN's table (run periodically).
    pub fn sweep_aged(&self, now: u32) {
        self.sweep(now, None);
    }

    /// Every live MAC table entry of every VLAN.
    pub fn mac_rows(&self, now: u32) -> Vec<MacRow> {
        let vlans = self.vlans.load_full();
        let tag = |vid| vlans.as_ref().map(|_| vid);
        let mut rows: Vec<MacRow> = (self.table.entries(now).into_iter())
            .map(|(m, p, age)| (tag(vlan::DEFAULT_VLAN), m, p, age))
            .collect();
        for (vid, vl) in vlans.iter().flat_map(|v| v.iter()) {
            if let Some(t) = &vl.table {
                rows.extend(
                    t.entries(now)
                        .into_iter()
                        .map(|(m, p, a)| (Some(vid), m, p, a)),
                );
            }
        }
        rows
    }
}

/// A policy the layer above plugs into a port (an app interface's ACLs):
/// it judges every frame the port sends into the switch and every frame
/// the switch delivers to it.
pub trait PortHook: Send + Sync {
    fn egress(&self, p: &Packet) -> Result<(), DropReason>;
    fn ingress(&self, p: &Packet) -> Result<(), DropReason>;
}

impl<T: PortHook + ?Sized> PortHook for Arc<T> {
    fn egress(&self, p: &Packet) -> Result<(), DropReason> {
        (**self).egress(p)
    }
    fn ingress(&self, p: &Packet) -> Result<(), DropReason> {
        (**self).ingress(p)
    }
}

/// How to attach a port.
pub struct PortSpec {
    pub name: String,
    pub role: PortRole,
    pub io: Box<dyn PortIo>,
    pub mtu: u32,
    /// For VIFs: the only source MAC accepted from the port.
    pub own_mac: Option<Mac>,
    /// A MAC known to live behind this port: installed in the MAC table for
    /// good, never moved by frames from elsewhere (`own_mac` is pinned too).
    pub pinned: Option<Mac>,
    pub link_up: bool,
    /// Access VLAN (0: a trunk, or a domain without VLANs).
    pub vlan: u16,
    /// A port of a spanning tree: it discards until the tree decides.
    pub in_tree: bool,
}

impl PortSpec {
    /// A port with its link up, no own MAC and nothing pinned.
    pub fn new(name: impl Into<String>, role: PortRole, io: Box<dyn PortIo>, mtu: u32) -> Self {
        PortSpec {
            name: name.into(),
            role,
            io,
            mtu,
            own_mac: None,
            pinned: None,
            link_up: true,
            vlan: 0,
            in_tree: false,
        }
    }

    /// Only frames from `mac` are accepted, and `mac` stays on this port.
    pub fn own_mac(self, mac: Mac) -> Self {
        PortSpec {
            own_mac: Some(mac),
            ..self
        }
    }

    /// `mac` lives behind this port for good.
    pub fn pinned(self, mac: Mac) -> Self {
        PortSpec {
            pinned: Some(mac),
            ..self
        }
    }

    pub fn link_up(self, up: bool) -> Self {
        PortSpec {
            link_up: up,
            ..self
        }
    }

    /// The port's access VLAN (0: a trunk).
    pub fn vlan(self, vlan: u16) -> Self {
        PortSpec { vlan, ..self }
    }

    /// The port belongs to a spanning tree (`in_tree`).
    pub fn in_tree(self, in_tree: bool) -> Self {
        PortSpec { in_tree, ..self }
    }
}

/// A port attached to the switch.
pub struct PortEntry {
    pub id: PortId,
    pub name: String,
    pub role: PortRole,
    pub io: Box<dyn PortIo>,
    pub stats: PortStats,
    pub mtu: AtomicU32,
    pub link_up: AtomicBool,
    pub own_mac: Option<Mac>,
    /// The MAC pinned to the port (its own, or the host's behind it).
    pub station: Option<Mac>,
    /// Access VLAN in a VLAN-aware domain (0: a trunk).
    pub vlan: AtomicU16,
    pub quota: u32,
    pub domain: Arc<Domain>,
    /// IPv4 addresses seen for this port's station (ARP, DHCP ACK).
    pub learned_ips: Mutex<Vec<Ipv4Addr>>,
    hook: ArcSwapOption<Box<dyn PortHook>>,
    /// Whether `hook` is set: one relaxed load per frame when it is not.
    hooked: AtomicBool,
    /// Port security of an app interface (on when it has its own MAC).
    pub guard: guard::Guard,
    /// Storm control of what the port floods.
    pub floods: guard::FloodBudget,
    /// BPDUs a second the port may hand its spanning tree.
    bpdus: guard::FloodBudget,
    /// BPDU guard disabled the port (until the next apply or restart).
    bpdu_tripped: AtomicBool,
    /// Spanning-tree state (`STP_*`); a port in no tree stays forwarding.
    pub stp: AtomicU8,
    closing: AtomicBool,
}

impl PortEntry {
    /// Whether BPDU guard disabled the port.
    pub fn bpdu_guard_tripped(&self) -> bool {
        self.bpdu_tripped.load(Relaxed)
    }

    /// Enables a port that BPDU guard disabled (an apply).
    pub fn reset_bpdu_guard(&self) {
        if self.bpdu_tripped.swap(false, Relaxed) {
            tracing::info!(port = %self.name, "BPDU guard: enabled again");
        }
    }

    /// A BPDU came from this app interface (or a port with BPDU guard): it
    /// is disabled.
    pub fn trip_bpdu_guard(&self) {
        if !self.bpdu_tripped.swap(true, Relaxed) {
            tracing::warn!(port = %self.name, "BPDU guard: a BPDU came from this interface; it is disabled until the next apply or restart");
        }
    }

    /// Plugs a policy into the port, or removes it (`None`), while traffic flows.
    pub fn set_hook(&self, hook: Option<Box<dyn PortHook>>) {
        self.hooked.store(hook.is_some(), Relaxed);
        self.hook.store(hook.map(Arc::new));
    }

    #[inline]
    fn judge(&self, pkt: &Packet, egress: bool) -> Result<(), DropReason> {
        if !self.hooked.load(Relaxed) {
            return Ok(());
        }
        match self.hook.load().as_ref() {
            Some(h) if egress => h.egress(pkt),
            Some(h) => h.ingress(pkt),
            None => Ok(()),
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Relaxed)
    }

    fn note_ip(&self, ip: Ipv4Addr) {
        let mut ips = lock(&self.learned_ips);
        if !ips.contains(&ip) {
            if ips.len() >= 8 {
                ips.remove(0);
            }
            ips.push(ip);
        }
    }
}

/// All ports, indexed by id, and the forwarding logic.
pub struct Switch {
    ports: Box<[ArcSwapOption<PortEntry>]>,
    alloc: Mutex<()>,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            ports: (0..MAX_PORTS).map(|_| ArcSwapOption::empty()).collect(),
            alloc: Mutex::new(()),
        }
    }
}

impl Switch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Attaches a port to a domain and returns it.
    pub fn add_port(&self, domain: &Arc<Domain>, spec: PortSpec) -> io::Result<Arc<PortEntry>> {
        let _g = self
            .alloc
            .lock()
            .map_err(|_| io::Error::other("port table poisoned"))?;
        let id = self
            .ports
            .iter()
            .position(|p| p.load().is_none())
            .ok_or_else(|| io::Error::other(format!("more than {MAX_PORTS} ports")))?;
        // The access VLAN counts once the domain is VLAN-aware (`set_vlans`).
        let vlans = domain.vlans.load_full();
        let vid = if vlans.is_some() { spec.vlan } else { 0 };
        let quota = if matches!(spec.role, PortRole::Nic { .. }) {
            NIC_QUOTA
        } else {
            OTHER_QUOTA
        };
        let entry = Arc::new(PortEntry {
            id: id as PortId,
            name: spec.name,
            role: spec.role,
            io: spec.io,
            stats: PortStats::default(),
            mtu: AtomicU32::new(spec.mtu),
            link_up: AtomicBool::new(spec.link_up),
            own_mac: spec.own_mac,
            station: spec.own_mac.or(spec.pinned),
            vlan: AtomicU16::new(vid),
            quota,
            domain: domain.clone(),
            learned_ips: Mutex::new(Vec::new()),
            hook: ArcSwapOption::empty(),
            hooked: AtomicBool::new(false),
            guard: guard::Guard::default(),
            floods: guard::FloodBudget::new(guard::DEFAULT_FLOOD_LIMIT),
            bpdus: guard::FloodBudget::new(BPDUS_PER_SECOND),
            bpdu_tripped: AtomicBool::new(false),
            stp: AtomicU8::new(if spec.in_tree {
                STP_DISCARDING
            } else {
                STP_FORWARDING
            }),
            closing: AtomicBool::new(false),
        });
        self.ports[id].store(Some(entry.clone()));
        if let Some(m) = entry.station {
            domain.with_table(vlans.as_deref(), vid, |t| t.pin(m, id as PortId));
        }
        domain.members.rcu(|m| {
            let mut v = Vec::clone(m);
            v.push(entry.clone());
            v
        });
        Ok(entry)
    }

    /// Detaches a port: it leaves its domain and its MACs are forgotten; the
    /// worker serving it reads no more from it (`Workers::release` waits for that).
    pub fn remove_port(&self, port: &PortEntry) {
        if port.closing.swap(true, Relaxed) {
            return;
        }
        port.domain.members.rcu(|m| {
            m.iter()
                .filter(|p| p.id != port.id)
                .cloned()
                .collect::<Vec<_>>()
        });
        port.domain.sweep(now_secs(), Some(port.id));
        // The slot may already hold another port if this one was removed before.
        if let Some(slot) = self.ports.get(port.id as usize)
            && slot
                .load()
                .as_ref()
                .is_some_and(|p| std::ptr::eq(&**p, port))
        {
            slot.store(None);
        }
    }

    pub fn port(&self, id: PortId) -> Option<Arc<PortEntry>> {
        self.ports.get(id as usize).and_then(|p| p.load_full())
    }

    /// Switches one packet (virtio-net header + frame) received on `from`,
    /// then whatever the ports handed back meanwhile (`recirc`). Called
    /// while this thread switches another frame (a router answering from
    /// inside its port's `send`), it queues the packet behind that one.
    #[inline]
    pub fn process(&self, from: &PortEntry, buf: &[u8], now: u32) {
        match recirc::enter() {
            Some(pass) => {
                self.switch_one(from, buf, now);
                self.finish(pass, now);
            }
            None => {
                // The queue holds the port's Arc: this port, if still attached.
                let from_arc = self.port(from.id).filter(|p| std::ptr::eq(&**p, from));
                if let Some(arc) = from_arc
                    && !recirc::hand_back(arc, recirc::Frame::Borrowed(buf))
                {
                    from.stats.drop(DropReason::TxFull);
                }
            }
        }
    }

    /// `process` for a frame in a buffer the caller hands over (a router's
    /// translated packet): switched now, or queued without a copy behind
    /// the frame this thread is switching; `frame` is left empty.
    pub fn inject(&self, from: &Arc<PortEntry>, frame: &mut Vec<u8>, now: u32) {
        match recirc::enter() {
            Some(pass) => {
                self.switch_one(from, frame, now);
                frame.clear();
                self.finish(pass, now);
            }
            None => {
                if !recirc::hand_back(from.clone(), recirc::Frame::Owned(frame)) {
                    from.stats.drop(DropReason::TxFull);
                    frame.clear();
                }
            }
        }
    }

    /// Switches the frames handed back during a pass, in order, then ends it.
    fn finish(&self, pass: recirc::InPass, now: u32) {
        while let Some((from, frame)) = recirc::next() {
            if !from.is_closing() {
                self.switch_one(&from, &frame, now);
            }
            recirc::recycle(frame);
        }
        drop(pass);
    }

    #[inline]
    fn switch_one(&self, from: &PortEntry, buf: &[u8], now: u32) {
        from.stats.rx(buf.len().saturating_sub(VNET_HDR_LEN));
        let pkt = match Packet::new_checked(buf) {
            Ok(p) => p,
            Err(FrameError::Runt) => return from.stats.drop(DropReason::Runt),
            Err(FrameError::BadVnetHeader) => return from.stats.drop(DropReason::BadVnetHeader),
        };
        let src = pkt.src();
        if src.is_multicast() || src.is_zero() {
            return from.stats.drop(DropReason::InvalidSrcMac);
        }
        if from.bpdu_tripped.load(Relaxed) {
            return from.stats.drop(DropReason::BpduGuard);
        }
        if let Some(own) = from.own_mac {
            if own != src {
                return from.stats.drop(DropReason::SpoofedSrcMac);
            }
            if let Some(why) = from.guard.egress(&pkt, own) {
                return from.stats.drop(why);
            }
        }
        if pkt.dst().0 == rstp::bpdu::STP_GROUP
            && from.own_mac.is_none()
            && let Some(sink) = from.domain.bpdus.load().as_ref()
        {
            // Bounded per port and in all: a flood of BPDUs on one port is
            // dropped, and cannot crowd out the others' BPDUs.
            if !from.bpdus.take(now) || sink.try_send((from.id, pkt.frame().to_vec())).is_err() {
                from.stats.drop(DropReason::BpduFlood);
            }
            return;
        }
        if let Some(why) = link_local(from, pkt.dst()) {
            return from.stats.drop(why);
        }
        match from.stp.load(Relaxed) {
            STP_FORWARDING => {}
            STP_LEARNING => {
                // (A VLAN-aware domain learns only when it forwards: the
                // frame's VLAN is not known yet here.)
                if !from.domain.vlan_aware.load(Relaxed) {
                    from.domain.table.learn(src, from.id, from.quota, now);
                }
                return from.stats.drop(DropReason::StpDiscarding);
            }
            _ => return from.stats.drop(DropReason::StpDiscarding),
        }
        if let Err(why) = from.judge(&pkt, true) {
            return from.stats.drop(why);
        }
        if from.domain.vlan_aware.load(Relaxed)
            && let Some(vlans) = from.domain.vlans.load().as_ref()
        {
            return self.process_vlan(from, pkt, vlans, now);
        }
        self.forward(from, (&pkt, 0), &from.domain.table, now, |out| {
            deliver(out, &pkt)
        });
    }

    /// Switches a packet in a VLAN-aware domain: its VLAN's table, and each
    /// port gets it in its form (tagged or not) if it is a member.
    fn process_vlan(&self, from: &PortEntry, pkt: Packet, vlans: &Vlans, now: u32) {
        if vlan::hides_a_tag(&pkt) {
            return from.stats.drop(DropReason::VlanTagged);
        }
        let vid = match vlan::ingress(from.vlan.load(Relaxed), pkt.tci(), vlans) {
            Ok(v) => v,
            Err(why) => return from.stats.drop(why),
        };
        let Some(v) = vlans.get(vid) else {
            return from.stats.drop(DropReason::VlanUnknown);
        };
        v.note_frame();
        let table = v.table.as_ref().unwrap_or(&from.domain.table);
        let send = |forms: &mut Forms, out: &PortEntry| {
            let form = vlan::egress(out.vlan.load(Relaxed), vid, vlans);
            if let Some(p) = forms.get(form) {
                deliver(out, &p);
            }
        };
        let run = |s: &mut Scratch| {
            let mut forms = Forms::new(pkt, vid, s);
            self.forward(from, (&pkt, vid), table, now, |out| send(&mut forms, out))
        };
        // Never re-entered: a frame handed back waits for the pass to end.
        let flooded = SCRATCH.with(|c| run(&mut c.borrow_mut()));
        if flooded {
            v.note_flood();
        }
    }

    /// Learns the source in `table`, then sends to the port that holds the
    /// destination, or floods the domain (within the port's budget).
    /// Returns whether it flooded.
    #[inline]
    fn forward(
        &self,
        from: &PortEntry,
        (pkt, vid): (&Packet, u16),
        table: &MacTable,
        now: u32,
        mut send: impl FnMut(&PortEntry),
    ) -> bool {
        let domain = &from.domain;
        table.learn(pkt.src(), from.id, from.quota, now);
        if let Some(s) = iplearn::sighting(pkt) {
            self.note_sighting(from, s, vid);
        }
        let dst = pkt.dst();
        if !dst.is_multicast()
            && let Some(to) = table.lookup(dst, now)
        {
            if to == from.id {
                from.stats.drop(DropReason::Hairpin);
                return false;
            }
            if let Some(out) = self.ports[to as usize].load().as_ref()
                && Arc::ptr_eq(&out.domain, domain)
                && !out.is_closing()
            {
                send(out);
                return false;
            }
        }
        if !from.floods.take(now) {
            from.stats.drop(DropReason::Storm);
            return false;
        }
        for out in domain.members.load().iter() {
            if out.id != from.id {
                send(out);
            }
        }
        true
    }

    /// An ARP counts only from the VIF whose MAC it names; a DHCP ACK only
    /// when it comes from outside the apps (the LAN's server) to a VIF in
    /// the frame's VLAN `vid` (0: a domain without VLANs).
    fn note_sighting(&self, from: &PortEntry, s: iplearn::Sighting, vid: u16) {
        if !s.from_server {
            if from.own_mac == Some(s.mac) {
                from.note_ip(s.ip);
            }
            return;
        }
        if from.own_mac.is_some() {
            return;
        }
        for p in from.domain.members.load().iter() {
            let access = p.vlan.load(Relaxed);
            // The VLAN the VIF itself sees the address in (0: untagged).
            let seen_in = match (access, vid) {
                (0, v) if v > vlan::DEFAULT_VLAN => v,
                (0, _) => 0,
                (a, v) if a == v => 0,
                _ => continue,
            };
            if p.own_mac == Some(s.mac) {
                p.note_ip(s.ip);
                p.guard.learn_from_server(seen_in, s.ip);
            }
        }
    }
}

/// Link-local control frames, which a bridge never forwards: STP (a BPDU
/// from an app interface trips its BPDU guard; so does Cisco's PVST+),
/// LACP, pause and the rest of 01:80:c2:00:00:0x; LLDP only when the NI
/// forwards it. None: an ordinary frame.
#[inline]
fn link_local(from: &PortEntry, dst: Mac) -> Option<DropReason> {
    const PVST: [u8; 6] = [0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd];
    let d = dst.0;
    let reserved = d[..5] == [0x01, 0x80, 0xc2, 0, 0] && d[5] <= 0x0f;
    if !reserved && d != PVST {
        return None;
    }
    let bpdu = d[5] == 0 || d == PVST;
    if bpdu && from.own_mac.is_some() {
        from.trip_bpdu_guard();
        return Some(DropReason::BpduGuard);
    }
    if d[5] == 0x0e && from.domain.forward_lldp.load(Relaxed) {
        return None;
    }
    match d == PVST {
        true => None,
        false => Some(DropReason::LinkLocal),
    }
}

/// Writes a packet to one port, counting what happens to it.
#[inline]
fn deliver(out: &PortEntry, pkt: &Packet) {
    if !out.link_up.load(Relaxed) {
        return out.stats.drop(DropReason::LinkDown);
    }
    if out.bpdu_tripped.load(Relaxed) {
        return out.stats.drop(DropReason::BpduGuard);
    }
    if out.stp.load(Relaxed) != STP_FORWARDING {
        return;
    }
    if pkt.wire_l3_len() > out.mtu.load(Relaxed) as usize {
        return out.stats.drop(DropReason::TooBig);
    }
    if let Err(why) = out.judge(pkt, false) {
        return out.stats.drop(why);
    }
    match out.io.send(pkt.bytes()) {
        Ok(()) => out.stats.tx(pkt.frame().len()),
        Err(e) => match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) => out.stats.drop(DropReason::TxFull),
            Some(libc::ENETDOWN) | Some(libc::ENXIO) | Some(libc::EIO) => {
                out.stats.drop(DropReason::LinkDown)
            }
            _ => out.stats.drop(DropReason::TxError),
        },
    }
}

#[cfg(test)]
mod tests;
