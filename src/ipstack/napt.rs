//! The NAT fast path of one local NI. The router's ports hand it the
//! frames addressed to the router's MACs on the receiving thread; it
//! translates them and hands them back to the switch as received on the
//! router's port in the uplink's or the NI's domain; the same thread switches
//! them there as soon as the frame at hand is done: no thread hop, no
//! nested pass (`Switch::inject`). What it does
//! not translate (DHCP, DNS to the gateway, ARP, probe replies) goes on to
//! the router's control thread, which also feeds it the uplinks' addresses,
//! the apps' leases, and resolves next hops it does not know yet.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use ipnet::Ipv4Net;

use super::hostlink::HostLink;
use super::translate::{self, Kind};
use crate::clock::mono_ms as now_ms;
use crate::config::{L4Proto, Mac};
use crate::ports::waker::Waker;
use crate::services::metadata::METADATA_IP;
use crate::services::nat::{NatError, NatTable, Proto, Rewrite, TCP_RST};
use crate::switch::{PortEntry, Switch, now_secs};
use crate::sync::lock;

/// Ports for translated sources: clear of the router's own (DNS relay,
/// TCP probes) and of the usual port maps below 10000.
pub const NAT_PORTS: std::ops::RangeInclusive<u16> = 10000..=49151;
/// Most sessions one NI holds.
pub const MAX_SESSIONS: usize = 65536;
/// Packets held while their next hop is resolved, and for how long.
const PENDING: usize = 256;
const PENDING_MS: u64 = 3000;
const NEIGHBORS: usize = 1024;

/// Which of the router's ports a frame reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The router's port on the NI: frames from the apps.
    Inside,
    /// The router's port on uplink `i`.
    Uplink(usize),
}

/// A port map of one app interface.
#[derive(Debug, Clone, PartialEq)]
pub struct MapRule {
    pub proto: L4Proto,
    pub uplink_port: u16,
    pub app_mac: Mac,
    pub app_port: u16,
    /// On the `host` uplink: the host address it listens on (None: all).
    pub listen: Option<Ipv4Addr>,
}

/// Counters shown in status.
#[derive(Default)]
pub struct NatCounters {
    pub nat_out: AtomicU64,
    pub nat_in: AtomicU64,
    pub nat_table_full: AtomicU64,
    /// An app's new session refused: it holds its quota.
    pub nat_app_quota: AtomicU64,
    pub nat_no_uplink: AtomicU64,
    pub nat_no_neighbor: AtomicU64,
    pub nat_spoofed: AtomicU64,
    pub nat_dropped: AtomicU64,
    pub nat_sessions_ended: AtomicU64,
}

impl NatCounters {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("nat_out", self.nat_out.load(Relaxed)),
            ("nat_in", self.nat_in.load(Relaxed)),
            ("nat_table_full", self.nat_table_full.load(Relaxed)),
            ("nat_app_quota", self.nat_app_quota.load(Relaxed)),
            ("nat_no_uplink", self.nat_no_uplink.load(Relaxed)),
            ("nat_no_neighbor", self.nat_no_neighbor.load(Relaxed)),
            ("nat_spoofed", self.nat_spoofed.load(Relaxed)),
            ("nat_dropped", self.nat_dropped.load(Relaxed)),
            ("nat_sessions_ended", self.nat_sessions_ended.load(Relaxed)),
        ]
    }
}

/// What the control thread knows of an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkView {
    pub address: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub healthy: bool,
}

struct UplinkState {
    mac: Mac,
    view: UplinkView,
    neighbors: HashMap<Ipv4Addr, Mac>,
}

impl UplinkState {
    /// The next hop towards `dst`: itself when on-link, else the gateway of
    /// the longest static route that matches and is reachable on this
    /// uplink, else the uplink's gateway.
    fn hop(&self, dst: Ipv4Addr, routes: &[(Ipv4Net, Ipv4Addr)]) -> Option<Ipv4Addr> {
        let net = self.view.address?;
        if net.contains(&dst) {
            return Some(dst);
        }
        routes
            .iter()
            .filter(|(r, via)| r.contains(&dst) && net.contains(via))
            .max_by_key(|(r, _)| r.prefix_len())
            .map(|(_, via)| *via)
            .or(self.view.gateway)
    }

