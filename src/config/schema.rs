//! The config file as written by the user (SPEC §2): serde types that refuse
//! unknown fields. Validation and defaults live in `validate`.

use serde::Deserialize;
use uuid::Uuid;

use super::addr::{IpText, Mac, NetText};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub version: u32,
    #[serde(default)]
    pub ports: Vec<RawPort>,
    #[serde(default)]
    pub network_instances: Vec<RawNi>,
    #[serde(default)]
    pub apps: Vec<RawApp>,
    pub dataplane: Option<RawDataplane>,
}

/// How frames are served (tuning; the defaults suit most machines).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataplane {
    pub workers: Option<u32>,
    pub busy_poll_us: Option<u32>,
    pub cpus: Option<Vec<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPort {
    pub name: Option<String>,
    pub device: String,
    #[serde(default)]
    pub management: bool,
    pub host_interface: Option<String>,
    #[serde(default)]
    pub cost: u8,
    pub mtu: Option<u32>,
    /// The host's interface is an access member of this VLAN (management
    /// traffic on a VLAN of the NIC); absent: untagged.
    pub host_vlan: Option<u16>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NiType {
    Switch,
    Local,
}

/// `port:` takes one name; a list is accepted only to refuse it clearly.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNi {
    pub name: String,
    pub uuid: Option<Uuid>,
    #[serde(rename = "type")]
    pub kind: NiType,
    pub port: Option<OneOrMany>,
    pub subnet: Option<NetText>,
    pub gateway: Option<IpText>,
    pub dhcp_range: Option<String>,
    pub lease_time: Option<u32>,
    pub dns: Option<RawDns>,
    pub uplinks: Option<Vec<String>>,
    pub uplink_address: Option<String>,
    pub uplink_gateway: Option<IpText>,
    pub probe: Option<RawProbe>,
    /// Flooded frames a second one port or VIF may send (0: no limit).
    pub flood_limit: Option<u32>,
    /// LLDP frames are forwarded (default false).
    pub forward_lldp: Option<bool>,
    /// NTP servers given to the apps (DHCP option 42).
    pub ntp: Option<Vec<IpText>>,
    /// Extra routes given to the apps (DHCP option 121).
    pub static_routes: Option<Vec<RawRoute>>,
    /// The apps' MTU (DHCP option 26; TCP through the NAT is clamped to it).
    pub mtu: Option<u32>,
    /// Flow records for every app interface (default true).
    pub flow_log: Option<bool>,
    /// An IPv6 /64 for the apps (router advertisements, SLAAC).
    pub subnet6: Option<NetText>,
    /// The uplinks' network routes `subnet6` to the router: IPv6 is
    /// forwarded without translation.
    pub uplink_prefix6: Option<bool>,
    /// The upstream IPv6 router (default: the one advertising itself).
    pub uplink_gateway6: Option<IpText>,
    /// The cost of the `host` uplink (default 255).
    pub host_cost: Option<u8>,
    /// NIC ports of a switch NI that carry one VLAN untagged.
    pub vlan_access_ports: Option<Vec<RawAccessPort>>,
    /// Several NIC ports of a switch NI (Rapid Spanning Tree runs on them).
    pub ports: Option<Vec<String>>,
    pub stp: Option<RawStp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStp {
    /// Ports where a received BPDU disables the port.
    #[serde(default)]
    pub bpdu_guard: Vec<String>,
    /// Bridge priority (0..61440, a multiple of 4096; default 32768).
    pub priority: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessPort {
    pub port: String,
    pub vlan: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub dst: NetText,
    pub gateway: IpText,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub domain: Option<String>,
    pub upstream: Option<Vec<IpText>>,
    #[serde(default)]
    pub records: Vec<RawRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub name: String,
    pub ip: IpText,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub target: Option<String>,
    pub interval: Option<u32>,
    pub failures: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub name: String,
    pub uuid: Uuid,
    pub app_num: Option<u8>,
    pub user_data: Option<String>,
    #[serde(default)]
    pub interfaces: Vec<RawVif>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVif {
    pub ni: String,
    pub tap: Option<String>,
    pub netns: Option<String>,
    pub mac: Option<Mac>,
    pub ip: Option<IpText>,
    pub acls: Option<Vec<RawAcl>>,
    #[serde(default)]
    pub port_maps: Vec<RawPortMap>,
    /// More addresses the VIF may send from (VRRP or keepalived VIPs).
    #[serde(default)]
    pub allowed_ips: Vec<NetText>,
    /// Off: no ARP inspection, source guard, DHCP or RA guard (an app that
    /// forwards others' traffic); its source MAC is still checked.
    pub port_security: Option<bool>,
    /// Access VLAN of the interface on a switch NI; absent: a trunk.
    pub vlan: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcl {
    #[serde(rename = "match")]
    pub matches: RawMatch,
    pub action: AclAction,
    pub limit: Option<RawLimit>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Allow,
    Drop,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub ip: Option<NetText>,
    pub host: Option<String>,
    pub protocol: Option<ProtoText>,
    pub lport: Option<u16>,
    pub fport: Option<u16>,
}

/// `tcp`, `udp`, `icmp` or an IP protocol number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ProtoText {
    Number(u8),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    pub rate: u32,
    #[serde(default)]
    pub burst: u32,
    #[serde(default = "default_unit")]
    pub unit: String,
}

fn default_unit() -> String {
    "s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortMap {
    pub protocol: String,
    pub uplink_port: u16,
    pub app_port: u16,
    /// The host address a port map on the `host` uplink listens on.
    pub listen: Option<IpText>,
}
