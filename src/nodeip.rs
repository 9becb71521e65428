//! `niswitch node-ip` (SPEC §7.1): the address kubelet should bind, chosen
//! from the addresses and routes of the calling thread's network namespace.
//! The choice (`select`) is pure, so every rule is testable without a
//! network; `read` gathers its input over rtnetlink.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::addr::parse_ip_text;
use crate::ports::ifctl;
use crate::ports::rtnl::{
    self, AddrInfo, IFA_F_SECONDARY, RT_SCOPE_LINK, RT_TABLE_MAIN, RouteInfo,
};

/// `--family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    Ipv4,
    Ipv6,
    /// Both, printed `IPv4,IPv6`.
    Dual,
}

/// What node-ip reads from a namespace.
#[derive(Debug, Clone, Default)]
pub struct Net {
    pub addrs: Vec<AddrInfo>,
    /// IPv4 routes (of any table: only main-table default routes count).
    pub routes4: Vec<RouteInfo>,
    pub routes6: Vec<RouteInfo>,
    /// Interface names by index, for messages.
    pub names: HashMap<u32, String>,
}

/// The answer; `node_ip` is the value of kubelet's `--node-ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeIp {
    pub node_ip: String,
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
}

/// An address that may be a node IP (in its IPv4 form when IPv4-mapped).
#[derive(Debug, Clone, Copy)]
struct Cand {
    ip: IpAddr,
    net: IpNet,
    ifindex: u32,
    /// IPv4 secondary or IPv6 temporary (privacy) address.
    secondary: bool,
}

/// An IPv4-mapped IPv6 address in its IPv4 form; any other unchanged.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn family_name(v6: bool) -> &'static str {
    if v6 { "IPv6" } else { "IPv4" }
}

/// Never a node IP: loopback, link-local, unspecified, multicast.
fn unusable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_unicast_link_local() || a.is_unspecified() || a.is_multicast()
        }
    }
}

/// The address as a candidate, or None when it must never be a node IP
/// (also deprecated, tentative, DAD-failed and link- or host-scoped ones).
fn candidate(a: &AddrInfo) -> Option<Cand> {
    let ip = unmap(a.addr);
    if a.deprecated() || a.tentative() || a.scope >= RT_SCOPE_LINK || unusable(ip) {
        return None;
    }
    let mapped = ip.is_ipv4() && a.addr.is_ipv6();
    let prefix = if mapped {
        a.prefix.saturating_sub(96)
    } else {
        a.prefix
    };
    Some(Cand {
        ip,
        net: IpNet::new(ip, prefix).ok()?.trunc(),
        ifindex: a.ifindex,
        secondary: a.flags & IFA_F_SECONDARY != 0,
    })
}

/// The address of the interface whose subnet holds `vip`: the most
/// specific subnet, a primary address before a secondary; never the VIP.
fn by_vip(cands: &[Cand], vip: IpAddr) -> Result<IpAddr, String> {
    cands
        .iter()
        .filter(|c| c.ip != vip && c.net.contains(&vip))
        .min_by_key(|c| (Reverse(c.net.prefix_len()), c.secondary))
        .map(|c| c.ip)
        .ok_or_else(|| format!("no interface subnet holds the VIP {vip}"))
}

/// The main-table default routes, lowest metric first.
fn defaults(routes: &[RouteInfo]) -> Vec<&RouteInfo> {
    let mut d: Vec<&RouteInfo> = routes
        .iter()
        .filter(|r| r.dst.is_none() && r.table == RT_TABLE_MAIN)
        .collect();
    d.sort_by_key(|r| r.priority);
    d
}

/// The source a default route gives: its preferred source when that is a
/// candidate, else the best candidate on its interface (one whose subnet
/// holds the gateway first, a primary before a secondary).
fn source_of(r: &RouteInfo, cands: &[Cand], v6: bool) -> Option<IpAddr> {
    let family: Vec<&Cand> = cands.iter().filter(|c| c.ip.is_ipv6() == v6).collect();
    let src = r.prefsrc.map(unmap);
    if let Some(c) = family.iter().find(|c| Some(c.ip) == src) {
        return Some(c.ip);
    }
    let gw = r.gateway.map(unmap);
    family
        .iter()
        .filter(|c| Some(c.ifindex) == r.oif)
        .min_by_key(|c| (!gw.is_some_and(|g| c.net.contains(&g)), c.secondary))
        .map(|c| c.ip)
}

