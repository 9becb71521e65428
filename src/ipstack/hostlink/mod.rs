//! The `host` uplink's data path (SPEC §5.2): an app's TCP, UDP and ICMP
//! echo beyond the gateway are carried over sockets of the host, so the
//! host's routing table picks the way out (Wi-Fi, LTE, a VPN) and no second
//! MAC is needed. The NAT fast path hands it the apps' packets on the
//! receiving thread (`handle`); one thread per NI waits on the host sockets
//! and sends the answers to the apps as if from a NAT. Flows are bounded
//! per app and per NI, expire like NAT sessions, and never reach the host
//! itself. Port maps listen on the host and open flows towards the app.

mod dgram;
pub mod frames;
mod local;
mod maps;
mod sock;
pub mod tcp;

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use super::napt::{MapRule, map_proto};
use super::translate::Parsed;
use crate::clock::mono_ms;
use crate::config::Mac;
use crate::ports::epoll::{self, Epoll};
use crate::ports::waker::Waker;
use crate::services::nat::{Proto, Timeouts};
use crate::switch::{PortEntry, Switch, now_secs};
use crate::sync::lock;
use dgram::DgramFlow;
use frames::Ends;
use maps::{Listeners, MAP_TOKENS};
use tcp::{Phase, Segment, TcpFlow};

pub use sock::Sock;

/// An app's ACL rule that allows one of the host's own addresses over the
/// `host` uplink, which refuses the host otherwise: its network lies
/// inside the host's, so a rule for everything (0.0.0.0/0) never counts.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAllow {
    pub app_mac: Mac,
    pub net: ipnet::Ipv4Net,
    pub protocol: Option<u8>,
    /// The app's port and the host's, when the rule names them.
    pub lport: Option<u16>,
    pub fport: Option<u16>,
}

/// Flows one app may hold, of which TCP connects under way.
pub const APP_FLOWS: usize = 1024;
pub const APP_CONNECTING: usize = 64;
/// Flows one NI may hold.
pub const NI_FLOWS: usize = 8192;
/// Seconds a TCP connect may take.
const CONNECT_SECS: u64 = 10;
/// Seconds a half-closed TCP connection lives without traffic.
const CLOSING_SECS: u64 = 60;
const WAKE: u64 = u64::MAX;
/// Flow sockets open in the whole process, and how many may be: the
/// descriptor limit less a reserve for everything else.
static OPEN_SOCKETS: AtomicUsize = AtomicUsize::new(0);
static SOCKET_CAP: AtomicUsize = AtomicUsize::new(0);

/// Counters shown in status.
#[derive(Default)]
pub struct HostCounters {
    pub host_tcp_opened: AtomicU64,
    pub host_udp_opened: AtomicU64,
    pub host_echo_opened: AtomicU64,
    /// A new flow refused: the app or the NI holds its quota.
    pub host_quota: AtomicU64,
    /// A flow to the host itself (loopback, its own addresses) refused.
    pub host_local_refused: AtomicU64,
    /// A host socket could not be made (descriptors, permissions).
    pub host_socket_failed: AtomicU64,
    pub host_flows_ended: AtomicU64,
    pub host_dropped: AtomicU64,
}

impl HostCounters {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("host_tcp_opened", self.host_tcp_opened.load(Relaxed)),
            ("host_udp_opened", self.host_udp_opened.load(Relaxed)),
            ("host_echo_opened", self.host_echo_opened.load(Relaxed)),
            ("host_quota", self.host_quota.load(Relaxed)),
            ("host_local_refused", self.host_local_refused.load(Relaxed)),
            ("host_socket_failed", self.host_socket_failed.load(Relaxed)),
            ("host_flows_ended", self.host_flows_ended.load(Relaxed)),
            ("host_dropped", self.host_dropped.load(Relaxed)),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    proto: Proto,
    app: Ipv4Addr,
    aport: u16,
    remote: Ipv4Addr,
    rport: u16,
}

enum Flow {
    Tcp(TcpFlow),
    Dgram(DgramFlow),
}

