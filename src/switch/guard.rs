//! Port security on app interfaces (SPEC §3.2), checked on every frame a
//! VIF sends before it is switched: ARP inspection (the sender MAC is the
//! VIF's, the sender IP one it holds), the IPv4 source guard of local NIs,
//! the DHCP-server and router-advertisement guards; and storm control of
//! the frames any port floods. All lock-free: a VIF's addresses are a few
//! atomic slots, the flood budget a per-second window. A trunk interface on
//! a switch NI is known by one address in each VLAN it tags (at most
//! `SLOTS` VLANs), as a router with VLAN sub-interfaces would be.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use arc_swap::ArcSwap;
use ipnet::Ipv4Net;

use super::stats::DropReason;
use crate::config::Mac;
use crate::frame::{ETH_HDR_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, Packet};

const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = crate::frame::ETHERTYPE_VLAN;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Addresses one interface may hold at once.
const SLOTS: usize = 4;
pub use crate::config::DEFAULT_FLOOD_LIMIT;

/// What a VIF may use as its IPv4 source, and how that is known.
#[derive(Default)]
pub struct Guard {
    /// On: a VIF (a port with its own MAC).
    on: AtomicBool,
    /// The list is the truth (a local NI's lease or fixed address); off,
    /// it is learned (a switch NI: the DHCP ACK seen, else the first ARP).
    strict: AtomicBool,
    /// `vlan << 32 | address` (VLAN 0: untagged); 0 is an empty slot.
    ips: [AtomicU64; SLOTS],
    /// Allowed besides (the VIF's `allowed_ips`: VRRP VIPs and the like);
    /// looked at only when the slots do not match.
    extra: ArcSwap<Vec<Ipv4Net>>,
}

impl Guard {
    /// Turns the guard on (strict: the addresses are set, not learned) or off.
    pub fn enable(&self, on: bool, strict: bool) {
        self.strict.store(strict, Relaxed);
        self.on.store(on, Relaxed);
    }

    /// The addresses the VIF holds now (a local NI's router sets them).
    pub fn set(&self, ips: &[Ipv4Addr]) {
        for (i, slot) in self.ips.iter().enumerate() {
            slot.store(ips.get(i).map_or(0, |ip| slot_of(0, *ip)), Relaxed);
        }
    }

    /// The networks the VIF may use besides its own address.
    pub fn set_extra(&self, nets: Vec<Ipv4Net>) {
        self.extra.store(std::sync::Arc::new(nets));
    }

    /// Held in `vlan`, or allowed besides.
    fn allows(&self, vlan: u16, ip: Ipv4Addr) -> bool {
        self.holds(vlan, ip) || self.extra.load().iter().any(|n| n.contains(&ip))
    }

