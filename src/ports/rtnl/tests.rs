//! rtnetlink messages built and parsed without a socket: requests against
//! the kernel's struct layouts, and dumps captured from a kernel.

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A netlink message: header (len, type, flags, seq 1, pid 0) and payload.
fn msg(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = ((HDR + payload.len()) as u32).to_ne_bytes().to_vec();
    m.extend(kind.to_ne_bytes());
    m.extend(2u16.to_ne_bytes());
    m.extend(1u32.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    m.extend(payload);
    m.resize(align(m.len()), 0);
    m
}

// `ip addr add 192.0.2.5/24 dev e0` (ifindex 3) in a namespace with lo, and
// `ip route add default via 192.0.2.1 src 192.0.2.5 metric 100`, dumped
// with RTM_GETADDR / RTM_GETROUTE for AF_INET on x86_64.
const ADDR4: &str = "4c0000001400020001000000c1790000020880fe01000000080001007f000001080002007f000001070003006c6f0000080008008000000014000600ffffffffffffffff9cbf01009cbf01004c0000001400020001000000c1790000021880000300000008000100c000020508000200c00002050700030065300000080008008000000014000600ffffffffffffffff9dbf01009dbf0100140000000300020001000000c179000000000000";
const ROUTE4: &str = "440000001800020001000000c179000002000000fe0300010000000008000f00fe000000080006006400000008000700c000020508000500c000020108000400030000003c0000001800020001000000c179000002180000fe02fd010000000008000f00fe00000008000100c000020008000700c000020508000400030000003c0000001800020001000000c179000002080000ff02fe020000000008000f00ff000000080001007f000000080007007f00000108000400010000003c0000001800020001000000c179000002200000ff02fe020000000008000f00ff000000080001007f000001080007007f00000108000400010000003c0000001800020001000000c179000002200000ff02fd030000000008000f00ff000000080001007fffffff080007007f00000108000400010000003c0000001800020001000000c179000002200000ff02fe020000000008000f00ff00000008000100c000020508000700c000020508000400030000003c0000001800020001000000c179000002200000ff02fd030000000008000f00ff00000008000100c00002ff08000700c00002050800040003000000140000000300020001000000c179000000000000";
// The IPv6 addresses of the same namespace: ::1, e1's and e0's link-local
// (still tentative) and `2001:db8::5/64 nodad` on e0.
const ADDR6: &str = "500000001400020001000000ea7900000a8080fe01000000140001000000000000000000000000000000000114000600ffffffffffffffff9cbf01009cbf0100080008008000000005000b0001000000500000001400020001000000ea7900000a40c0fd0200000014000100fe800000000000000ccd3cfffee0f6cb14000600ffffffffffffffff9dbf01009dbf010008000800c000000005000b0003000000480000001400020001000000ea7900000a408200030000001400010020010db800000000000000000000000514000600ffffffffffffffff9ebf01009ebf01000800080082000000500000001400020001000000ea7900000a40c0fd0300000014000100fe8000000000000084068bfffe1e0b6014000600ffffffffffffffff9dbf01009dbf010008000800c000000005000b0003000000140000000300020001000000ea79000000000000";

#[cfg(target_endian = "little")]
#[test]
fn parses_a_captured_ipv4_address_dump() {
    let a = parse_addresses(&unhex(ADDR4));
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].ifindex, a[0].addr, a[0].prefix),
        (1, ip("127.0.0.1"), 8)
    );
    assert_eq!(a[0].scope, 254);
    let e0 = &a[1];
    assert_eq!(
        (e0.ifindex, e0.addr, e0.prefix, e0.scope),
        (3, ip("192.0.2.5"), 24, 0)
    );
    assert_eq!(e0.flags, 0x80);
    assert!(!e0.deprecated() && !e0.tentative());
}

