//! IPv6 for a local NI's apps, as pure logic (SPEC §5.1): the router
//! advertisement (the /64 for SLAAC, the MTU, the DNS servers), the
//! stateless DHCPv6 reply that carries the DNS servers and domain, and
//! what an app's neighbour discovery tells of its addresses.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::config::Mac;

/// ICMPv6 types the router deals with.
pub const ROUTER_SOLICIT: u8 = 133;
pub const ROUTER_ADVERT: u8 = 134;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;
/// How long advertised things last: the default router, the DNS servers...
const ROUTER_LIFETIME: u16 = 1800;
/// ... and the prefix.
const PREFIX_VALID: u32 = 86400;
const PREFIX_PREFERRED: u32 = 14400;

/// What the router advertises.
#[derive(Debug, Clone)]
pub struct Advert {
    pub mac: Mac,
    pub prefix: Ipv6Net,
    pub mtu: u16,
    pub dns: Vec<Ipv6Addr>,
    /// False on an air-gapped NI: the prefix is on-link, no default route.
    pub default_router: bool,
}

/// The link-local address of a MAC (modified EUI-64).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// The ICMPv6 message of a router advertisement, checksum left zero:
/// managed flag off (addresses by SLAAC), other-config on (DNS by
/// stateless DHCPv6 as well as RDNSS).
pub fn router_advert(a: &Advert) -> Vec<u8> {
    let lifetime = if a.default_router { ROUTER_LIFETIME } else { 0 };
    let mut m = vec![ROUTER_ADVERT, 0, 0, 0, 64, 0x40];
    m.extend(lifetime.to_be_bytes());
    m.extend([0u8; 8]); // reachable time, retransmission timer: unspecified
    m.extend([1, 1]);
    m.extend(a.mac.0);
    m.extend([5, 1, 0, 0]);
    m.extend(u32::from(a.mtu).to_be_bytes());
    m.extend([3, 4, 64, 0xc0]); // on-link, autonomous
    m.extend(PREFIX_VALID.to_be_bytes());
    m.extend(PREFIX_PREFERRED.to_be_bytes());
    m.extend([0u8; 4]);
    m.extend(a.prefix.network().octets());
    if !a.dns.is_empty() {
        m.extend([25, 1 + 2 * a.dns.len() as u8, 0, 0]);
        m.extend(u32::from(ROUTER_LIFETIME).to_be_bytes());
        for d in &a.dns {
            m.extend(d.octets());
        }
    }
    m
}

/// A DHCPv6 message that could not be read.
#[derive(Debug, PartialEq)]
pub struct Malformed;

/// The server's DUID: link-layer type (3), Ethernet, the router's MAC.
pub fn duid(mac: Mac) -> Vec<u8> {
    [&[0, 3, 0, 1][..], &mac.0].concat()
}

/// DHCPv6 message types and options the router deals with (RFC 8415).
const INFORMATION_REQUEST: u8 = 11;
const REPLY: u8 = 7;
const OPT_CLIENT_ID: u16 = 1;
const OPT_SERVER_ID: u16 = 2;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;
const OPT_INFORMATION_REFRESH: u16 = 32;

/// The options of a DHCPv6 message (after type and transaction id), each
/// checked to fit; Err when one does not.
fn dhcpv6_options(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, Malformed> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let head = b.get(..4).ok_or(Malformed)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        out.push((code, b.get(4..4 + len).ok_or(Malformed)?));
        b = &b[4 + len..];
    }
    Ok(out)
}

fn push_option(m: &mut Vec<u8>, code: u16, value: &[u8]) {
    m.extend(code.to_be_bytes());
    m.extend((value.len() as u16).to_be_bytes());
    m.extend(value);
}

/// A domain name in DNS wire format (RFC 1035 §3.1); None when a label
/// is empty or too long.
fn wire_name(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
    Some(out)
}

