//! One local NI's router: a port on the NI's domain and one on each
//! uplink's, and a control thread that hands frames for the router to the
//! DHCP server or to smoltcp, runs the DNS server and the uplinks, and
//! switches every frame it sends. Each job lives in its own part (`dhcp`,
//! `dns`, `uplinks`); a live apply updates the NI's clients and port maps
//! without restarting anything.

mod dhcp;
mod dns;
mod ipv6;
mod metadata;
mod streams;
mod uplinks;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use smoltcp::iface::{Config as IfConfig, Interface, SocketSet};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

use super::device::QueueDevice;
use super::host_uplink::HostUplink;
use super::hostlink::{HostAllow, HostLink};
use super::napt::{MapRule, Nat, NatOptions, Side};
use super::port::RouterPort;
use super::route6::Route6;
use super::uplink::{Uplink, UplinkInfo, UplinkSetup};
use super::wire;
use crate::clock::{mono_ms as now_ms, unix_secs as unix_now};
use crate::config::{LocalNi, Mac};
use crate::services::acl::HostCache;
use crate::services::dhcp::{Client, Dest, Ignored, Lease, Pool};
use crate::services::metadata::{AppMeta, METADATA_IP, NiFacts};
use crate::switch::{Domain, PortEntry, PortRole, PortSpec, Switch, now_secs};
use dhcp::{DhcpServer, Outcome};
use dns::DnsServer;
use ipv6::{Ipv6Side, Learned, Seen};
use metadata::MetadataServer;
use uplinks::UplinkSet;

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
    pub metadata_answered: AtomicU64,
    pub metadata_refused: AtomicU64,
    /// TCP connections (metadata, DNS) cut for breaking a bound.
    pub tcp_refused: AtomicU64,
    pub router_adverts: AtomicU64,
    pub dhcpv6_replies: AtomicU64,
    pub ipv6_malformed: AtomicU64,
    /// IPv6 routed to and from the uplinks (`uplink_prefix6`), and what
    /// could not be (no upstream router or its MAC yet, no app with the
    /// address, hop limit run out).
    pub ipv6_routed_out: AtomicU64,
    pub ipv6_routed_in: AtomicU64,
    pub ipv6_unrouted: AtomicU64,
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
            ("metadata_answered", self.metadata_answered.load(Relaxed)),
            ("metadata_refused", self.metadata_refused.load(Relaxed)),
            ("tcp_refused", self.tcp_refused.load(Relaxed)),
            ("router_adverts", self.router_adverts.load(Relaxed)),
            ("dhcpv6_replies", self.dhcpv6_replies.load(Relaxed)),
            ("ipv6_malformed", self.ipv6_malformed.load(Relaxed)),
            ("ipv6_routed_out", self.ipv6_routed_out.load(Relaxed)),
            ("ipv6_routed_in", self.ipv6_routed_in.load(Relaxed)),
            ("ipv6_unrouted", self.ipv6_unrouted.load(Relaxed)),
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
    /// What the metadata server tells each app.
    pub apps: Vec<AppMeta>,
    pub state_dir: PathBuf,
    pub mtu: u16,
    pub uplinks: Vec<UplinkPlan>,
    /// The port maps of the NI's app interfaces.
    pub maps: Vec<MapRule>,
    /// Where the DNS server notes the addresses it answered (for `host` ACLs).
    pub hosts: Arc<HostCache>,
    /// The apps' ACL rules that allow the host itself over the `host` uplink.
    pub host_allow: Vec<HostAllow>,
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

/// What a live apply changes in a running router.
pub struct RouterUpdate {
    pub clients: Vec<Client>,
    pub apps: Vec<AppMeta>,
    pub maps: Vec<MapRule>,
    /// New DNS settings (domain, records, upstream servers), if they changed.
    pub dns: Option<crate::config::Dns>,
    pub host_allow: Vec<HostAllow>,
}