#[cfg(target_endian = "little")]
#[test]
fn parses_a_captured_ipv6_address_dump_with_ifa_flags() {
    let a = parse_addresses(&unhex(ADDR6));
    let got: Vec<(u32, IpAddr, u8, bool)> = a
        .iter()
        .map(|a| (a.ifindex, a.addr, a.prefix, a.tentative()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, ip("::1"), 128, false),
            (2, ip("fe80::ccd:3cff:fee0:f6cb"), 64, true),
            (3, ip("2001:db8::5"), 64, false),
            (3, ip("fe80::8406:8bff:fe1e:b60"), 64, true),
        ]
    );
    assert_eq!(a[2].flags, 0x82, "permanent, nodad");
}

#[cfg(target_endian = "little")]
#[test]
fn parses_a_captured_route_dump() {
    let r = parse_routes(&unhex(ROUTE4));
    let main: Vec<&RouteInfo> = r.iter().filter(|r| r.table == RT_TABLE_MAIN).collect();
    assert_eq!(main.len(), 2, "{r:?}");
    let default = RouteInfo {
        dst: None,
        gateway: Some(ip("192.0.2.1")),
        oif: Some(3),
        prefsrc: Some(ip("192.0.2.5")),
        table: RT_TABLE_MAIN,
        priority: 100,
    };
    assert_eq!(main[0], &default);
    assert_eq!(main[1].dst, Some("192.0.2.0/24".parse().expect("net")));
    assert_eq!((main[1].gateway, main[1].oif), (None, Some(3)));
    // Local and broadcast routes of the local table are not unicast.
    assert!(r.iter().all(|r| r.table == RT_TABLE_MAIN));
}

#[test]
fn ipv4_prefers_ifa_local_over_the_peer_address() {
    let mut p = vec![libc::AF_INET as u8, 32, 0, 0];
    p.extend(5u32.to_ne_bytes());
    put_attr(&mut p, IFA_ADDRESS, &[10, 0, 0, 2]);
    put_attr(&mut p, IFA_LOCAL, &[10, 0, 0, 1]);
    put_attr(&mut p, IFA_FLAGS, &IFA_F_DEPRECATED.to_ne_bytes());
    let a = parse_address(&p).expect("address");
    assert_eq!((a.ifindex, a.addr, a.prefix), (5, ip("10.0.0.1"), 32));
    assert!(a.deprecated());
    // Without IFA_LOCAL the address is IFA_ADDRESS; flags from ifa_flags.
    let mut p = vec![libc::AF_INET6 as u8, 64, IFA_F_TENTATIVE as u8, 0];
    p.extend(5u32.to_ne_bytes());
    put_attr(&mut p, IFA_ADDRESS, &ip_bytes(ip("2001:db8::1")));
    let a = parse_address(&p).expect("address");
    assert_eq!(a.addr, ip("2001:db8::1"));
    assert!(a.tentative() && !a.deprecated());
}

#[test]
fn rta_table_overrides_rtm_table_and_multipath_gives_a_nexthop() {
    let mut p = vec![libc::AF_INET as u8, 0, 0, 0, 252, 3, 0, RTN_UNICAST];
    p.extend(0u32.to_ne_bytes());
    put_attr(&mut p, RTA_TABLE, &1000u32.to_ne_bytes());
    let mut nh = 16u16.to_ne_bytes().to_vec();
    nh.extend([0, 0]);
    nh.extend(7u32.to_ne_bytes());
    put_attr(&mut nh, RTA_GATEWAY, &[10, 0, 0, 1]);
    put_attr(&mut p, RTA_MULTIPATH, &nh);
    let r = parse_route(&p).expect("route");
    assert_eq!(r.table, 1000);
    assert_eq!(
        (r.dst, r.oif, r.gateway),
        (None, Some(7), Some(ip("10.0.0.1")))
    );
}

#[test]
fn rta_via_gives_an_ipv6_gateway_to_an_ipv4_route() {
    let mut p = vec![libc::AF_INET as u8, 8, 0, 0, 254, 3, 0, RTN_UNICAST];
    p.extend(0u32.to_ne_bytes());
    put_attr(&mut p, RTA_DST, &[10, 0, 0, 0]);
    let mut via = (libc::AF_INET6 as u16).to_ne_bytes().to_vec();
    via.extend(ip_bytes(ip("fe80::1")));
    put_attr(&mut p, RTA_VIA, &via);
    let r = parse_route(&p).expect("route");
    assert_eq!(r.dst, Some("10.0.0.0/8".parse().expect("net")));
    assert_eq!(r.gateway, Some(ip("fe80::1")));
}

