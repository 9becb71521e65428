//! Rewrites checked against checksums computed from scratch.

use super::*;
use crate::ipstack::wire::{csum_add, csum_fold};

const APP: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 20);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// virtio header + Ethernet + IPv4 + `l4` (whose checksum field is filled in
/// here, fully or as a partial pseudo-header sum).
fn packet(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8], partial: bool) -> Vec<u8> {
    let mut b = vec![0u8; VNET_HDR_LEN];
    b.extend([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
    let total = 20 + l4.len();
    b.extend([0x45, 0]);
    b.extend((total as u16).to_be_bytes());
    b.extend([0, 1, 0x40, 0, 64, proto, 0, 0]);
    b.extend(src.octets());
    b.extend(dst.octets());
    let c = csum_fold(csum_add(0, &b[IP..IP + 20]));
    b[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
    b.extend(l4);
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    if partial {
        b[0] = VNET_F_NEEDS_CSUM;
        b[6..8].copy_from_slice(&((ETH_HDR_LEN + 20) as u16).to_le_bytes());
        b[8..10].copy_from_slice(&(at as u16).to_le_bytes());
        let s = !csum_fold(pseudo(proto, src, dst, l4.len()));
        b[IP + 20 + at..IP + 22 + at].copy_from_slice(&s.to_be_bytes());
    } else {
        let c = l4_sum(&b, proto);
        b[IP + 20 + at..IP + 22 + at].copy_from_slice(&c.to_be_bytes());
    }
    b
}

fn pseudo(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u32 {
    let s = csum_add(csum_add(0, &src.octets()), &dst.octets());
    s + proto as u32 + len as u32
}

/// The L4 checksum of a packet computed from scratch (field taken as zero).
fn l4_sum(b: &[u8], proto: u8) -> u16 {
    let mut l4 = b[IP + 20..].to_vec();
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    l4[at] = 0;
    l4[at + 1] = 0;
    let start = if proto == 1 {
        0
    } else {
        pseudo(proto, ip_at(b, IP + 12), ip_at(b, IP + 16), l4.len())
    };
    csum_fold(csum_add(start, &l4))
}

fn ip_ok(b: &[u8]) -> bool {
    csum_fold(csum_add(0, &b[IP..IP + 20])) == 0
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t.extend(b"some payload, odd length");
    t
}

#[test]
fn tcp_source_nat_keeps_checksums_right() {
    let mut b = packet(6, APP, REMOTE, &tcp(40000, 80, 0x02), false);
    let p = parse(&b).unwrap();
    assert_eq!(p.tuple.sport, 40000);
    assert_eq!(p.tcp_flags, 0x02);
    let mut to = p.tuple;
    to.src = EXT;
    to.sport = 20001;
    assert!(rewrite(&mut b, &p, &to));
    assert!(ip_ok(&b));
    assert_eq!(b[IP + 8], 63, "TTL went down by one");
    let field = be16(&b, IP + 36);
    assert_eq!(field, l4_sum(&b, 6));
    assert_eq!(parse(&b).unwrap().tuple, to);
}

#[test]
fn a_partial_checksum_only_follows_the_pseudo_header() {
    let mut b = packet(6, APP, REMOTE, &tcp(40000, 80, 0x10), true);
    let p = parse(&b).unwrap();
    let mut to = p.tuple;
    to.src = EXT;
    to.sport = 20001;
    assert!(rewrite(&mut b, &p, &to));
    let len = b.len() - IP - 20;
    let want = !csum_fold(pseudo(6, EXT, REMOTE, len));
    assert_eq!(be16(&b, IP + 36), want);
    assert!(ip_ok(&b));
}

#[test]
fn udp_with_and_without_a_checksum() {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&5353u16.to_be_bytes());
    u[2..4].copy_from_slice(&53u16.to_be_bytes());
    u[4..6].copy_from_slice(&13u16.to_be_bytes());
    u.extend(b"hello");
    let mut b = packet(17, REMOTE, EXT, &u, false);
    let p = parse(&b).unwrap();
    let to = Tuple {
        dst: APP,
        dport: 4000,
        ..p.tuple
    };
    assert!(rewrite(&mut b, &p, &to));
    assert_eq!(be16(&b, IP + 26), l4_sum(&b, 17));
    // A zero checksum means "none" and stays zero.
    let mut z = packet(17, REMOTE, EXT, &u, false);
    z[IP + 26] = 0;
    z[IP + 27] = 0;
    let p = parse(&z).unwrap();
    assert!(rewrite(&mut z, &p, &to));
    assert_eq!(be16(&z, IP + 26), 0);
}

#[test]
fn icmp_echo_identifier_is_translated_both_ways() {
    let mut e = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    e.extend(b"ping data");
    let mut b = packet(1, APP, REMOTE, &e, false);
    let p = parse(&b).unwrap();
    assert_eq!((p.tuple.sport, p.tuple.dport), (0x1234, 0));
    let to = Tuple {
        src: EXT,
        sport: 20002,
        ..p.tuple
    };
    assert!(rewrite(&mut b, &p, &to));
    assert_eq!(be16(&b, IP + 24), 20002);
    assert_eq!(be16(&b, IP + 22), l4_sum(&b, 1));
    // The reply carries the identifier as the destination "port".
    let mut r = e.clone();
    r[0] = 0;
    r[4..6].copy_from_slice(&20002u16.to_be_bytes());
    let mut b = packet(1, REMOTE, EXT, &r, false);
    let p = parse(&b).unwrap();
    assert_eq!(p.tuple, to.swap());
    let back = Tuple {
        dst: APP,
        dport: 0x1234,
        ..p.tuple
    };
    assert!(rewrite(&mut b, &p, &back));
    assert_eq!(be16(&b, IP + 24), 0x1234);
    assert_eq!(be16(&b, IP + 22), l4_sum(&b, 1));
}

#[test]
fn an_icmp_message_that_sums_to_zero_keeps_a_valid_checksum() {
    // Found by the `nat` fuzz target: an echo reply to id 10000, all other
    // words zero, translated to app id 0: the incremental update gives
    // 0x0000 where only 0xffff verifies.
    let r = [0u8, 0, 0, 0, 0x27, 0x10, 0, 0];
    let mut b = packet(1, REMOTE, EXT, &r, false);
    let p = parse(&b).unwrap();
    let back = Tuple {
        dst: APP,
        dport: 0,
        ..p.tuple
    };
    assert!(rewrite(&mut b, &p, &back));
    assert_eq!(be16(&b, IP + 24), 0);
    assert_eq!(be16(&b, IP + 22), l4_sum(&b, 1));
    assert_eq!(be16(&b, IP + 22), 0xffff);
}

#[test]
fn an_icmp_error_is_sent_back_to_the_app_with_its_own_header() {
    // What the router sent: EXT:20003 -> REMOTE:53 (UDP).
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&20003u16.to_be_bytes());
    u[2..4].copy_from_slice(&53u16.to_be_bytes());
    u[4..6].copy_from_slice(&12u16.to_be_bytes());
    u.extend(b"quer");
    let sent = packet(17, EXT, REMOTE, &u, false);
    let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend(&sent[IP..]);
    let mut b = packet(1, REMOTE, EXT, &icmp, false);
    let p = parse(&b).unwrap();
    let Kind::IcmpError { inner, .. } = p.kind else {
        panic!("not an error: {p:?}");
    };
    assert_eq!((inner.src, inner.sport, inner.dst), (EXT, 20003, REMOTE));
    // The app's flow was APP:5000 -> REMOTE:53.
    let orig = Tuple {
        src: APP,
        sport: 5000,
        ..inner
    };
    assert!(rewrite(&mut b, &p, &orig));
    assert!(ip_ok(&b));
    assert_eq!(ip_at(&b, IP + 16), APP, "the error goes to the app");
    let q = IP + 28;
    assert_eq!(ip_at(&b, q + 12), APP);
    assert_eq!(be16(&b, q + 20), 5000);
    assert_eq!(
        csum_fold(csum_add(0, &b[q..q + 20])),
        0,
        "quoted IP checksum"
    );
    assert_eq!(csum_fold(csum_add(0, &b[IP + 20..])), 0, "ICMP checksum");
    let quoted_udp = be16(&b, q + 26);
    let mut again = packet(17, APP, REMOTE, &u, false);
    again[IP + 20..IP + 22].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(quoted_udp, l4_sum(&again, 17));
}

#[test]
fn fragments_expired_ttl_and_garbage_are_left_alone() {
    let mut b = packet(6, APP, REMOTE, &tcp(1, 2, 0), false);
    b[IP + 6] = 0x20; // more fragments
    assert!(parse(&b).is_none());
    let mut b = packet(6, APP, REMOTE, &tcp(1, 2, 0), false);
    b[IP + 8] = 1;
    let p = parse(&b).unwrap();
    assert!(!rewrite(&mut b.clone(), &p, &p.tuple));
    for n in 0..b.len() {
        let _ = parse(&b[..n]);
    }
    assert!(parse(&arp_request(Mac([2; 6]), APP, REMOTE)).is_none());
    assert_eq!(
        arp_sender(&arp_request(Mac([2; 6]), APP, REMOTE)),
        Some((APP, Mac([2; 6])))
    );
}

/// A SYN with options: NOP (when `pad`), MSS `mss`, window scale, then the
/// end of the list, padded to a 4-byte multiple.
fn syn_with_mss(mss: u16, pad: bool) -> Vec<u8> {
    let mut opts = Vec::new();
    if pad {
        opts.push(1);
    }
    opts.extend([2, 4]);
    opts.extend(mss.to_be_bytes());
    opts.extend([3, 3, 7]);
    while opts.len() % 4 != 0 {
        opts.push(0);
    }
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[12] = (((20 + opts.len()) / 4) << 4) as u8;
    t[13] = 0x02;
    t.extend(opts);
    t
}

#[test]
fn a_syn_through_the_nat_is_clamped_to_the_mtu_with_its_checksum_right() {
    for pad in [false, true] {
        let mut b = packet(6, APP, REMOTE, &syn_with_mss(1460, pad), false);
        let p = parse(&b).unwrap();
        assert!(clamp_mss(&mut b, &p, 1360), "pad {pad}");
        let at = IP + 20 + 22 + pad as usize;
        assert_eq!(be16(&b, at), 1360);
        assert_eq!(be16(&b, IP + 36), l4_sum(&b, 6), "checksum, pad {pad}");
        // A smaller MSS stays; so does any packet that is not a SYN.
        let p = parse(&b).unwrap();
        assert!(!clamp_mss(&mut b, &p, 1400));
    }
    let mut ack = packet(6, APP, REMOTE, &tcp(40000, 80, 0x10), false);
    let p = parse(&ack).unwrap();
    assert!(!clamp_mss(&mut ack, &p, 536));
    // A partial checksum is finished by the device over the new bytes.
    let mut b = packet(6, APP, REMOTE, &syn_with_mss(1460, false), true);
    let before = be16(&b, IP + 36);
    let p = parse(&b).unwrap();
    assert!(clamp_mss(&mut b, &p, 1360));
    assert_eq!(be16(&b, IP + 36), before);
}

#[test]
fn malformed_tcp_options_are_left_alone() {
    let mut t = syn_with_mss(1460, false);
    t[21] = 40; // the MSS option claims more than the header holds
    let mut b = packet(6, APP, REMOTE, &t, false);
    let p = parse(&b).unwrap();
    assert!(!clamp_mss(&mut b, &p, 1000));
    let mut t = syn_with_mss(1460, false);
    t[12] = 0xf0; // a data offset beyond the packet
    let mut b = packet(6, APP, REMOTE, &t, false);
    if let Some(p) = parse(&b) {
        clamp_mss(&mut b, &p, 1000);
    }
}
