//! Small frame helpers for the router: finishing checksums that TAP offloads
//! left partial, reading IPv4/UDP and IPv6 headers, and building UDP and
//! IPv6 frames.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::Mac;
use crate::frame::{ETH_HDR_LEN, ETHERTYPE_IPV4, VNET_F_NEEDS_CSUM, VNET_HDR_LEN};

const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IPv6 next-header values the router builds.
pub const NEXT_UDP: u8 = 17;
pub const NEXT_ICMPV6: u8 = 58;

/// RFC 1071 one's-complement sum of `data`, added to `sum`.
pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

pub fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Takes a packet (virtio-net header + frame) and returns the bare Ethernet
/// frame with any partial checksum completed, as a receiver expects it.
/// GSO frames are refused (None): nothing addressed to the router is that big.
pub fn finish_frame(pkt: &[u8]) -> Option<Vec<u8>> {
    if pkt.len() < VNET_HDR_LEN + ETH_HDR_LEN || pkt[1] != 0 {
        return None;
    }
    let mut f = pkt[VNET_HDR_LEN..].to_vec();
    if pkt[0] & VNET_F_NEEDS_CSUM != 0 {
        let start = u16::from_le_bytes([pkt[6], pkt[7]]) as usize;
        let off = u16::from_le_bytes([pkt[8], pkt[9]]) as usize;
        if start + off + 2 > f.len() {
            return None;
        }
        let c = csum_fold(csum_add(0, &f[start..]));
        f[start + off..start + off + 2].copy_from_slice(&c.to_be_bytes());
    }
    Some(f)
}

/// A parsed IPv4/UDP datagram inside an Ethernet frame.
pub struct Udp<'a> {
    pub src_mac: Mac,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

/// Reads an untagged IPv4/UDP frame; None for anything else or malformed.
pub fn parse_udp(f: &[u8]) -> Option<Udp<'_>> {
    if f.len() < ETH_HDR_LEN + 28 || u16::from_be_bytes([f[12], f[13]]) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &f[ETH_HDR_LEN..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 17 || ip.len() < ihl + 8 {
        return None;
    }
    let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
    let udp = ip.get(ihl..total)?;
    if udp.len() < 8 {
        return None;
    }
    let ulen = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if ulen < 8 || ulen > udp.len() {
        return None;
    }
    Some(Udp {
        src_mac: Mac(f[6..12].try_into().ok()?),
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        sport: u16::from_be_bytes([udp[0], udp[1]]),
        dport: u16::from_be_bytes([udp[2], udp[3]]),
        payload: &udp[8..ulen],
    })
}

/// The source MAC and the source and destination addresses of an untagged
/// IPv4 frame.
pub fn ipv4_ends(f: &[u8]) -> Option<(Mac, Ipv4Addr, Ipv4Addr)> {
    if u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = f.get(ETH_HDR_LEN..ETH_HDR_LEN + 20)?;
    Some((
        Mac(f[6..12].try_into().ok()?),
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    ))
}

/// Builds virtio-net header + Ethernet + IPv4 + UDP around `payload`, with
/// both checksums computed.
pub fn udp_packet(
    src_mac: Mac,
    dst_mac: Mac,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let ulen = 8 + payload.len();
    let tlen = 20 + ulen;
    let mut p = Vec::with_capacity(VNET_HDR_LEN + ETH_HDR_LEN + tlen);
    p.extend([0u8; VNET_HDR_LEN]);
    p.extend(dst_mac.0);
    p.extend(src_mac.0);
    p.extend(ETHERTYPE_IPV4.to_be_bytes());
    let ip_at = p.len();
    p.extend([0x45, 0]);
    p.extend((tlen as u16).to_be_bytes());
    p.extend([0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend(src.0.octets());
    p.extend(dst.0.octets());
    let ipc = csum_fold(csum_add(0, &p[ip_at..ip_at + 20]));
    p[ip_at + 10..ip_at + 12].copy_from_slice(&ipc.to_be_bytes());
    let udp_at = p.len();
    p.extend(src.1.to_be_bytes());
    p.extend(dst.1.to_be_bytes());
    p.extend((ulen as u16).to_be_bytes());
    p.extend([0, 0]);
    p.extend(payload);
    let mut sum = csum_add(0, &src.0.octets());
    sum = csum_add(sum, &dst.0.octets());
    sum += 17 + ulen as u32;
    let mut c = csum_fold(csum_add(sum, &p[udp_at..]));
    if c == 0 {
        c = 0xffff;
    }
    p[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
    p
}

/// An IPv6 packet in an untagged Ethernet frame, read up to its first
/// header after the fixed one.
pub struct Ip6<'a> {
    pub src_mac: Mac,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next: u8,
    pub payload: &'a [u8],
}

/// Reads an untagged IPv6 frame; None for anything else or malformed.
pub fn parse_ipv6(f: &[u8]) -> Option<Ip6<'_>> {
    if u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) != ETHERTYPE_IPV6 {
        return None;
    }
    let ip = f.get(ETH_HDR_LEN..)?;
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let addr = |at: usize| {
        <[u8; 16]>::try_from(&ip[at..at + 16])
            .ok()
            .map(Ipv6Addr::from)
    };
    Some(Ip6 {
        src_mac: Mac(f[6..12].try_into().ok()?),
        src: addr(8)?,
        dst: addr(24)?,
        next: ip[6],
        payload: ip.get(40..40 + len)?,
    })
}