impl Flow {
    /// The socket to wait on, unless the flow shares a port map's.
    fn fd(&self) -> Option<i32> {
        match self {
            Flow::Tcp(t) => Some(t.sock.fd()),
            Flow::Dgram(d) => d.owns_socket().then(|| d.sock.fd()),
        }
    }
}

#[derive(Default)]
struct Flows {
    by_key: HashMap<Key, u64>,
    list: HashMap<u64, (Key, Flow)>,
    next: u64,
    per_app: HashMap<Ipv4Addr, usize>,
    /// The prefixes that are the host itself, refreshed every second.
    host: Vec<ipnet::Ipv4Net>,
    /// The apps' addresses by MAC, for port maps.
    apps: HashMap<Mac, Ipv4Addr>,
    /// The apps' rules that allow the host itself.
    allow: Vec<HostAllow>,
    listeners: Listeners,
}

impl Flows {
    /// Whether a rule of the app names this flow's destination on the host.
    fn allowed(&self, key: &Key, app_mac: Mac) -> bool {
        let proto = key.proto.number();
        let inside_host = |net: &ipnet::Ipv4Net| {
            (self.host.iter())
                .any(|h| h.prefix_len() <= net.prefix_len() && h.contains(&net.network()))
        };
        self.allow.iter().any(|a| {
            a.app_mac == app_mac
                && a.net.contains(&key.remote)
                && a.protocol.is_none_or(|p| p == proto)
                && a.lport.is_none_or(|p| p == key.aport)
                && a.fport.is_none_or(|p| p == key.rport)
                && inside_host(&a.net)
        })
    }

    fn connecting(&self, app: Ipv4Addr) -> usize {
        (self.list.values())
            .filter(|(k, f)| k.app == app && matches!(f, Flow::Tcp(t) if t.connecting()))
            .count()
    }

    fn remove(&mut self, token: u64) -> bool {
        let Some((key, flow)) = self.list.remove(&token) else {
            return false;
        };
        if flow.fd().is_some() {
            OPEN_SOCKETS.fetch_sub(1, Relaxed);
        }
        self.by_key.remove(&key);
        if let Some(n) = self.per_app.get_mut(&key.app) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_app.remove(&key.app);
            }
        }
        true
    }
}

struct Wiring {
    switch: Arc<Switch>,
    inside: Arc<PortEntry>,
}

pub struct HostLink {
    router_mac: Mac,
    /// The NI's gateway: what a port map's client on the host looks like.
    gateway: Ipv4Addr,
    /// The largest segment an app gets (the NI's MTU - 40).
    mss: u16,
    timeouts: Timeouts,
    flows: Mutex<Flows>,
    epoll: Epoll,
    wake: Waker,
    stop: AtomicBool,
    /// Bytes of the apps' data held for full sockets, all flows together.
    held: Arc<AtomicUsize>,
    /// Said once that ICMP echo has no socket here.
    said_no_echo: AtomicBool,
    wiring: ArcSwapOption<Wiring>,
    pub counters: HostCounters,
}

impl HostLink {
    pub fn new(router_mac: Mac, gateway: Ipv4Addr, mtu: u16) -> io::Result<Arc<HostLink>> {
        raise_fd_limit();
        let epoll = Epoll::new()?;
        let wake = Waker::new()?;
        epoll.add(wake.fd(), WAKE, epoll::IN)?;
        let flows = Flows {
            host: local::host_prefixes().unwrap_or_else(local::loopback),
            ..Flows::default()
        };
        Ok(Arc::new(HostLink {
            router_mac,
            gateway,
            mss: mtu.saturating_sub(40).max(536),
            timeouts: Timeouts::default(),
            flows: Mutex::new(flows),
            epoll,
            wake,
            stop: AtomicBool::new(false),
            held: Arc::new(AtomicUsize::new(0)),
            said_no_echo: AtomicBool::new(false),
            wiring: ArcSwapOption::empty(),
            counters: HostCounters::default(),
        }))
    }