/// A running router: its ports, its shared view for status, its thread.
pub struct Router {
    pub mac: Mac,
    pub entry: Arc<PortEntry>,
    /// The router's ports on its uplinks' domains.
    pub uplink_entries: Vec<Arc<PortEntry>>,
    uplink_info: Arc<Mutex<Vec<UplinkInfo>>>,
    pub counters: Arc<RouterCounters>,
    pub nat: Arc<Nat>,
    leases: Arc<Mutex<Vec<Lease>>>,
    learned6: Learned,
    port: Arc<RouterPort>,
    pending: Arc<Mutex<Option<RouterUpdate>>>,
    switch: Arc<Switch>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The `host` uplink's data path and its thread.
    host: Mutex<HostThread>,
}

type HostThread = Option<(Arc<HostLink>, JoinHandle<()>)>;

fn stop_host(host: HostThread) {
    if let Some((h, t)) = host {
        h.stop();
        let _ = t.join();
    }
}

/// What the control thread shares with the rest of the router.
struct Handles {
    mac: Mac,
    port: Arc<RouterPort>,
    entry: Arc<PortEntry>,
    switch: Arc<Switch>,
    counters: Arc<RouterCounters>,
    nat: Arc<Nat>,
    pending: Arc<Mutex<Option<RouterUpdate>>>,
}

