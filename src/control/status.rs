//! The `status` answer (SPEC §1.1) and its human rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Status {
    pub ports: Vec<PortStatus>,
    pub network_instances: Vec<NiStatus>,
    pub apps: Vec<AppStatus>,
    /// Interfaces the CNI plugin attached (SPEC §7).
    #[serde(default)]
    pub pods: Vec<PodStatus>,
    /// Live applies (`niswitch apply`, SIGHUP) since the daemon started.
    #[serde(default)]
    pub apply: ApplyStatus,
    /// The workers that serve the ports.
    #[serde(default)]
    pub dataplane: DataplaneStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DataplaneStatus {
    pub busy_poll_us: u32,
    pub workers: Vec<WorkerStatus>,
}

/// One worker: the ports it serves, the frames it read, how many of them
/// it handed to the next worker to switch while it was saturated, and how
/// often it went to sleep (few sleeps per frame: busy polling catches the
/// traffic).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The CPU it is pinned to (`dataplane.cpus`, by default every CPU),
    /// once it is; none for a floating worker or where pinning failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<usize>,
    pub ports: usize,
    pub frames: u64,
    #[serde(default)]
    pub spilled: u64,
    pub sleeps: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodStatus {
    pub container_id: String,
    pub ifname: String,
    pub network: String,
    pub ni: String,
    pub name: String,
    pub mac: String,
    pub ips: Vec<String>,
    pub netns: String,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ApplyStatus {
    pub count: u64,
    pub failed: u64,
    /// "ok", "refused" (invalid config) or "reverted" (a probe or step failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_result: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Counters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortStatus {
    pub name: String,
    /// The NIC's kernel name while niswitch runs (e.g. keth0).
    pub device: String,
    pub link_up: bool,
    pub mtu: u32,
    /// The access VLAN the NIC carries untagged (`vlan_access_ports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Its role and state in its NI's spanning tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<PortStp>,
    /// BPDU guard disabled the port (until the next apply or restart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bpdu_guard_tripped: bool,
    #[serde(flatten)]
    pub counters: Counters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<TapStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TapStatus {
    pub tap: String,
    pub mac: String,
    /// The host interface's access VLAN (`host_vlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NiStatus {
    pub name: String,
    pub uuid: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    pub mac_table: Vec<MacEntry>,
    /// Each VLAN of a VLAN-aware NI: its stations and frames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<StpStatus>,
    pub leases: Vec<Lease>,
    pub uplinks: Vec<Uplink>,
    pub nat_sessions: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterStatus>,
}

/// The L3 side of a local NI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterStatus {
    pub mac: String,
    pub gateway: String,
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MacEntry {
    /// The VLAN it was learned in (a VLAN-aware NI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub mac: String,
    pub port: String,
    pub age_s: u32,
}

/// A port in a spanning tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortStp {
    /// root, designated, alternate, backup or disabled.
    pub role: String,
    /// forwarding, learning or discarding.
    pub state: String,
    /// No other bridge was heard on its LAN (it forwards without waiting).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edge: bool,
}

/// The spanning tree of a switch NI with several ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StpStatus {
    /// This NI's bridge id and the root's (priority.MAC).
    pub bridge: String,
    pub root_bridge: String,
    /// Seconds since the last topology change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_topology_change_s: Option<u64>,
}

