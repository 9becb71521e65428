//! The frames the `host` uplink sends an app: TCP segments (one GSO frame
//! for a large read, its checksum left to the receiver as a TAP allows),
//! UDP datagrams, ICMP echo replies and ICMP errors, all from the remote
//! end as if routed through a NAT.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU16, Ordering::Relaxed};

use crate::config::Mac;
use crate::frame::{ETH_HDR_LEN, ETHERTYPE_IPV4, GSO_TCPV4, VNET_F_NEEDS_CSUM, VNET_HDR_LEN};
use crate::ipstack::wire::{csum_add, csum_fold};

/// Where the IPv4 header starts in a frame we build.
pub use crate::ipstack::translate::IP;
/// Where a TCP segment's payload starts (no options).
pub const TCP_PAYLOAD: usize = IP + 20 + 20;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

static IP_ID: AtomicU16 = AtomicU16::new(1);

/// The two ends of a flow, seen from the app: the remote end sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    pub router_mac: Mac,
    pub app_mac: Mac,
    pub remote: (Ipv4Addr, u16),
    pub app: (Ipv4Addr, u16),
}

/// The TCP header fields of a segment to the app.
#[derive(Debug, Clone, Copy)]
pub struct TcpHead<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Options, a multiple of 4 bytes.
    pub opts: &'a [u8],
}

fn ip_header(out: &mut Vec<u8>, e: &Ends, proto: u8) {
    out.clear();
    out.extend([0u8; VNET_HDR_LEN]);
    out.extend(e.app_mac.0);
    out.extend(e.router_mac.0);
    out.extend(ETHERTYPE_IPV4.to_be_bytes());
    out.extend([0x45, 0, 0, 0]);
    out.extend(IP_ID.fetch_add(1, Relaxed).to_be_bytes());
    out.extend([0x40, 0, 64, proto, 0, 0]);
    out.extend(e.remote.0.octets());
    out.extend(e.app.0.octets());
}

