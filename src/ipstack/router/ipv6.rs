//! The router's IPv6 side on a local NI with `subnet6`: router
//! advertisements (answering a solicitation, and every 30 s to all nodes),
//! stateless DHCPv6 answered straight from the frame, and the addresses
//! the apps use, learned from their own frames (for AAAA records and
//! status). Neighbour discovery for the router's own addresses, echo and
//! DNS over IPv6 go on to smoltcp.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use super::RouterCounters;
use super::wire::{self, NEXT_ICMPV6, NEXT_UDP};
use crate::clock::Pacer;
use crate::config::{LocalNi, Mac};
use crate::services::ipv6::{self as v6, Advert};
use crate::sync::lock;

/// Unsolicited advertisements go out this often.
const ADVERT_EVERY_MS: u64 = 30_000;
/// Addresses kept for one app interface (the newest).
const PER_APP: usize = 4;

/// The IPv6 addresses each app interface (by MAC) was seen using.
pub type Learned = Arc<Mutex<HashMap<Mac, Vec<Ipv6Addr>>>>;

/// What becomes of an IPv6 frame that reached the router.
#[derive(Debug, PartialEq)]
pub(super) enum Seen {
    /// Answered or dropped here.
    Done,
    /// For the router's stack (neighbour discovery, echo, DNS).
    Stack,
    /// For the uplink: routed on without translation (`uplink_prefix6`).
    Route,
}

pub(super) struct Ipv6Side {
    advert: Advert,
    /// `uplink_prefix6`: the apps' IPv6 leaves through the uplink.
    routed: bool,
    link_local: Ipv6Addr,
    pub gateway6: Ipv6Addr,
    duid: Vec<u8>,
    domain: Option<String>,
    learned: Learned,
    /// Bumped when an app's learned addresses change.
    pub generation: u64,
    advert_every: Pacer,
    /// Solicitations for apps' addresses, at most one a second.
    solicit: Pacer,
    counters: Arc<RouterCounters>,
}

impl Ipv6Side {
    /// The IPv6 side of a local NI; None without `subnet6`.
    pub fn new(
        l: &LocalNi,
        mac: Mac,
        mtu: u16,
        learned: Learned,
        counters: Arc<RouterCounters>,
    ) -> Option<Ipv6Side> {
        let (prefix, gateway6) = (l.subnet6?, l.gateway6()?);
        let link_local = v6::link_local(mac);
        Some(Ipv6Side {
            advert: Advert {
                mac,
                prefix,
                mtu,
                dns: vec![link_local, gateway6],
                default_router: !l.uplinks.is_empty(),
            },
            routed: l.uplink_prefix6,
            link_local,
            gateway6,
            duid: v6::duid(mac),
            domain: l.dns.domain.clone(),
            learned,
            generation: 0,
            advert_every: Pacer::new(ADVERT_EVERY_MS),
            solicit: Pacer::new(1000),
            counters,
        })
    }

    /// The router's addresses: link-local and the subnet's first.
    pub fn addresses(&self) -> [(Ipv6Addr, u8); 2] {
        [(self.link_local, 64), (self.gateway6, 64)]
    }