impl Router {
    /// Attaches the router to `domain` and its uplinks' domains and starts
    /// its control thread.
    pub fn start(
        switch: &Arc<Switch>,
        domain: &Arc<Domain>,
        setup: RouterSetup,
    ) -> io::Result<Router> {
        let mac = router_mac(&setup.ni_uuid);
        let umacs: Vec<Mac> = setup
            .uplinks
            .iter()
            .map(|p| uplink_mac(&setup.ni_uuid, &p.port))
            .collect();
        let hostlink = match setup.local.has_host_uplink() {
            true => {
                let mtu = setup.local.mtu.unwrap_or(setup.mtu);
                let h = HostLink::new(mac, setup.local.gateway, mtu)?;
                h.set_allow(setup.host_allow.clone());
                Some(h)
            }
            false => None,
        };
        let mut nat = Nat::new(
            mac,
            setup.local.gateway,
            setup.local.subnet,
            umacs.clone(),
            setup.maps.clone(),
            nat_options(&setup.local),
        )?;
        if let Some(h) = &hostlink {
            nat = nat.with_host(setup.uplinks.len(), h.clone());
        }
        let nat = Arc::new(nat);
        let port = Arc::new(
            RouterPort::new(mac, Some((nat.clone(), Side::Inside)))?
                .with_ipv6(setup.local.subnet6.is_some()),
        );
        let entry = switch.add_port(
            domain,
            PortSpec::new(
                format!("router:{}", setup.ni_name),
                PortRole::Other,
                Box::new(port.clone()),
                setup.mtu as u32,
            )
            .own_mac(mac),
        )?;
        // The router answers every app's broadcast: never storm-limited.
        entry.floods.set_limit(0);
        let mut uplinks = Vec::new();
        let mut uplink_entries = Vec::new();
        for (i, plan) in setup.uplinks.iter().enumerate() {
            match start_uplink(switch, &setup, plan, umacs[i], i, &nat) {
                Ok((u, e)) => {
                    uplinks.push(u);
                    uplink_entries.push(e);
                }
                Err(e) => {
                    uplink_entries
                        .iter()
                        .chain([&entry])
                        .for_each(|p| switch.remove_port(p));
                    return Err(e);
                }
            }
        }
        nat.wire(switch.clone(), entry.clone(), uplink_entries.clone());
        let host = match &hostlink {
            Some(h) => {
                h.wire(switch.clone(), entry.clone());
                match h.start(&setup.ni_name) {
                    Ok(t) => Some((h.clone(), t)),
                    Err(e) => {
                        nat.unwire();
                        h.stop();
                        (uplink_entries.iter().chain([&entry])).for_each(|p| switch.remove_port(p));
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let counters = Arc::new(RouterCounters::default());
        let uplink_info = Arc::new(Mutex::new(Vec::new()));
        let leases = Arc::new(Mutex::new(Vec::new()));
        let learned6 = Learned::default();
        let pending = Arc::new(Mutex::new(None));
        let handles = Handles {
            mac,
            port: port.clone(),
            entry: entry.clone(),
            switch: switch.clone(),
            counters: counters.clone(),
            nat: nat.clone(),
            pending: pending.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let host_uplink = (host.as_ref()).map(|(h, _)| {
            HostUplink::new(setup.local.host_cost, setup.local.probe.clone(), h.clone())
        });
        let uplinks = UplinkSet::new(
            uplinks,
            host_uplink,
            uplink_info.clone(),
            setup.ni_name.clone(),
        );
        let shared = (leases.clone(), learned6.clone());
        let started = Control::new(setup, handles, shared, uplinks).and_then(|mut ctl| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("router-{}", ctl.name))
                .spawn(move || ctl.run(&stop))
        });
        let thread = match started {
            Ok(t) => t,
            Err(e) => {
                nat.unwire();
                stop_host(host);
                uplink_entries
                    .iter()
                    .chain([&entry])
                    .for_each(|p| switch.remove_port(p));
                return Err(e);
            }
        };
        Ok(Router {
            mac,
            entry,
            uplink_entries,
            uplink_info,
            counters,
            nat,
            leases,
            learned6,
            port,
            pending,
            switch: switch.clone(),
            stop,
            thread: Mutex::new(Some(thread)),
            host: Mutex::new(host),
        })
    }

    /// The `host` uplink's counters, if the NI has one.
    pub fn host_counters(&self) -> Vec<(&'static str, u64)> {
        let h = crate::sync::lock(&self.host);
        h.as_ref()
            .map_or_else(Vec::new, |(h, _)| h.counters.snapshot())
    }

    /// Each uplink: address, gateway, health, and whether it is active.
    pub fn uplinks(&self) -> Vec<UplinkInfo> {
        self.uplink_info
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Bound leases, as last written.
    pub fn leases(&self) -> Vec<Lease> {
        self.leases.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The IPv6 addresses each app interface (by MAC) was seen using.
    pub fn ipv6_addresses(&self) -> HashMap<Mac, Vec<Ipv6Addr>> {
        crate::sync::lock(&self.learned6).clone()
    }

    /// New clients and port maps (a live apply); the control thread takes
    /// them on its next round, which this starts at once.
    pub fn update(&self, mut update: RouterUpdate) {
        self.nat.set_maps(update.maps.clone());
        if let Some((h, _)) = crate::sync::lock(&self.host).as_ref() {
            h.set_allow(std::mem::take(&mut update.host_allow));
        }
        if let Ok(mut p) = self.pending.lock() {
            // DNS settings not yet taken are kept by a later update without.
            if update.dns.is_none() {
                update.dns = p.take().and_then(|old| old.dns);
            }
            *p = Some(update);
        }
        self.port.wake();
    }

    /// Stops the control thread, detaches the NAT fast path and takes the
    /// router's ports out of their domains.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        self.port.wake();
        self.nat.unwire();
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
        stop_host(crate::sync::lock(&self.host).take());
        for e in self.uplink_entries.iter().chain([&self.entry]) {
            self.switch.remove_port(e);
        }
    }
}

/// The router's port on one uplink's domain and the uplink's stack.
/// What the NAT needs of a local NI's config: the MSS clamp and the static
/// routes that leave through an uplink.
fn nat_options(l: &LocalNi) -> NatOptions {
    NatOptions {
        mss: l.mtu.map(|m| m.saturating_sub(40)),
        routes: (l.static_routes.iter())
            .filter(|r| !l.subnet.contains(&r.gateway))
            .map(|r| (r.dst, r.gateway))
            .collect(),
    }
}

/// The static routes as the apps get them by DHCP: a gateway inside the
/// subnet as it is, one beyond an uplink through the router.
fn dhcp_routes(l: &LocalNi) -> Vec<(ipnet::Ipv4Net, Ipv4Addr)> {
    (l.static_routes.iter())
        .map(|r| match l.subnet.contains(&r.gateway) {
            true => (r.dst, r.gateway),
            false => (r.dst, l.gateway),
        })
        .collect()
}

fn start_uplink(
    switch: &Arc<Switch>,
    setup: &RouterSetup,
    plan: &UplinkPlan,
    umac: Mac,
    i: usize,
    nat: &Arc<Nat>,
) -> io::Result<(Uplink, Arc<PortEntry>)> {
    let l = &setup.local;
    let queue = Arc::new(
        RouterPort::new(umac, Some((nat.clone(), Side::Uplink(i))))?.with_ipv6(l.uplink_prefix6),
    );
    let uentry = switch.add_port(
        &plan.domain,
        PortSpec::new(
            format!("router:{}:{}", setup.ni_name, plan.port),
            PortRole::Other,
            Box::new(queue.clone()),
            plan.nic.mtu.load(Relaxed),
        )
        .own_mac(umac),
    )?;
    uentry.floods.set_limit(0);
    let route6 =
        (l.subnet6.filter(|_| l.uplink_prefix6)).map(|p| Route6::new(umac, p, l.uplink_gateway6));
    let us = UplinkSetup {
        port: plan.port.clone(),
        cost: plan.cost,
        mac: umac,
        address: l.uplink_address,
        gateway: l.uplink_gateway,
        probe: l.probe.clone(),
        nic: plan.nic.clone(),
        entry: uentry.clone(),
        queue,
        route6,
    };
    // Probe identifiers stay clear of the NAT's port range.
    let ident = 49152 | ((i as u16 ^ now_ms() as u16) & 0x3fff);
    Ok((Uplink::new(us, ident), uentry))
}

struct Control {
    name: String,
    gateway: Ipv4Addr,
    h: Handles,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    dhcp: DhcpServer,
    dns: DnsServer,
    meta: MetadataServer,
    v6: Option<Ipv6Side>,
    uplinks: UplinkSet,
    /// The DHCP generation the NAT's list of app addresses was made from.
    nat_generation: u64,
}

impl Control {
    fn new(
        setup: RouterSetup,
        h: Handles,
        (leases, learned6): (Arc<Mutex<Vec<Lease>>>, Learned),
        uplinks: UplinkSet,
    ) -> io::Result<Control> {
        let l = &setup.local;
        let pool_mtu = l.mtu.unwrap_or(setup.mtu);
        let pool = Pool {
            subnet: l.subnet,
            gateway: l.gateway,
            start: l.dhcp_range.start,
            end: l.dhcp_range.end,
            lease_secs: l.lease_time,
            domain: l.dns.domain.clone(),
            mtu: pool_mtu,
            air_gapped: l.uplinks.is_empty(),
            ntp: l.ntp.clone(),
            routes: dhcp_routes(l),
        };
        let file = setup
            .state_dir
            .join(format!("leases-{}.json", setup.ni_uuid));
        let dhcp = DhcpServer::new(pool, setup.clients, file, leases, unix_now());
        let v6 = Ipv6Side::new(l, h.mac, pool_mtu, learned6, h.counters.clone());
        let mut dev = QueueDevice::default();
        let mut iface = Interface::new(
            IfConfig::new(EthernetAddress(h.mac.0).into()),
            &mut dev,
            SInstant::now(),
        );
        let gateway = IpCidr::new(IpAddress::Ipv4(l.gateway), l.subnet.prefix_len());
        let metadata = IpCidr::new(IpAddress::Ipv4(METADATA_IP), 32);
        let v6_addrs = (v6.iter().flat_map(|v| v.addresses()))
            .map(|(ip, len)| IpCidr::new(IpAddress::Ipv6(ip), len));
        let addrs: Vec<IpCidr> = [gateway, metadata].into_iter().chain(v6_addrs).collect();
        let mut full = false;
        iface.update_ip_addrs(|a| full = addrs.iter().any(|c| a.push(*c).is_err()));
        if full {
            return Err(io::Error::other(
                "the router's stack has no room for all its addresses",
            ));
        }
        let mut sockets = SocketSet::new(Vec::new());
        let dns = DnsServer::new(l, &mut sockets, setup.hosts.clone(), h.counters.clone())?;
        let meta = MetadataServer::new(setup.apps, h.counters.clone());
        Ok(Control {
            meta,
            v6,
            name: setup.ni_name,
            gateway: l.gateway,
            h,
            iface,
            dev,
            sockets,
            dhcp,
            dns,
            uplinks,
            nat_generation: u64::MAX,
        })
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut last_tick = 0u64;
        while !stop.load(Relaxed) {
            self.wait();
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
                self.round(&mut last_tick)
            }));
            if round.is_err() {
                self.h.counters.frames_refused.fetch_add(1, Relaxed);
                tracing::error!(ni = %self.name, "the router recovered from an internal error");
            }
        }
    }

    /// Sleeps until a frame, a held NAT packet or a stack's timer needs us.
    fn wait(&mut self) {
        let stack = self
            .iface
            .poll_delay(SInstant::now(), &self.sockets)
            .map_or(200, |d| d.total_millis());
        let delay = stack.min(self.uplinks.delay_ms()).min(200) as i32;
        let mut fds: Vec<libc::pollfd> = [self.h.port.wake_fd(), self.h.nat.wake_fd()]
            .into_iter()
            .chain(self.uplinks.wake_fds())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a vector of valid pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, delay) };
    }

    /// Everything but frames for the router: updates, stacks, DNS, timers.
    fn round(&mut self, last_tick: &mut u64) {
        let update = self.h.pending.lock().ok().and_then(|mut p| p.take());
        if let Some(u) = update {
            if let Some(dns) = u.dns {
                self.dns.set(self.gateway, &dns);
                if let Some(v6) = &mut self.v6 {
                    v6.set_domain(dns.domain.clone());
                }
                self.dhcp.pool.domain = dns.domain;
            }
            self.dhcp.set_clients(u.clients, unix_now());
            self.meta.set_apps(u.apps);
        }
        self.sync_nat();
        self.poll_stack();
        self.uplinks.poll(&self.h.switch);
        self.h.nat.resolve();
        let generation = self.dhcp.generation + self.v6.as_ref().map_or(0, |v| v.generation);
        let (dhcp, v6) = (&self.dhcp, &self.v6);
        let names = || names(dhcp, v6.as_ref());
        self.dns
            .serve(&mut self.sockets, &mut self.uplinks, generation, names);
        self.dns.relay(&mut self.sockets, &mut self.uplinks);
        let facts = NiFacts {
            gateway: self.gateway,
            mtu: self.dhcp.pool.mtu,
            external: self.uplinks.active_address(),
        };
        let dhcp = &self.dhcp;
        self.meta
            .serve(&mut self.sockets, now_ms(), facts, || dhcp.addresses());
        if let Some(v6) = &mut self.v6 {
            let mut out = Vec::new();
            v6.tick(now_ms(), &mut out);
            for f in self.uplinks.take_inbound6() {
                let c = &self.h.counters;
                let n = match v6.deliver(&f, now_ms(), &mut out) {
                    true => &c.ipv6_routed_in,
                    false => &c.ipv6_unrouted,
                };
                n.fetch_add(1, Relaxed);
            }
            self.send(out);
        }
        self.poll_stack();
        self.uplinks.poll(&self.h.switch);
        let now = now_ms();
        if now.saturating_sub(*last_tick) >= 1000 {
            *last_tick = now;
            let now_s = unix_now();
            self.uplinks.tick(now_s, &self.h.nat, &self.h.switch);
            self.dns.tick(&mut self.sockets, &mut self.uplinks);
            self.dhcp.tick(now_s);
            self.sync_nat();
        }
    }

    /// Gives the NAT and the app interfaces' source guards the apps'
    /// addresses when they changed.
    fn sync_nat(&mut self) {
        if self.nat_generation != self.dhcp.generation {
            self.nat_generation = self.dhcp.generation;
            let addrs = self.dhcp.addresses();
            for m in self.h.entry.domain.members().iter() {
                if let Some(mac) = m.own_mac.filter(|_| m.id != self.h.entry.id) {
                    let ips: Vec<Ipv4Addr> = addrs
                        .iter()
                        .filter(|(_, x)| *x == mac)
                        .map(|(ip, _)| *ip)
                        .collect();
                    m.guard.set(&ips);
                }
            }
            self.h.nat.set_apps(addrs);
        }
    }

    fn poll_stack(&mut self) {
        self.iface
            .poll(SInstant::now(), &mut self.dev, &mut self.sockets);
        let out = std::mem::take(&mut self.dev.tx);
        self.send(out);
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
            let src = u.src_mac;
            let outcome = self.dhcp.handle(src, u.payload, unix_now());
            // The app may use its address once the ACK is out: the guards
            // and the NAT know it first.
            self.sync_nat();
            self.dhcp_outcome(src, outcome);
            return;
        }
        if let Some(v6) = &mut self.v6
            && f.get(12..14) == Some(&[0x86, 0xdd][..])
        {
            let client = f.get(6..12).is_some_and(|m| self.dhcp.has_client(m));
            let mut out = Vec::new();
            let seen = v6.frame(&f, client, &mut out);
            self.send(out);
            match seen {
                Seen::Done => return,
                Seen::Route => {
                    let routed = self.uplinks.send6(&self.h.switch, &f);
                    let c = &self.h.counters;
                    let n = if routed {
                        &c.ipv6_routed_out
                    } else {
                        &c.ipv6_unrouted
                    };
                    n.fetch_add(1, Relaxed);
                    return;
                }
                Seen::Stack => {}
            }
        }
        if let Some((mac, src, dst)) = wire::ipv4_ends(&f)
            && dst == METADATA_IP
            && !self.dhcp.addresses().contains(&(src, mac))
        {
            // Only an app's own address, from its own MAC, gets metadata.
            self.h.counters.metadata_refused.fetch_add(1, Relaxed);
            return;
        }
        if self.dev.rx.len() < 1024 {
            self.dev.rx.push_back(f);
        }
    }

    /// Switches frames the router built into its NI.
    fn send(&self, frames: Vec<Vec<u8>>) {
        for p in frames {
            self.h.switch.process(&self.h.entry, &p, now_secs());
        }
    }

    fn dhcp_outcome(&mut self, src: Mac, outcome: Outcome) {
        let c = &self.h.counters;
        match outcome {
            Outcome::Reply { to, bytes } => {
                let (ip, mac) = match to {
                    Dest::Broadcast => (Ipv4Addr::BROADCAST, Mac::BROADCAST),
                    Dest::Unicast(ip, mac) => (ip, mac),
                };
                let p = wire::udp_packet(self.h.mac, mac, (self.gateway, 67), (ip, 68), &bytes);
                self.send(vec![p]);
                c.dhcp_replies.fetch_add(1, Relaxed);
            }
            Outcome::Malformed => {
                c.dhcp_malformed.fetch_add(1, Relaxed);
            }
            Outcome::Ignored(Ignored::PoolExhausted) => {
                c.dhcp_exhausted.fetch_add(1, Relaxed);
                tracing::warn!(ni = %self.name, client = %src, "DHCP range is full: no offer");
            }
            Outcome::Ignored(Ignored::Silent) => {}
            Outcome::Ignored(_) => {
                c.dhcp_ignored.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Every app's name with its addresses: its IPv4 one, and the IPv6 ones
/// it was seen using; `router` has the gateway's IPv6 address too.
fn names(dhcp: &DhcpServer, v6: Option<&Ipv6Side>) -> Vec<(String, IpAddr)> {
    let mut out: Vec<(String, IpAddr)> = (dhcp.names().into_iter())
        .map(|(n, ip)| (n, IpAddr::V4(ip)))
        .collect();
    let Some(v6) = v6 else { return out };
    out.push(("router".into(), IpAddr::V6(v6.gateway6)));
    for (mac, list) in v6.learned().iter() {
        if let Some(name) = dhcp.client_name(*mac) {
            out.extend(
                list.iter()
                    .map(|a| (name.to_ascii_lowercase(), IpAddr::V6(*a))),
            );
        }
    }
    out
}
