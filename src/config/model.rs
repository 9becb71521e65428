//! The validated config with every default filled in: what the daemon builds
//! from and what `niswitch check` prints.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;
use uuid::Uuid;

use super::addr::Mac;
pub use super::schema::{AclAction, NiType};

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub version: u32,
    pub ports: Vec<Port>,
    pub network_instances: Vec<Ni>,
    pub apps: Vec<App>,
    pub dataplane: Dataplane,
}

/// Busy polling after traffic, by default: none. It pays off only where the
/// workers have CPUs of their own; where they share CPUs with the apps (a
/// 2-core edge box), a spinning worker delays the very apps it waits for
/// (docs/PERFORMANCE.md).
pub const DEFAULT_BUSY_POLL_US: u32 = 0;
pub const MAX_WORKERS: u32 = 64;
pub const MAX_BUSY_POLL_US: u32 = 10_000;
/// The highest CPU number a worker can be pinned to (the kernel's
/// CPU_SETSIZE).
pub const MAX_CPU: u32 = 1023;

/// How frames are served.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataplane {
    /// Floating worker threads, when given; with `cpus`, it must match.
    pub workers: Option<u32>,
    /// How long a worker keeps polling without sleeping after traffic.
    pub busy_poll_us: u32,
    /// CPUs to pin one worker each to; empty: the workers float. With
    /// pinned workers an app's frames are served on the CPU it sends from.
    /// With neither this nor `workers` given: every CPU the daemon may run
    /// on (`default_cpus`).
    pub cpus: Vec<u32>,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            workers: None,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            cpus: Vec::new(),
        }
    }
}

/// Printed with the number of workers this machine gets (`check`).
impl Serialize for Dataplane {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Dataplane", 3)?;
        st.serialize_field("workers", &self.worker_count())?;
        st.serialize_field("busy_poll_us", &self.busy_poll_us)?;
        if self.cpus.is_empty() {
            st.skip_field("cpus")?;
        } else {
            st.serialize_field("cpus", &self.cpus)?;
        }
        st.end()
    }
}

impl Dataplane {
    /// The number of workers to start.
    pub fn worker_count(&self) -> usize {
        if !self.cpus.is_empty() {
            return self.cpus.len();
        }
        self.workers.map_or(1, |n| n as usize)
    }
}

/// The CPUs the workers are pinned to when the config names neither
/// `workers` nor `cpus`: every CPU this process may run on (at most
/// `MAX_WORKERS`), one worker each, so that each app's frames are served
/// on the CPU it sends from, as the kernel bridge serves them. On a single
/// CPU there is nothing to steer: none, and one worker floats.
pub fn default_cpus() -> Vec<u32> {
    default_cpus_of(allowed_cpus().as_deref())
}

/// `default_cpus` given the allowed CPUs.
pub fn default_cpus_of(allowed: Option<&[u32]>) -> Vec<u32> {
    let cpus = allowed.unwrap_or_default();
    let cpus = &cpus[..cpus.len().min(MAX_WORKERS as usize)];
    if cpus.len() < 2 {
        Vec::new()
    } else {
        cpus.to_vec()
    }
}

/// Every CPU this process may run on (taskset and cpusets narrow it); None
/// when the kernel will not say.
pub fn allowed_cpus() -> Option<Vec<u32>> {
    // SAFETY: a zeroed cpu_set_t is empty; sched_getaffinity(2) fills the
    // set we own, and CPU_ISSET reads it within CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..=MAX_CPU)
                .filter(|&c| libc::CPU_ISSET(c as usize, &set))
                .collect(),
        )
    }
}

