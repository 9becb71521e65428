//! One local NI's router: its control thread feeds frames for the router to
//! the DHCP server or to smoltcp, answers DNS on the gateway address (relaying
//! what is not local to the upstream servers), keeps the lease table on disk,
//! and switches every frame it sends into the NI's domain.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use smoltcp::iface::{Config as IfConfig, Interface, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

use super::device::QueueDevice;
use super::napt::{MapRule, Nat, Side, UplinkView};
use super::port::RouterPort;
use super::uplink::{Uplink, UplinkSetup, choose_active};
use super::wire;
use crate::config::{LocalNi, Mac};
use crate::control::status::Uplink as UplinkStatus;
use crate::services::acl::HostCache;
use crate::services::dhcp::{self, Client, Dest, Ignored, Lease, Leases, Pool};
use crate::services::dns::{self, Forwarder, Verdict, Zone};
use crate::switch::{Domain, PortEntry, PortRole, PortSpec, Switch, now_secs};

/// The router's MAC on its NI: locally administered, stable per NI.
pub fn router_mac(ni_uuid: &uuid::Uuid) -> Mac {
    let d = Sha256::new()
        .chain_update(b"niswitch router")
        .chain_update(ni_uuid.as_bytes())
        .finalize();
    Mac([0x02, 0x16, 0x3e, d[0], d[1], d[2]])
}

/// Counters shown in status.
#[derive(Default)]
pub struct RouterCounters {
    pub dhcp_replies: AtomicU64,
    pub dhcp_ignored: AtomicU64,
    pub dhcp_malformed: AtomicU64,
    pub dhcp_exhausted: AtomicU64,
    pub dns_answered: AtomicU64,
    pub dns_forwarded: AtomicU64,
    pub dns_malformed: AtomicU64,
    pub dns_upstream_failures: AtomicU64,
    pub frames_refused: AtomicU64,
}

impl RouterCounters {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("dhcp_replies", self.dhcp_replies.load(Relaxed)),
            ("dhcp_ignored", self.dhcp_ignored.load(Relaxed)),
            ("dhcp_malformed", self.dhcp_malformed.load(Relaxed)),
            ("dhcp_exhausted", self.dhcp_exhausted.load(Relaxed)),
            ("dns_answered", self.dns_answered.load(Relaxed)),
            ("dns_forwarded", self.dns_forwarded.load(Relaxed)),
            ("dns_malformed", self.dns_malformed.load(Relaxed)),
            (
                "dns_upstream_failures",
                self.dns_upstream_failures.load(Relaxed),
            ),
            ("frames_refused", self.frames_refused.load(Relaxed)),
        ]
    }
}

/// What a router needs from the config.
pub struct RouterSetup {
    pub ni_name: String,
    pub ni_uuid: uuid::Uuid,
    pub local: LocalNi,
    pub clients: Vec<Client>,
    pub state_dir: PathBuf,
    pub mtu: u16,
    pub uplinks: Vec<UplinkPlan>,
    /// The port maps of the NI's app interfaces.
    pub maps: Vec<MapRule>,
    /// Where the DNS server notes the addresses it answered (for `host` ACLs).
    pub hosts: Arc<HostCache>,
}

/// An uplink of the NI: a port, its cost, its domain and its NIC.
pub struct UplinkPlan {
    pub port: String,
    pub cost: u8,
    pub domain: Arc<Domain>,
    pub nic: Arc<PortEntry>,
}

/// The router's MAC on an uplink's domain.
pub fn uplink_mac(ni_uuid: &uuid::Uuid, port: &str) -> Mac {
    let d = Sha256::new()
        .chain_update(b"niswitch uplink")
        .chain_update(ni_uuid.as_bytes())
        .chain_update(port.as_bytes())
        .finalize();
    Mac([0x02, 0x16, 0x3e, d[0], d[1], d[2]])
}

