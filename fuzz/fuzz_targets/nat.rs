//! Any bytes as a packet (virtio-net header + Ethernet frame) reaching the
//! NAT: `ipstack::translate::parse`, then `translate::rewrite` in place to
//! several flows (source NAT from a `services::nat::NatTable` session, a
//! port map, the same flow, a flow taken from the input), for TCP, UDP,
//! ICMP echo and ICMP errors. Checked after each rewrite: it touches only
//! the IPv4 packet (never the virtio/Ethernet headers nor bytes past the IP
//! total length), a refused rewrite (TTL ran out) leaves the packet alone,
//! the TTL drops by one, the packet parses again as the flow asked for,
//! checksums that were right stay right (RFC 1624) and an ICMP error's
//! checksum is right. Also the ARP and MAC helpers of the module.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use niswitch::config::Mac;
use niswitch::frame::{VNET_F_NEEDS_CSUM, VNET_HDR_LEN};
use niswitch::ipstack::translate::{self, IP, Kind, Parsed};
use niswitch::ipstack::wire::{csum_add, csum_fold};
use niswitch::services::nat::{NatTable, Proto, Rewrite, Tuple};

const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const EXT2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
const APP: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 20);

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Header length of the IPv4 header at `at` (parse checked it).
fn ihl(b: &[u8], at: usize) -> usize {
    (b[at] & 0x0f) as usize * 4
}

/// End of the outer IPv4 packet: its total length, cut to the buffer.
fn ip_end(b: &[u8]) -> usize {
    (IP + be16(b, IP + 2) as usize).min(b.len())
}

fn ip_header_ok(b: &[u8], at: usize) -> bool {
    csum_fold(csum_add(0, &b[at..at + ihl(b, at)])) == 0
}