#[test]
fn new_address_request_has_the_kernel_layout() {
    let m = new_address_msg(3, ip("192.0.2.5"), 24);
    let mut want = vec![libc::AF_INET as u8, 24, 0, 0];
    want.extend(3u32.to_ne_bytes());
    for kind in [IFA_LOCAL, IFA_ADDRESS] {
        want.extend(8u16.to_ne_bytes());
        want.extend(kind.to_ne_bytes());
        want.extend([192, 0, 2, 5]);
    }
    assert_eq!(m, want);
    let back = parse_addresses(&msg(RTM_NEWADDR, &m));
    assert_eq!(back[0].addr, ip("192.0.2.5"));
    let m6 = new_address_msg(4, ip("2001:db8::5"), 64);
    assert_eq!(m6.len(), IFADDRMSG + 2 * 20);
    assert_eq!(
        parse_address(&m6).map(|a| (a.addr, a.prefix)),
        Some((ip("2001:db8::5"), 64))
    );
}

#[test]
fn new_route_request_has_the_kernel_layout() {
    let m =
        new_route_msg("10.1.0.9/16".parse().expect("net"), Some(ip("10.0.0.1")), 3).expect("route");
    let mut want = vec![
        libc::AF_INET as u8,
        16,
        0,
        0,
        254,
        RTPROT_BOOT,
        0,
        RTN_UNICAST,
    ];
    want.extend(0u32.to_ne_bytes());
    for (kind, data) in [(RTA_DST, [10, 1, 0, 0]), (RTA_GATEWAY, [10, 0, 0, 1])] {
        want.extend(8u16.to_ne_bytes());
        want.extend(kind.to_ne_bytes());
        want.extend(data);
    }
    want.extend(8u16.to_ne_bytes());
    want.extend(RTA_OIF.to_ne_bytes());
    want.extend(3u32.to_ne_bytes());
    assert_eq!(m, want, "host bits cleared, scope universe");
    // A default route on link: no RTA_DST, scope link.
    let m = new_route_msg("::/0".parse().expect("net"), None, 4).expect("route");
    assert_eq!(
        &m[..8],
        &[libc::AF_INET6 as u8, 0, 0, 0, 254, 3, RT_SCOPE_LINK, 1]
    );
    let r = parse_route(&m).expect("route");
    assert_eq!((r.dst, r.gateway, r.oif), (None, None, Some(4)));
    let mixed = new_route_msg("10.0.0.0/8".parse().expect("net"), Some(ip("::1")), 1);
    assert_eq!(
        mixed.map_err(|e| e.kind()),
        Err(io::ErrorKind::InvalidInput)
    );
}

#[test]
fn garbage_is_skipped_not_parsed() {
    assert!(parse_addresses(&[1, 2, 3]).is_empty());
    assert!(parse_routes(&[0xff; 40]).is_empty());
    // A truncated attribute ends the attributes; the message still parses
    // when what it needs came before.
    let mut p = new_address_msg(3, ip("192.0.2.5"), 24);
    p.extend([200, 0, 1, 0]);
    assert_eq!(parse_address(&p).map(|a| a.addr), Some(ip("192.0.2.5")));
    // A route of another family, or with a prefix but no RTA_DST, is none.
    let mut r = vec![
        libc::AF_PACKET as u8,
        0,
        0,
        0,
        254,
        3,
        0,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    assert_eq!(parse_route(&r), None);
    r[0] = libc::AF_INET as u8;
    r[1] = 24;
    assert_eq!(parse_route(&r), None);
    // A message longer than the buffer stops the walk.
    let mut m = msg(RTM_NEWADDR, &new_address_msg(3, ip("192.0.2.5"), 24));
    m[0] = 200;
    assert!(parse_addresses(&m).is_empty());
}