    fn learn(&mut self, ip: Ipv4Addr, mac: Mac) {
        let on_link = self.view.address.is_some_and(|n| n.contains(&ip));
        if !on_link || mac.is_multicast() || self.neighbors.get(&ip) == Some(&mac) {
            return;
        }
        if self.neighbors.len() >= NEIGHBORS {
            self.neighbors.clear();
        }
        self.neighbors.insert(ip, mac);
    }
}

struct Held {
    via: usize,
    hop: Ipv4Addr,
    pkt: Vec<u8>,
    since: u64,
}

struct State {
    table: NatTable,
    maps: Vec<MapRule>,
    uplinks: Vec<UplinkState>,
    active: Option<usize>,
    /// The apps' addresses (leases and fixed IPs) and their MACs.
    apps: HashMap<Ipv4Addr, Mac>,
    held: VecDeque<Held>,
    asked: HashMap<(usize, Ipv4Addr), u64>,
}

/// The ports the fast path switches into; cleared when the router stops,
/// which ends the cycle port → NAT → port.
struct Wiring {
    switch: Arc<Switch>,
    inside: Arc<PortEntry>,
    uplinks: Vec<Arc<PortEntry>>,
}

/// Where a translated packet goes.
enum Out {
    Inside,
    Uplink(usize),
}

/// What a local NI asks of its NAT beyond translation.
#[derive(Debug, Clone, Default)]
pub struct NatOptions {
    /// Largest TCP MSS a SYN through the NAT may announce (the NI's MTU - 40).
    pub mss: Option<u16>,
    /// Static routes whose gateway lies beyond an uplink.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
}

pub struct Nat {
    router_mac: Mac,
    gateway: Ipv4Addr,
    subnet: Ipv4Net,
    options: NatOptions,
    state: Mutex<State>,
    wiring: ArcSwapOption<Wiring>,
    wake: Waker,
    pub counters: NatCounters,
    /// The `host` uplink's data path and its uplink index, if the NI has one.
    host: Option<(usize, Arc<HostLink>)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

pub(super) fn map_proto(p: L4Proto) -> Proto {
    match p {
        L4Proto::Tcp => Proto::Tcp,
        L4Proto::Udp => Proto::Udp,
    }
}

impl Nat {
    pub fn new(
        router_mac: Mac,
        gateway: Ipv4Addr,
        subnet: Ipv4Net,
        uplink_macs: Vec<Mac>,
        maps: Vec<MapRule>,
        options: NatOptions,
    ) -> io::Result<Nat> {
        let reserved = maps.iter().map(|m| (map_proto(m.proto), m.uplink_port));
        let table = NatTable::new(NAT_PORTS, reserved, MAX_SESSIONS);
        let uplinks = uplink_macs
            .into_iter()
            .map(|mac| UplinkState {
                mac,
                view: UplinkView {
                    address: None,
                    gateway: None,
                    healthy: false,
                },
                neighbors: HashMap::new(),
            })
            .collect();
        Ok(Nat {
            router_mac,
            gateway,
            subnet,
            options,
            state: Mutex::new(State {
                table,
                maps,
                uplinks,
                active: None,
                apps: HashMap::new(),
                held: VecDeque::new(),
                asked: HashMap::new(),
            }),
            wiring: ArcSwapOption::empty(),
            wake: Waker::new()?,
            counters: NatCounters::default(),
            host: None,
        })
    }

    /// Carries new flows over the host's stack while uplink `index` (the
    /// `host` one) is active.
    pub fn with_host(mut self, index: usize, link: Arc<HostLink>) -> Nat {
        link.set_maps(&lock(&self.state).maps);
        self.host = Some((index, link));
        self
    }

    /// Connects the fast path to the router's ports.
    pub fn wire(&self, switch: Arc<Switch>, inside: Arc<PortEntry>, uplinks: Vec<Arc<PortEntry>>) {
        self.wiring.store(Some(Arc::new(Wiring {
            switch,
            inside,
            uplinks,
        })));
    }

    pub fn unwire(&self) {
        self.wiring.store(None);
    }

    /// The descriptor that wakes the control thread when packets wait for
    /// a next hop.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.fd()
    }

    pub fn sessions(&self) -> usize {
        lock(&self.state).table.len()
    }