/// The reply to a DHCPv6 message: an Information-request (stateless
/// DHCPv6) gets the DNS servers and the search domain; anything else
/// (addresses are by SLAAC) gets nothing. Malformed: Err. Read by hand,
/// every length checked: the router needs three options of it.
pub fn dhcpv6_reply(
    msg: &[u8],
    server_duid: &[u8],
    dns: &[Ipv6Addr],
    domain: Option<&str>,
) -> Result<Option<Vec<u8>>, Malformed> {
    let head = msg.get(..4).ok_or(Malformed)?;
    let opts = dhcpv6_options(&msg[4..])?;
    if head[0] != INFORMATION_REQUEST {
        return Ok(None);
    }
    let find = |code| opts.iter().find(|(c, _)| *c == code).map(|(_, v)| *v);
    // One addressed to another server is not ours to answer.
    if find(OPT_SERVER_ID).is_some_and(|id| id != server_duid) {
        return Ok(None);
    }
    let mut r = vec![REPLY, head[1], head[2], head[3]];
    push_option(&mut r, OPT_SERVER_ID, server_duid);
    if let Some(id) = find(OPT_CLIENT_ID) {
        push_option(&mut r, OPT_CLIENT_ID, id);
    }
    let servers: Vec<u8> = dns.iter().flat_map(|a| a.octets()).collect();
    push_option(&mut r, OPT_DNS_SERVERS, &servers);
    if let Some(name) = domain.and_then(wire_name) {
        push_option(&mut r, OPT_DOMAIN_LIST, &name);
    }
    push_option(
        &mut r,
        OPT_INFORMATION_REFRESH,
        &u32::from(ROUTER_LIFETIME).to_be_bytes(),
    );
    Ok(Some(r))
}

/// The addresses an IPv6 packet from an app shows it uses: its source, or
/// for duplicate address detection (a neighbour solicitation from `::`)
/// the address it is about to take. `icmp` is the ICMPv6 message, if any.
pub fn claimed(src: Ipv6Addr, icmp: Option<&[u8]>) -> Option<Ipv6Addr> {
    if !src.is_unspecified() {
        return Some(src);
    }
    let m = icmp?;
    (m.first() == Some(&NEIGHBOR_SOLICIT))
        .then(|| m.get(8..24))
        .flatten()
        .and_then(|t| <[u8; 16]>::try_from(t).ok())
        .map(Ipv6Addr::from)
}

/// The solicited-node multicast address of `a`.
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// A neighbour solicitation for `target` from `mac` (checksum zero).
pub fn neighbor_solicit(target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    let mut m = vec![NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
    m.extend(target.octets());
    m.extend([1, 1]);
    m.extend(mac.0);
    m
}

/// A solicited neighbour advertisement: `target` is at `mac` (checksum zero).
pub fn neighbor_advert(target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    let mut m = vec![NEIGHBOR_ADVERT, 0, 0, 0, 0x60, 0, 0, 0];
    m.extend(target.octets());
    m.extend([2, 1]);
    m.extend(mac.0);
    m
}

/// What a neighbour discovery message says: its type, its target (for a
/// solicitation or an advertisement), the link-layer address it carries
/// (source or target option) and, for a router advertisement, the
/// router's lifetime in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nd {
    pub kind: u8,
    pub target: Option<Ipv6Addr>,
    pub mac: Option<Mac>,
    pub lifetime: u16,
}

/// Reads a neighbour or router discovery message (ICMPv6); None for
/// anything else or malformed.
pub fn read_nd(m: &[u8]) -> Option<Nd> {
    let kind = *m.first()?;
    let (target, opts) = match kind {
        ROUTER_ADVERT => (None, m.get(16..)?),
        NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => {
            let t = <[u8; 16]>::try_from(m.get(8..24)?).ok()?;
            (Some(Ipv6Addr::from(t)), m.get(24..)?)
        }
        _ => return None,
    };
    let lifetime = match kind {
        ROUTER_ADVERT => u16::from_be_bytes([m[6], m[7]]),
        _ => 0,
    };
    let mut mac = None;
    let mut i = 0;
    while i + 2 <= opts.len() {
        let len = opts[i + 1] as usize * 8;
        let opt = opts.get(i..i + len).filter(|_| len > 0)?;
        if matches!(opt[0], 1 | 2) && len == 8 {
            mac = Some(Mac(opt[2..8].try_into().ok()?));
        }
        i += len;
    }
    Some(Nd {
        kind,
        target,
        mac,
        lifetime,
    })
}

#[cfg(test)]
mod tests;