    pub fn wire(&self, switch: Arc<Switch>, inside: Arc<PortEntry>) {
        self.wiring.store(Some(Arc::new(Wiring { switch, inside })));
    }

    /// Flows open now.
    pub fn sessions(&self) -> usize {
        lock(&self.flows).list.len()
    }

    /// Hands frames for the apps to the switch, as received on the router's
    /// port (after the frame being switched, when called while switching one).
    fn send(&self, frames: Vec<Vec<u8>>) {
        let w = self.wiring.load();
        let Some(w) = w.as_ref() else { return };
        for mut f in frames {
            w.switch.inject(&w.inside, &mut f, now_secs());
        }
    }

    fn count(&self, c: &AtomicU64) -> bool {
        c.fetch_add(1, Relaxed);
        true
    }

    /// An app's packet from `app_mac` (its address checked by the NAT):
    /// carried on its flow, or, with `open`, on a new one. False: not a
    /// flow of ours and none was opened.
    pub fn handle(&self, pkt: &[u8], p: &Parsed, app_mac: Mac, open: bool) -> bool {
        let t = p.tuple;
        let key = Key {
            proto: t.proto,
            app: t.src,
            aport: t.sport,
            remote: t.dst,
            rport: t.dport,
        };
        let (l4, end) = p.l4_span();
        let now = now_secs() as u64;
        let mut out = Vec::new();
        let mut flows = lock(&self.flows);
        let token = match flows.by_key.get(&key) {
            Some(t) => *t,
            None if !open => return false,
            None => match self.open(&mut flows, key, (pkt, (l4, end)), app_mac, now, &mut out) {
                Some(t) => t,
                None => {
                    self.send(out);
                    drop(flows);
                    return true;
                }
            },
        };
        let done = match flows.list.get_mut(&token) {
            Some((_, flow)) => self.carry(flow, key.proto, pkt, (l4, end), now, &mut out),
            None => false,
        };
        if done && flows.remove(token) {
            self.counters.host_flows_ended.fetch_add(1, Relaxed);
        }
        // Sent under the lock: a flow's frames leave in the order they were
        // made, whichever thread made them.
        self.send(out);
        drop(flows);
        true
    }

    /// An app's packet onto its flow; true when the flow is done.
    fn carry(
        &self,
        flow: &mut Flow,
        proto: Proto,
        pkt: &[u8],
        (l4, end): (usize, usize),
        now: u64,
        out: &mut Vec<Vec<u8>>,
    ) -> bool {
        match flow {
            Flow::Tcp(f) => {
                match Segment::parse(pkt, (l4, end)) {
                    Some(s) => f.segment(&s, now, out),
                    None => drop(self.count(&self.counters.host_dropped)),
                }
                f.phase == Phase::Done
            }
            Flow::Dgram(d) => {
                let data = match proto {
                    Proto::Udp => pkt.get(l4 + 8..end),
                    _ => pkt.get(l4..end),
                };
                let sent = data.map(|data| d.send(data, now));
                if !matches!(sent, Some(Ok(()))) {
                    self.count(&self.counters.host_dropped);
                }
                // A refused datagram leaves an error the socket reports.
                matches!(sent, Some(Err(e)) if e.kind() != io::ErrorKind::WouldBlock)
                    && d.owns_socket()
                    && d.drain(now, self.mtu(), out).is_err()
            }
        }
    }