fn proto_number(p: Proto) -> u32 {
    match p {
        Proto::Icmp => 1,
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// Pseudo-header sum of the outer packet, with the L4 length it carries.
fn pseudo(b: &[u8], proto: Proto, len: usize) -> u32 {
    csum_add(0, &b[IP + 12..IP + 20]) + proto_number(proto) + len as u32
}

/// Whether the L4 checksum of a whole (non-error) packet verifies; None
/// when the packet carries none to verify (UDP without a checksum).
fn l4_ok(b: &[u8], proto: Proto, l4: usize, end: usize) -> Option<bool> {
    if proto == Proto::Udp && be16(b, l4 + 6) == 0 {
        return None;
    }
    let start = match proto {
        Proto::Icmp => 0,
        _ => pseudo(b, proto, end - l4),
    };
    Some(csum_fold(csum_add(start, &b[l4..end])) == 0)
}

/// A partial checksum (virtio NEEDS_CSUM) holds the pseudo-header sum, up
/// to the one's-complement representation of zero.
fn partial_ok(b: &[u8], proto: Proto, l4: usize, end: usize) -> bool {
    let at = if proto == Proto::Tcp { l4 + 16 } else { l4 + 6 };
    let want = !csum_fold(pseudo(b, proto, end - l4)) as u32 % 0xffff;
    be16(b, at) as u32 % 0xffff == want
}

/// `t` with the ports an ICMP echo does not carry set to 0, so that it is
/// the tuple the packet parses as once rewritten (`icmp_type` of the echo).
fn shaped(mut t: Tuple, icmp_type: u8) -> Tuple {
    if t.proto == Proto::Icmp {
        if icmp_type == 8 {
            t.dport = 0;
        } else {
            t.sport = 0;
        }
    }
    t
}

/// Rewrites a copy of `orig` (parsed as `p`) to `to` and checks the result.
fn check(orig: &[u8], p: &Parsed, to: Tuple) {
    let mut b = orig.to_vec();
    let end = ip_end(orig);
    if !translate::rewrite(&mut b, p, &to) {
        assert!(
            orig[IP + 8] <= 1,
            "rewrite refused a packet with TTL {}",
            orig[IP + 8]
        );
        assert_eq!(b, orig, "a refused rewrite changed the packet");
        return;
    }
    assert_eq!(b.len(), orig.len());
    assert_eq!(
        b[..IP],
        orig[..IP],
        "rewrite changed the virtio or Ethernet header"
    );
    assert_eq!(
        b[end..],
        orig[end..],
        "rewrite changed bytes past the IP packet"
    );
    assert_eq!(b[IP + 8], orig[IP + 8] - 1, "TTL not decremented");
    if ip_header_ok(orig, IP) {
        assert!(
            ip_header_ok(&b, IP),
            "IP header checksum broken by the rewrite"
        );
    }
    let again = translate::parse(&b).expect("a rewritten packet no longer parses");
    assert_eq!(again.tcp_flags, p.tcp_flags);
    let l4 = IP + ihl(orig, IP);
    match p.kind {
        Kind::Flow => {
            assert_eq!(again.kind, Kind::Flow);
            assert_eq!(
                again.tuple, to,
                "the packet does not show the flow it was rewritten to"
            );
            let proto = p.tuple.proto;
            if orig[0] & VNET_F_NEEDS_CSUM == 0 {
                if l4_ok(orig, proto, l4, end) == Some(true) {
                    assert_eq!(l4_ok(&b, proto, l4, end), Some(true), "L4 checksum broken");
                }
                if proto == Proto::Udp && be16(orig, l4 + 6) == 0 {
                    assert_eq!(be16(&b, l4 + 6), 0, "UDP without a checksum got one");
                }
            } else if proto != Proto::Icmp
                && u16::from_le_bytes([orig[6], orig[7]]) as usize + VNET_HDR_LEN == l4
                && partial_ok(orig, proto, l4, end)
            {
                assert!(
                    partial_ok(&b, proto, l4, end),
                    "partial checksum does not follow the addresses"
                );
            }
        }
        Kind::IcmpError { inner, inner_ip } => {
            let Kind::IcmpError {
                inner: inner2,
                inner_ip: at2,
            } = again.kind
            else {
                panic!("a rewritten ICMP error is no longer one: {:?}", again.kind);
            };
            assert_eq!(at2, inner_ip);
            assert_eq!(
                inner2, to,
                "the quoted packet does not show the flow asked for"
            );
            let mut outer = p.tuple;
            if outer.dst == inner.src {
                outer.dst = to.src;
            }
            if outer.src == inner.dst {
                outer.src = to.dst;
            }
            assert_eq!(
                again.tuple, outer,
                "outer addresses do not follow the quoted flow"
            );
            assert_eq!(
                l4_ok(&b, Proto::Icmp, l4, end),
                Some(true),
                "ICMP error checksum wrong"
            );
            if ip_header_ok(orig, inner_ip) {
                assert!(
                    ip_header_ok(&b, inner_ip),
                    "quoted IP header checksum broken"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = translate::src_mac(data);
    let _ = translate::arp_sender(data);
    let Some(p) = translate::parse(data) else {
        return;
    };
    assert_eq!(translate::parse(data), Some(p));

    let mut m = data.to_vec();
    translate::set_macs(&mut m, Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
    assert_eq!(translate::src_mac(&m), Some(Mac([2, 0, 0, 0, 0, 1])));
    assert_eq!(
        (&m[..VNET_HDR_LEN], &m[VNET_HDR_LEN + 12..]),
        (&data[..VNET_HDR_LEN], &data[VNET_HDR_LEN + 12..])
    );

    // The flow the rewrite works on, and the ICMP type saying which of its
    // ports an echo carries.
    let (flow, icmp_type) = match p.kind {
        Kind::Flow => (p.tuple, data[IP + ihl(data, IP)]),
        Kind::IcmpError { inner, inner_ip } => (inner, data[inner_ip + ihl(data, inner_ip)]),
    };

    // Source NAT through a session table, as the NI's NAT does it: to the
    // uplink's address, which is never the app's own.
    let mut table = NatTable::new(10000..=10003, [(Proto::Tcp, 10001), (Proto::Udp, 10000)], 4);
    let ext = if flow.src == EXT { EXT2 } else { EXT };
    let snat = Rewrite {
        src: Some(ext),
        dst: None,
        via: 0,
    };
    let x = table
        .create(flow, snat, p.tcp_flags, 1)
        .expect("first session of an empty table");
    assert_eq!((x.src, x.dst, x.dport), (ext, flow.dst, flow.dport));
    assert_eq!(table.lookup(&flow, p.tcp_flags, 2), Some((x, 0)));
    assert_eq!(table.lookup(&x.swap(), 0, 2), Some((flow.swap(), 0)));
    assert_eq!(table.expire(1_000_000), 1);
    assert!(table.is_empty());

    let dnat = Tuple {
        dst: APP,
        dport: if flow.proto == Proto::Icmp {
            flow.dport
        } else {
            8080
        },
        ..flow
    };
    let mut targets = vec![shaped(x, icmp_type), shaped(dnat, icmp_type), flow];
    if let Some(t) = data.last_chunk::<12>() {
        let ip = |i: usize| Ipv4Addr::new(t[i], t[i + 1], t[i + 2], t[i + 3]);
        let from_input = Tuple {
            proto: flow.proto,
            src: ip(0),
            sport: u16::from_be_bytes([t[4], t[5]]),
            dst: ip(6),
            dport: u16::from_be_bytes([t[10], t[11]]),
        };
        targets.push(shaped(from_input, icmp_type));
    }
    for to in targets {
        check(data, &p, to);
    }
});
