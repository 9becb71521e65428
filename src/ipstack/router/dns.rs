//! The router's DNS server on the gateway address: answers the NI's names
//! from a zone rebuilt when the apps' addresses change, relays the rest to
//! the upstream resolvers through the active uplink, and notes the
//! addresses it answered for `host` ACL rules.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::RouterCounters;
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

pub(super) struct DnsServer {
    base: Zone,
    /// The base zone plus the apps' names, rebuilt when `generation` moves.
    zone: Option<(u64, Zone)>,
    /// Configured upstream resolvers; empty: those learned on the active uplink.
    configured: Vec<Ipv4Addr>,
    forwarder: Forwarder,
    hosts: Arc<HostCache>,
    socket: SocketHandle,
    counters: Arc<RouterCounters>,
}

impl DnsServer {
    /// Binds port 53 on the gateway address in `sockets`.
    pub fn new(
        l: &LocalNi,
        sockets: &mut SocketSet<'static>,
        hosts: Arc<HostCache>,
        counters: Arc<RouterCounters>,
    ) -> io::Result<Self> {
        let buf =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 128], vec![0u8; 128 * 1024]);
        let mut sock = udp::Socket::new(buf(), buf());
        sock.bind(IpEndpoint::new(IpAddress::Ipv4(l.gateway), 53))
            .map_err(|e| io::Error::other(format!("DNS socket: {e}")))?;
        let (base, configured) = settings(l.gateway, Some(l.subnet), &l.dns);
        Ok(DnsServer {
            base,
            zone: None,
            configured,
            forwarder: Forwarder::new(crate::rand::u16),
            hosts,
            socket: sockets.add(sock),
            counters,
        })
    }

    /// New DNS settings (a live apply): domain, records, upstream servers.
    pub fn set(&mut self, gateway: Ipv4Addr, dns: &Dns) {
        (self.base, self.configured) = settings(gateway, self.base.subnet, dns);
        self.zone = None;
    }

    /// Answers every waiting query; `names` gives the apps' names when the
    /// zone is stale (`generation` moved).
    pub fn serve(
        &mut self,
        sockets: &mut SocketSet<'static>,
        uplinks: &mut UplinkSet,
        generation: u64,
        names: impl FnOnce() -> Vec<(String, Ipv4Addr)>,
    ) {
        if self.zone.as_ref().is_none_or(|(g, _)| *g != generation) {
            let mut z = self.base.clone();
            for (name, ip) in names() {
                z.hosts.entry(name).or_default().push(ip);
            }
            self.zone = Some((generation, z));
        }
        let mut buf = vec![0u8; 4096];
        loop {
            let sock = sockets.get_mut::<udp::Socket>(self.socket);
            let Ok((n, meta)) = sock.recv_slice(&mut buf) else {
                break;
            };
            let query = &buf[..n];
            let Some((_, zone)) = &self.zone else { break };
            let out = match dns::answer(zone, query) {
                Verdict::Reply(r) => {
                    let rcode_formerr = r.get(3).is_some_and(|rc| rc & 0x0f == 1);
                    let c = if query.len() >= 12 && rcode_formerr {
                        &self.counters.dns_malformed
                    } else {
                        &self.counters.dns_answered
                    };
                    c.fetch_add(1, Relaxed);
                    Some(r)
                }
                Verdict::Drop => {
                    self.counters.dns_malformed.fetch_add(1, Relaxed);
                    None
                }
                Verdict::Forward => self.forward(query, meta.endpoint, uplinks),
            };
            if let Some(r) = out {
                let to = SocketAddr::new(IpAddr::from(meta.endpoint.addr), meta.endpoint.port);
                self.send(sockets, &r, to);
            }
        }
    }

    /// The resolvers to ask: the configured ones, or those the active uplink learned.
    fn servers(&self, uplinks: &UplinkSet) -> Vec<Ipv4Addr> {
        if !self.configured.is_empty() {
            return self.configured.clone();
        }
        uplinks.active_dns()
    }

    /// Relays a query upstream through the active uplink; a SERVFAIL right
    /// away when there is no uplink or no resolver.
    fn forward(
        &mut self,
        query: &[u8],
        client: IpEndpoint,
        uplinks: &mut UplinkSet,
    ) -> Option<Vec<u8>> {
        let sa = SocketAddr::new(IpAddr::from(client.addr), client.port);
        let servers = self.servers(uplinks);
        let port = match servers.is_empty() {
            true => None,
            false => uplinks.relay_port(),
        };
        let q = port.and_then(|p| self.forwarder.outgoing(query, sa, now_ms(), p));
        let (Some(q), Some(port)) = (q, port) else {
            if let Some(p) = port {
                uplinks.release_port(p);
            }
            self.counters.dns_upstream_failures.fetch_add(1, Relaxed);
            return dns::servfail(query);
        };
        for s in servers {
            uplinks.send_dns(&q, s, port);
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
            if let Some((r, to)) = self.forwarder.incoming(&answer, port) {
                self.send(sockets, &r, to);
            }
            if !self.forwarder.waits_on(port) {
                uplinks.release_port(port);
            }
        }
    }

    /// Once a second: queries upstream never answered get a SERVFAIL.
    pub fn tick(&mut self, sockets: &mut SocketSet<'static>, uplinks: &mut UplinkSet) {
        for (r, to, port) in self.forwarder.expire(now_ms()) {
            self.counters.dns_upstream_failures.fetch_add(1, Relaxed);
            self.send(sockets, &r, to);
            uplinks.release_port(port);
        }
    }

    fn send(&mut self, sockets: &mut SocketSet<'static>, r: &[u8], to: SocketAddr) {
        // Remember the addresses an answer gave, for `host` ACL rules.
        let now = unix_now();
        for (name, ip, ttl) in dns::answered_a(r) {
            self.hosts.learn(&name, ip, ttl, now);
        }
        let r = dns::fit(r.to_vec(), dns::MAX_UDP_ANSWER);
        // Clients of the DNS socket are the NI's (IPv4) apps.
        let IpAddr::V4(ip) = to.ip() else { return };
        let ep = IpEndpoint::new(IpAddress::Ipv4(ip), to.port());
        let _ = sockets
            .get_mut::<udp::Socket>(self.socket)
            .send_slice(&r, ep);
    }
}