    /// Handles a frame for one of the router's MACs; false: not NAT's,
    /// the control thread takes it.
    pub fn handle(&self, side: Side, pkt: &[u8]) -> bool {
        let mut buf = SCRATCH.with(|c| c.take());
        let done = match side {
            Side::Inside => self.inside(pkt, &mut buf),
            Side::Uplink(i) => self.outside(i, pkt, &mut buf),
        };
        SCRATCH.with(|c| c.set(buf));
        done
    }

    fn drop_with(&self, c: &AtomicU64) -> bool {
        c.fetch_add(1, Relaxed);
        true
    }

    /// A frame from an app to the router's MAC.
    fn inside(&self, pkt: &[u8], buf: &mut Vec<u8>) -> bool {
        let Some(p) = translate::parse(pkt) else {
            return false;
        };
        let t = p.tuple;
        if t.dst.is_broadcast() || t.dst.is_multicast() {
            return false;
        }
        if p.kind == Kind::Flow && self.subnet.contains(&t.dst) && t.dst != self.gateway {
            return false;
        }
        let key = match p.kind {
            Kind::Flow => t,
            Kind::IcmpError { inner, .. } => inner.swap(),
        };
        let mut st = lock(&self.state);
        // Only an app's own address is translated: no app takes over
        // another's sessions by forging its source.
        let src_mac = translate::src_mac(pkt);
        let to_router = t.dst == self.gateway || t.dst == METADATA_IP;
        if st.apps.get(&t.src).copied() != src_mac {
            if to_router {
                return false;
            }
            return self.drop_with(&self.counters.nat_spoofed);
        }
        let now = now_secs() as u64;
        let (to, via) = match st.table.lookup(&key, p.tcp_flags, now) {
            Some(found) => found,
            None => {
                if let Some((index, link)) = &self.host
                    && p.kind == Kind::Flow
                    && let Some(mac) = src_mac
                {
                    // Flows over the host's stack stay there (a port map's
                    // client on the host is the gateway); new ones go there
                    // while it is the active uplink.
                    let open = !to_router && st.active == Some(*index);
                    drop(st);
                    if link.handle(pkt, &p, mac, open) {
                        return true;
                    }
                    if open {
                        return self.drop_with(&self.counters.nat_dropped);
                    }
                    if to_router {
                        return false;
                    }
                    st = lock(&self.state);
                }
                if to_router {
                    return false;
                }
                let rw = match self.new_inside(&st, &p) {
                    Ok(Some(rw)) => rw,
                    Ok(None) => return false,
                    Err(counter) => return self.drop_with(counter),
                };
                match st.table.create(key, rw, p.tcp_flags, now) {
                    Ok(x) => (x, rw.via),
                    Err(NatError::TableFull) => {
                        return self.drop_with(&self.counters.nat_table_full);
                    }
                    Err(NatError::QuotaExceeded) => {
                        return self.drop_with(&self.counters.nat_app_quota);
                    }
                    Err(_) => return self.drop_with(&self.counters.nat_dropped),
                }
            }
        };
        self.forward(st, &p, pkt, buf, to, via)
    }

    /// How a first packet from an app is translated: source NAT out of the
    /// active uplink, or a port map of an uplink address (hairpin). None:
    /// for the control thread.
    fn new_inside(&self, st: &State, p: &translate::Parsed) -> Result<Option<Rewrite>, &AtomicU64> {
        let t = p.tuple;
        if p.kind != Kind::Flow
            || (t.proto == Proto::Icmp && t.sport == 0)
            || (t.proto == Proto::Tcp && p.tcp_flags & TCP_RST != 0)
        {
            return Err(&self.counters.nat_dropped);
        }
        if let Some(i) = st
            .uplinks
            .iter()
            .position(|u| u.view.address.map(|a| a.addr()) == Some(t.dst))
        {
            return Ok(self.port_map(st, &t).map(|dst| Rewrite {
                src: Some(self.gateway),
                dst: Some(dst),
                via: i,
            }));
        }
        let active = st
            .active
            .and_then(|i| Some((i, st.uplinks.get(i)?.view.address?)));
        match active {
            Some((i, addr)) => Ok(Some(Rewrite {
                src: Some(addr.addr()),
                dst: None,
                via: i,
            })),
            None => Err(&self.counters.nat_no_uplink),
        }
    }