/// What the default leaves out, given the allowed CPUs: the operator is
/// told when some CPUs get no worker, or when the list could not be read.
pub fn default_cpus_shortfall(allowed: Option<&[u32]>) -> Option<String> {
    match allowed {
        None => Some("cannot read the CPUs niswitch may run on: one worker, not pinned".into()),
        Some(c) if c.len() > MAX_WORKERS as usize => Some(format!(
            "{} CPUs: workers are pinned to the first {MAX_WORKERS} only; \
             name others in dataplane.cpus",
            c.len()
        )),
        Some(_) => None,
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Port {
    pub name: String,
    /// The kernel interface as the config names it.
    pub device: String,
    pub management: bool,
    pub host_interface: Option<String>,
    /// Set when the NIC is renamed (host_interface == device): its new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
    pub cost: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The host interface's access VLAN (None: untagged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_vlan: Option<u16>,
}

impl Port {
    /// The name the NIC has while niswitch runs.
    pub fn nic_name(&self) -> &str {
        self.renamed_to.as_deref().unwrap_or(&self.device)
    }
}

/// Flooded frames a second one port or VIF may send, unless its NI says.
pub const DEFAULT_FLOOD_LIMIT: u32 = 2000;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ni {
    pub name: String,
    pub uuid: Uuid,
    #[serde(rename = "type")]
    pub kind: NiType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Flooded frames a second one port or VIF may send (0: no limit).
    pub flood_limit: u32,
    /// LLDP frames are forwarded (a bridge does not by default).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forward_lldp: bool,
    /// NIC ports carrying one VLAN untagged (a switch NI).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan_access_ports: Vec<AccessPort>,
    /// Every port of a switch NI with several (`port` is the first): they
    /// run the Rapid Spanning Tree.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Spanning-tree settings of an NI with several ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stp: Option<Stp>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalNi>,
}

/// The spanning tree of a switch NI with several ports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stp {
    pub priority: u16,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bpdu_guard: Vec<String>,
}

/// VLAN ids an access port or interface may have (1 is the default VLAN,
/// untagged on trunks).
pub const ACCESS_VLANS: std::ops::RangeInclusive<u16> = 2..=4093;

/// A NIC port of a switch NI that carries `vlan` untagged.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessPort {
    pub port: String,
    pub vlan: u16,
}

impl Ni {
    /// Every port of the NI.
    pub fn all_ports(&self) -> Vec<&str> {
        match self.ports.is_empty() {
            true => self.port.iter().map(String::as_str).collect(),
            false => self.ports.iter().map(String::as_str).collect(),
        }
    }

    /// The access VLAN of port `port` in this NI, if it has one.
    pub fn access_vlan(&self, port: &str) -> Option<u16> {
        (self.vlan_access_ports.iter())
            .find(|a| a.port == port)
            .map(|a| a.vlan)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocalNi {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dhcp_range: DhcpRange,
    pub lease_time: u32,
    pub dns: Dns,
    pub uplinks: Vec<String>,
    pub uplink_address: UplinkAddress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_gateway: Option<Ipv4Addr>,
    pub probe: Probe,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ntp: Vec<Ipv4Addr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_routes: Vec<StaticRoute>,
    /// The apps' MTU; None: the uplink's (1500 without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Flow records for every app interface, with or without ACLs.
    pub flow_log: bool,
    /// The apps' IPv6 /64 (SLAAC); the router is its `::1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<ipnet::Ipv6Net>,
    /// The uplinks' network routes `subnet6` here: IPv6 is forwarded to
    /// the active uplink without translation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub uplink_prefix6: bool,
    /// The upstream IPv6 router; None: the one advertising itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_gateway6: Option<std::net::Ipv6Addr>,
    /// The cost of the `host` uplink, when `uplinks` names it.
    #[serde(skip_serializing_if = "is_default_host_cost")]
    pub host_cost: u8,
}

/// The reserved uplink name: leave through the host's own IP stack.
pub const HOST_UPLINK: &str = "host";
/// The `host` uplink's cost unless the NI gives one: the last resort.
pub const DEFAULT_HOST_COST: u8 = 255;

fn is_default_host_cost(c: &u8) -> bool {
    *c == DEFAULT_HOST_COST
}

impl LocalNi {
    /// Whether the NI may leave through the host's own IP stack.
    pub fn has_host_uplink(&self) -> bool {
        self.uplinks.iter().any(|u| u == HOST_UPLINK)
    }

    /// The uplinks that are ports (every one but `host`).
    pub fn port_uplinks(&self) -> impl Iterator<Item = &String> {
        self.uplinks.iter().filter(|u| *u != HOST_UPLINK)
    }

    /// The router's global IPv6 address: the first of `subnet6`.
    pub fn gateway6(&self) -> Option<std::net::Ipv6Addr> {
        let net = self.subnet6?;
        Some((u128::from(net.network()) | 1).into())
    }
}

/// A route the apps of a local NI get by DHCP (option 121).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct StaticRoute {
    pub dst: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// The smallest and largest MTU a local NI may give its apps.
pub const MIN_NI_MTU: u32 = 1280;
pub const MAX_NI_MTU: u32 = 9000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DhcpRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl DhcpRange {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
}

impl Serialize for DhcpRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}-{}", self.start, self.end))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dns {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub upstream: Vec<IpAddr>,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub name: String,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UplinkAddress {
    Dhcp,
    Static(Ipv4Net),
}

