//! The router's DNS server on the gateway address, over UDP and TCP:
//! answers the NI's names from a zone rebuilt when the apps' addresses
//! change, relays the rest to the upstream resolvers through the active
//! uplink (a query that came over TCP goes on over TCP, so an answer too
//! large for UDP arrives whole), and notes the addresses it answered for
//! `host` ACL rules.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use super::RouterCounters;
use super::streams::{Limits, Pool};
use super::uplinks::UplinkSet;
use crate::clock::{mono_ms as now_ms, unix_secs as unix_now};
use crate::config::{Dns, LocalNi};
use crate::services::acl::HostCache;
use crate::services::dns::{self, Forwarder, Verdict, Zone};

/// The zone without the apps' names, and the configured upstream servers.
fn settings(gateway: Ipv4Addr, subnet: Option<ipnet::Ipv4Net>, dns: &Dns) -> (Zone, Vec<Ipv4Addr>) {
    let configured = dns
        .upstream
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    let base = Zone {
        domain: dns.domain.clone(),
        router: Some(gateway),
        hosts: HashMap::new(),
        records: dns.records.iter().map(|r| (r.name.clone(), r.ip)).collect(),
        ttl: 30,
        subnet,
    };
    (base, configured)
}

/// Bounds of the TCP side: a few connections per client, each kept while
/// it asks or waits for an answer from upstream.
const TCP_LIMITS: Limits = Limits {
    max: 64,
    ready: 2,
    per_client: 4,
    lifetime_ms: 60_000,
    idle_ms: 10_000,
    max_input: 4096,
    rx_buffer: 4096,
    tx_buffer: 16384,
};

/// Who asked a relayed query: a UDP client or a TCP connection's peer.
#[derive(Debug, Clone, Copy)]
enum Asker {
    Udp(SocketAddr),
    Tcp(IpEndpoint),
}

pub(super) struct DnsServer {
    base: Zone,
    /// The base zone plus the apps' names, rebuilt when `generation` moves.
    zone: Option<(u64, Zone)>,
    /// Configured upstream resolvers; empty: those learned on the active uplink.
    configured: Vec<Ipv4Addr>,
    forwarder: Forwarder<Asker>,
    hosts: Arc<HostCache>,
    socket: SocketHandle,
    tcp: Pool,
    counters: Arc<RouterCounters>,
}