    /// The app address and port a port map sends `t` to.
    fn port_map(&self, st: &State, t: &crate::services::nat::Tuple) -> Option<(Ipv4Addr, u16)> {
        let m = st
            .maps
            .iter()
            .find(|m| map_proto(m.proto) == t.proto && m.uplink_port == t.dport)?;
        let ip = st
            .apps
            .iter()
            .find(|(_, mac)| **mac == m.app_mac)
            .map(|(ip, _)| *ip)?;
        Some((ip, m.app_port))
    }

    /// A frame that reached the router's MAC on uplink `i`.
    fn outside(&self, i: usize, pkt: &[u8], buf: &mut Vec<u8>) -> bool {
        if let Some((ip, mac)) = translate::arp_sender(pkt) {
            if let Some(u) = lock(&self.state).uplinks.get_mut(i) {
                u.learn(ip, mac);
            }
            return false;
        }
        let Some(p) = translate::parse(pkt) else {
            return false;
        };
        let t = p.tuple;
        let mut st = lock(&self.state);
        let Some(u) = st.uplinks.get_mut(i) else {
            return false;
        };
        if u.view.address.map(|a| a.addr()) != Some(t.dst) {
            return false;
        }
        if let Some(mac) = translate::src_mac(pkt) {
            u.learn(t.src, mac);
        }
        let key = match p.kind {
            Kind::Flow => t,
            Kind::IcmpError { inner, .. } => inner.swap(),
        };
        let now = now_secs() as u64;
        let (to, via) = match st.table.lookup(&key, p.tcp_flags, now) {
            Some(found) => found,
            None => {
                if p.kind != Kind::Flow || t.proto == Proto::Icmp {
                    return false;
                }
                let Some(dst) = self.port_map(&st, &t) else {
                    return false;
                };
                let rw = Rewrite {
                    src: None,
                    dst: Some(dst),
                    via: i,
                };
                match st.table.create(key, rw, p.tcp_flags, now) {
                    Ok(x) => (x, i),
                    Err(NatError::TableFull) => {
                        return self.drop_with(&self.counters.nat_table_full);
                    }
                    Err(_) => return self.drop_with(&self.counters.nat_dropped),
                }
            }
        };
        self.forward(st, &p, pkt, buf, to, via)
    }

    /// Picks the port and next hop of a packet translated to `to` (under
    /// the lock), then copies and rewrites it and switches it there (without).
    fn forward(
        &self,
        st: std::sync::MutexGuard<'_, State>,
        p: &translate::Parsed,
        pkt: &[u8],
        buf: &mut Vec<u8>,
        to: crate::services::nat::Tuple,
        via: usize,
    ) -> bool {
        let (to, dst) = match p.kind {
            Kind::Flow => (to, to.dst),
            Kind::IcmpError { .. } => (to.swap(), to.swap().src),
        };
        // (port, source MAC, next hop's MAC, or the hop to resolve first)
        let (out, src, next) = if self.subnet.contains(&dst) {
            let Some(mac) = st.apps.get(&dst).copied() else {
                return self.drop_with(&self.counters.nat_no_neighbor);
            };
            (Out::Inside, self.router_mac, Ok(mac))
        } else {
            let Some(u) = st.uplinks.get(via) else {
                return self.drop_with(&self.counters.nat_no_uplink);
            };
            let Some(hop) = u.hop(dst, &self.options.routes) else {
                return self.drop_with(&self.counters.nat_no_uplink);
            };
            let next = u.neighbors.get(&hop).copied().ok_or(hop);
            (Out::Uplink(via), u.mac, next)
        };
        drop(st);
        buf.clear();
        buf.extend_from_slice(pkt);
        if !translate::rewrite(buf, p, &to) {
            return self.drop_with(&self.counters.nat_dropped);
        }
        if let Some(mss) = self.options.mss {
            translate::clamp_mss(buf, p, mss);
        }
        let mac = match next {
            Ok(mac) => mac,
            Err(hop) => return self.hold(via, hop, src, buf),
        };
        translate::set_macs(buf, src, mac);
        let c = match out {
            Out::Inside => &self.counters.nat_in,
            Out::Uplink(_) => &self.counters.nat_out,
        };
        c.fetch_add(1, Relaxed);
        self.send(out, buf);
        true
    }