/// A running router: its port, its shared view for status, its thread.
pub struct Router {
    pub mac: Mac,
    pub entry: Arc<PortEntry>,
    /// The router's ports on its uplinks' domains.
    pub uplink_entries: Vec<Arc<PortEntry>>,
    uplink_status: Arc<Mutex<Vec<UplinkStatus>>>,
    pub counters: Arc<RouterCounters>,
    pub nat: Arc<Nat>,
    leases: Arc<Mutex<Vec<Lease>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the control thread shares with the rest of the router.
struct Handles {
    mac: Mac,
    port: Arc<RouterPort>,
    entry: Arc<PortEntry>,
    switch: Arc<Switch>,
    counters: Arc<RouterCounters>,
    shared: Arc<Mutex<Vec<Lease>>>,
    nat: Arc<Nat>,
    uplink_status: Arc<Mutex<Vec<UplinkStatus>>>,
}

impl Router {
    /// Attaches the router to `domain` and starts its control thread.
    pub fn start(
        switch: &Arc<Switch>,
        domain: &Arc<Domain>,
        setup: RouterSetup,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Router> {
        let mac = router_mac(&setup.ni_uuid);
        let umacs: Vec<Mac> = setup
            .uplinks
            .iter()
            .map(|p| uplink_mac(&setup.ni_uuid, &p.port))
            .collect();
        let nat = Arc::new(Nat::new(
            mac,
            setup.local.gateway,
            setup.local.subnet,
            umacs.clone(),
            setup.maps.clone(),
        )?);
        let port = Arc::new(RouterPort::new(mac, Some((nat.clone(), Side::Inside)))?);
        let entry = switch.add_port(
            domain,
            PortSpec {
                name: format!("router:{}", setup.ni_name),
                role: PortRole::Other,
                io: Box::new(port.clone()),
                mtu: setup.mtu as u32,
                own_mac: Some(mac),
                pinned: None,
                link_up: true,
                filter: None,
            },
        )?;
        let counters = Arc::new(RouterCounters::default());
        let lease_file = setup
            .state_dir
            .join(format!("leases-{}.json", setup.ni_uuid));
        let mut uplinks = Vec::new();
        let mut uplink_entries = Vec::new();
        for (i, plan) in setup.uplinks.iter().enumerate() {
            let umac = umacs[i];
            let queue = Arc::new(RouterPort::new(umac, Some((nat.clone(), Side::Uplink(i))))?);
            let uentry = switch.add_port(
                &plan.domain,
                PortSpec {
                    name: format!("router:{}:{}", setup.ni_name, plan.port),
                    role: PortRole::Other,
                    io: Box::new(queue.clone()),
                    mtu: plan.nic.mtu.load(Relaxed),
                    own_mac: Some(umac),
                    pinned: None,
                    link_up: true,
                    filter: None,
                },
            )?;
            uplink_entries.push(uentry.clone());
            let l = &setup.local;
            let us = UplinkSetup {
                port: plan.port.clone(),
                cost: plan.cost,
                mac: umac,
                address: l.uplink_address,
                gateway: l.uplink_gateway,
                probe: l.probe.clone(),
                nic: plan.nic.clone(),
                entry: uentry,
                queue,
            };
            // Probe identifiers stay clear of the NAT's port range.
            let ident = 49152 | ((i as u16 ^ now_ms() as u16) & 0x3fff);
            uplinks.push(Uplink::new(us, ident));
        }
        nat.wire(switch.clone(), entry.clone(), uplink_entries.clone());
        let uplink_status = Arc::new(Mutex::new(
            uplinks.iter().map(|u| u.status(false)).collect::<Vec<_>>(),
        ));
        let saved = load_leases(&lease_file);
        let leases = Leases::from_list(saved, unix_now());
        let shared = Arc::new(Mutex::new(leases.list()));
        let handles = Handles {
            mac,
            port,
            entry: entry.clone(),
            switch: switch.clone(),
            counters: counters.clone(),
            shared: shared.clone(),
            nat: nat.clone(),
            uplink_status: uplink_status.clone(),
        };
        let mut ctl = Control::new(setup, handles, leases, lease_file, uplinks)?;
        let thread = std::thread::Builder::new()
            .name(format!("router-{}", ctl.name))
            .spawn(move || ctl.run(&stop))?;
        Ok(Router {
            mac,
            entry,
            uplink_entries,
            uplink_status,
            counters,
            nat,
            leases: shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Each uplink: address, gateway, health, and whether it is active.
    pub fn uplinks(&self) -> Vec<UplinkStatus> {
        self.uplink_status
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Bound leases, as last written.
    pub fn leases(&self) -> Vec<Lease> {
        self.leases.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits for the control thread (after `stop` was set) and detaches
    /// the NAT fast path from the ports.
    pub fn join(&self) {
        self.nat.unwire();
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn load_leases(path: &Path) -> Vec<Lease> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable lease file");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

fn save_leases(path: &Path, leases: &[Lease]) {
    let Ok(text) = serde_json::to_string_pretty(leases) else {
        return;
    };
    let tmp = path.with_extension("json.tmp");
    let ok = std::fs::write(&tmp, text)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = ok {
        tracing::warn!(file = %path.display(), error = %e, "could not save leases");
    }
}

struct Control {
    name: String,
    gateway: Ipv4Addr,
    pool: Pool,
    clients: Vec<Client>,
    zone_base: Zone,
    /// Configured upstream resolvers; empty: those learned on the active uplink.
    configured_upstreams: Vec<Ipv4Addr>,
    h: Handles,
    leases: Leases,
    lease_file: PathBuf,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    dns: smoltcp::iface::SocketHandle,
    uplinks: Vec<Uplink>,
    active: Option<usize>,
    forwarder: Forwarder,
    hosts: Arc<HostCache>,
    /// The zone with the apps' current addresses, rebuilt when leases change.
    zone: Option<Zone>,
    /// Leases changed (renewals) since they were last saved.
    dirty: bool,
    saved_at: u64,
}

impl Control {
    fn new(
        setup: RouterSetup,
        h: Handles,
        leases: Leases,
        lease_file: PathBuf,
        uplinks: Vec<Uplink>,
    ) -> io::Result<Control> {
        let mac = h.mac;
        let l = &setup.local;
        let pool = Pool {
            subnet: l.subnet,
            gateway: l.gateway,
            start: l.dhcp_range.start,
            end: l.dhcp_range.end,
            lease_secs: l.lease_time,
            domain: l.dns.domain.clone(),
            mtu: setup.mtu,
            air_gapped: l.uplinks.is_empty(),
        };
        let mut leases = leases;
        leases.retain_valid(&pool, &setup.clients);
        let mut dev = QueueDevice::default();
        let mut iface = Interface::new(
            IfConfig::new(EthernetAddress(mac.0).into()),
            &mut dev,
            SInstant::now(),
        );
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(
                IpAddress::Ipv4(l.gateway),
                l.subnet.prefix_len(),
            ));
        });
        let buf =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 128], vec![0u8; 128 * 1024]);
        let mut dns_sock = udp::Socket::new(buf(), buf());
        dns_sock
            .bind(IpEndpoint::new(IpAddress::Ipv4(l.gateway), 53))
            .map_err(|e| io::Error::other(format!("DNS socket: {e}")))?;
        let mut sockets = SocketSet::new(Vec::new());
        let dns = sockets.add(dns_sock);
        let configured_upstreams: Vec<Ipv4Addr> = l
            .dns
            .upstream
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let zone_base = Zone {
            domain: l.dns.domain.clone(),
            router: Some(l.gateway),
            hosts: HashMap::new(),
            records: l
                .dns
                .records
                .iter()
                .map(|r| (r.name.clone(), r.ip))
                .collect(),
            ttl: 30,
            subnet: Some(l.subnet),
        };
        Ok(Control {
            name: setup.ni_name,
            gateway: l.gateway,
            pool,
            clients: setup.clients,
            zone_base,
            configured_upstreams,
            h,
            leases,
            lease_file,
            iface,
            dev,
            sockets,
            dns,
            uplinks,
            active: None,
            forwarder: Forwarder::new(now_ms() ^ 0x5DEECE66D),
            hosts: setup.hosts,
            zone: None,
            dirty: false,
            saved_at: 0,
        })
    }

    fn run(&mut self, stop: &AtomicBool) {
        // Publish (and save) the leases as checked against this config.
        let list = self.leases.list();
        self.persist(list);
        let mut last_tick = 0u64;
        while !stop.load(Relaxed) {
            let delay = self
                .iface
                .poll_delay(SInstant::now(), &self.sockets)
                .map_or(200, |d| d.total_millis().min(200)) as i32;
            let mut delay = delay;
            let mut fds = vec![
                libc::pollfd {
                    fd: self.h.port.wake_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.h.nat.wake_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            for u in &mut self.uplinks {
                delay = delay.min(u.delay_ms().min(200) as i32);
                fds.push(libc::pollfd {
                    fd: u.wake_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: a vector of valid pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, delay) };
            let frames = self.h.port.drain();
            for f in frames {
                let guarded =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.frame(&f)));
                if guarded.is_err() {
                    self.h.counters.frames_refused.fetch_add(1, Relaxed);
                    tracing::error!(ni = %self.name, "a frame made the router fail; dropped");
                }
            }
            let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.poll_stack();
                for u in &mut self.uplinks {
                    u.poll(&self.h.switch);
                }
                self.h.nat.resolve();
                self.serve_dns();
                self.relay_upstream();
                self.poll_stack();
                for u in &mut self.uplinks {
                    u.poll(&self.h.switch);
                }
                let now = now_ms();
                if now.saturating_sub(last_tick) >= 1000 {
                    last_tick = now;
                    self.tick();
                }
            }));
            if round.is_err() {
                self.h.counters.frames_refused.fetch_add(1, Relaxed);
                tracing::error!(ni = %self.name, "the router recovered from an internal error");
            }
        }
    }

    fn poll_stack(&mut self) {
        self.iface
            .poll(SInstant::now(), &mut self.dev, &mut self.sockets);
        for p in std::mem::take(&mut self.dev.tx) {
            self.h.switch.process(&self.h.entry, &p, now_secs());
        }
    }

    /// One frame for the router: DHCP here, the rest to smoltcp.
    fn frame(&mut self, pkt: &[u8]) {
        let Some(f) = wire::finish_frame(pkt) else {
            self.h.counters.frames_refused.fetch_add(1, Relaxed);
            return;
        };
        if let Some(u) = wire::parse_udp(&f)
            && u.dport == 67
        {
            self.dhcp(u.src_mac, u.payload);
            return;
        }
        if self.dev.rx.len() < 1024 {
            self.dev.rx.push_back(f);
        }
    }

    fn dhcp(&mut self, src: Mac, payload: &[u8]) {
        let Some(msg) = dhcp::decode(payload) else {
            self.h.counters.dhcp_malformed.fetch_add(1, Relaxed);
            return;
        };
        let before = self.leases.bindings();
        match self
            .leases
            .handle(&self.pool, &self.clients, src, &msg, unix_now())
        {
            Ok(reply) => {
                let (ip, mac) = match reply.dest {
                    Dest::Broadcast => (Ipv4Addr::BROADCAST, Mac::BROADCAST),
                    Dest::Unicast(ip, mac) => (ip, mac),
                };
                let bytes = dhcp::encode(&reply.msg);
                let p = wire::udp_packet(self.h.mac, mac, (self.gateway, 67), (ip, 68), &bytes);
                self.h.switch.process(&self.h.entry, &p, now_secs());
                self.h.counters.dhcp_replies.fetch_add(1, Relaxed);
            }
            Err(Ignored::Malformed) => {
                self.h.counters.dhcp_malformed.fetch_add(1, Relaxed);
            }
            Err(Ignored::PoolExhausted) => {
                self.h.counters.dhcp_exhausted.fetch_add(1, Relaxed);
                tracing::warn!(ni = %self.name, client = %src, "DHCP range is full: no offer");
            }
            Err(Ignored::ForeignClient | Ignored::NotARequest) => {
                self.h.counters.dhcp_ignored.fetch_add(1, Relaxed);
            }
            Err(Ignored::Silent) => {}
        }
        // A new or moved binding is saved at once; renewals (new expiry
        // only) are saved in batches by `tick`.
        if self.leases.bindings() != before {
            let list = self.leases.list();
            self.persist(list);
        } else {
            self.dirty = true;
        }
    }

    fn persist(&mut self, list: Vec<Lease>) {
        self.zone = None;
        self.dirty = false;
        self.saved_at = unix_now();
        save_leases(&self.lease_file, &list);
        let fixed = self.clients.iter().filter_map(|c| Some((c.fixed?, c.mac)));
        let leased = list.iter().map(|l| (l.ip, l.mac));
        self.h.nat.set_apps(fixed.chain(leased).collect::<Vec<_>>());
        if let Ok(mut s) = self.h.shared.lock() {
            *s = list;
        }
    }

    fn zone(&mut self) -> &Zone {
        let (base, clients, leases) = (&self.zone_base, &self.clients, &self.leases);
        self.zone.get_or_insert_with(|| {
            let mut z = base.clone();
            let bound: HashMap<Mac, Ipv4Addr> =
                leases.list().into_iter().map(|l| (l.mac, l.ip)).collect();
            for c in clients {
                if let Some(ip) = c.fixed.or_else(|| bound.get(&c.mac).copied()) {
                    z.hosts
                        .entry(c.app.to_ascii_lowercase())
                        .or_default()
                        .push(ip);
                }
            }
            z
        })
    }

    fn serve_dns(&mut self) {
        let mut buf = vec![0u8; 4096];
        loop {
            let sock = self.sockets.get_mut::<udp::Socket>(self.dns);
            let Ok((n, meta)) = sock.recv_slice(&mut buf) else {
                break;
            };
            let query = buf[..n].to_vec();
            let client = meta.endpoint;
            let verdict = dns::answer(self.zone(), &query);
            let out = match verdict {
                Verdict::Reply(r) => {
                    if query.len() >= 12 && r.get(3).is_some_and(|rc| rc & 0x0f == 1) {
                        self.h.counters.dns_malformed.fetch_add(1, Relaxed);
                    } else {
                        self.h.counters.dns_answered.fetch_add(1, Relaxed);
                    }
                    Some(r)
                }
                Verdict::Drop => {
                    self.h.counters.dns_malformed.fetch_add(1, Relaxed);
                    None
                }
                Verdict::Forward => self.forward(&query, client),
            };
            if let Some(r) = out {
                self.note_answer(&r);
                let r = dns::fit(r, dns::MAX_UDP_ANSWER);
                let _ = self
                    .sockets
                    .get_mut::<udp::Socket>(self.dns)
                    .send_slice(&r, client);
            }
        }
    }

    /// The resolvers to ask: the configured ones, or those the active uplink learned.
    fn servers(&self) -> Vec<Ipv4Addr> {
        if !self.configured_upstreams.is_empty() {
            return self.configured_upstreams.clone();
        }
        self.active
            .and_then(|i| self.uplinks.get(i))
            .map(|u| u.dns_servers.clone())
            .unwrap_or_default()
    }

    /// Relays a query upstream through the active uplink; a SERVFAIL right
    /// away when there is no uplink or no resolver.
    fn forward(&mut self, query: &[u8], client: IpEndpoint) -> Option<Vec<u8>> {
        let sa = SocketAddr::new(IpAddr::from(client.addr), client.port);
        let servers = self.servers();
        let Some(active) = self.active.filter(|_| !servers.is_empty()) else {
            self.h.counters.dns_upstream_failures.fetch_add(1, Relaxed);
            return dns::servfail(query);
        };
        let Some(q) = self.forwarder.outgoing(query, sa, now_ms()) else {
            self.h.counters.dns_upstream_failures.fetch_add(1, Relaxed);
            return dns::servfail(query);
        };
        for s in servers {
            self.uplinks[active].send_dns(&q, s);
        }
        self.h.counters.dns_forwarded.fetch_add(1, Relaxed);
        None
    }

    fn relay_upstream(&mut self) {
        let mut out = Vec::new();
        let servers = self.servers();
        for u in &mut self.uplinks {
            for (answer, from) in u.dns_answers() {
                if !servers.contains(&from) {
                    continue;
                }
                if let Some(r) = self.forwarder.incoming(&answer) {
                    out.push(r);
                }
            }
        }
        for (r, to) in out {
            self.send_dns(&r, to);
        }
    }

    /// Remembers the addresses an answer gave, for `host` ACL rules.
    fn note_answer(&self, r: &[u8]) {
        let now = unix_now();
        for (name, ip, ttl) in dns::answered_a(r) {
            self.hosts.learn(&name, ip, ttl, now);
        }
    }

    fn send_dns(&mut self, r: &[u8], to: SocketAddr) {
        self.note_answer(r);
        let r = &dns::fit(r.to_vec(), dns::MAX_UDP_ANSWER);
        // Clients of the DNS socket are the NI's (IPv4) apps.
        let IpAddr::V4(ip) = to.ip() else { return };
        let ep = IpEndpoint::new(IpAddress::Ipv4(ip), to.port());
        let _ = self
            .sockets
            .get_mut::<udp::Socket>(self.dns)
            .send_slice(r, ep);
    }

    fn tick(&mut self) {
        let now_s = unix_now();
        for u in &mut self.uplinks {
            u.tick(now_s);
        }
        let active = choose_active(&self.uplinks);
        if active != self.active {
            let name = |i: Option<usize>| {
                i.and_then(|i| self.uplinks.get(i))
                    .map_or("none".to_string(), |u| u.setup.port.clone())
            };
            tracing::info!(ni = %self.name, from = %name(self.active), to = %name(active), "active uplink changed");
            self.active = active;
        }
        let views: Vec<UplinkView> = self
            .uplinks
            .iter()
            .map(|u| UplinkView {
                address: u
                    .address
                    .and_then(|a| ipnet::Ipv4Net::new(a.address(), a.prefix_len()).ok()),
                gateway: u.gateway,
                healthy: u.healthy,
            })
            .collect();
        self.h.nat.tick(&views, self.active);
        if let Ok(mut st) = self.h.uplink_status.lock() {
            *st = self
                .uplinks
                .iter()
                .enumerate()
                .map(|(i, u)| u.status(Some(i) == self.active))
                .collect();
        }
        for (r, to) in self.forwarder.expire(now_ms()) {
            self.h.counters.dns_upstream_failures.fetch_add(1, Relaxed);
            self.send_dns(&r, to);
        }
        let now = unix_now();
        if self.leases.expire(now) || (self.dirty && now.saturating_sub(self.saved_at) >= 30) {
            let list = self.leases.list();
            self.persist(list);
        }
    }
}
