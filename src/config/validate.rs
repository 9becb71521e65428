//! Turns a `RawConfig` into a `Config`: every rule of SPEC §2, each problem
//! reported with the path of the field, what is wrong and what is allowed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::derive;
use super::model::*;
use super::schema::*;
use super::{ConfigError, addr};

const IFNAMSIZ: usize = 15;

struct Ctx {
    errors: Vec<ConfigError>,
}

impl Ctx {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records the first place a key appears; reports later duplicates.
    fn unique(&mut self, seen: &mut HashMap<String, String>, key: &str, path: String, what: &str) {
        if let Some(first) = seen.get(key) {
            self.err(path, format!("duplicate {what} `{key}` (already used at {first}); every {what} must be unique"));
        } else {
            seen.insert(key.to_string(), path);
        }
    }

    fn ifname(&mut self, path: &str, name: &str, what: &str) {
        if name.is_empty() {
            self.err(path, format!("the {what} is empty"));
        } else if name.len() > IFNAMSIZ {
            self.err(
                path,
                format!(
                    "{what} `{name}` is {} bytes long; Linux interface names have at most 15 bytes",
                    name.len()
                ),
            );
        } else if name.contains(['/', ':'])
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
            || name == "."
            || name == ".."
        {
            self.err(
                path,
                format!("{what} `{name}` is not a valid interface name (no '/', ':' or spaces)"),
            );
        }
    }
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut cx = Ctx { errors: Vec::new() };
    if raw.version != 1 {
        cx.err(
            "version",
            format!(
                "unsupported version {}; this niswitch reads version 1",
                raw.version
            ),
        );
    }
    let ports = ports(&mut cx, &raw.ports);
    let nis = nis(&mut cx, &raw.network_instances, &ports);
    let apps = apps(&mut cx, &raw.apps, &nis, &ports);
    let dataplane = dataplane(&mut cx, raw.dataplane.as_ref());
    if cx.errors.is_empty() {
        Ok(Config {
            version: raw.version,
            ports,
            network_instances: nis,
            apps,
            dataplane,
        })
    } else {
        Err(cx.errors)
    }
}

fn dataplane(cx: &mut Ctx, raw: Option<&RawDataplane>) -> Dataplane {
    let mut d = Dataplane::default();
    let none = RawDataplane::default();
    let raw = raw.unwrap_or(&none);
    if let Some(n) = raw.workers {
        if (1..=MAX_WORKERS).contains(&n) {
            d.workers = Some(n);
        } else {
            cx.err(
                "dataplane.workers",
                format!(
                    "{n} workers: give 1 to {MAX_WORKERS}, or leave it out for one pinned to each CPU"
                ),
            );
        }
    }
    if let Some(us) = raw.busy_poll_us {
        if us <= MAX_BUSY_POLL_US {
            d.busy_poll_us = us;
        } else {
            cx.err(
                "dataplane.busy_poll_us",
                format!("{us} µs: at most {MAX_BUSY_POLL_US} (0 turns busy polling off)"),
            );
        }
    }
    match (&raw.cpus, raw.workers) {
        (Some(cpus), workers) => d.cpus = pinned_cpus(cx, cpus, workers),
        (None, None) => d.cpus = default_cpus(),
        (None, Some(_)) => {}
    }
    d
}

/// `dataplane.cpus`: distinct CPU numbers, one worker each.
fn pinned_cpus(cx: &mut Ctx, cpus: &[u32], workers: Option<u32>) -> Vec<u32> {
    let mut ok = true;
    if cpus.is_empty() || cpus.len() > MAX_WORKERS as usize {
        cx.err(
            "dataplane.cpus",
            format!("give 1 to {MAX_WORKERS} CPUs, or leave it out for one worker on each CPU"),
        );
        ok = false;
    }
    for (i, &c) in cpus.iter().enumerate() {
        if c > MAX_CPU {
            cx.err(
                format!("dataplane.cpus[{i}]"),
                format!("CPU {c}: at most {MAX_CPU}"),
            );
            ok = false;
        } else if cpus[..i].contains(&c) {
            cx.err(
                format!("dataplane.cpus[{i}]"),
                format!("CPU {c} is listed twice"),
            );
            ok = false;
        }
    }
    if let Some(n) = workers
        && n as usize != cpus.len()
    {
        cx.err(
            "dataplane.workers",
            format!(
                "{n} workers but {} CPUs in dataplane.cpus (one worker per CPU); leave workers out",
                cpus.len()
            ),
        );
        ok = false;
    }
    if ok { cpus.to_vec() } else { Vec::new() }
}