    /// Parks a translated packet until the control thread has resolved its
    /// next hop on uplink `via`.
    fn hold(&self, via: usize, hop: Ipv4Addr, src: Mac, buf: &mut [u8]) -> bool {
        translate::set_macs(buf, src, Mac::BROADCAST);
        let mut st = lock(&self.state);
        if st.held.len() >= PENDING {
            return self.drop_with(&self.counters.nat_no_neighbor);
        }
        st.held.push_back(Held {
            via,
            hop,
            pkt: buf.to_vec(),
            since: now_ms(),
        });
        self.wake.ring();
        true
    }

    /// Hands a translated packet to the switch, as received on the
    /// router's port `out` (switched after the frame being switched now,
    /// not inside it); takes `pkt`'s buffer.
    fn send(&self, out: Out, pkt: &mut Vec<u8>) {
        let w = self.wiring.load();
        let Some(w) = w.as_ref() else { return };
        let entry = match out {
            Out::Inside => Some(&w.inside),
            Out::Uplink(i) => w.uplinks.get(i),
        };
        if let Some(e) = entry {
            w.switch.inject(e, pkt, now_secs());
        }
    }

    /// Control thread, once a second: the uplinks as they are now, which
    /// one is active, idle sessions. Sessions of an uplink that went
    /// unhealthy or changed its address are dropped.
    pub fn tick(&self, views: &[UplinkView], active: Option<usize>) {
        let mut st = lock(&self.state);
        let mut dead = vec![false; st.uplinks.len()];
        for (i, (u, v)) in st.uplinks.iter_mut().zip(views).enumerate() {
            if u.view.address != v.address {
                u.neighbors.clear();
                dead[i] = true;
            }
            if !v.healthy {
                dead[i] = true;
            }
            u.view = *v;
        }
        st.active = active;
        let gone = st
            .table
            .remove_via(|via| dead.get(via).copied().unwrap_or(true));
        let gone = gone + st.table.expire(now_secs() as u64);
        self.counters
            .nat_sessions_ended
            .fetch_add(gone as u64, Relaxed);
    }

    /// The port maps of the NI's app interfaces now. Sessions of a removed
    /// map end when they go idle.
    pub fn set_maps(&self, maps: Vec<MapRule>) {
        let mut st = lock(&self.state);
        st.table
            .set_reserved(maps.iter().map(|m| (map_proto(m.proto), m.uplink_port)));
        if let Some((_, link)) = &self.host {
            link.set_maps(&maps);
        }
        st.maps = maps;
    }

    /// The apps' current addresses (leases and fixed IPs).
    pub fn set_apps(&self, apps: impl IntoIterator<Item = (Ipv4Addr, Mac)>) {
        let apps: HashMap<Ipv4Addr, Mac> = apps.into_iter().collect();
        if let Some((_, link)) = &self.host {
            link.set_apps(&apps);
        }
        lock(&self.state).apps = apps;
    }

    /// Control thread, on every round: sends held packets whose next hop
    /// is now known, asks (ARP) for the others once a second, and gives up
    /// on them after a few seconds.
    pub fn resolve(&self) {
        self.wake.clear();
        let now = now_ms();
        let mut ready = Vec::new();
        let mut ask = Vec::new();
        {
            let mut st = lock(&self.state);
            let st = &mut *st;
            let held = std::mem::take(&mut st.held);
            for mut h in held {
                let Some(u) = st.uplinks.get(h.via) else {
                    continue;
                };
                if let Some(mac) = u.neighbors.get(&h.hop) {
                    translate::set_macs(&mut h.pkt, u.mac, *mac);
                    ready.push((h.via, h.pkt));
                } else if now.saturating_sub(h.since) > PENDING_MS {
                    self.counters.nat_no_neighbor.fetch_add(1, Relaxed);
                } else {
                    let last = st.asked.get(&(h.via, h.hop)).copied().unwrap_or(0);
                    if now.saturating_sub(last) >= 1000
                        && let Some(a) = u.view.address
                    {
                        st.asked.insert((h.via, h.hop), now);
                        ask.push((h.via, translate::arp_request(u.mac, a.addr(), h.hop)));
                    }
                    st.held.push_back(h);
                }
            }
            st.asked.retain(|_, t| now.saturating_sub(*t) < PENDING_MS);
        }
        for (via, mut pkt) in ask {
            self.send(Out::Uplink(via), &mut pkt);
        }
        for (via, mut pkt) in ready {
            self.counters.nat_out.fetch_add(1, Relaxed);
            self.send(Out::Uplink(via), &mut pkt);
        }
    }
}
