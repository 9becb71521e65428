//! Reading and rewriting the addresses and ports of an IPv4 packet in place
//! for NAT: TCP, UDP, ICMP echo, and ICMP errors (whose quoted header is
//! rewritten too). Checksums are updated incrementally (RFC 1624). A packet
//! whose L4 checksum a TAP left partial (virtio NEEDS_CSUM) holds only the
//! pseudo-header sum in that field, so only address changes are folded into
//! it; GSO packets keep their virtio header and are rewritten once.

use std::net::Ipv4Addr;

use crate::config::Mac;
use crate::frame::{ETH_HDR_LEN, ETHERTYPE_IPV4, VNET_F_NEEDS_CSUM, VNET_HDR_LEN};
use crate::services::nat::{Proto, TCP_SYN, Tuple};

/// Offset of the IPv4 header in a packet (virtio-net header + frame).
pub const IP: usize = VNET_HDR_LEN + ETH_HDR_LEN;

/// What kind of IPv4 packet it is, for NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP, UDP or ICMP echo: `tuple` is its flow.
    Flow,
    /// An ICMP error quoting a packet of flow `inner`.
    IcmpError { inner: Tuple, inner_ip: usize },
}

/// The parsed headers of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub tuple: Tuple,
    pub tcp_flags: u8,
    pub kind: Kind,
    l4: usize,
    end: usize,
}