fn ports(cx: &mut Ctx, raw: &[RawPort]) -> Vec<Port> {
    let mut names = HashMap::new();
    let mut devices = HashMap::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let base = format!("ports[{i}]");
        cx.ifname(&format!("{base}.device"), &p.device, "device name");
        let name = p.name.clone().unwrap_or_else(|| p.device.clone());
        if name.is_empty() {
            cx.err(format!("{base}.name"), "the port name is empty");
        }
        cx.unique(&mut names, &name, format!("{base}.name"), "port name");
        if name == HOST_UPLINK {
            cx.err(
                format!("{base}.name"),
                "`host` is reserved: it names the uplink through the host's own IP stack; give the port another name",
            );
        }
        cx.unique(
            &mut devices,
            &p.device,
            format!("{base}.device"),
            "port device",
        );
        if let Some(mtu) = p.mtu
            && !(68..=65535).contains(&mtu)
        {
            cx.err(
                format!("{base}.mtu"),
                format!("mtu {mtu} is out of range; allowed 68..65535"),
            );
        }
        let host_interface = match (&p.host_interface, p.management) {
            (Some(h), true) => {
                cx.ifname(&format!("{base}.host_interface"), h, "host interface name");
                Some(h.clone())
            }
            (Some(_), false) => {
                cx.err(
                    format!("{base}.host_interface"),
                    "a host interface is only made for a port with `management: true`",
                );
                None
            }
            (None, true) => Some(p.device.clone()),
            (None, false) => None,
        };
        let renamed_to = match &host_interface {
            Some(h) if *h == p.device => {
                let k = derive::kernel_name(&p.device);
                if k.len() > IFNAMSIZ {
                    cx.err(
                        format!("{base}.host_interface"),
                        format!("the NIC would be renamed to `{k}`, longer than 15 bytes; choose a host_interface name other than `{}`", p.device),
                    );
                }
                Some(k)
            }
            _ => None,
        };
        if let Some(v) = p.host_vlan {
            vlan_id(cx, &format!("{base}.host_vlan"), v);
            if host_interface.is_none() {
                cx.err(
                    format!("{base}.host_vlan"),
                    "`host_vlan` needs a host interface (`management: true`)",
                );
            }
        }
        out.push(Port {
            name,
            device: p.device.clone(),
            management: p.management,
            host_interface,
            renamed_to,
            cost: p.cost,
            mtu: p.mtu,
            host_vlan: p.host_vlan,
        });
    }
    // A renamed NIC's new name must not be another port's device.
    for (i, p) in out.iter().enumerate() {
        if let Some(k) = &p.renamed_to
            && out.iter().any(|o| o.device == *k)
        {
            cx.err(
                format!("ports[{i}].host_interface"),
                format!(
                    "renaming `{}` to `{k}` would clash with the port whose device is `{k}`",
                    p.device
                ),
            );
        }
    }
    out
}

/// A VLAN id an access port or interface may have.
fn vlan_id(cx: &mut Ctx, path: &str, v: u16) {
    if !ACCESS_VLANS.contains(&v) {
        cx.err(
            path,
            format!("VLAN {v} is out of range; allowed 2..4093 (1 is the untagged default VLAN)"),
        );
    }
}

/// A switch NI's NIC ports that carry one VLAN untagged: ports of the NI,
/// each listed once.
fn access_ports(cx: &mut Ctx, base: &str, n: &RawNi, ports: &[String]) -> Vec<AccessPort> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (j, a) in n.vlan_access_ports.iter().flatten().enumerate() {
        let path = format!("{base}.vlan_access_ports[{j}]");
        vlan_id(cx, &format!("{path}.vlan"), a.vlan);
        if !ports.contains(&a.port) {
            cx.err(
                format!("{path}.port"),
                format!(
                    "`{}` is not a port of this network instance (its ports: [{}])",
                    a.port,
                    ports.join(", ")
                ),
            );
        }
        cx.unique(&mut seen, &a.port, format!("{path}.port"), "access port");
        out.push(AccessPort {
            port: a.port.clone(),
            vlan: a.vlan,
        });
    }
    out
}

/// A switch NI's ports: `port: X` or `ports: [...]`, not both, each once.
fn switch_ports(cx: &mut Ctx, base: &str, n: &RawNi) -> Vec<String> {
    let all = match (&n.port, &n.ports) {
        (Some(_), Some(_)) => {
            cx.err(
                format!("{base}.ports"),
                "give `port: X` or `ports: [X, Y]`, not both",
            );
            Vec::new()
        }
        (Some(OneOrMany::One(p)), None) => vec![p.clone()],
        (Some(OneOrMany::Many(v)), None) if v.len() <= 1 => v.clone(),
        (Some(OneOrMany::Many(_)), None) => {
            cx.err(
                format!("{base}.port"),
                "several ports are listed as `ports: [X, Y]` (the spanning tree runs on them)",
            );
            Vec::new()
        }
        (None, Some(v)) => v.clone(),
        (None, None) => Vec::new(),
    };
    let mut seen = HashMap::new();
    for (j, p) in all.iter().enumerate() {
        cx.unique(
            &mut seen,
            p,
            format!("{base}.ports[{j}]"),
            "port of the network instance",
        );
    }
    all
}

/// The spanning tree of a switch NI: only with several ports; BPDU guard
/// on ports of the NI.
fn stp(cx: &mut Ctx, base: &str, n: &RawNi, ports: &[String]) -> Option<Stp> {
    let several = ports.len() > 1;
    let Some(raw) = &n.stp else {
        return several.then_some(Stp {
            priority: 32768,
            bpdu_guard: Vec::new(),
        });
    };
    if !several {
        cx.err(
            format!("{base}.stp"),
            "`stp` needs several ports (`ports: [X, Y]`); a single port cannot form a loop",
        );
    }
    let priority = raw.priority.unwrap_or(32768);
    if priority % 4096 != 0 {
        cx.err(
            format!("{base}.stp.priority"),
            format!("priority {priority} is not a multiple of 4096 (0..61440)"),
        );
    }
    for (j, g) in raw.bpdu_guard.iter().enumerate() {
        if !ports.contains(g) {
            cx.err(
                format!("{base}.stp.bpdu_guard[{j}]"),
                format!("`{g}` is not a port of this network instance"),
            );
        }
    }
    Some(Stp {
        priority,
        bpdu_guard: raw.bpdu_guard.clone(),
    })
}