/// The ports and payload of a UDP datagram.
pub fn udp_parts(d: &[u8]) -> Option<(u16, u16, &[u8])> {
    let len = u16::from_be_bytes([*d.get(4)?, *d.get(5)?]) as usize;
    let payload = d.get(8..len)?;
    Some((
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        payload,
    ))
}

/// A UDP datagram with its checksum left zero (for `ipv6_packet`).
pub fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat()
}

/// The Ethernet address IPv6 multicast `ip` goes to.
pub fn multicast_mac(ip: Ipv6Addr) -> Mac {
    let o = ip.octets();
    Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Builds virtio-net header + Ethernet + IPv6 (hop limit 255, as neighbour
/// discovery requires) around an ICMPv6 message or UDP datagram whose
/// checksum is zero, and fills in the checksum.
pub fn ipv6_packet(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(VNET_HDR_LEN + ETH_HDR_LEN + 40 + body.len());
    p.extend([0u8; VNET_HDR_LEN]);
    p.extend(dst_mac.0);
    p.extend(src_mac.0);
    p.extend(ETHERTYPE_IPV6.to_be_bytes());
    p.extend([0x60, 0, 0, 0]);
    p.extend((body.len() as u16).to_be_bytes());
    p.extend([next, 255]);
    p.extend(src.octets());
    p.extend(dst.octets());
    let at = p.len();
    p.extend(body);
    let mut sum = csum_add(0, &src.octets());
    sum = csum_add(sum, &dst.octets());
    sum += body.len() as u32 + u32::from(next);
    let mut c = csum_fold(csum_add(sum, body));
    if c == 0 && next == NEXT_UDP {
        c = 0xffff;
    }
    let off = at + if next == NEXT_UDP { 6 } else { 2 };
    if off + 2 <= p.len() {
        p[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// A neighbour solicitation for `target` from `src` (link-local) and
/// `mac`, to the target's solicited-node group.
pub fn solicitation(mac: Mac, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    use crate::services::ipv6 as v6;
    let to = v6::solicited_node(target);
    let m = v6::neighbor_solicit(target, mac);
    ipv6_packet(mac, multicast_mac(to), src, to, NEXT_ICMPV6, &m)
}

/// An IPv6 frame forwarded one hop: new MACs, the hop limit one lower,
/// a fresh virtio-net header. None when the hop limit runs out.
pub fn reroute6(f: &[u8], src_mac: Mac, dst_mac: Mac) -> Option<Vec<u8>> {
    let hops = *f.get(ETH_HDR_LEN + 7)?;
    if hops <= 1 {
        return None;
    }
    let mut p = Vec::with_capacity(VNET_HDR_LEN + f.len());
    p.extend([0u8; VNET_HDR_LEN]);
    p.extend(dst_mac.0);
    p.extend(src_mac.0);
    p.extend(&f[12..]);
    p[VNET_HDR_LEN + ETH_HDR_LEN + 7] = hops - 1;
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let p = udp_packet(
            Mac([2, 0, 0, 0, 0, 1]),
            Mac::BROADCAST,
            ("10.0.0.1".parse().unwrap(), 67),
            ("255.255.255.255".parse().unwrap(), 68),
            b"hello",
        );
        let f = &p[VNET_HDR_LEN..];
        let u = parse_udp(f).unwrap();
        assert_eq!((u.sport, u.dport, u.payload), (67, 68, &b"hello"[..]));
        assert_eq!(
            csum_fold(csum_add(0, &f[14..34])),
            0,
            "IPv4 header checksum"
        );
        let mut sum = csum_add(0, &f[26..34]);
        sum += 17 + (f.len() - 34) as u32;
        assert_eq!(csum_fold(csum_add(sum, &f[34..])), 0, "UDP checksum");
    }

    #[test]
    fn ipv6_frames_parse_back_with_valid_checksums() {
        let (a, b): (Ipv6Addr, Ipv6Addr) =
            ("fe80::1".parse().unwrap(), "ff02::1:2".parse().unwrap());
        let d = udp_datagram(546, 547, b"info");
        let p = ipv6_packet(
            Mac([2, 0, 0, 0, 0, 1]),
            multicast_mac(b),
            a,
            b,
            NEXT_UDP,
            &d,
        );
        let f = &p[VNET_HDR_LEN..];
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 1, 0, 2]);
        let ip = parse_ipv6(f).unwrap();
        assert_eq!((ip.src, ip.dst, ip.next), (a, b, NEXT_UDP));
        assert_eq!(udp_parts(ip.payload), Some((546, 547, &b"info"[..])));
        let mut sum = csum_add(0, &f[22..54]);
        sum += ip.payload.len() as u32 + 17;
        assert_eq!(csum_fold(csum_add(sum, ip.payload)), 0, "UDP checksum");
        assert!(parse_ipv6(&f[..50]).is_none(), "cut short");
        assert!(udp_parts(&ip.payload[..6]).is_none());
    }

    #[test]
    fn a_rerouted_frame_loses_a_hop() {
        let (a, b): (Ipv6Addr, Ipv6Addr) =
            ("fd00::2".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let p = ipv6_packet(
            Mac([2, 0, 0, 0, 0, 1]),
            Mac([2, 0, 0, 0, 0, 2]),
            a,
            b,
            NEXT_UDP,
            &udp_datagram(1, 2, b"x"),
        );
        let r = reroute6(
            &p[VNET_HDR_LEN..],
            Mac([2, 0, 0, 0, 0, 3]),
            Mac([2, 0, 0, 0, 0, 4]),
        )
        .unwrap();
        let f = &r[VNET_HDR_LEN..];
        assert_eq!(
            (&f[..6], &f[6..12]),
            (&[2, 0, 0, 0, 0, 4][..], &[2, 0, 0, 0, 0, 3][..])
        );
        assert_eq!(f[ETH_HDR_LEN + 7], 254);
        assert_eq!(&f[ETH_HDR_LEN + 8..], &p[VNET_HDR_LEN + ETH_HDR_LEN + 8..]);
        let mut last = p[VNET_HDR_LEN..].to_vec();
        last[ETH_HDR_LEN + 7] = 1;
        assert!(reroute6(&last, Mac([2, 0, 0, 0, 0, 3]), Mac([2, 0, 0, 0, 0, 4])).is_none());
    }

    #[test]
    fn short_total_length_is_refused() {
        let p = udp_packet(
            Mac([2, 0, 0, 0, 0, 1]),
            Mac::BROADCAST,
            ("10.0.0.1".parse().unwrap(), 1),
            ("10.0.0.2".parse().unwrap(), 53),
            b"x",
        );
        let mut f = p[VNET_HDR_LEN..].to_vec();
        f[16..18].copy_from_slice(&22u16.to_be_bytes());
        assert!(parse_udp(&f).is_none());
    }

    #[test]
    fn partial_checksum_is_completed() {
        let mut p = udp_packet(
            Mac([2, 0, 0, 0, 0, 1]),
            Mac::BROADCAST,
            ("10.0.0.1".parse().unwrap(), 1000),
            ("10.0.0.2".parse().unwrap(), 53),
            b"query!",
        );
        let want = [p[VNET_HDR_LEN + 40], p[VNET_HDR_LEN + 41]];
        // What a TAP hands over: the pseudo-header sum, not inverted.
        let f = &p[VNET_HDR_LEN..];
        let mut sum = csum_add(0, &f[26..34]);
        sum += 17 + (f.len() - 34) as u32;
        let pseudo = !csum_fold(sum);
        p[VNET_HDR_LEN + 40..VNET_HDR_LEN + 42].copy_from_slice(&pseudo.to_be_bytes());
        p[0] = VNET_F_NEEDS_CSUM;
        p[6..8].copy_from_slice(&34u16.to_le_bytes());
        p[8..10].copy_from_slice(&6u16.to_le_bytes());
        let done = finish_frame(&p).unwrap();
        assert_eq!([done[40], done[41]], want);
        assert!(parse_udp(&done[..20]).is_none());
    }
}