/// Sets the IPv4 total length and header checksum once the packet is whole.
fn ip_finish(out: &mut [u8]) {
    let total = (out.len() - IP) as u16;
    out[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    out[IP + 10..IP + 12].fill(0);
    let c = csum_fold(csum_add(0, &out[IP..IP + 20]));
    out[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
}

fn pseudo(e: &Ends, proto: u8, len: usize) -> u32 {
    let s = csum_add(0, &e.remote.0.octets());
    csum_add(s, &e.app.0.octets()) + proto as u32 + len as u32
}

/// Writes the headers of a TCP segment into `out` (cleared first); the
/// payload is appended after them, then `tcp_finish` completes it.
pub fn tcp_head(out: &mut Vec<u8>, e: &Ends, h: &TcpHead) {
    ip_header(out, e, 6);
    out.extend(e.remote.1.to_be_bytes());
    out.extend(e.app.1.to_be_bytes());
    out.extend(h.seq.to_be_bytes());
    out.extend(h.ack.to_be_bytes());
    let doff = (20 + h.opts.len()) / 4;
    out.extend([(doff as u8) << 4, h.flags]);
    out.extend(h.window.to_be_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend_from_slice(h.opts);
}

/// Completes a segment built by `tcp_head` plus its payload: lengths and
/// checksums. A payload larger than `mss` leaves as one GSO frame that the
/// receiving kernel takes whole; data leaves its checksum to the receiver
/// (virtio-net NEEDS_CSUM), as a TAP allows.
pub fn tcp_finish(out: &mut [u8], e: &Ends, mss: u16) {
    ip_finish(out);
    let l4 = IP + 20;
    let doff = ((out[l4 + 12] >> 4) as usize) * 4;
    let seg_len = out.len() - l4;
    let payload = seg_len - doff;
    let sum = pseudo(e, 6, seg_len);
    if payload == 0 {
        let c = csum_fold(csum_add(sum, &out[l4..]));
        out[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        return;
    }
    // The receiver folds the sum from csum_start on and stores its
    // complement: the field holds the pseudo-header's sum.
    let partial = !csum_fold(sum);
    out[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
    let h = &mut out[..VNET_HDR_LEN];
    h[0] = VNET_F_NEEDS_CSUM;
    if payload > mss as usize {
        h[1] = GSO_TCPV4;
        h[2..4].copy_from_slice(&((ETH_HDR_LEN + 20 + doff) as u16).to_le_bytes());
        h[4..6].copy_from_slice(&mss.to_le_bytes());
    }
    h[6..8].copy_from_slice(&((ETH_HDR_LEN + 20) as u16).to_le_bytes());
    h[8..10].copy_from_slice(&16u16.to_le_bytes());
}

/// A TCP segment without payload (SYN-ACK, ACK, FIN, RST).
pub fn tcp_control(e: &Ends, h: &TcpHead) -> Vec<u8> {
    let mut out = Vec::with_capacity(TCP_PAYLOAD + h.opts.len());
    tcp_head(&mut out, e, h);
    tcp_finish(&mut out, e, u16::MAX);
    out
}

/// A UDP datagram from the remote end to the app, in fragments when it is
/// larger than the NI's `mtu` (as a router on the way would make them).
pub fn udp(e: &Ends, payload: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) {
    let f = crate::ipstack::wire::udp_packet(e.router_mac, e.app_mac, e.remote, e.app, payload);
    fragment(f, mtu, out);
}

/// An IPv4 packet we built (a 20-byte header) as it goes to the app: whole
/// when it fits `mtu`, else in fragments of at most `mtu` bytes.
pub fn fragment(f: Vec<u8>, mtu: usize, out: &mut Vec<Vec<u8>>) {
    if f.len() - IP <= mtu {
        out.push(f);
        return;
    }
    let body = &f[IP + 20..];
    let step = (mtu.saturating_sub(20) / 8).max(1) * 8;
    // The fragments of one packet share an identification no other has.
    let id = IP_ID.fetch_add(1, Relaxed).to_be_bytes();
    for (i, chunk) in body.chunks(step).enumerate() {
        let mut g = Vec::with_capacity(IP + 20 + chunk.len());
        g.extend_from_slice(&f[..IP + 20]);
        g.extend_from_slice(chunk);
        g[IP + 4..IP + 6].copy_from_slice(&id);
        let more = (i + 1) * step < body.len();
        let field = ((i * step / 8) as u16) | if more { 0x2000 } else { 0 };
        g[IP + 6..IP + 8].copy_from_slice(&field.to_be_bytes());
        ip_finish(&mut g);
        out.push(g);
    }
}

/// An ICMP message (type, code, rest of header, data) from `e.remote.0`.
pub fn icmp(e: &Ends, ty: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(IP + 28 + data.len());
    ip_header(&mut out, e, 1);
    let l4 = out.len();
    out.extend([ty, code, 0, 0]);
    out.extend(rest);
    out.extend_from_slice(data);
    let c = csum_fold(csum_add(0, &out[l4..]));
    out[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    ip_finish(&mut out);
    out
}

/// The start of a packet the app sent to `e.remote` (its IPv4 header and
/// first 8 bytes), as an ICMP error quotes it.
pub fn quote(e: &Ends, proto: u8, first8: [u8; 8]) -> Vec<u8> {
    let mut q = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, proto, 0, 0];
    q.extend(e.app.0.octets());
    q.extend(e.remote.0.octets());
    let c = csum_fold(csum_add(0, &q));
    q[10..12].copy_from_slice(&c.to_be_bytes());
    q.extend(first8);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends() -> Ends {
        Ends {
            router_mac: Mac([2, 0, 0, 0, 0, 1]),
            app_mac: Mac([2, 0, 0, 0, 0, 2]),
            remote: (Ipv4Addr::new(192, 0, 2, 1), 80),
            app: (Ipv4Addr::new(10, 0, 0, 5), 40000),
        }
    }

    fn verify(sum_from: usize, pkt: &[u8], e: &Ends, proto: u8) -> bool {
        let s = pseudo(e, proto, pkt.len() - sum_from);
        csum_fold(csum_add(s, &pkt[sum_from..])) == 0
    }

    #[test]
    fn control_segments_carry_full_checksums() {
        let e = ends();
        let h = TcpHead {
            seq: 7,
            ack: 9,
            flags: SYN | ACK,
            window: 65535,
            opts: &[2, 4, 5, 180, 1, 3, 3, 7],
        };
        let f = tcp_control(&e, &h);
        assert_eq!(f.len(), TCP_PAYLOAD + 8);
        assert_eq!(csum_fold(csum_add(0, &f[IP..IP + 20])), 0);
        assert!(verify(IP + 20, &f, &e, 6));
        assert_eq!(f[..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
    }

    #[test]
    fn a_large_read_leaves_as_one_gso_frame() {
        let e = ends();
        let h = TcpHead {
            seq: 1,
            ack: 1,
            flags: ACK | PSH,
            window: 100,
            opts: &[],
        };
        let mut f = Vec::new();
        tcp_head(&mut f, &e, &h);
        f.extend(std::iter::repeat_n(0xabu8, 4000));
        tcp_finish(&mut f, &e, 1460);
        assert_eq!(f[1], GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([f[4], f[5]]), 1460);
        assert_eq!(u16::from_be_bytes([f[IP + 2], f[IP + 3]]), 4040);
        // Completing the checksum as the receiver does gives a valid segment.
        let l4 = IP + 20;
        let c = csum_fold(csum_add(0, &f[l4..]));
        f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        assert!(verify(l4, &f, &e, 6));
    }

    #[test]
    fn large_datagrams_are_fragmented_at_the_mtu() {
        let e = ends();
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        udp(&e, &payload, 1500, &mut out);
        assert_eq!(out.len(), 3);
        let mut whole = Vec::new();
        for (i, f) in out.iter().enumerate() {
            let ip = &f[IP..];
            assert!(ip.len() <= 1500);
            assert_eq!(csum_fold(csum_add(0, &ip[..20])), 0);
            let field = u16::from_be_bytes([ip[6], ip[7]]);
            assert_eq!(field & 0x2000 != 0, i < 2, "more fragments");
            assert_eq!((field & 0x1fff) as usize * 8, whole.len());
            whole.extend_from_slice(&ip[20..]);
        }
        assert_eq!(&whole[8..], &payload[..]);
        let ids: Vec<&[u8]> = out.iter().map(|f| &f[IP + 4..IP + 6]).collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "one identification");
        let mut small = Vec::new();
        udp(&e, b"hi", 1500, &mut small);
        assert_eq!(small.len(), 1);
    }

    #[test]
    fn icmp_messages_check_out() {
        let e = ends();
        let f = icmp(&e, 0, 0, [0, 1, 0, 2], b"hello");
        assert_eq!(csum_fold(csum_add(0, &f[IP + 20..])), 0);
        let q = quote(&e, 6, [0; 8]);
        assert_eq!(q.len(), 28);
    }
}