fn local_only(cx: &mut Ctx, base: &str, n: &RawNi) {
    let set = [
        ("subnet", n.subnet.is_some()),
        ("gateway", n.gateway.is_some()),
        ("dhcp_range", n.dhcp_range.is_some()),
        ("lease_time", n.lease_time.is_some()),
        ("dns", n.dns.is_some()),
        ("uplinks", n.uplinks.is_some()),
        ("uplink_address", n.uplink_address.is_some()),
        ("uplink_gateway", n.uplink_gateway.is_some()),
        ("probe", n.probe.is_some()),
        ("ntp", n.ntp.is_some()),
        ("static_routes", n.static_routes.is_some()),
        ("mtu", n.mtu.is_some()),
        ("flow_log", n.flow_log.is_some()),
        ("subnet6", n.subnet6.is_some()),
        ("uplink_prefix6", n.uplink_prefix6.is_some()),
        ("uplink_gateway6", n.uplink_gateway6.is_some()),
        ("host_cost", n.host_cost.is_some()),
    ];
    for (field, present) in set {
        if present {
            cx.err(
                format!("{base}.{field}"),
                format!(
                    "`{field}` only applies to `type: local`; a switch network instance is L2 only"
                ),
            );
        }
    }
}

fn nis(cx: &mut Ctx, raw: &[RawNi], ports: &[Port]) -> Vec<Ni> {
    let mut names = HashMap::new();
    let mut uuids = HashMap::new();
    let mut out = Vec::new();
    let known_port = |n: &str| ports.iter().any(|p| p.name == n);
    let port_list = || {
        ports
            .iter()
            .map(|p| format!("`{}`", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, n) in raw.iter().enumerate() {
        let base = format!("network_instances[{i}]");
        if n.name.is_empty() {
            cx.err(format!("{base}.name"), "the network instance name is empty");
        }
        cx.unique(
            &mut names,
            &n.name,
            format!("{base}.name"),
            "network instance name",
        );
        let uuid = n.uuid.unwrap_or_else(|| derive::ni_uuid(&n.name));
        cx.unique(
            &mut uuids,
            &uuid.to_string(),
            format!("{base}.uuid"),
            "network instance UUID",
        );
        let check_port = |cx: &mut Ctx, path: String, p: &str| {
            if !known_port(p) {
                cx.err(
                    path,
                    format!("unknown port `{p}`; known ports: [{}]", port_list()),
                );
            }
        };
        let ni = match n.kind {
            NiType::Switch => {
                local_only(cx, &base, n);
                let all = switch_ports(cx, &base, n);
                for (j, p) in all.iter().enumerate() {
                    let path = match n.ports.is_some() {
                        true => format!("{base}.ports[{j}]"),
                        false => format!("{base}.port"),
                    };
                    check_port(cx, path, p);
                }
                let stp = stp(cx, &base, n, &all);
                let port = all.first().cloned();
                let vlan_access_ports = access_ports(cx, &base, n, &all);
                Ni {
                    name: n.name.clone(),
                    uuid,
                    kind: n.kind,
                    port,
                    flood_limit: n.flood_limit.unwrap_or(super::model::DEFAULT_FLOOD_LIMIT),
                    forward_lldp: n.forward_lldp.unwrap_or(false),
                    vlan_access_ports,
                    ports: if all.len() > 1 { all } else { Vec::new() },
                    stp,
                    local: None,
                }
            }
            NiType::Local => {
                if n.port.is_some() {
                    cx.err(
                        format!("{base}.port"),
                        "a local network instance reaches ports through `uplinks`, not `port`",
                    );
                }
                let uplinks = n.uplinks.clone().unwrap_or_default();
                let mut seen = HashMap::new();
                for (j, u) in uplinks.iter().enumerate() {
                    if u != HOST_UPLINK {
                        check_port(cx, format!("{base}.uplinks[{j}]"), u);
                    }
                    cx.unique(&mut seen, u, format!("{base}.uplinks[{j}]"), "uplink");
                }
                let local = local_ni(cx, &base, n, uplinks);
                if let Some(l) = &local {
                    mtu_fits_uplinks(cx, &base, l, ports);
                }
                if n.vlan_access_ports.is_some() {
                    cx.err(
                        format!("{base}.vlan_access_ports"),
                        "VLANs are for switch network instances; a local network instance is one untagged subnet",
                    );
                }
                for (field, set) in [("ports", n.ports.is_some()), ("stp", n.stp.is_some())] {
                    if set {
                        cx.err(
                            format!("{base}.{field}"),
                            "a local network instance reaches ports through `uplinks`",
                        );
                    }
                }
                Ni {
                    name: n.name.clone(),
                    uuid,
                    kind: n.kind,
                    port: None,
                    flood_limit: n.flood_limit.unwrap_or(super::model::DEFAULT_FLOOD_LIMIT),
                    forward_lldp: n.forward_lldp.unwrap_or(false),
                    vlan_access_ports: Vec::new(),
                    ports: Vec::new(),
                    stp: None,
                    local,
                }
            }
        };
        out.push(ni);
    }
    // Overlapping subnets of two local NIs.
    for (j, b) in out.iter().enumerate() {
        for a in &out[..j] {
            if let (Some(la), Some(lb)) = (&a.local, &b.local)
                && (la.subnet.contains(&lb.subnet.network())
                    || lb.subnet.contains(&la.subnet.network()))
            {
                cx.err(
                    format!("network_instances[{j}].subnet"),
                    format!(
                        "{} overlaps {} of network instance `{}`; local subnets must be disjoint",
                        lb.subnet, la.subnet, a.name
                    ),
                );
            }
        }
    }
    out
}

/// IPv4 networks (or addresses) a VIF may also send from, past port security.
fn allowed_ips(cx: &mut Ctx, vb: &str, list: &[super::addr::NetText]) -> Vec<Ipv4Net> {
    list.iter()
        .enumerate()
        .filter_map(|(i, n)| match n.0 {
            IpNet::V4(v) => Some(v),
            IpNet::V6(v) => {
                cx.err(
                    format!("{vb}.allowed_ips[{i}]"),
                    format!("`{v}` is IPv6; port security guards IPv4 addresses (give an IPv4 address or CIDR)"),
                );
                None
            }
        })
        .collect()
}

fn v4(cx: &mut Ctx, path: &str, ip: IpAddr, what: &str) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => {
            cx.err(
                path,
                format!(
                    "{what} `{ip}` is IPv6; local network instances are IPv4 (give an IPv4 address)"
                ),
            );
            None
        }
    }
}

