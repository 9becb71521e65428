//! Inside the pod's network namespace: the address and routes the daemon
//! gave a pod on a local NI (ConnectPodAtL3), and CHECK's comparison of
//! the interface with the previous result.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;

use super::spec::{CniError, code};
use crate::control::PodInfo;
use crate::ports::{ifctl, netns, rtnl};

/// Sets the pod's address and routes (nothing on a switch NI).
pub fn configure(p: &PodInfo) -> Result<(), CniError> {
    let Some(addr) = &p.address else {
        return Ok(());
    };
    let net: IpNet = addr.parse().map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            format!("address `{addr}` from the daemon"),
        )
        .details(format!("{e}"))
    })?;
    let routes = parse_routes(&p.routes)?;
    netns::run_in_path(Path::new(&p.netns), || {
        let index = pod_ifindex(p)?;
        ignore_exists(rtnl::add_address(index, net.addr(), net.prefix_len()))?;
        for (dst, gw) in &routes {
            ignore_exists(rtnl::add_route(*dst, Some(*gw), index))?;
        }
        Ok(())
    })
    .map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            format!("configuring {} in {}: {e}", p.ifname, p.netns),
        )
    })
}

/// The pod interface's index, in the pod's namespace (the caller's thread is in it).
fn pod_ifindex(p: &PodInfo) -> io::Result<u32> {
    ifctl::index(&p.ifname).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {}", p.ifname),
        )
    })
}

fn ignore_exists(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

fn parse_routes(routes: &[(String, String)]) -> Result<Vec<(IpNet, IpAddr)>, CniError> {
    routes
        .iter()
        .map(|(d, g)| {
            let bad = || {
                CniError::new(
                    code::DECODE_FAILURE,
                    format!("route {d} via {g} from the daemon"),
                )
            };
            Ok((d.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
        })
        .collect()
}

/// What the pod's interface looks like now.
struct Seen {
    mac: String,
    addrs: Vec<IpNet>,
    routes: Vec<(IpNet, Option<IpAddr>)>,
}

fn look(p: &PodInfo) -> io::Result<Seen> {
    netns::run_in_path(Path::new(&p.netns), || {
        let index = pod_ifindex(p)?;
        let mac = ifctl::mac(&p.ifname)?.to_string();
        let addrs = rtnl::addresses()?
            .into_iter()
            .filter(|a| a.ifindex == index)
            .filter_map(|a| IpNet::new(a.addr, a.prefix).ok())
            .collect();
        let routes = rtnl::routes(libc::AF_INET)?
            .into_iter()
            .filter(|r| r.oif == Some(index))
            .map(|r| (r.dst.unwrap_or(IpNet::V4(Default::default())), r.gateway))
            .collect();
        Ok(Seen { mac, addrs, routes })
    })
}

/// CHECK: the interface, its MAC, addresses and routes are as the previous
/// result says (and as the daemon holds them).
pub fn check(p: &PodInfo, prev: &Value) -> Result<(), CniError> {
    let seen = look(p).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("interface {} in {}: {e}", p.ifname, p.netns),
        )
    })?;
    let mismatch = |what: String| Err(CniError::new(code::CHECK_MISMATCH, what));
    let iface = prev["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == p.ifname.as_str()));
    if let Some(mac) = iface.and_then(|i| i["mac"].as_str())
        && !mac.eq_ignore_ascii_case(&seen.mac)
    {
        return mismatch(format!(
            "{} has MAC {}, prevResult says {mac}",
            p.ifname, seen.mac
        ));
    }
    for ip in prev["ips"].as_array().into_iter().flatten() {
        let Some(a) = ip["address"].as_str().and_then(|a| a.parse::<IpNet>().ok()) else {
            continue;
        };
        if !seen.addrs.contains(&a) {
            return mismatch(format!("{} lacks its address {a}", p.ifname));
        }
    }
    for r in prev["routes"].as_array().into_iter().flatten() {
        let dst = r["dst"].as_str().and_then(|d| d.parse::<IpNet>().ok());
        let gw = r["gw"].as_str().and_then(|g| g.parse::<IpAddr>().ok());
        if let Some(d) = dst
            && !seen
                .routes
                .iter()
                .any(|(sd, sg)| *sd == d && (gw.is_none() || *sg == gw))
        {
            return mismatch(format!("the route to {d} is missing in the pod"));
        }
    }
    Ok(())
}