impl Parsed {
    /// Where the L4 header starts and where the packet ends (its IPv4
    /// total length, cut to the buffer).
    pub fn l4_span(&self) -> (usize, usize) {
        (self.l4, self.end)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The IPv4 header at `at`: (protocol, header length, end of packet), or
/// None when malformed or not a first fragment; a whole packet (`whole`)
/// must not be a fragment at all, since only the first one has ports.
fn ipv4(b: &[u8], at: usize, whole: bool) -> Option<(u8, usize, usize)> {
    let h = b.get(at..at + 20)?;
    let ihl = (h[0] & 0x0f) as usize * 4;
    if h[0] >> 4 != 4 || ihl < 20 || b.len() < at + ihl {
        return None;
    }
    let frag = be16(h, 6);
    let more = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    if offset != 0 || (whole && more) {
        return None;
    }
    // A quoted header's total length describes the original packet, of
    // which only a part is quoted.
    let total = be16(h, 2) as usize;
    let end = if whole {
        if total < ihl {
            return None;
        }
        (at + total).min(b.len())
    } else {
        b.len()
    };
    Some((h[9], ihl, end))
}

/// Ports (or the ICMP echo identifier) of the L4 header at `l4`.
fn ports(b: &[u8], proto: Proto, l4: usize, end: usize) -> Option<(u16, u16)> {
    match proto {
        Proto::Tcp | Proto::Udp => {
            if end < l4 + 4 {
                return None;
            }
            Some((be16(b, l4), be16(b, l4 + 2)))
        }
        Proto::Icmp => {
            if end < l4 + 8 {
                return None;
            }
            let id = be16(b, l4 + 4);
            match b[l4] {
                8 => Some((id, 0)),
                0 => Some((0, id)),
                _ => None,
            }
        }
    }
}

/// Parses an untagged IPv4 packet for NAT; None for anything else, for
/// fragments and for malformed headers.
pub fn parse(b: &[u8]) -> Option<Parsed> {
    if b.len() < IP || be16(b, VNET_HDR_LEN + 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let (n, ihl, end) = ipv4(b, IP, true)?;
    let proto = Proto::from_number(n)?;
    let l4 = IP + ihl;
    let (src, dst) = (ip_at(b, IP + 12), ip_at(b, IP + 16));
    let mut tcp_flags = 0;
    let min = match proto {
        Proto::Tcp => 20,
        Proto::Udp => 8,
        Proto::Icmp => 8,
    };
    if end < l4 + min {
        return None;
    }
    if proto == Proto::Tcp {
        tcp_flags = b[l4 + 13];
    }
    if proto == Proto::Icmp && matches!(b[l4], 3 | 11 | 12) {
        let inner_ip = l4 + 8;
        let (n, ihl, qend) = ipv4(&b[..end], inner_ip, false)?;
        let iproto = Proto::from_number(n)?;
        let (isport, idport) = ports(b, iproto, inner_ip + ihl, qend)?;
        let inner = Tuple {
            proto: iproto,
            src: ip_at(b, inner_ip + 12),
            sport: isport,
            dst: ip_at(b, inner_ip + 16),
            dport: idport,
        };
        let tuple = Tuple {
            proto,
            src,
            sport: 0,
            dst,
            dport: 0,
        };
        return Some(Parsed {
            tuple,
            tcp_flags,
            kind: Kind::IcmpError { inner, inner_ip },
            l4,
            end,
        });
    }
    let (sport, dport) = ports(b, proto, l4, end)?;
    Some(Parsed {
        tuple: Tuple {
            proto,
            src,
            sport,
            dst,
            dport,
        },
        tcp_flags,
        kind: Kind::Flow,
        l4,
        end,
    })
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// One's-complement difference of replacing the 16-bit words `old` by `new`.
fn delta(old: &[u8], new: &[u8]) -> u32 {
    let old = old.chunks_exact(2).map(|c| !be16(c, 0) as u32);
    let new = new.chunks_exact(2).map(|c| be16(c, 0) as u32);
    old.chain(new).sum()
}

/// Two addresses (or two ports) as the bytes a checksum covers.
fn addrs(a: Ipv4Addr, b: Ipv4Addr) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&a.octets());
    v[4..].copy_from_slice(&b.octets());
    v
}

fn ports2(a: u16, b: u16) -> [u8; 4] {
    let mut v = [0u8; 4];
    v[..2].copy_from_slice(&a.to_be_bytes());
    v[2..].copy_from_slice(&b.to_be_bytes());
    v
}

/// Applies a difference to a finished checksum (RFC 1624, eqn. 3).
fn update(c: u16, d: u32) -> u16 {
    !fold(!c as u32 + d)
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Where a header's L4 checksum sits, if it has one we can reach.
fn l4_csum_at(proto: Proto, l4: usize) -> usize {
    match proto {
        Proto::Tcp => l4 + 16,
        Proto::Udp => l4 + 6,
        Proto::Icmp => l4 + 2,
    }
}

/// Rewrites the IPv4 header at `ip` and its L4 header at `l4` from tuple
/// `from` to tuple `to`. `partial`: the L4 checksum field holds the
/// pseudo-header sum for the device to finish. Checksum fields beyond
/// `end` (a quoted header cut short) are left alone.
fn rewrite_headers(
    b: &mut [u8],
    ip: usize,
    l4: usize,
    end: usize,
    from: &Tuple,
    to: &Tuple,
    partial: bool,
) {
    let d_addr = delta(&addrs(from.src, from.dst), &addrs(to.src, to.dst));
    let ipc = update(be16(b, ip + 10), d_addr);
    put16(b, ip + 10, ipc);
    b[ip + 12..ip + 16].copy_from_slice(&to.src.octets());
    b[ip + 16..ip + 20].copy_from_slice(&to.dst.octets());

    let (old_ports, new_ports, port_at) = match (from.proto, b.get(l4)) {
        (Proto::Icmp, Some(8)) => (from.sport, to.sport, l4 + 4),
        (Proto::Icmp, _) => (from.dport, to.dport, l4 + 4),
        _ => (0, 0, l4),
    };
    let d_ports = if from.proto == Proto::Icmp {
        delta(&old_ports.to_be_bytes(), &new_ports.to_be_bytes())
    } else {
        delta(&ports2(from.sport, from.dport), &ports2(to.sport, to.dport))
    };
    let at = l4_csum_at(from.proto, l4);
    if at + 2 <= end {
        let c = be16(b, at);
        let v = match (from.proto, partial) {
            // The device sums the L4 header itself: only the pseudo-header moved.
            (Proto::Tcp | Proto::Udp, true) => fold(c as u32 + d_addr),
            (Proto::Icmp, true) => c,
            (Proto::Udp, false) if c == 0 => 0,
            (Proto::Udp, false) => match update(c, d_addr + d_ports) {
                0 => 0xffff,
                v => v,
            },
            (Proto::Tcp, false) => update(c, d_addr + d_ports),
            (Proto::Icmp, false) => update(c, d_ports),
        };
        put16(b, at, v);
    }
    if from.proto == Proto::Icmp {
        if port_at + 2 <= end {
            put16(b, port_at, new_ports);
        }
        // An ICMP message has no pseudo-header: when the incremental update
        // lands on 0x0000 the message may sum to zero, and only a sum from
        // scratch can tell 0x0000 from 0xffff.
        if !partial && at + 2 <= end && be16(b, at) == 0 {
            // The field is zero already: the sum covers the message as is.
            put16(
                b,
                at,
                super::wire::csum_fold(super::wire::csum_add(0, &b[l4..end])),
            );
        }
    } else if l4 + 4 <= end {
        put16(b, l4, to.sport);
        put16(b, l4 + 2, to.dport);
    }
}

fn needs_csum(b: &[u8]) -> bool {
    b[0] & VNET_F_NEEDS_CSUM != 0
}

/// Rewrites a parsed packet so that its flow becomes `to`. For an ICMP
/// error, `to` is the flow the quoted packet must show, and the outer
/// addresses follow it. Decrements the TTL; false (leave the packet) when
/// it ran out.
pub fn rewrite(b: &mut [u8], p: &Parsed, to: &Tuple) -> bool {
    let ttl = b[IP + 8];
    if ttl <= 1 {
        return false;
    }
    // TTL and protocol share a word.
    let old = [ttl, b[IP + 9]];
    b[IP + 8] = ttl - 1;
    let c = update(be16(b, IP + 10), delta(&old, &[ttl - 1, old[1]]));
    put16(b, IP + 10, c);
    match p.kind {
        Kind::Flow => {
            let partial = needs_csum(b) && le16(b, 6) as usize + VNET_HDR_LEN == p.l4;
            rewrite_headers(b, IP, p.l4, p.end, &p.tuple, to, partial);
        }
        Kind::IcmpError { inner, inner_ip } => {
            let (_, ihl, _) = match ipv4(&b[..p.end], inner_ip, false) {
                Some(h) => h,
                None => return false,
            };
            rewrite_headers(b, inner_ip, inner_ip + ihl, p.end, &inner, to, false);
            let mut outer = p.tuple;
            if outer.dst == inner.src {
                outer.dst = to.src;
            }
            if outer.src == inner.dst {
                outer.src = to.dst;
            }
            let d = delta(
                &addrs(p.tuple.src, p.tuple.dst),
                &addrs(outer.src, outer.dst),
            );
            let c = update(be16(b, IP + 10), d);
            put16(b, IP + 10, c);
            b[IP + 12..IP + 16].copy_from_slice(&outer.src.octets());
            b[IP + 16..IP + 20].copy_from_slice(&outer.dst.octets());
            // The quoted header changed: sum the ICMP message again.
            put16(b, p.l4 + 2, 0);
            let sum = super::wire::csum_fold(super::wire::csum_add(0, &b[p.l4..p.end]));
            put16(b, p.l4 + 2, sum);
        }
    }
    true
}

/// Lowers the MSS a TCP SYN (or SYN-ACK) announces to `max`, keeping its
/// checksum right; true when it changed the packet.
pub fn clamp_mss(b: &mut [u8], p: &Parsed, max: u16) -> bool {
    if p.kind != Kind::Flow || p.tuple.proto != Proto::Tcp || p.tcp_flags & TCP_SYN == 0 {
        return false;
    }
    let Some(at) = mss_option(b, p.l4, p.end) else {
        return false;
    };
    let old = be16(b, at);
    if old <= max {
        return false;
    }
    // The checksum covers 16-bit words from the TCP header's start: take the
    // aligned words around the option's value.
    let w = p.l4 + ((at - p.l4) & !1);
    let n = if (at - p.l4) % 2 == 0 { 2 } else { 4 };
    let mut before = [0u8; 4];
    before[..n].copy_from_slice(&b[w..w + n]);
    put16(b, at, max);
    let partial = needs_csum(b) && le16(b, 6) as usize + VNET_HDR_LEN == p.l4;
    if !partial {
        let c = update(be16(b, p.l4 + 16), delta(&before[..n], &b[w..w + n]));
        put16(b, p.l4 + 16, c);
    }
    true
}

/// Where the value of the MSS option of the TCP header at `l4` sits.
fn mss_option(b: &[u8], l4: usize, end: usize) -> Option<usize> {
    let doff = (*b.get(l4 + 12)? >> 4) as usize * 4;
    let opts_end = (l4 + doff).min(end);
    let mut i = l4 + 20;
    while i < opts_end {
        match b[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = *b.get(i + 1)? as usize;
                if len < 2 || i + len > opts_end {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Sets the Ethernet addresses of a packet.
pub fn set_macs(b: &mut [u8], src: Mac, dst: Mac) {
    b[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&dst.0);
    b[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12].copy_from_slice(&src.0);
}

/// The source MAC of a packet.
pub fn src_mac(b: &[u8]) -> Option<Mac> {
    Some(Mac(b
        .get(VNET_HDR_LEN + 6..VNET_HDR_LEN + 12)?
        .try_into()
        .ok()?))
}

/// Sender IP and MAC of an ARP packet.
pub fn arp_sender(b: &[u8]) -> Option<(Ipv4Addr, Mac)> {
    let a = b.get(IP..IP + 28)?;
    if be16(b, VNET_HDR_LEN + 12) != crate::frame::ETHERTYPE_ARP
        || be16(a, 0) != 1
        || be16(a, 2) != 0x0800
    {
        return None;
    }
    Some((ip_at(a, 14), Mac(a[8..14].try_into().ok()?)))
}

/// An ARP request (virtio-net header + frame) asking for `target`.
pub fn arp_request(mac: Mac, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; VNET_HDR_LEN];
    p.extend(Mac::BROADCAST.0);
    p.extend(mac.0);
    p.extend(crate::frame::ETHERTYPE_ARP.to_be_bytes());
    p.extend([0, 1, 0x08, 0, 6, 4, 0, 1]);
    p.extend(mac.0);
    p.extend(ip.octets());
    p.extend([0u8; 6]);
    p.extend(target.octets());
    p.resize(VNET_HDR_LEN + 60, 0);
    p
}

#[cfg(test)]
mod tests;