fn local_ni(cx: &mut Ctx, base: &str, n: &RawNi, uplinks: Vec<String>) -> Option<LocalNi> {
    let Some(subnet) = n.subnet else {
        cx.err(
            format!("{base}.subnet"),
            "a local network instance needs a `subnet` (an IPv4 CIDR such as 10.50.0.0/24)",
        );
        return None;
    };
    let subnet = match subnet.0 {
        IpNet::V4(s) if s.prefix_len() <= 30 => s,
        IpNet::V4(s) => {
            cx.err(
                format!("{base}.subnet"),
                format!("{s} is too small; a local subnet needs a prefix of /30 or shorter"),
            );
            return None;
        }
        IpNet::V6(s) => {
            cx.err(
                format!("{base}.subnet"),
                format!("{s} is IPv6; local network instances take an IPv4 subnet"),
            );
            return None;
        }
    };
    let is_host =
        |ip: Ipv4Addr| subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast();
    let gateway = match n.gateway {
        None => Ipv4Addr::from(u32::from(subnet.network()) + 1),
        Some(g) => {
            let g = v4(cx, &format!("{base}.gateway"), g.0, "gateway")?;
            if !is_host(g) {
                cx.err(format!("{base}.gateway"), format!("gateway {g} is outside the subnet {subnet} (or is its network/broadcast address); use a host address of {subnet}"));
            }
            g
        }
    };
    let dhcp_range = match &n.dhcp_range {
        None => {
            let size = 1u32 << (32 - subnet.prefix_len());
            let net = u32::from(subnet.network());
            DhcpRange {
                start: Ipv4Addr::from(net + size / 2),
                end: Ipv4Addr::from(net + size - 2),
            }
        }
        Some(text) => {
            let path = format!("{base}.dhcp_range");
            let parsed = text.split_once('-').and_then(|(a, b)| {
                Some((
                    a.trim().parse::<Ipv4Addr>().ok()?,
                    b.trim().parse::<Ipv4Addr>().ok()?,
                ))
            });
            match parsed {
                None => {
                    cx.err(path, format!("`{text}` is not a range; write FIRST-LAST, such as 10.50.0.100-10.50.0.199"));
                    DhcpRange {
                        start: gateway,
                        end: gateway,
                    }
                }
                Some((s, e)) => {
                    if !is_host(s) || !is_host(e) {
                        cx.err(path.clone(), format!("range {s}-{e} must lie inside the subnet {subnet} (host addresses only)"));
                    } else if s > e {
                        cx.err(path.clone(), format!("range {s}-{e} starts after it ends"));
                    } else if s <= gateway && gateway <= e {
                        cx.err(path, format!("range {s}-{e} contains the gateway {gateway}; leave the gateway out of the range"));
                    }
                    DhcpRange { start: s, end: e }
                }
            }
        }
    };
    let lease_time = n.lease_time.unwrap_or(3600);
    if lease_time < 60 {
        cx.err(
            format!("{base}.lease_time"),
            format!("lease_time {lease_time} is too short; at least 60 seconds"),
        );
    }
    let dns = match &n.dns {
        None => Dns {
            domain: None,
            upstream: vec![],
            records: vec![],
        },
        Some(d) => {
            if let Some(dom) = &d.domain
                && !is_dns_name(dom)
            {
                cx.err(
                    format!("{base}.dns.domain"),
                    format!("`{dom}` is not a DNS domain name"),
                );
            }
            let mut records = Vec::new();
            for (k, r) in d.records.iter().enumerate() {
                let bare = r.name.strip_prefix("*.").unwrap_or(&r.name);
                if !is_dns_name(bare) {
                    cx.err(
                        format!("{base}.dns.records[{k}].name"),
                        format!(
                            "`{}` is not a DNS name (a leading `*.` makes a wildcard)",
                            r.name
                        ),
                    );
                }
                records.push(Record {
                    name: r.name.to_ascii_lowercase(),
                    ip: r.ip.0,
                });
            }
            Dns {
                domain: d.domain.as_ref().map(|s| s.to_ascii_lowercase()),
                upstream: d.upstream.iter().flatten().map(|i| i.0).collect(),
                records,
            }
        }
    };
    let uplink_address = match n.uplink_address.as_deref() {
        None | Some("dhcp") => UplinkAddress::Dhcp,
        Some(text) => {
            let path = format!("{base}.uplink_address");
            match text
                .split_once('/')
                .and_then(|(a, p)| Some((addr::parse_ip_text(a).ok()?, p.parse::<u8>().ok()?)))
            {
                Some((IpAddr::V4(a), p)) if p <= 32 => match Ipv4Net::new(a, p) {
                    Ok(net) => UplinkAddress::Static(net),
                    Err(_) => {
                        cx.err(path, format!("`{text}` has an invalid prefix"));
                        UplinkAddress::Dhcp
                    }
                },
                _ => {
                    cx.err(path, format!("`{text}` is neither `dhcp` nor an IPv4 address with prefix such as 192.0.2.50/24"));
                    UplinkAddress::Dhcp
                }
            }
        }
    };
    let uplink_gateway = match (n.uplink_gateway, uplink_address) {
        (None, _) => None,
        (Some(g), UplinkAddress::Dhcp) => {
            cx.err(format!("{base}.uplink_gateway"), format!("uplink_gateway {} is only used with a static uplink_address (the gateway comes from DHCP otherwise)", g.0));
            None
        }
        (Some(g), UplinkAddress::Static(net)) => {
            let g = v4(cx, &format!("{base}.uplink_gateway"), g.0, "uplink gateway");
            if let Some(g) = g
                && !net.contains(&g)
            {
                cx.err(
                    format!("{base}.uplink_gateway"),
                    format!(
                        "uplink gateway {g} is not inside the uplink network {}",
                        net.trunc()
                    ),
                );
            }
            g
        }
    };
    if let UplinkAddress::Static(_) = uplink_address
        && uplink_gateway.is_none()
        && n.uplink_gateway.is_none()
    {
        cx.err(
            format!("{base}.uplink_gateway"),
            "a static uplink_address needs an uplink_gateway",
        );
    }
    if uplinks.is_empty() && !dns.upstream.is_empty() {
        cx.err(
            format!("{base}.dns.upstream"),
            "an air-gapped network instance (no `uplinks`) cannot forward DNS upstream; add an uplink or remove `upstream`",
        );
    }
    let probe = probe(cx, base, n.probe.as_ref());
    let extras = dhcp_extras(cx, base, n, subnet, !uplinks.is_empty());
    let subnet6 = subnet6(cx, base, n);
    let (uplink_prefix6, uplink_gateway6) =
        routed6(cx, base, n, subnet6.is_some(), !uplinks.is_empty());
    let host_cost = host_cost(cx, base, n, &uplinks);
    Some(LocalNi {
        subnet,
        gateway,
        dhcp_range,
        lease_time,
        dns,
        uplinks,
        uplink_address,
        uplink_gateway,
        probe,
        ntp: extras.0,
        static_routes: extras.1,
        mtu: extras.2,
        flow_log: n.flow_log.unwrap_or(true),
        subnet6,
        uplink_prefix6,
        uplink_gateway6,
        host_cost,
    })
}

