//! IPv6 routed through one uplink (a local NI with `uplink_prefix6`): the
//! uplink's link-local address, for which it answers neighbour
//! solicitations so that the upstream can route `subnet6` to it; the
//! upstream router — configured, or the last one that advertised itself —
//! and its MAC by neighbour discovery. Frames for `subnet6` that arrive
//! are kept for the NI; the apps' frames leave one hop further on.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::wire::{self, NEXT_ICMPV6};
use crate::clock::Pacer;
use crate::config::Mac;
use crate::services::ipv6::{self as v6, Nd};

/// Solicitations for the router's MAC go out at most this often.
const SOLICIT_EVERY_MS: u64 = 1000;
/// Frames for `subnet6` held for the NI between two rounds.
const INBOUND_MAX: usize = 1024;

/// The upstream router in use.
#[derive(Debug, Clone, Copy)]
struct Upstream {
    addr: Ipv6Addr,
    mac: Option<Mac>,
    /// An advertised router holds until then (ms); a configured one always.
    until: Option<u64>,
}

pub struct Route6 {
    mac: Mac,
    pub link_local: Ipv6Addr,
    prefix: Ipv6Net,
    configured: Option<Ipv6Addr>,
    router: Option<Upstream>,
    solicit: Pacer,
    /// Frames for `subnet6` that reached the uplink, for the NI.
    pub inbound: Vec<Vec<u8>>,
}

impl Route6 {
    /// Routing of `prefix` through the uplink with MAC `mac`, to the
    /// `configured` router or else to the one that advertises itself.
    pub fn new(mac: Mac, prefix: Ipv6Net, configured: Option<Ipv6Addr>) -> Route6 {
        Route6 {
            mac,
            link_local: v6::link_local(mac),
            prefix,
            configured,
            router: configured.map(|addr| Upstream {
                addr,
                mac: None,
                until: None,
            }),
            solicit: Pacer::new(SOLICIT_EVERY_MS),
            inbound: Vec::new(),
        }
    }

    /// The upstream router in use, if any.
    pub fn router(&self, now_ms: u64) -> Option<Ipv6Addr> {
        self.current(now_ms).map(|r| r.addr)
    }

    fn current(&self, now_ms: u64) -> Option<Upstream> {
        self.router.filter(|r| r.until.is_none_or(|t| t > now_ms))
    }

    /// A frame that reached the uplink. None: not IPv6 (for the uplink's
    /// stack); else the frames to send back on the uplink (a neighbour
    /// advertisement), possibly none.
    pub fn take(&mut self, f: &[u8], now_ms: u64) -> Option<Vec<Vec<u8>>> {
        let ip = wire::parse_ipv6(f)?;
        let nd = (ip.next == NEXT_ICMPV6)
            .then(|| v6::read_nd(ip.payload))
            .flatten();
        if let Some(nd) = nd {
            return Some(self.discovery(&ip, nd, now_ms));
        }
        if self.prefix.contains(&ip.dst)
            && f.get(..6) == Some(&self.mac.0[..])
            && self.inbound.len() < INBOUND_MAX
        {
            self.inbound.push(f.to_vec());
        }
        Some(Vec::new())
    }

    fn discovery(&mut self, ip: &wire::Ip6<'_>, nd: Nd, now_ms: u64) -> Vec<Vec<u8>> {
        match nd.kind {
            v6::ROUTER_ADVERT => self.advertised(ip.src, nd, now_ms),
            v6::NEIGHBOR_SOLICIT if nd.target == Some(self.link_local) => {
                let to = nd.mac.unwrap_or(ip.src_mac);
                let m = v6::neighbor_advert(self.link_local, self.mac);
                let ll = self.link_local;
                return vec![wire::ipv6_packet(self.mac, to, ll, ip.src, NEXT_ICMPV6, &m)];
            }
            v6::NEIGHBOR_ADVERT => {
                if let Some(r) = self.router.as_mut().filter(|r| Some(r.addr) == nd.target) {
                    r.mac = nd.mac.or(Some(ip.src_mac));
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// A router advertising itself becomes the upstream unless one is
    /// configured (then only its MAC is taken); lifetime 0 withdraws it.
    fn advertised(&mut self, src: Ipv6Addr, nd: Nd, now_ms: u64) {
        if self.configured.is_some_and(|c| c != src) {
            return;
        }
        if self.configured.is_some() {
            if let Some(r) = self.router.as_mut() {
                r.mac = nd.mac.or(r.mac);
            }
            return;
        }
        if nd.lifetime == 0 {
            self.router = self.router.filter(|r| r.addr != src);
            return;
        }
        let until = now_ms + u64::from(nd.lifetime) * 1000;
        self.router = Some(Upstream {
            addr: src,
            mac: nd.mac,
            until: Some(until),
        });
    }

    /// An app's frame one hop on to the upstream router, or a solicitation
    /// for the router's MAC (the frame is dropped then). Empty: no router.
    pub fn outbound(&mut self, f: &[u8], now_ms: u64) -> Result<Vec<u8>, Option<Vec<u8>>> {
        let Some(r) = self.current(now_ms) else {
            return Err(None);
        };
        match r.mac {
            Some(m) => wire::reroute6(f, self.mac, m).ok_or(None),
            None => Err(self.solicit(r.addr, now_ms)),
        }
    }

    /// Once a second: a configured router whose MAC is not known yet is
    /// solicited, so the first packets need not wait for it.
    pub fn tick(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let r = self.current(now_ms).filter(|r| r.mac.is_none())?;
        self.solicit(r.addr, now_ms)
    }

    fn solicit(&mut self, target: Ipv6Addr, now_ms: u64) -> Option<Vec<u8>> {
        (self.solicit.ready(now_ms)).then(|| wire::solicitation(self.mac, self.link_local, target))
    }
}

#[cfg(test)]
mod tests;