    /// The addresses learned so far.
    pub fn learned(&self) -> std::sync::MutexGuard<'_, HashMap<Mac, Vec<Ipv6Addr>>> {
        lock(&self.learned)
    }

    /// A new search domain (a live apply).
    pub fn set_domain(&mut self, domain: Option<String>) {
        self.domain = domain;
    }

    /// One IPv6 frame for the router. Learns the sender's address when
    /// `client` is an app of this NI; answers solicitations and DHCPv6
    /// into `out`.
    pub fn frame(&mut self, f: &[u8], client: bool, out: &mut Vec<Vec<u8>>) -> Seen {
        let Some(ip) = wire::parse_ipv6(f) else {
            self.counters.ipv6_malformed.fetch_add(1, Relaxed);
            return Seen::Done;
        };
        let icmp = (ip.next == NEXT_ICMPV6).then_some(ip.payload);
        if client
            && let Some(a) = v6::claimed(ip.src, icmp)
            && self.advert.prefix.contains(&a)
        {
            self.learn(ip.src_mac, a);
        }
        match (ip.next, icmp.and_then(|m| m.first())) {
            (NEXT_ICMPV6, Some(&v6::ROUTER_SOLICIT)) => {
                out.push(self.advert_frame(Some((ip.src_mac, ip.src))));
                return Seen::Done;
            }
            (NEXT_ICMPV6, Some(&v6::ROUTER_ADVERT)) => return Seen::Done,
            (NEXT_UDP, _) => {
                if let Some((546, 547, msg)) = wire::udp_parts(ip.payload) {
                    self.dhcpv6(msg, (ip.src_mac, ip.src), out);
                    return Seen::Done;
                }
            }
            _ => {}
        }
        let to_me = f.get(..6) == Some(&self.advert.mac.0[..]);
        let beyond = !(ip.dst.is_multicast()
            || ip.dst.is_unicast_link_local()
            || ip.dst.is_loopback()
            || ip.dst.is_unspecified()
            || self.advert.prefix.contains(&ip.dst));
        match self.routed && to_me && beyond && self.advert.prefix.contains(&ip.src) {
            true => Seen::Route,
            false => Seen::Stack,
        }
    }

    /// A frame for `subnet6` from the uplink, on to the app that uses its
    /// destination; unknown there, a solicitation for it goes out instead
    /// (the frame is dropped). True when delivered.
    pub fn deliver(&mut self, f: &[u8], now_ms: u64, out: &mut Vec<Vec<u8>>) -> bool {
        let Some(dst) = wire::parse_ipv6(f).map(|ip| ip.dst) else {
            return false;
        };
        let mac = (self.learned().iter())
            .find(|(_, l)| l.contains(&dst))
            .map(|(m, _)| *m);
        if let Some(m) = mac {
            out.extend(wire::reroute6(f, self.advert.mac, m));
            return true;
        }
        if self.solicit.ready(now_ms) {
            out.push(wire::solicitation(self.advert.mac, self.link_local, dst));
        }
        false
    }

    fn dhcpv6(&self, msg: &[u8], (mac, src): (Mac, Ipv6Addr), out: &mut Vec<Vec<u8>>) {
        let dns = [self.gateway6];
        match v6::dhcpv6_reply(msg, &self.duid, &dns, self.domain.as_deref()) {
            Ok(Some(r)) => {
                let d = wire::udp_datagram(547, 546, &r);
                let ll = self.link_local;
                out.push(wire::ipv6_packet(
                    self.advert.mac,
                    mac,
                    ll,
                    src,
                    NEXT_UDP,
                    &d,
                ));
                self.counters.dhcpv6_replies.fetch_add(1, Relaxed);
            }
            Ok(None) => {}
            Err(v6::Malformed) => {
                self.counters.ipv6_malformed.fetch_add(1, Relaxed);
            }
        }
    }

    fn learn(&mut self, mac: Mac, a: Ipv6Addr) {
        let mut l = lock(&self.learned);
        let list = l.entry(mac).or_default();
        if list.last() == Some(&a) {
            return;
        }
        list.retain(|x| *x != a);
        list.push(a);
        if list.len() > PER_APP {
            list.remove(0);
        }
        self.generation += 1;
    }

    /// The advertisement every so often, to all nodes.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Vec<u8>>) {
        if self.advert_every.ready(now_ms) {
            out.push(self.advert_frame(None));
        }
    }

    /// An advertisement to the node that solicited it (when it has an
    /// address to answer to), else to all nodes.
    fn advert_frame(&self, to: Option<(Mac, Ipv6Addr)>) -> Vec<u8> {
        let all: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let (mac, dst) = match to {
            Some((m, a)) if !a.is_unspecified() => (m, a),
            _ => (wire::multicast_mac(all), all),
        };
        let m = v6::router_advert(&self.advert);
        self.counters.router_adverts.fetch_add(1, Relaxed);
        wire::ipv6_packet(self.advert.mac, mac, self.link_local, dst, NEXT_ICMPV6, &m)
    }
}