    /// A new flow for an app's first packet; None when refused (any
    /// answer to the app is in `out`).
    fn open(
        &self,
        flows: &mut Flows,
        key: Key,
        (pkt, span): (&[u8], (usize, usize)),
        app_mac: Mac,
        now: u64,
        out: &mut Vec<Vec<u8>>,
    ) -> Option<u64> {
        let c = &self.counters;
        if key.proto == Proto::Icmp && key.aport == 0 {
            // An echo reply (or anything but a request) opens nothing.
            self.count(&c.host_dropped);
            return None;
        }
        if local::refused(key.remote, &flows.host) && !flows.allowed(&key, app_mac) {
            self.count(&c.host_local_refused);
            return None;
        }
        let held = flows.per_app.get(&key.app).copied().unwrap_or(0);
        // Only an app holding that many flows can have that many connecting.
        let connecting = key.proto == Proto::Tcp
            && held >= APP_CONNECTING
            && flows.connecting(key.app) >= APP_CONNECTING;
        if held >= APP_FLOWS || flows.list.len() >= NI_FLOWS || connecting {
            self.count(&c.host_quota);
            return None;
        }
        let ends = Ends {
            router_mac: self.router_mac,
            app_mac,
            remote: (key.remote, key.rport),
            app: (key.app, key.aport),
        };
        let made = match key.proto {
            Proto::Tcp => {
                let s = Segment::parse(pkt, span)?;
                if s.flags & (frames::SYN | frames::ACK | frames::RST) != frames::SYN {
                    // Not the start of a connection: the app hears a reset.
                    if s.flags & frames::RST == 0 {
                        out.push(stray_reset(&ends, &s));
                    }
                    return None;
                }
                TcpFlow::open(ends, &s, self.mss, now, self.held.clone()).map(Flow::Tcp)
            }
            Proto::Udp => DgramFlow::udp(ends, now).map(Flow::Dgram),
            Proto::Icmp => DgramFlow::echo(ends, now).map(Flow::Dgram),
        };
        let flow = match made {
            Ok(f) => f,
            Err(e) => {
                self.count(&c.host_socket_failed);
                if key.proto == Proto::Icmp {
                    self.no_echo(&e);
                }
                return None;
            }
        };
        self.insert(flows, key, flow)
    }

    /// Adds a flow and waits on its socket; its token.
    fn insert(&self, flows: &mut Flows, key: Key, flow: Flow) -> Option<u64> {
        let c = &self.counters;
        if self.stop.load(Relaxed) {
            // Stopped: its flows were closed, and no new one may start.
            return None;
        }
        let token = flows.next;
        flows.next += 1;
        // Datagram sockets are only read; TCP ones are written too.
        let events = match flow {
            Flow::Tcp(_) => epoll::IN | epoll::OUT | epoll::RDHUP | epoll::ET,
            Flow::Dgram(_) => epoll::IN | epoll::ET,
        };
        if let Some(fd) = flow.fd() {
            if OPEN_SOCKETS.load(Relaxed) >= SOCKET_CAP.load(Relaxed) {
                self.count(&c.host_quota);
                return None;
            }
            if self.epoll.add(fd, token, events).is_err() {
                self.count(&c.host_socket_failed);
                return None;
            }
            OPEN_SOCKETS.fetch_add(1, Relaxed);
        }
        let opened = match key.proto {
            Proto::Tcp => &c.host_tcp_opened,
            Proto::Udp => &c.host_udp_opened,
            Proto::Icmp => &c.host_echo_opened,
        };
        opened.fetch_add(1, Relaxed);
        flows.by_key.insert(key, token);
        flows.list.insert(token, (key, flow));
        *flows.per_app.entry(key.app).or_default() += 1;
        Some(token)
    }

    /// The port maps of the NI's apps now.
    pub fn set_maps(&self, maps: &[MapRule]) {
        let mut flows = lock(&self.flows);
        let gone = flows.listeners.set(maps, &self.epoll);
        let ended: Vec<u64> = (flows.list.iter())
            .filter(|(_, (_, f))| {
                matches!(f, Flow::Dgram(d) if gone.iter().any(|g| Arc::ptr_eq(g, &d.sock)))
            })
            .map(|(t, _)| *t)
            .collect();
        for t in ended {
            flows.remove(t);
        }
    }

    /// The apps' rules that allow the host itself now.
    pub fn set_allow(&self, allow: Vec<HostAllow>) {
        lock(&self.flows).allow = allow;
    }