/// One VLAN of a switch NI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VlanStatus {
    pub vlan: u16,
    /// Live MAC table entries.
    pub macs: u64,
    /// Frames that entered the NI in this VLAN, and of those the flooded ones.
    pub frames: u64,
    pub flooded: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub mac: String,
    pub ip: String,
    pub app: String,
    pub expires: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Uplink {
    pub port: String,
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub healthy: bool,
    pub active: bool,
    /// With `uplink_prefix6`: the uplink's link-local address (what the
    /// upstream routes the NI's IPv6 subnet to) and the upstream router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_local6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    /// The `host` uplink: flows carried over host sockets now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub uuid: String,
    pub interfaces: Vec<VifStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VifStatus {
    pub ni: String,
    pub tap: String,
    pub mac: String,
    pub ips: Vec<String>,
    /// IPv6 addresses the interface was seen using (a local NI with `subnet6`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips6: Vec<String>,
    /// Its access VLAN (a switch NI; absent: a trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// BPDU guard disabled the interface (until the next apply or restart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bpdu_guard_tripped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(flatten)]
    pub counters: Counters,
    /// Why the interface is down, when it could not be created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Flows each of the interface's ACL rules decided, in rule order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl_hits: Vec<u64>,
}

/// Addresses comma-separated, or `-`.
fn list(ips: &[String]) -> String {
    if ips.is_empty() {
        "-".into()
    } else {
        ips.join(",")
    }
}

fn drops_text(c: &Counters) -> String {
    let nz: Vec<String> = c
        .drops
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if nz.is_empty() {
        "-".into()
    } else {
        nz.join(" ")
    }
}

/// A compact table for people.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "PORTS");
    if s.ports.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for p in &s.ports {
        let vlan = p.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default();
        let stp = (p.stp.as_ref())
            .map(|s| format!(" stp {}/{}", s.role, s.state))
            .unwrap_or_default();
        let vlan = format!("{vlan}{stp}");
        let _ = writeln!(
            o,
            "  {:<10} {:<10} link {:<4}{vlan} rx {} pkts/{} B  tx {} pkts/{} B  drops {}",
            p.name,
            p.device,
            if p.link_up { "up" } else { "DOWN" },
            p.counters.rx_packets,
            p.counters.rx_bytes,
            p.counters.tx_packets,
            p.counters.tx_bytes,
            drops_text(&p.counters)
        );
        if let Some(h) = &p.host_interface {
            let _ = writeln!(
                o,
                "  {:<10} host TAP {} ({})  rx {}  tx {}  drops {}",
                "",
                h.tap,
                h.mac,
                h.counters.rx_packets,
                h.counters.tx_packets,
                drops_text(&h.counters)
            );
        }
    }
    let d = &s.dataplane;
    let _ = writeln!(
        o,
        "WORKERS ({}, busy poll {} µs)",
        d.workers.len(),
        d.busy_poll_us
    );
    for (i, w) in d.workers.iter().enumerate() {
        let cpu = w.cpu.map(|c| format!(" (CPU {c})")).unwrap_or_default();
        let _ = writeln!(
            o,
            "  worker {i}{cpu}  ports {}  frames {}  handed over {}  sleeps {}",
            w.ports, w.frames, w.spilled, w.sleeps
        );
    }
    let _ = writeln!(o, "NETWORK INSTANCES");
    for n in &s.network_instances {
        let port = n
            .port
            .as_deref()
            .map(|p| format!(" on {p}"))
            .unwrap_or_default();
        let _ = writeln!(o, "  {} ({}{port}) {}", n.name, n.kind, n.uuid);
        if let Some(r) = &n.router {
            let c: Vec<String> = r
                .counters
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                o,
                "    router {} ({})  {}",
                r.gateway,
                r.mac,
                if c.is_empty() {
                    "-".into()
                } else {
                    c.join(" ")
                }
            );
        }
        if let Some(t) = &n.stp {
            let change =
                (t.last_topology_change_s).map_or("none".to_string(), |s| format!("{s} s ago"));
            let _ = writeln!(
                o,
                "    spanning tree: bridge {}  root {}  last topology change {change}",
                t.bridge, t.root_bridge
            );
        }
        for v in &n.vlans {
            let _ = writeln!(
                o,
                "    vlan {:<4}  macs {}  frames {}  flooded {}",
                v.vlan, v.macs, v.frames, v.flooded
            );
        }
        for m in &n.mac_table {
            let vlan = m.vlan.map(|v| format!("vlan {v:<4}  ")).unwrap_or_default();
            let _ = writeln!(
                o,
                "    {vlan}mac {}  port {:<12} age {}s",
                m.mac, m.port, m.age_s
            );
        }
        for l in &n.leases {
            let _ = writeln!(
                o,
                "    lease {} {} {} until {}",
                l.ip, l.mac, l.app, l.expires
            );
        }
        for u in &n.uplinks {
            let sessions = u.sessions.map(|s| format!(" sessions={s}"));
            let _ = writeln!(
                o,
                "    uplink {} {} healthy={} active={}{}",
                u.port,
                u.address.as_deref().unwrap_or("-"),
                u.healthy,
                u.active,
                sessions.unwrap_or_default()
            );
        }
        if n.router.is_some() {
            let _ = writeln!(o, "    nat sessions {}", n.nat_sessions);
        }
    }
    let _ = writeln!(o, "APPS");
    for a in &s.apps {
        let _ = writeln!(o, "  {} {}", a.name, a.uuid);
        for v in &a.interfaces {
            if let Some(e) = &v.error {
                let _ = writeln!(o, "    {:<8} tap {:<15} DOWN: {e}", v.ni, v.tap);
                continue;
            }
            let ips = list(&[&v.ips[..], &v.ips6[..]].concat());
            let vlan = v.vlan.map(|v| format!("  vlan {v}")).unwrap_or_default();
            let _ = writeln!(
                o,
                "    {:<8} tap {:<15} mac {}{vlan}  ips {ips}  rx {} tx {}  drops {}{}",
                v.ni,
                v.tap,
                v.mac,
                v.counters.rx_packets,
                v.counters.tx_packets,
                drops_text(&v.counters),
                if v.bpdu_guard_tripped {
                    "  DISABLED by BPDU guard (until the next apply)"
                } else {
                    ""
                }
            );
        }
    }
    if !s.pods.is_empty() {
        let _ = writeln!(o, "PODS");
    }
    for p in &s.pods {
        let ips = list(&p.ips);
        let _ = writeln!(
            o,
            "  {} {} ({})  {:<8} {}  mac {}  ips {ips}  rx {} tx {}",
            p.name,
            p.ifname,
            p.network,
            p.ni,
            p.container_id.chars().take(12).collect::<String>(),
            p.mac,
            p.counters.rx_packets,
            p.counters.tx_packets
        );
    }
    o
}