/// The `host` uplink's cost: only with `host` among the uplinks.
fn host_cost(cx: &mut Ctx, base: &str, n: &RawNi, uplinks: &[String]) -> u8 {
    let Some(c) = n.host_cost else {
        return DEFAULT_HOST_COST;
    };
    if !uplinks.iter().any(|u| u == HOST_UPLINK) {
        cx.err(
            format!("{base}.host_cost"),
            "host_cost is the cost of the `host` uplink; add `host` to `uplinks` or remove it",
        );
    }
    c
}

/// IPv6 routed to the uplinks: needs `subnet6` and an uplink; its
/// gateway, when given, is a unicast address.
fn routed6(
    cx: &mut Ctx,
    base: &str,
    n: &RawNi,
    has_subnet6: bool,
    uplinked: bool,
) -> (bool, Option<Ipv6Addr>) {
    let on = n.uplink_prefix6.unwrap_or(false);
    let path = format!("{base}.uplink_prefix6");
    if on && !has_subnet6 {
        cx.err(
            path.clone(),
            "uplink_prefix6 routes `subnet6` to the uplinks; set subnet6",
        );
    }
    if on && !uplinked {
        cx.err(path, "uplink_prefix6 needs an uplink to route IPv6 to");
    }
    let gw_path = format!("{base}.uplink_gateway6");
    let gateway = match n.uplink_gateway6.as_ref().map(|g| g.0) {
        None => None,
        Some(IpAddr::V4(a)) => {
            cx.err(
                gw_path,
                format!("{a} is IPv4; uplink_gateway6 is the upstream IPv6 router"),
            );
            None
        }
        Some(IpAddr::V6(a)) if a.is_multicast() || a.is_unspecified() || a.is_loopback() => {
            cx.err(gw_path, format!("{a} is not a unicast address"));
            None
        }
        Some(IpAddr::V6(_)) if !on => {
            cx.err(
                gw_path,
                "uplink_gateway6 is only used with `uplink_prefix6: true`",
            );
            None
        }
        Some(IpAddr::V6(a)) => Some(a),
    };
    (on, gateway)
}