    /// The apps' addresses now (leases and fixed IPs).
    pub fn set_apps(&self, apps: &HashMap<Ipv4Addr, Mac>) {
        lock(&self.flows).apps = apps.iter().map(|(ip, mac)| (*mac, *ip)).collect();
    }

    /// Connections and datagrams that reached a port map's listener.
    fn mapped(&self, token: u64) {
        let now = now_secs() as u64;
        let mut out = Vec::new();
        let mut flows = lock(&self.flows);
        let Some(l) = flows.listeners.get(token) else {
            return;
        };
        let (rule, listener) = (l.rule.clone(), l.sock.clone());
        // One datagram at most; a TCP listener reads none.
        let mut buf = match rule.proto {
            crate::config::L4Proto::Udp => vec![0u8; 65536],
            crate::config::L4Proto::Tcp => Vec::new(),
        };
        let Some(app) = flows.apps.get(&rule.app_mac).copied() else {
            // The app has no address yet: nothing to forward to.
            let refused = loop {
                let r = match rule.proto {
                    crate::config::L4Proto::Tcp => listener.accept().map(drop),
                    crate::config::L4Proto::Udp => listener.recv_from(&mut buf).map(drop),
                };
                if let Err(e) = r {
                    break e;
                }
            };
            if refused.kind() != io::ErrorKind::WouldBlock {
                flows.listeners.pause(token, &self.epoll);
            }
            return;
        };
        loop {
            let (client, data, n) = match rule.proto {
                crate::config::L4Proto::Tcp => match listener.accept() {
                    Ok((s, peer)) => (peer, Some(s), 0),
                    Err(e) => {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            // Out of descriptors: wait for the next second.
                            self.count(&self.counters.host_socket_failed);
                            flows.listeners.pause(token, &self.epoll);
                        }
                        break;
                    }
                },
                crate::config::L4Proto::Udp => match listener.recv_from(&mut buf) {
                    Ok((n, peer)) => (peer, None, n),
                    Err(_) => break,
                },
            };
            // A client on the host itself is the gateway to the app, which
            // could not answer the host's own address.
            let seen = match local::refused(*client.ip(), &flows.host) {
                true => self.gateway,
                false => *client.ip(),
            };
            let key = Key {
                proto: map_proto(rule.proto),
                app,
                aport: rule.app_port,
                remote: seen,
                rport: client.port(),
            };
            let ends = Ends {
                router_mac: self.router_mac,
                app_mac: rule.app_mac,
                remote: (seen, client.port()),
                app: (app, rule.app_port),
            };
            self.map_flow(
                &mut flows,
                key,
                ends,
                (client, data, &buf[..n]),
                &listener,
                now,
                &mut out,
            );
        }
        // Sent under the lock: a flow's frames leave in the order they were
        // made, whichever thread made them.
        self.send(out);
        drop(flows);
    }

    /// A port map's new connection, or a datagram on its flow.
    #[allow(clippy::too_many_arguments)]
    fn map_flow(
        &self,
        flows: &mut Flows,
        key: Key,
        ends: Ends,
        (client, accepted, data): (std::net::SocketAddrV4, Option<Sock>, &[u8]),
        listener: &Arc<Sock>,
        now: u64,
        out: &mut Vec<Vec<u8>>,
    ) {
        if let Some(&token) = flows.by_key.get(&key) {
            if let Some((_, Flow::Dgram(d))) = flows.list.get_mut(&token) {
                d.last_seen = now;
                frames::udp(&ends, data, self.mtu(), out);
            }
            return;
        }
        let app_flows = flows.per_app.get(&key.app).copied().unwrap_or(0);
        if flows.list.len() >= NI_FLOWS || app_flows >= APP_FLOWS {
            self.count(&self.counters.host_quota);
            return;
        }
        let flow = match accepted {
            Some(s) => Flow::Tcp(TcpFlow::accepted(
                ends,
                s,
                (self.mss, now),
                self.held.clone(),
                out,
            )),
            None => {
                frames::udp(&ends, data, self.mtu(), out);
                Flow::Dgram(DgramFlow::mapped(ends, listener.clone(), client, now))
            }
        };
        self.insert(flows, key, flow);
    }

    /// Starts the thread that waits on the host sockets.
    pub fn start(self: &Arc<Self>, ni: &str) -> io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        std::thread::Builder::new()
            .name(format!("hostlink-{ni}"))
            .spawn(move || me.run())
    }

    /// Ends the thread; the flows' sockets close with the last reference.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        self.wake.ring();
        self.wiring.store(None);
        let mut flows = lock(&self.flows);
        let tokens: Vec<u64> = flows.list.keys().copied().collect();
        for t in tokens {
            flows.remove(t);
        }
        flows.listeners.clear(&self.epoll);
    }

    /// ICMP echo has no socket here: said once, with what is missing.
    pub fn no_echo(&self, e: &io::Error) {
        if !self.said_no_echo.swap(true, Relaxed) {
            tracing::warn!(error = %e, "host uplink: no ICMP echo socket; allow ping sockets (sysctl net.ipv4.ping_group_range) or give niswitch CAP_NET_RAW");
        }
    }

    /// The NI's MTU: the largest packet an app gets.
    fn mtu(&self) -> usize {
        self.mss as usize + 40
    }

    fn run(&self) {
        let mut events = Vec::new();
        let mut last_timers = 0;
        while !self.stop.load(Relaxed) {
            self.epoll.wait(&mut events, 100);
            for &(token, ev) in &events {
                if token == WAKE {
                    self.wake.clear();
                    continue;
                }
                let guarded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match token >= MAP_TOKENS {
                        true => self.mapped(token),
                        false => self.event(token, ev),
                    }
                }));
                if guarded.is_err() {
                    self.counters.host_dropped.fetch_add(1, Relaxed);
                    tracing::error!("host uplink: a flow failed; dropped");
                    lock(&self.flows).remove(token);
                }
            }
            let now = mono_ms();
            if now.saturating_sub(last_timers) >= 100 {
                last_timers = now;
                self.timers(now);
            }
        }
    }

    /// A host socket is ready.
    fn event(&self, token: u64, ev: u32) {
        let now = now_secs() as u64;
        let mut out = Vec::new();
        let mut flows = lock(&self.flows);
        let done = match flows.list.get_mut(&token) {
            Some((_, Flow::Tcp(f))) => {
                if ev & epoll::OUT != 0 {
                    f.writable(&mut out);
                }
                if ev & (epoll::IN | epoll::RDHUP) != 0 {
                    f.push(&mut out);
                }
                if ev & epoll::ERR != 0 && f.phase != Phase::Done {
                    f.host_closed(true, &mut out);
                }
                f.phase == Phase::Done
            }
            Some((_, Flow::Dgram(d))) => d.drain(now, self.mtu(), &mut out).is_err(),
            None => false,
        };
        if done && flows.remove(token) {
            self.counters.host_flows_ended.fetch_add(1, Relaxed);
        }
        // Sent under the lock: a flow's frames leave in the order they were
        // made, whichever thread made them.
        self.send(out);
        drop(flows);
    }

    /// Retransmissions, and once a second: idle flows end, the host's
    /// addresses are read again.
    fn timers(&self, now_ms: u64) {
        let mut out = Vec::new();
        let mut flows = lock(&self.flows);
        let mut gone = Vec::new();
        for (token, (_, f)) in flows.list.iter_mut() {
            if let Flow::Tcp(t) = f
                && !t.timer(now_ms, &mut out)
            {
                gone.push(*token);
            }
        }
        for t in gone {
            flows.remove(t);
            self.counters.host_flows_ended.fetch_add(1, Relaxed);
        }
        // Sent under the lock: a flow's frames leave in the order they were
        // made, whichever thread made them.
        self.send(out);
        drop(flows);
    }

    /// Once a second, from the router: idle flows end, and every flow
    /// ends while the uplink is unhealthy.
    pub fn tick(&self, healthy: bool) {
        let now = now_secs() as u64;
        let mut out = Vec::new();
        // Read before the lock (a netlink dump): workers wait on it.
        let fresh = local::host_prefixes();
        let mut flows = lock(&self.flows);
        // When they cannot be read, the last ones stand.
        if let Some(h) = fresh {
            flows.host = h;
        }
        flows.listeners.resume(&self.epoll);
        let t = &self.timeouts;
        let expired: Vec<u64> = (flows.list.iter_mut())
            .filter_map(|(token, (key, f))| {
                let (idle, limit) = match f {
                    Flow::Tcp(tf) => match tf.phase {
                        // A retransmitted SYN does not extend a connect.
                        Phase::Connecting | Phase::SynSent => {
                            (now.saturating_sub(tf.opened), CONNECT_SECS)
                        }
                        Phase::Open if tf.half_closed() => {
                            (now.saturating_sub(tf.last_seen), CLOSING_SECS)
                        }
                        _ => (now.saturating_sub(tf.last_seen), t.tcp_established),
                    },
                    Flow::Dgram(d) => {
                        let limit = if key.proto == Proto::Udp {
                            t.udp
                        } else {
                            t.icmp
                        };
                        (now.saturating_sub(d.last_seen), limit)
                    }
                };
                if idle < limit && healthy {
                    return None;
                }
                if let Flow::Tcp(tf) = f {
                    tf.reset_app(&mut out);
                }
                Some(*token)
            })
            .collect();
        for token in expired {
            flows.remove(token);
            self.counters.host_flows_ended.fetch_add(1, Relaxed);
        }
        // Sent under the lock: a flow's frames leave in the order they were
        // made, whichever thread made them.
        self.send(out);
        drop(flows);
    }
}