impl DnsServer {
    /// Binds port 53 on the gateway address in `sockets` (UDP, and TCP
    /// listeners).
    pub fn new(
        l: &LocalNi,
        sockets: &mut SocketSet<'static>,
        hosts: Arc<HostCache>,
        counters: Arc<RouterCounters>,
    ) -> io::Result<Self> {
        let buf =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 128], vec![0u8; 128 * 1024]);
        let mut sock = udp::Socket::new(buf(), buf());
        // Every address of the router: the gateway's, and its IPv6 ones.
        let any = IpListenEndpoint {
            addr: None,
            port: 53,
        };
        sock.bind(any)
            .map_err(|e| io::Error::other(format!("DNS socket: {e}")))?;
        let (base, configured) = settings(l.gateway, Some(l.subnet), &l.dns);
        Ok(DnsServer {
            base,
            zone: None,
            configured,
            forwarder: Forwarder::new(crate::rand::u16),
            hosts,
            socket: sockets.add(sock),
            tcp: Pool::new(any, TCP_LIMITS),
            counters,
        })
    }

    /// New DNS settings (a live apply): domain, records, upstream servers.
    pub fn set(&mut self, gateway: Ipv4Addr, dns: &Dns) {
        (self.base, self.configured) = settings(gateway, self.base.subnet, dns);
        self.zone = None;
    }

    /// Answers every waiting query, over UDP and TCP; `names` gives the
    /// apps' names when the zone is stale (`generation` moved).
    pub fn serve(
        &mut self,
        sockets: &mut SocketSet<'static>,
        uplinks: &mut UplinkSet,
        generation: u64,
        names: impl FnOnce() -> Vec<(String, IpAddr)>,
    ) {
        if self.zone.as_ref().is_none_or(|(g, _)| *g != generation) {
            let mut z = self.base.clone();
            for (name, ip) in names() {
                z.hosts.entry(name).or_default().push(ip);
            }
            self.zone = Some((generation, z));
        }
        self.serve_udp(sockets, uplinks);
        self.serve_tcp(sockets, uplinks);
    }

    fn serve_udp(&mut self, sockets: &mut SocketSet<'static>, uplinks: &mut UplinkSet) {
        let mut buf = vec![0u8; 4096];
        loop {
            let sock = sockets.get_mut::<udp::Socket>(self.socket);
            let Ok((n, meta)) = sock.recv_slice(&mut buf) else {
                break;
            };
            let query = &buf[..n];
            let to = SocketAddr::new(IpAddr::from(meta.endpoint.addr), meta.endpoint.port);
            let out = match self.local_answer(query) {
                Some(Verdict::Reply(r)) => Some(dns::fit(r, dns::udp_limit(query))),
                Some(_) => None,
                None => self.forward(query, Asker::Udp(to), uplinks),
            };
            if let Some(r) = out {
                self.send_udp(sockets, &r, to);
            }
        }
    }

    /// Queries over TCP: each framed, several on one connection, answered
    /// in turn; those for upstream wait on the connection.
    fn serve_tcp(&mut self, sockets: &mut SocketSet<'static>, uplinks: &mut UplinkSet) {
        let mut upstream = Vec::new();
        let (zone, counters) = (&self.zone, &self.counters);
        let Some((_, zone)) = zone else { return };
        self.tcp
            .service(sockets, now_ms(), &counters.tcp_refused, |conn| {
                while let Some(q) = dns::take_framed(&mut conn.input) {
                    match judge(zone, &q, counters) {
                        Some(Verdict::Reply(r)) => conn.reply(&dns::framed(&r)),
                        Some(_) => conn.finish(),
                        None => {
                            conn.waiting += 1;
                            upstream.extend(conn.peer.map(|p| (q, p)));
                        }
                    }
                }
            });
        for (q, peer) in upstream {
            if let Some(r) = self.forward(&q, Asker::Tcp(peer), uplinks) {
                self.deliver(sockets, &r, Asker::Tcp(peer));
            }
        }
    }

    /// The zone's answer, counted; None: for upstream.
    fn local_answer(&self, query: &[u8]) -> Option<Verdict> {
        let (_, zone) = self.zone.as_ref()?;
        judge(zone, query, &self.counters)
    }

    /// The resolvers to ask: the configured ones, or those the active uplink learned.
    fn servers(&self, uplinks: &UplinkSet) -> Vec<Ipv4Addr> {
        if !self.configured.is_empty() {
            return self.configured.clone();
        }
        uplinks.active_dns()
    }

    /// Relays a query upstream through the active uplink: over UDP to every
    /// resolver, or over TCP to the first; a SERVFAIL right away when there
    /// is no uplink or no resolver.
    fn forward(&mut self, query: &[u8], asker: Asker, uplinks: &mut UplinkSet) -> Option<Vec<u8>> {
        let servers = self.servers(uplinks);
        let port = match (servers.first(), asker) {
            (None, _) => None,
            (Some(_), Asker::Udp(_)) => uplinks.relay_port(),
            (Some(s), Asker::Tcp(_)) => uplinks.relay_tcp(*s),
        };
        let q = port.and_then(|p| self.forwarder.outgoing(query, asker, now_ms(), p));
        let (Some(q), Some(port)) = (q, port) else {
            if let Some(p) = port {
                uplinks.release_port(p);
            }
            self.counters.dns_upstream_failures.fetch_add(1, Relaxed);
            return dns::servfail(query);
        };
        let to = match asker {
            Asker::Udp(_) => &servers[..],
            Asker::Tcp(_) => &servers[..1],
        };
        for s in to {
            uplinks.send_dns(&q, *s, port);
        }
        self.counters.dns_forwarded.fetch_add(1, Relaxed);
        None
    }

    /// Passes the upstream answers back to the apps that asked.
    pub fn relay(&mut self, sockets: &mut SocketSet<'static>, uplinks: &mut UplinkSet) {
        let servers = self.servers(uplinks);
        let answers = uplinks.dns_answers();
        for (answer, from, port) in answers {
            if !servers.contains(&from) {
                continue;
            }
            if let Some((r, asker)) = self.forwarder.incoming(&answer, port) {
                self.deliver(sockets, &r, asker);
            }
            if !self.forwarder.waits_on(port) {
                uplinks.release_port(port);
            }
        }
    }

    /// Once a second: queries upstream never answered get a SERVFAIL.
    pub fn tick(&mut self, sockets: &mut SocketSet<'static>, uplinks: &mut UplinkSet) {
        for (r, asker, port) in self.forwarder.expire(now_ms()) {
            self.counters.dns_upstream_failures.fetch_add(1, Relaxed);
            self.deliver(sockets, &r, asker);
            uplinks.release_port(port);
        }
    }

    /// An answer from upstream (or a SERVFAIL) to the app that asked.
    fn deliver(&mut self, sockets: &mut SocketSet<'static>, r: &[u8], asker: Asker) {
        match asker {
            Asker::Udp(to) => {
                self.send_udp(sockets, &dns::fit(r.to_vec(), dns::MAX_UDP_ANSWER), to)
            }
            Asker::Tcp(peer) => {
                self.learn(r);
                self.tcp.answer(sockets, peer, &dns::framed(r), now_ms());
            }
        }
    }

    /// Remembers the addresses an answer gave, for `host` ACL rules.
    fn learn(&self, r: &[u8]) {
        let now = unix_now();
        for (name, ip, ttl) in dns::answered_addrs(r) {
            self.hosts.learn(&name, ip, ttl, now);
        }
    }

    fn send_udp(&mut self, sockets: &mut SocketSet<'static>, r: &[u8], to: SocketAddr) {
        self.learn(r);
        let ep = IpEndpoint::new(IpAddress::from(to.ip()), to.port());
        let _ = sockets
            .get_mut::<udp::Socket>(self.socket)
            .send_slice(r, ep);
    }
}

/// The zone's verdict on one query, counted: a reply or a drop; None when
/// it is for upstream.
fn judge(zone: &Zone, query: &[u8], c: &RouterCounters) -> Option<Verdict> {
    match dns::answer(zone, query) {
        Verdict::Reply(r) => {
            let formerr = query.len() >= 12 && r.get(3).is_some_and(|rc| rc & 0x0f == 1);
            match formerr {
                true => c.dns_malformed.fetch_add(1, Relaxed),
                false => c.dns_answered.fetch_add(1, Relaxed),
            };
            Some(Verdict::Reply(r))
        }
        Verdict::Drop => {
            c.dns_malformed.fetch_add(1, Relaxed);
            Some(Verdict::Drop)
        }
        Verdict::Forward => None,
    }
}
