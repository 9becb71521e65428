//! A minimal rtnetlink client for what ioctls cannot do: listing addresses
//! and routes, adding an address or a route, and removing every IPv4 address
//! from an interface (a management NIC that the host TAP replaces).
//!
//! Every call opens its socket in the network namespace of the calling
//! thread, so it acts inside a namespace the thread entered with setns(2).
//! Replies are parsed by pure functions (`parse_addresses`, `parse_routes`)
//! that skip whatever is malformed and never panic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ipnet::IpNet;

use super::{cvt, last_err};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const HDR: usize = 16;

/// struct ifaddrmsg and its attributes.
const IFADDRMSG: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;

/// struct rtmsg and its attributes.
const RTMSG: usize = 12;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const RTPROT_BOOT: u8 = 3;

/// Scopes (`AddrInfo::scope`): everywhere, and this link only; host (254)
/// and nowhere (255) are narrower still.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;

/// The main routing table (`ip route` without `table`).
pub const RT_TABLE_MAIN: u32 = 254;

/// Address flags (`AddrInfo::flags`). IPv4 secondary / IPv6 temporary.
pub const IFA_F_SECONDARY: u32 = 0x01;
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_DEPRECATED: u32 = 0x20;
pub const IFA_F_TENTATIVE: u32 = 0x40;

/// One interface address (RTM_NEWADDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub ifindex: u32,
    /// The local address (IFA_LOCAL, else IFA_ADDRESS).
    pub addr: IpAddr,
    pub prefix: u8,
    /// RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host.
    pub scope: u8,
    /// IFA_F_*, from the IFA_FLAGS attribute when present.
    pub flags: u32,
}

impl AddrInfo {
    /// The preferred lifetime ran out.
    pub fn deprecated(&self) -> bool {
        self.flags & IFA_F_DEPRECATED != 0
    }

    /// Duplicate address detection has not passed (still running or failed).
    pub fn tentative(&self) -> bool {
        self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) != 0
    }
}

/// One unicast route (RTM_NEWROUTE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// None for a default route.
    pub dst: Option<IpNet>,
    /// RTA_GATEWAY (or RTA_VIA); of a multipath route, its first nexthop's.
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub prefsrc: Option<IpAddr>,
    /// RTA_TABLE when present, else rtm_table.
    pub table: u32,
    /// The metric.
    pub priority: u32,
}

/// A NETLINK_ROUTE socket.
pub(crate) fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: fd was just returned by socket(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn malformed() -> io::Error {
    io::Error::other("malformed netlink reply")
}

/// One netlink message of a datagram.
struct Msg<'a> {
    kind: u16,
    seq: u32,
    payload: &'a [u8],
}

/// The messages of a datagram; an `Err` (and the end) at a header whose
/// length does not fit.
fn messages(mut b: &[u8]) -> impl Iterator<Item = io::Result<Msg<'_>>> {
    std::iter::from_fn(move || {
        let len = u32_at(b, 0)? as usize;
        let (kind, seq) = (u16_at(b, 4)?, u32_at(b, 8)?);
        if len < HDR || len > b.len() {
            b = &[];
            return Some(Err(malformed()));
        }
        let payload = &b[HDR..len];
        b = b.get(align(len)..).unwrap_or(&[]);
        Some(Ok(Msg { kind, seq, payload }))
    })
}

/// Appends a route attribute (header, data, padding) to a message.
fn put_attr(m: &mut Vec<u8>, kind: u16, data: &[u8]) {
    m.extend(((4 + data.len()) as u16).to_ne_bytes());
    m.extend(kind.to_ne_bytes());
    m.extend(data);
    m.resize(align(m.len()), 0);
}

/// The route attributes of `b` as (type, data); ends at a malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        // Without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        let kind = u16_at(b, 2)? & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = b.get(align(len)..).unwrap_or(&[]);
        Some((kind, data))
    })
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An address attribute of `family` (4 or 16 bytes).
fn ip_from(family: u8, data: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), data.len()) {
        (libc::AF_INET, 4) => Some(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?).into()),
        (libc::AF_INET6, 16) => Some(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?).into()),
        _ => None,
    }
}

fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

/// An RTM_NEWADDR payload; None when malformed or not IPv4/IPv6.
pub fn parse_address(p: &[u8]) -> Option<AddrInfo> {
    let h = p.get(..IFADDRMSG)?;
    let (mut local, mut address, mut flags) = (None, None, u32::from(h[2]));
    for (kind, data) in attrs(&p[IFADDRMSG..]) {
        match kind {
            IFA_LOCAL => local = ip_from(h[0], data),
            IFA_ADDRESS => address = ip_from(h[0], data),
            IFA_FLAGS => flags = u32_at(data, 0).unwrap_or(flags),
            _ => {}
        }
    }
    Some(AddrInfo {
        ifindex: u32_at(h, 4)?,
        // IFA_ADDRESS is the peer's on point-to-point links.
        addr: local.or(address)?,
        prefix: h[1],
        scope: h[3],
        flags,
    })
}