/// The preferred source of the default route of a family.
fn by_default_route(net: &Net, cands: &[Cand], v6: bool) -> Result<IpAddr, String> {
    let name = family_name(v6);
    let routes = defaults(if v6 { &net.routes6 } else { &net.routes4 });
    let Some(first) = routes.first() else {
        return Err(format!("no {name} default route in this network namespace"));
    };
    if let Some(ip) = routes.iter().find_map(|r| source_of(r, cands, v6)) {
        return Ok(ip);
    }
    let via = first
        .gateway
        .map(|g| format!(" via {g}"))
        .unwrap_or_default();
    let dev = first.oif.map_or_else(String::new, |i| {
        let n = net
            .names
            .get(&i)
            .cloned()
            .unwrap_or_else(|| format!("#{i}"));
        format!(" dev {n}")
    });
    Err(format!(
        "the {name} default route{via}{dev} has no usable source: no global {name} address \
         that is not link-local, loopback, deprecated or tentative"
    ))
}

/// What to answer: per family (IPv4, IPv6), None when not asked, else the
/// VIP that decides it (None: the default route does).
type Plan = [Option<Option<IpAddr>>; 2];

/// The families to answer, from `--vip` and `--family`.
fn plan(net: &Net, vips: &[IpAddr], family: Option<Family>) -> Result<Plan, String> {
    let mut vip = [None, None];
    for v in vips.iter().map(|v| unmap(*v)) {
        let i = usize::from(v.is_ipv6());
        if let Some(other) = vip[i].replace(v) {
            let name = family_name(v.is_ipv6());
            return Err(format!(
                "two {name} VIPs ({other}, {v}): give at most one per family"
            ));
        }
    }
    let want = match family {
        Some(Family::Ipv4) => [true, false],
        Some(Family::Ipv6) => [false, true],
        Some(Family::Dual) => [true, true],
        None if !vips.is_empty() => [vip[0].is_some(), vip[1].is_some()],
        None => default_family(net)?,
    };
    for (v, asked) in vip.iter().zip(want) {
        if let (Some(v), false) = (v, asked) {
            let name = family_name(v.is_ipv6());
            return Err(format!(
                "the VIP {v} is {name} but --family does not ask for {name}"
            ));
        }
    }
    Ok([want[0].then_some(vip[0]), want[1].then_some(vip[1])])
}

/// IPv4, or IPv6 when only IPv6 has a default route.
fn default_family(net: &Net) -> Result<[bool; 2], String> {
    match (
        defaults(&net.routes4).is_empty(),
        defaults(&net.routes6).is_empty(),
    ) {
        (true, true) => Err("no default route (IPv4 or IPv6) in this network namespace".into()),
        (true, false) => Ok([false, true]),
        _ => Ok([true, false]),
    }
}

/// The node IP(s) of `net` for `--vip` (any number, at most one per
/// family) and `--family`; the error is one line saying what is missing.
pub fn select(net: &Net, vips: &[IpAddr], family: Option<Family>) -> Result<NodeIp, String> {
    let cands: Vec<Cand> = net.addrs.iter().filter_map(candidate).collect();
    let mut got = [None, None];
    for (i, want) in plan(net, vips, family)?.into_iter().enumerate() {
        got[i] = match want {
            None => None,
            Some(Some(vip)) => Some(by_vip(&cands, vip)?),
            Some(None) => Some(by_default_route(net, &cands, i == 1)?),
        };
    }
    let node_ip = got
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    Ok(NodeIp {
        node_ip: node_ip.join(","),
        ipv4: got[0],
        ipv6: got[1],
    })
}

/// The line `node-ip` prints: the address(es), or the JSON object.
pub fn render(n: &NodeIp, json: bool) -> String {
    if json {
        serde_json::to_string(n).unwrap_or_default()
    } else {
        n.node_ip.clone()
    }
}

/// Reads the addresses and routes of the calling thread's namespace.
pub fn read() -> std::io::Result<Net> {
    let addrs = rtnl::addresses()?;
    let routes4 = rtnl::routes(libc::AF_INET)?;
    let routes6 = rtnl::routes(libc::AF_INET6)?;
    let oifs = routes4.iter().chain(&routes6).filter_map(|r| r.oif);
    let names = addrs
        .iter()
        .map(|a| a.ifindex)
        .chain(oifs)
        .filter_map(|i| Some((i, ifctl::name(i)?)))
        .collect();
    Ok(Net {
        addrs,
        routes4,
        routes6,
        names,
    })
}

/// `niswitch node-ip`: the line to print, or the one-line reason why not.
pub fn command(vips: &[String], family: Option<Family>, json: bool) -> Result<String, String> {
    let vips = vips
        .iter()
        .map(|v| parse_ip_text(v).map_err(|e| format!("--vip: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let net = read().map_err(|e| format!("cannot read the addresses and routes here: {e}"))?;
    Ok(render(&select(&net, &vips, family)?, json))
}

#[cfg(test)]
mod tests;