/// A reset for a segment that belongs to no connection (RFC 793).
fn stray_reset(e: &Ends, s: &Segment) -> Vec<u8> {
    let h = match s.flags & frames::ACK {
        0 => frames::TcpHead {
            seq: 0,
            ack: s
                .seq
                .wrapping_add(s.payload.len() as u32 + (s.flags & frames::FIN) as u32),
            flags: frames::RST | frames::ACK,
            window: 0,
            opts: &[],
        },
        _ => frames::TcpHead {
            seq: s.ack,
            ack: 0,
            flags: frames::RST,
            window: 0,
            opts: &[],
        },
    };
    frames::tcp_control(e, &h)
}

/// Flows each take a descriptor: the soft limit goes up to the hard one.
fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
            }
        }
    }
    // A reserve of 512 descriptors stays for ports, TAPs and the rest.
    let cap = (l.rlim_cur as usize).saturating_sub(512).max(64);
    SOCKET_CAP.store(cap, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(remote: [u8; 4], rport: u16) -> Key {
        Key {
            proto: Proto::Tcp,
            app: Ipv4Addr::new(10, 0, 0, 5),
            aport: 40000,
            remote: Ipv4Addr::from(remote),
            rport,
        }
    }

    #[test]
    fn only_a_rule_that_names_the_host_lets_an_app_reach_it() {
        let app = Mac([2, 0, 0, 0, 0, 1]);
        let rule = |net: &str, fport| HostAllow {
            app_mac: app,
            net: net.parse().unwrap(),
            protocol: Some(6),
            lport: None,
            fport,
        };
        let flows = Flows {
            host: vec![
                "192.168.1.20/32".parse().unwrap(),
                "127.0.0.0/8".parse().unwrap(),
            ],
            allow: vec![rule("192.168.1.20/32", Some(8080)), rule("0.0.0.0/0", None)],
            ..Flows::default()
        };
        assert!(flows.allowed(&key([192, 168, 1, 20], 8080), app));
        // Another port, another app, or a rule for everything: not named.
        assert!(!flows.allowed(&key([192, 168, 1, 20], 22), app));
        assert!(!flows.allowed(&key([192, 168, 1, 20], 8080), Mac([2, 0, 0, 0, 0, 9])));
        assert!(!flows.allowed(&key([127, 0, 0, 1], 8080), app));
    }
}