/// A local NI's IPv6 subnet: a /64 (SLAAC needs one) of global or ULA space.
fn subnet6(cx: &mut Ctx, base: &str, n: &RawNi) -> Option<Ipv6Net> {
    let path = format!("{base}.subnet6");
    match n.subnet6.as_ref()?.0 {
        IpNet::V4(s) => {
            cx.err(path, format!("{s} is IPv4; subnet6 takes an IPv6 /64"));
            None
        }
        IpNet::V6(s) if s.prefix_len() != 64 => {
            cx.err(
                path,
                format!("{s} is a /{}; SLAAC needs a /64", s.prefix_len()),
            );
            None
        }
        IpNet::V6(s)
            if s.addr().is_multicast()
                || s.addr().is_unicast_link_local()
                || s.addr().is_loopback() =>
        {
            cx.err(path, format!("{s} is not a global or unique local prefix"));
            None
        }
        IpNet::V6(s) => Some(s.trunc()),
    }
}

/// An NI's MTU no larger than the MTU of a port it leaves through.
fn mtu_fits_uplinks(cx: &mut Ctx, base: &str, l: &LocalNi, ports: &[Port]) {
    let Some(mtu) = l.mtu else { return };
    for p in ports.iter().filter(|p| l.uplinks.contains(&p.name)) {
        if let Some(port_mtu) = p.mtu.filter(|m| u32::from(mtu) > *m) {
            cx.err(
                format!("{base}.mtu"),
                format!("mtu {mtu} is larger than the mtu {port_mtu} of uplink `{}`; give at most {port_mtu}", p.name),
            );
        }
    }
}

type DhcpExtras = (Vec<Ipv4Addr>, Vec<StaticRoute>, Option<u16>);

/// The NTP servers, static routes and MTU a local NI gives its apps.
fn dhcp_extras(cx: &mut Ctx, base: &str, n: &RawNi, subnet: Ipv4Net, uplinked: bool) -> DhcpExtras {
    let ntp = (n.ntp.iter().flatten().enumerate())
        .filter_map(|(i, ip)| v4(cx, &format!("{base}.ntp[{i}]"), ip.0, "NTP server"))
        .collect();
    let mut routes = Vec::new();
    for (i, r) in n.static_routes.iter().flatten().enumerate() {
        let path = format!("{base}.static_routes[{i}]");
        let dst = match r.dst.0 {
            IpNet::V4(d) => d.trunc(),
            IpNet::V6(d) => {
                cx.err(
                    format!("{path}.dst"),
                    format!("{d} is IPv6; routes here are IPv4"),
                );
                continue;
            }
        };
        let Some(gateway) = v4(cx, &format!("{path}.gateway"), r.gateway.0, "route gateway") else {
            continue;
        };
        let inside = subnet.contains(&gateway)
            && gateway != subnet.network()
            && gateway != subnet.broadcast();
        if !inside && !uplinked {
            cx.err(
                format!("{path}.gateway"),
                format!("{gateway} is outside the subnet {subnet} and the network instance has no uplink to reach it through"),
            );
        }
        routes.push(StaticRoute { dst, gateway });
    }
    let mtu = n.mtu.and_then(|m| {
        if (MIN_NI_MTU..=MAX_NI_MTU).contains(&m) {
            Some(m as u16)
        } else {
            cx.err(
                format!("{base}.mtu"),
                format!("mtu {m} is out of range; give {MIN_NI_MTU} to {MAX_NI_MTU}"),
            );
            None
        }
    });
    (ntp, routes, mtu)
}

fn probe(cx: &mut Ctx, base: &str, raw: Option<&RawProbe>) -> Probe {
    let mut p = Probe {
        target: ProbeTarget::Gateway,
        interval: 2,
        failures: 3,
    };
    let Some(r) = raw else { return p };
    if let Some(t) = &r.target {
        let t = t.trim();
        p.target = if t == "gateway" {
            ProbeTarget::Gateway
        } else if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
            match addr::normalize_ip(sa.ip()) {
                Ok(ip) => ProbeTarget::Tcp(ip, sa.port()),
                Err(e) => {
                    cx.err(format!("{base}.probe.target"), e);
                    ProbeTarget::Gateway
                }
            }
        } else {
            match addr::parse_ip_text(t) {
                Ok(ip) => ProbeTarget::Icmp(ip),
                Err(_) => {
                    cx.err(format!("{base}.probe.target"), format!("`{t}` is not a probe target; allowed: `gateway`, an IP (ICMP echo) or IP:PORT (TCP connect)"));
                    ProbeTarget::Gateway
                }
            }
        };
    }
    for (field, val, slot) in [
        ("interval", r.interval, &mut p.interval),
        ("failures", r.failures, &mut p.failures),
    ] {
        if let Some(v) = val {
            if !(1..=3600).contains(&v) {
                cx.err(
                    format!("{base}.probe.{field}"),
                    format!("{field} {v} is out of range; allowed 1..3600"),
                );
            }
            *slot = v;
        }
    }
    p
}

/// The largest `user_data` an app may carry (what OpenStack allows).
pub const MAX_USER_DATA: usize = 65535;