/// The addresses in a buffer of netlink messages (an RTM_GETADDR reply).
pub fn parse_addresses(buf: &[u8]) -> Vec<AddrInfo> {
    messages(buf)
        .map_while(Result::ok)
        .filter(|m| m.kind == RTM_NEWADDR)
        .filter_map(|m| parse_address(m.payload))
        .collect()
}

/// The gateway of an RTA_VIA attribute (struct rtvia: family, address).
fn via(data: &[u8]) -> Option<IpAddr> {
    let family = u16_at(data, 0)?;
    ip_from(u8::try_from(family).ok()?, data.get(2..)?)
}

/// The output interface and gateway of the first nexthop of RTA_MULTIPATH
/// (struct rtnexthop: len u16, flags u8, hops u8, ifindex i32, attributes).
fn first_nexthop(family: u8, data: &[u8]) -> Option<(u32, Option<IpAddr>)> {
    let len = usize::from(u16_at(data, 0)?);
    let nh = data.get(..len)?;
    let gateway = attrs(nh.get(8..)?).find_map(|(k, d)| match k {
        RTA_GATEWAY => ip_from(family, d),
        RTA_VIA => via(d),
        _ => None,
    });
    Some((u32_at(nh, 4)?, gateway))
}

/// An RTM_NEWROUTE payload; None when malformed, not IPv4/IPv6 or not a
/// unicast route.
pub fn parse_route(p: &[u8]) -> Option<RouteInfo> {
    let h = p.get(..RTMSG)?;
    let (family, dst_len) = (h[0], h[1]);
    if ![libc::AF_INET, libc::AF_INET6].contains(&i32::from(family)) || h[7] != RTN_UNICAST {
        return None;
    }
    let mut r = RouteInfo {
        dst: None,
        gateway: None,
        oif: None,
        prefsrc: None,
        table: u32::from(h[4]),
        priority: 0,
    };
    let (mut dst, mut nexthop) = (None, None);
    for (kind, data) in attrs(&p[RTMSG..]) {
        match kind {
            RTA_DST => dst = ip_from(family, data),
            RTA_GATEWAY => r.gateway = ip_from(family, data),
            RTA_VIA => r.gateway = via(data),
            RTA_OIF => r.oif = u32_at(data, 0),
            RTA_PREFSRC => r.prefsrc = ip_from(family, data),
            RTA_PRIORITY => r.priority = u32_at(data, 0).unwrap_or(0),
            RTA_TABLE => r.table = u32_at(data, 0).unwrap_or(r.table),
            RTA_MULTIPATH => nexthop = first_nexthop(family, data),
            _ => {}
        }
    }
    if let (None, None, Some((oif, gw))) = (r.oif, r.gateway, nexthop) {
        (r.oif, r.gateway) = (Some(oif), gw);
    }
    if dst_len > 0 {
        r.dst = Some(IpNet::new(dst?, dst_len).ok()?);
    }
    Some(r)
}

/// The routes in a buffer of netlink messages (an RTM_GETROUTE reply).
pub fn parse_routes(buf: &[u8]) -> Vec<RouteInfo> {
    messages(buf)
        .map_while(Result::ok)
        .filter(|m| m.kind == RTM_NEWROUTE)
        .filter_map(|m| parse_route(m.payload))
        .collect()
}

/// The RTM_NEWADDR request of `add_address` (without netlink header).
fn new_address_msg(ifindex: u32, addr: IpAddr, prefix: u8) -> Vec<u8> {
    let mut m = vec![family_of(addr), prefix, 0, RT_SCOPE_UNIVERSE];
    m.extend(ifindex.to_ne_bytes());
    put_attr(&mut m, IFA_LOCAL, &ip_bytes(addr));
    put_attr(&mut m, IFA_ADDRESS, &ip_bytes(addr));
    m
}

/// The RTM_NEWROUTE request of `add_route` (without netlink header).
fn new_route_msg(dst: IpNet, gateway: Option<IpAddr>, oif: u32) -> io::Result<Vec<u8>> {
    let dst = dst.trunc();
    if gateway.is_some_and(|g| g.is_ipv4() != dst.addr().is_ipv4()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the gateway and the destination are of different IP families",
        ));
    }
    let scope = if gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let table = RT_TABLE_MAIN as u8;
    let mut m = vec![family_of(dst.addr()), dst.prefix_len(), 0, 0];
    m.extend([table, RTPROT_BOOT, scope, RTN_UNICAST]);
    m.extend(0u32.to_ne_bytes());
    if dst.prefix_len() > 0 {
        put_attr(&mut m, RTA_DST, &ip_bytes(dst.addr()));
    }
    if let Some(g) = gateway {
        put_attr(&mut m, RTA_GATEWAY, &ip_bytes(g));
    }
    put_attr(&mut m, RTA_OIF, &oif.to_ne_bytes());
    Ok(m)
}

struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> io::Result<Rtnl> {
        Ok(Rtnl {
            fd: route_socket()?,
            seq: 0,
        })
    }

    fn send(&mut self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<u32> {
        self.seq += 1;
        let mut m = Vec::with_capacity(HDR + payload.len());
        m.extend(((HDR + payload.len()) as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend(flags.to_ne_bytes());
        m.extend(self.seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(payload);
        // SAFETY: sending a buffer we own to the kernel (pid 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
        if n < 0 { Err(last_err()) } else { Ok(self.seq) }
    }

    /// Reads replies to `seq` until DONE (dump) or an ACK/error; returns the
    /// payloads of messages of `kind`.
    fn collect(&self, seq: u32, kind: u16) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receiving into a buffer we own.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(last_err());
            }
            for m in messages(&buf[..n as usize]) {
                let m = m?;
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = u32_at(m.payload, 0).ok_or_else(malformed)? as i32;
                        return match code {
                            0 => Ok(out),
                            c => Err(io::Error::from_raw_os_error(-c)),
                        };
                    }
                    k if k == kind => out.push(m.payload.to_vec()),
                    _ => {}
                }
            }
        }
    }

    /// Sends a request with NLM_F_ACK and waits for the kernel's answer.
    fn call(&mut self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<()> {
        let seq = self.send(kind, NLM_F_REQUEST | NLM_F_ACK | flags, payload)?;
        self.collect(seq, 0).map(drop)
    }

    /// Dumps objects of `kind`, asked with `get` and `payload`.
    fn dump(&mut self, get: u16, kind: u16, payload: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.send(get, NLM_F_REQUEST | NLM_F_DUMP, payload)?;
        self.collect(seq, kind)
    }
}

/// Every IPv4 and IPv6 address of this namespace.
pub fn addresses() -> io::Result<Vec<AddrInfo>> {
    let req = [libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0];
    let msgs = Rtnl::open()?.dump(RTM_GETADDR, RTM_NEWADDR, &req)?;
    Ok(msgs.iter().filter_map(|p| parse_address(p)).collect())
}

/// The unicast routes of `family` (libc::AF_INET or AF_INET6) of every
/// table; `RouteInfo::table` tells which (`RT_TABLE_MAIN` for the main one).
pub fn routes(family: i32) -> io::Result<Vec<RouteInfo>> {
    let fam = u8::try_from(family).map_err(|_| io::ErrorKind::InvalidInput)?;
    Ok(dump_routes(fam)?
        .iter()
        .filter_map(|p| parse_route(p))
        .collect())
}

/// The RTM_NEWROUTE payloads of family `fam`, of every type and table.
fn dump_routes(fam: u8) -> io::Result<Vec<Vec<u8>>> {
    let mut req = [0u8; RTMSG];
    req[0] = fam;
    let mut msgs = Rtnl::open()?.dump(RTM_GETROUTE, RTM_NEWROUTE, &req)?;
    // A kernel without the family answers with the routes of every family.
    msgs.retain(|p| p.first() == Some(&fam));
    Ok(msgs)
}

/// The IPv4 prefixes this namespace takes as its own (routes of type
/// local: each address of an interface, and whole prefixes such as
/// 127.0.0.0/8 or one routed `local` on purpose).
pub fn local_prefixes_v4() -> io::Result<Vec<ipnet::Ipv4Net>> {
    let msgs = dump_routes(libc::AF_INET as u8)?;
    Ok(msgs.iter().filter_map(|p| parse_local_v4(p)).collect())
}

/// An RTM_NEWROUTE payload of an IPv4 route of type local: its prefix.
fn parse_local_v4(p: &[u8]) -> Option<ipnet::Ipv4Net> {
    let h = p.get(..RTMSG)?;
    if i32::from(h[0]) != libc::AF_INET || h[7] != RTN_LOCAL {
        return None;
    }
    let dst = attrs(&p[RTMSG..]).find_map(|(k, d)| (k == RTA_DST).then(|| ip_from(h[0], d)))??;
    match dst {
        IpAddr::V4(a) => ipnet::Ipv4Net::new(a, h[1]).ok().map(|n| n.trunc()),
        IpAddr::V6(_) => None,
    }
}

/// Adds `addr/prefix` to interface `ifindex`. An address that is already
/// there fails with EEXIST (`io::ErrorKind::AlreadyExists`).
pub fn add_address(ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
    let m = new_address_msg(ifindex, addr, prefix);
    Rtnl::open()?.call(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &m)
}

/// Adds a route to `dst` in the main table, through `gateway` or, without
/// one, directly on link `oif`. An existing route fails with EEXIST.
pub fn add_route(dst: IpNet, gateway: Option<IpAddr>, oif: u32) -> io::Result<()> {
    let m = new_route_msg(dst, gateway, oif)?;
    Rtnl::open()?.call(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &m)
}

/// Removes every IPv4 address from interface `ifindex` (in this namespace).
pub fn flush_ipv4(ifindex: u32) -> io::Result<usize> {
    let mut nl = Rtnl::open()?;
    let req = [libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0];
    let addrs = nl.dump(RTM_GETADDR, RTM_NEWADDR, &req)?;
    let mut removed = 0;
    for a in addrs {
        if u32_at(&a, 4) != Some(ifindex) {
            continue;
        }
        nl.call(RTM_DELADDR, 0, &a)?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