    pub fn ips(&self) -> Vec<Ipv4Addr> {
        self.ips
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|v| *v != 0)
            .map(|v| Ipv4Addr::from(v as u32))
            .collect()
    }

    #[inline]
    fn holds(&self, vlan: u16, ip: Ipv4Addr) -> bool {
        // 0.0.0.0 is never held.
        let v = slot_of(vlan, ip);
        !ip.is_unspecified() && self.ips.iter().any(|s| s.load(Relaxed) == v)
    }

    /// The slot of the address known in `vlan`, else a free one.
    fn slot_for(&self, vlan: u16) -> Option<&AtomicU64> {
        let of = |v: u64| v != 0 && (v >> 32) as u16 == vlan;
        (self.ips.iter().find(|s| of(s.load(Relaxed))))
            .or_else(|| self.ips.iter().find(|s| s.load(Relaxed) == 0))
    }

    fn known(&self, vlan: u16) -> bool {
        (self.ips.iter()).any(|s| s.load(Relaxed) != 0 && (s.load(Relaxed) >> 32) as u16 == vlan)
    }

    /// A switch NI's VIF: a DHCP ACK to it names its address in `vlan`
    /// (the tag the VIF uses there; 0: untagged).
    pub fn learn_from_server(&self, vlan: u16, ip: Ipv4Addr) {
        if !self.strict.load(Relaxed)
            && let Some(s) = self.slot_for(vlan)
        {
            s.store(slot_of(vlan, ip), Relaxed);
        }
    }

    /// Checks a frame the VIF sent; None passes.
    #[inline]
    pub fn egress(&self, p: &Packet, own: Mac) -> Option<DropReason> {
        if !self.on.load(Relaxed) {
            return None;
        }
        // Judged by what they carry, under up to two tags (802.1Q, 802.1ad),
        // in the VLAN of the outer 802.1Q tag.
        let f = p.frame();
        let vlan = p.tci().map_or(0, |t| t & 0x0fff);
        let (mut ethertype, mut at) = (p.ethertype(), ETH_HDR_LEN);
        for _ in 0..2 {
            if !matches!(ethertype, ETHERTYPE_VLAN | ETHERTYPE_QINQ) {
                break;
            }
            let inner = f.get(at + 2..at + 4)?;
            ethertype = u16::from_be_bytes([inner[0], inner[1]]);
            at += 4;
        }
        let l3 = f.get(at..)?;
        match ethertype {
            ETHERTYPE_ARP => self.arp(vlan, l3, own),
            ETHERTYPE_IPV4 => self.ipv4(vlan, l3),
            ETHERTYPE_IPV6 => ipv6(l3),
            _ => None,
        }
    }

    /// ARP inspection: the sender MAC is the VIF's; the sender IP is one it
    /// holds, or 0.0.0.0 (a probe); on a switch NI the first one (in each
    /// VLAN) is learned.
    fn arp(&self, vlan: u16, a: &[u8], own: Mac) -> Option<DropReason> {
        if a.len() < 28 {
            return Some(DropReason::ArpMalformed);
        }
        if a[8..14] != own.0 {
            return Some(DropReason::ArpSpoofedMac);
        }
        let spa = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
        if spa.is_unspecified() || self.allows(vlan, spa) {
            return None;
        }
        if !self.strict.load(Relaxed)
            && !self.known(vlan)
            && let Some(s) = self.slot_for(vlan)
        {
            s.store(slot_of(vlan, spa), Relaxed);
            return None;
        }
        Some(DropReason::ArpSpoofedIp)
    }

    /// The IPv4 source guard (local NIs) and the DHCP-server guard.
    fn ipv4(&self, vlan: u16, ip: &[u8]) -> Option<DropReason> {
        if ip.len() < 20 {
            return None;
        }
        let ihl = (ip[0] & 0x0f) as usize * 4;
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
        let ports = (ip[9] == 17 && first)
            .then(|| ip.get(ihl..ihl + 4))
            .flatten()
            .map(|u| {
                (
                    u16::from_be_bytes([u[0], u[1]]),
                    u16::from_be_bytes([u[2], u[3]]),
                )
            });
        // A server answers from port 67 to port 68: an app does neither.
        if ports.is_some_and(|(s, d)| s == 67 || d == 68) {
            return Some(DropReason::DhcpServer);
        }
        if !self.strict.load(Relaxed) || self.allows(vlan, src) {
            return None;
        }
        let dhcp_client = src.is_unspecified() && ports == Some((68, 67));
        (!dhcp_client).then_some(DropReason::IpSpoofed)
    }
}

/// A slot's value: an address known in a VLAN.
fn slot_of(vlan: u16, ip: Ipv4Addr) -> u64 {
    (vlan as u64) << 32 | u32::from(ip) as u64
}

/// Extension headers walked to find the ICMPv6 or UDP header of an IPv6
/// packet (RFC 7113: an RA hidden behind them is still an RA).
const V6_EXT: [u8; 4] = [0, 43, 60, 51];

/// The RA guard (router advertisements and redirects) and the DHCPv6
/// server guard.
fn ipv6(ip: &[u8]) -> Option<DropReason> {
    let mut next = *ip.get(6)?;
    let mut off = 40;
    for _ in 0..8 {
        match next {
            58 => {
                let t = *ip.get(off)?;
                return matches!(t, 134 | 137).then_some(DropReason::RaGuard);
            }
            17 => {
                // From the server port 547, or to the client port 546.
                let ports = ip.get(off..off + 4)?;
                let server = ports[..2] == [2, 35] || ports[2..] == [2, 34];
                return server.then_some(DropReason::DhcpServer);
            }
            44 => {
                // A later fragment carries no header to judge; a first one does.
                let h = ip.get(off..off + 8)?;
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return None;
                }
                next = h[0];
                off += 8;
            }
            n if V6_EXT.contains(&n) => {
                let h = ip.get(off..off + 2)?;
                next = h[0];
                off += if n == 51 {
                    (h[1] as usize + 2) * 4
                } else {
                    (h[1] as usize + 1) * 8
                };
            }
            _ => return None,
        }
    }
    // A chain too long to judge is not passed on from an app.
    Some(DropReason::RaGuard)
}

/// Storm control: the frames one port floods in a second.
pub struct FloodBudget {
    limit: AtomicU32,
    second: AtomicU32,
    used: AtomicU32,
}

impl FloodBudget {
    pub fn new(limit: u32) -> Self {
        FloodBudget {
            limit: AtomicU32::new(limit),
            second: AtomicU32::new(0),
            used: AtomicU32::new(0),
        }
    }

    /// Frames per second; 0 is no limit.
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Relaxed);
    }

    /// Whether one more flooded frame fits in second `now`.
    #[inline]
    pub fn take(&self, now: u32) -> bool {
        let limit = self.limit.load(Relaxed);
        if limit == 0 {
            return true;
        }
        if self.second.load(Relaxed) != now {
            self.second.store(now, Relaxed);
            self.used.store(0, Relaxed);
        }
        self.used.fetch_add(1, Relaxed) < limit
    }
}

#[cfg(test)]
mod tests;