fn apps(cx: &mut Ctx, raw: &[RawApp], nis: &[Ni], ports: &[Port]) -> Vec<App> {
    let mut names = HashMap::new();
    let mut uuids = HashMap::new();
    let mut taps: HashMap<String, String> = HashMap::new();
    let mut macs = HashMap::new();
    let mut fixed_ips = HashMap::new();
    // (uplink, protocol, port) -> path of the first port map using it
    let mut maps: HashMap<(String, L4Proto, u16), String> = HashMap::new();
    for (i, p) in ports.iter().enumerate() {
        if let Some(h) = &p.host_interface {
            taps.insert(h.clone(), format!("ports[{i}].host_interface"));
        }
    }
    let ni_list = || {
        nis.iter()
            .map(|n| format!("`{}`", n.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let base = format!("apps[{i}]");
        if a.name.is_empty() {
            cx.err(format!("{base}.name"), "the app name is empty");
        }
        cx.unique(&mut names, &a.name, format!("{base}.name"), "app name");
        cx.unique(
            &mut uuids,
            &a.uuid.to_string(),
            format!("{base}.uuid"),
            "app UUID",
        );
        if a.interfaces.len() > 256 {
            cx.err(
                format!("{base}.interfaces"),
                "an app has at most 256 interfaces",
            );
        }
        if a.user_data
            .as_ref()
            .is_some_and(|u| u.len() > MAX_USER_DATA)
        {
            cx.err(
                format!("{base}.user_data"),
                format!("user_data is larger than {MAX_USER_DATA} bytes"),
            );
        }
        let app_num = a.app_num.unwrap_or(0);
        let mut vifs = Vec::new();
        for (j, v) in a.interfaces.iter().enumerate().take(256) {
            let vb = format!("{base}.interfaces[{j}]");
            let ifnum = j as u8;
            let Some(ni) = nis.iter().find(|n| n.name == v.ni) else {
                cx.err(
                    format!("{vb}.ni"),
                    format!(
                        "unknown network instance `{}`; known: [{}]",
                        v.ni,
                        ni_list()
                    ),
                );
                continue;
            };
            let tap = v
                .tap
                .clone()
                .unwrap_or_else(|| derive::tap_name(&a.uuid, ifnum));
            cx.ifname(&format!("{vb}.tap"), &tap, "TAP name");
            if let Some(first) = taps.get(&tap) {
                cx.err(format!("{vb}.tap"), format!("duplicate TAP name `{tap}` (already used at {first}); every TAP name must be unique"));
            } else {
                taps.insert(tap.clone(), format!("{vb}.tap"));
            }
            if let Some(ns) = &v.netns
                && (ns.is_empty() || ns.contains('/') || ns == "." || ns == "..")
            {
                cx.err(
                    format!("{vb}.netns"),
                    format!("`{ns}` is not a network namespace name (as `ip netns` lists them)"),
                );
            }
            let mac = match v.mac {
                Some(m) if m.is_multicast() => {
                    cx.err(
                        format!("{vb}.mac"),
                        format!(
                            "{m} is a multicast MAC; a VIF needs a unicast MAC (first byte even)"
                        ),
                    );
                    m
                }
                Some(m) if m.is_zero() => {
                    cx.err(format!("{vb}.mac"), "00:00:00:00:00:00 is not a usable MAC; give a unicast MAC such as 02:00:00:00:00:01");
                    m
                }
                Some(m) => m,
                None => derive::vif_mac(&a.uuid, &ni.uuid, ifnum, app_num),
            };
            cx.unique(&mut macs, &mac.to_string(), format!("{vb}.mac"), "VIF MAC");
            let ip = vif_ip(cx, &vb, v, ni, &mut fixed_ips);
            if a.name.is_empty() || (ni.local.is_some() && !is_dns_name(&a.name)) {
                cx.err(format!("{base}.name"), format!("app name `{}` is used as a DNS name in local network instance `{}`; use letters, digits and '-'", a.name, ni.name));
            }
            let acls = v.acls.as_ref().map(|list| acls(cx, &vb, list, ni));
            let port_maps = port_maps(cx, &vb, &v.port_maps, ni, &mut maps);
            let allowed_ips = allowed_ips(cx, &vb, &v.allowed_ips);
            if let Some(vlan) = v.vlan {
                vlan_id(cx, &format!("{vb}.vlan"), vlan);
                if ni.local.is_some() {
                    cx.err(
                        format!("{vb}.vlan"),
                        format!("VLANs are for switch network instances; `{}` is a local network instance", ni.name),
                    );
                }
            }
            vifs.push(Vif {
                ni: v.ni.clone(),
                ifnum,
                tap,
                netns: v.netns.clone(),
                mac,
                ip,
                acls,
                port_maps,
                allowed_ips,
                port_security: v.port_security.unwrap_or(true),
                vlan: v.vlan,
            });
        }
        out.push(App {
            name: a.name.clone(),
            uuid: a.uuid,
            app_num,
            user_data: a.user_data.clone(),
            interfaces: vifs,
        });
    }
    out
}

fn vif_ip(
    cx: &mut Ctx,
    vb: &str,
    v: &RawVif,
    ni: &Ni,
    fixed: &mut HashMap<String, String>,
) -> Option<Ipv4Addr> {
    let ip = v.ip?;
    let path = format!("{vb}.ip");
    let Some(l) = &ni.local else {
        cx.err(path, format!("a fixed `ip` needs a local network instance; `{}` is a switch (addresses there come from the LAN)", ni.name));
        return None;
    };
    let ip = v4(cx, &path, ip.0, "fixed IP")?;
    if !l.subnet.contains(&ip) || ip == l.subnet.network() || ip == l.subnet.broadcast() {
        cx.err(path, format!("fixed IP {ip} is outside the subnet {} of `{}`; use a host address inside it and outside the DHCP range {}-{}", l.subnet, ni.name, l.dhcp_range.start, l.dhcp_range.end));
    } else if l.dhcp_range.contains(ip) {
        cx.err(path, format!("fixed IP {ip} is inside the DHCP range {}-{} of `{}`; pick an address of the subnet outside the range", l.dhcp_range.start, l.dhcp_range.end, ni.name));
    } else if ip == l.gateway {
        cx.err(
            path,
            format!("fixed IP {ip} is the gateway of `{}`", ni.name),
        );
    } else {
        cx.unique(
            fixed,
            &format!("{}/{ip}", ni.name),
            path,
            "fixed IP in one network instance",
        );
    }
    Some(ip)
}

fn acls(cx: &mut Ctx, vb: &str, list: &[RawAcl], ni: &Ni) -> Vec<Acl> {
    let mut out = Vec::new();
    for (k, r) in list.iter().enumerate() {
        let ab = format!("{vb}.acls[{k}]");
        let m = &r.matches;
        let protocol = match &m.protocol {
            None => None,
            Some(ProtoText::Number(n)) => Some(*n),
            Some(ProtoText::Name(s)) => {
                match s.to_ascii_lowercase().as_str() {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    "icmp" => Some(1),
                    other => match other.parse::<u8>() {
                        Ok(n) => Some(n),
                        Err(_) => {
                            cx.err(format!("{ab}.match.protocol"), format!("unknown protocol `{s}`; allowed: tcp, udp, icmp or a number 0..255"));
                            None
                        }
                    },
                }
            }
        };
        for (field, val) in [("lport", m.lport), ("fport", m.fport)] {
            if val.is_some() {
                match protocol {
                    None if m.protocol.is_none() => cx.err(
                        format!("{ab}.match.{field}"),
                        format!("`{field}` needs `protocol` (tcp or udp) in the same match"),
                    ),
                    Some(6) | Some(17) | None => {}
                    Some(p) => cx.err(
                        format!("{ab}.match.{field}"),
                        format!("`{field}` needs protocol tcp or udp, not {p}"),
                    ),
                }
            }
        }
        if let Some(h) = &m.host {
            if ni.local.is_none() {
                cx.err(format!("{ab}.match.host"), format!("`host` rules need a local network instance (its DNS server learns the addresses); `{}` is a switch", ni.name));
            } else if !is_dns_name(h) {
                cx.err(
                    format!("{ab}.match.host"),
                    format!("`{h}` is not a DNS name"),
                );
            }
        }
        let limit = r.limit.as_ref().and_then(|l| {
            let per_secs = match l.unit.as_str() {
                "s" | "second" => 1,
                "m" | "minute" => 60,
                "h" | "hour" => 3600,
                other => {
                    cx.err(
                        format!("{ab}.limit.unit"),
                        format!("unknown unit `{other}`; allowed: s, m, h"),
                    );
                    return None;
                }
            };
            if l.rate == 0 {
                cx.err(format!("{ab}.limit.rate"), "rate must be at least 1");
            }
            Some(Limit {
                rate: l.rate,
                burst: l.burst,
                per_secs,
            })
        });
        out.push(Acl {
            matches: AclMatch {
                ip: m.ip.map(|n| n.0),
                host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
                protocol,
                lport: m.lport,
                fport: m.fport,
            },
            action: r.action,
            limit,
        });
    }
    out
}

fn port_maps(
    cx: &mut Ctx,
    vb: &str,
    raw: &[RawPortMap],
    ni: &Ni,
    seen: &mut HashMap<(String, L4Proto, u16), String>,
) -> Vec<PortMap> {
    let mut out = Vec::new();
    for (k, m) in raw.iter().enumerate() {
        let pb = format!("{vb}.port_maps[{k}]");
        let protocol = match m.protocol.to_ascii_lowercase().as_str() {
            "tcp" => L4Proto::Tcp,
            "udp" => L4Proto::Udp,
            other => {
                cx.err(
                    format!("{pb}.protocol"),
                    format!("unknown protocol `{other}`; port maps take tcp or udp"),
                );
                continue;
            }
        };
        let Some(l) = &ni.local else {
            cx.err(
                pb,
                format!(
                    "port maps need a local network instance; `{}` is a switch",
                    ni.name
                ),
            );
            continue;
        };
        if l.uplinks.is_empty() {
            cx.err(
                pb.clone(),
                format!(
                    "network instance `{}` has no uplink to map a port from",
                    ni.name
                ),
            );
        }
        for u in &l.uplinks {
            let key = (u.clone(), protocol, m.uplink_port);
            if let Some(first) = seen.get(&key) {
                cx.err(
                    format!("{pb}.uplink_port"),
                    format!("{}/{} on uplink `{u}` is already mapped at {first}; each uplink port maps to one app", m.protocol.to_ascii_lowercase(), m.uplink_port),
                );
            } else {
                seen.insert(key, pb.clone());
            }
        }
        let listen = m.listen.as_ref().and_then(|a| {
            let path = format!("{pb}.listen");
            if !l.has_host_uplink() {
                cx.err(
                    path.clone(),
                    format!("`listen` is the host address a port map on the `host` uplink listens on; `{}` has no `host` uplink", ni.name),
                );
            }
            v4(cx, &path, a.0, "listen address")
        });
        out.push(PortMap {
            protocol,
            uplink_port: m.uplink_port,
            app_port: m.app_port,
            listen,
        });
    }
    out
}