impl Serialize for UplinkAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UplinkAddress::Dhcp => s.serialize_str("dhcp"),
            UplinkAddress::Static(n) => s.collect_str(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub target: ProbeTarget,
    pub interval: u32,
    pub failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbeTarget {
    Gateway,
    Icmp(IpAddr),
    Tcp(IpAddr, u16),
}

impl Serialize for ProbeTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ProbeTarget::Gateway => s.serialize_str("gateway"),
            ProbeTarget::Icmp(ip) => s.collect_str(ip),
            ProbeTarget::Tcp(ip, p) => s.collect_str(&std::net::SocketAddr::new(*ip, *p)),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct App {
    pub name: String,
    pub uuid: Uuid,
    pub app_num: u8,
    /// Served to cloud-init by a local NI's metadata server (SPEC §5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    pub interfaces: Vec<Vif>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Vif {
    pub ni: String,
    pub ifnum: u8,
    pub tap: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub mac: Mac,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acls: Option<Vec<Acl>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_maps: Vec<PortMap>,
    /// More addresses it may send from, past port security (VRRP VIPs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<Ipv4Net>,
    /// ARP inspection, source guard, DHCP and RA guard (SPEC §3.2).
    pub port_security: bool,
    /// Access VLAN on a switch NI (None: a trunk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Acl {
    #[serde(rename = "match")]
    pub matches: AclMatch,
    pub action: AclAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AclMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpNet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fport: Option<u16>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Limit {
    /// Packets per `per_secs` seconds.
    pub rate: u32,
    pub burst: u32,
    pub per_secs: u32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PortMap {
    pub protocol: L4Proto,
    pub uplink_port: u16,
    pub app_port: u16,
    /// On the `host` uplink: the host address to listen on (None: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Ipv4Addr>,
}

impl Config {
    pub fn ni(&self, name: &str) -> Option<&Ni> {
        self.network_instances.iter().find(|n| n.name == name)
    }
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_says_what_it_leaves_out() {
        assert_eq!(default_cpus_shortfall(Some(&[0, 1])), None);
        let many: Vec<u32> = (0..MAX_WORKERS).collect();
        assert_eq!(default_cpus_shortfall(Some(&many)), None);
        let more: Vec<u32> = (0..=MAX_WORKERS).collect();
        let note = default_cpus_shortfall(Some(&more)).unwrap_or_default();
        assert!(
            note.starts_with("65 CPUs: workers are pinned to the first 64"),
            "{note}"
        );
        let none = default_cpus_shortfall(None).unwrap_or_default();
        assert!(none.contains("one worker, not pinned"), "{none}");
    }

    #[test]
    fn the_default_pins_one_worker_to_each_allowed_cpu_up_to_the_cap() {
        assert!(default_cpus_of(None).is_empty());
        assert!(default_cpus_of(Some(&[3])).is_empty(), "one CPU: floating");
        assert_eq!(default_cpus_of(Some(&[0, 2, 5])), [0, 2, 5]);
        let more: Vec<u32> = (0..100).collect();
        assert_eq!(default_cpus_of(Some(&more)), more[..MAX_WORKERS as usize]);
        // And on this machine.
        let allowed = allowed_cpus().unwrap_or_default();
        let want: Vec<u32> = allowed.iter().copied().take(MAX_WORKERS as usize).collect();
        match want.len() {
            0 | 1 => assert!(default_cpus().is_empty()),
            _ => assert_eq!(default_cpus(), want),
        }
    }
}
