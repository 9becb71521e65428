//! A snapshot of the running data plane, published after every apply: what
//! status, metrics, the flow logger and the link watch read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use uuid::Uuid;

use super::runtime::Runtime;
use super::vlans::access_vlan;
use crate::config::{Config, Mac, Ni, Vif};
use crate::control::status::*;
use crate::ipstack::{Router, UplinkInfo};
use crate::services::vif_filter::VifFilter;
use crate::switch::workers::Workers;
use crate::switch::{Domain, PortEntry, Switch, now_secs};

pub struct PortState {
    pub name: String,
    pub nic: Arc<PortEntry>,
    pub host: Option<Arc<PortEntry>>,
    pub host_mac: Mac,
    pub ifindex: u32,
}

pub struct NiState {
    pub cfg: Ni,
    pub domain: Arc<Domain>,
    pub router: Option<Arc<Router>>,
    pub stp: Option<Arc<std::sync::Mutex<crate::switch::stp::View>>>,
}

pub struct VifState {
    pub app: String,
    pub app_uuid: Uuid,
    pub cfg: Vif,
    pub entry: Arc<PortEntry>,
    pub filter: Option<Arc<VifFilter>>,
}

/// An app interface that could not be created (the rest runs on).
#[derive(Clone)]
pub struct FailedVif {
    pub app: String,
    pub app_uuid: Uuid,
    pub cfg: Vif,
    pub error: String,
}

pub struct PodState {
    pub rec: super::records::PodRecord,
    pub entry: Option<Arc<PortEntry>>,
    pub filter: Option<Arc<VifFilter>>,
}

/// Applies so far and how the last one ended.
#[derive(Debug, Clone, Default)]
pub struct ApplyInfo {
    pub count: u64,
    pub failed: u64,
    /// "ok", "refused", "reverted"; empty before the first apply.
    pub last_result: String,
    pub last_message: String,
    pub last_at: Option<String>,
}

pub struct State {
    pub cfg: Config,
    pub switch: Arc<Switch>,
    pub workers: Option<Arc<Workers>>,
    pub ports: Vec<PortState>,
    pub nis: Vec<NiState>,
    pub vifs: Vec<VifState>,
    pub failed_vifs: Vec<FailedVif>,
    pub pods: Vec<PodState>,
    pub apply: ApplyInfo,
    pub state_dir: PathBuf,
}

/// The snapshot of a runtime.
pub(super) fn snapshot(rt: &Runtime) -> State {
    State {
        cfg: rt.cfg.clone(),
        switch: rt.switch.clone(),
        workers: Some(rt.workers.clone()),
        ports: rt
            .cfg
            .ports
            .iter()
            .filter_map(|c| Some((&c.name, rt.ports.get(&c.name)?)))
            .map(|(name, p)| PortState {
                name: name.clone(),
                nic: p.nic.clone(),
                host: p.host.clone(),
                host_mac: p.opened.mac,
                ifindex: p.opened.sock.ifindex,
            })
            .collect(),
        nis: rt
            .cfg
            .network_instances
            .iter()
            .filter_map(|c| rt.nis.get(&c.name))
            .map(|n| NiState {
                cfg: n.cfg.clone(),
                domain: n.domain.clone(),
                router: n.router.clone(),
                stp: n.stp.as_ref().map(|s| s.view()),
            })
            .collect(),
        vifs: rt
            .cfg
            .apps
            .iter()
            .flat_map(|a| &a.interfaces)
            .filter_map(|c| rt.vifs.get(&c.tap))
            .filter_map(|v| {
                Some(VifState {
                    app: v.app.clone(),
                    app_uuid: v.app_uuid,
                    cfg: v.cfg.clone(),
                    entry: v.entry.clone()?,
                    filter: v.filter.clone(),
                })
            })
            .collect(),
        failed_vifs: rt.failed.values().cloned().collect(),
        pods: rt
            .pods
            .values()
            .map(|p| PodState {
                rec: p.rec.clone(),
                entry: p.entry.clone(),
                filter: p.filter.clone(),
            })
            .collect(),
        apply: rt.apply_info.clone(),
        state_dir: rt.state_dir.clone(),
    }
}

fn counters(e: &PortEntry) -> Counters {
    let s = &e.stats;
    Counters {
        rx_packets: s.rx_packets(),
        tx_packets: s.tx_packets(),
        rx_bytes: s.rx_bytes(),
        tx_bytes: s.tx_bytes(),
        drops: s
            .drop_counts()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

impl State {
    pub fn empty(cfg: Config) -> Self {
        State {
            cfg,
            switch: Switch::new(),
            workers: None,
            ports: Vec::new(),
            nis: Vec::new(),
            vifs: Vec::new(),
            failed_vifs: Vec::new(),
            pods: Vec::new(),
            apply: ApplyInfo::default(),
            state_dir: PathBuf::new(),
        }
    }

    /// The IPv4 addresses of a VIF: its fixed or leased one on a local NI,
    /// the ones seen on the wire on a switch NI.
    fn vif_ips(&self, v: &VifState) -> Vec<String> {
        let router = self
            .nis
            .iter()
            .find(|n| n.cfg.name == v.cfg.ni)
            .and_then(|n| n.router.as_ref());
        match router {
            Some(r) => match v.cfg.ip {
                Some(ip) => vec![ip.to_string()],
                None => r
                    .leases()
                    .iter()
                    .filter(|l| l.mac == v.cfg.mac)
                    .map(|l| l.ip.to_string())
                    .collect(),
            },
            None => v
                .entry
                .learned_ips
                .lock()
                .map(|ips| ips.iter().map(|i| i.to_string()).collect())
                .unwrap_or_default(),
        }
    }

    /// The IPv6 addresses a VIF of a local NI was seen using.
    fn vif_ips6(&self, v: &VifState) -> Vec<String> {
        let router = (self.nis.iter())
            .find(|n| n.cfg.name == v.cfg.ni)
            .and_then(|n| n.router.as_ref());
        let learned = router.map(|r| r.ipv6_addresses()).unwrap_or_default();
        let list = learned.get(&v.cfg.mac).cloned().unwrap_or_default();
        list.iter().map(|a| a.to_string()).collect()
    }

    fn leases(&self, n: &NiState) -> Vec<Lease> {
        let Some(r) = &n.router else {
            return Vec::new();
        };
        r.leases()
            .into_iter()
            .map(|l| Lease {
                mac: l.mac.to_string(),
                ip: l.ip.to_string(),
                app: self
                    .vifs
                    .iter()
                    .find(|v| v.cfg.mac == l.mac)
                    .map(|v| v.app.clone())
                    .unwrap_or_default(),
                expires: chrono::DateTime::from_timestamp(l.expires as i64, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Each domain once.
    pub fn domains(&self) -> Vec<Arc<Domain>> {
        let mut v: Vec<Arc<Domain>> = self.ports.iter().map(|p| p.nic.domain.clone()).collect();
        for n in &self.nis {
            if !v.iter().any(|d| Arc::ptr_eq(d, &n.domain)) {
                v.push(n.domain.clone());
            }
        }
        v
    }

    pub fn status(&self) -> Status {
        let a = &self.apply;
        Status {
            ports: self.ports_status(),
            network_instances: self.nis_status(),
            apps: self.apps_status(),
            pods: self.pods_status(),
            apply: ApplyStatus {
                count: a.count,
                failed: a.failed,
                last_result: a.last_result.clone(),
                last_message: a.last_message.clone(),
                last_at: a.last_at.clone(),
            },
            dataplane: self.dataplane_status(),
        }
    }

    fn dataplane_status(&self) -> DataplaneStatus {
        let Some(w) = &self.workers else {
            return DataplaneStatus::default();
        };
        DataplaneStatus {
            busy_poll_us: w.busy_poll_us(),
            workers: w
                .counts()
                .into_iter()
                .map(|c| WorkerStatus {
                    cpu: c.cpu,
                    ports: c.ports,
                    frames: c.frames,
                    spilled: c.spilled,
                    sleeps: c.sleeps,
                })
                .collect(),
        }
    }

    fn ports_status(&self) -> Vec<PortStatus> {
        self.ports
            .iter()
            .map(|p| PortStatus {
                name: p.name.clone(),
                device: p.nic.name.clone(),
                link_up: p.nic.link_up.load(Relaxed),
                mtu: p.nic.mtu.load(Relaxed),
                vlan: access_vlan(&p.nic),
                stp: self.port_stp(&p.nic.name),
                bpdu_guard_tripped: p.nic.bpdu_guard_tripped(),
                counters: counters(&p.nic),
                host_interface: p.host.as_ref().map(|h| TapStatus {
                    tap: h.name.clone(),
                    mac: p.host_mac.to_string(),
                    vlan: access_vlan(h),
                    counters: counters(h),
                }),
            })
            .collect()
    }

    fn nis_status(&self) -> Vec<NiStatus> {
        let now = now_secs();
        self.nis
            .iter()
            .map(|n| NiStatus {
                name: n.cfg.name.clone(),
                uuid: n.cfg.uuid.to_string(),
                kind: format!("{:?}", n.cfg.kind).to_lowercase(),
                port: n.cfg.port.clone(),
                mac_table: self.mac_table(&n.domain, now),
                vlans: vlans_status(&n.domain, now),
                stp: n.stp.as_ref().map(|v| stp_status(&crate::sync::lock(v))),
                leases: self.leases(n),
                uplinks: n
                    .router
                    .as_ref()
                    .map(|r| r.uplinks().into_iter().map(uplink_status).collect())
                    .unwrap_or_default(),
                nat_sessions: n.router.as_ref().map_or(0, |r| r.nat.sessions() as u64),
                router: n.router.as_ref().map(|r| RouterStatus {
                    mac: r.mac.to_string(),
                    gateway: n
                        .cfg
                        .local
                        .as_ref()
                        .map(|l| l.gateway.to_string())
                        .unwrap_or_default(),
                    counters: r
                        .counters
                        .snapshot()
                        .into_iter()
                        .chain(r.nat.counters.snapshot())
                        .chain(r.host_counters())
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                }),
            })
            .collect()
    }

    /// A port's role and state in its NI's spanning tree, if it has one.
    fn port_stp(&self, nic: &str) -> Option<PortStp> {
        self.nis
            .iter()
            .filter_map(|n| n.stp.as_ref())
            .find_map(|v| {
                let v = crate::sync::lock(v);
                (v.ports.iter()).find(|p| p.name == nic).map(|p| PortStp {
                    role: format!("{:?}", p.role).to_lowercase(),
                    state: format!("{:?}", p.state).to_lowercase(),
                    edge: p.edge,
                })
            })
    }

    /// A domain's MAC table, by VLAN and MAC.
    fn mac_table(&self, domain: &Domain, now: u32) -> Vec<MacEntry> {
        let mut rows: Vec<MacEntry> = (domain.mac_rows(now).into_iter())
            .map(|(vlan, mac, port, age)| MacEntry {
                vlan,
                mac: mac.to_string(),
                port: self
                    .switch
                    .port(port)
                    .map_or_else(|| format!("#{port}"), |e| e.name.clone()),
                age_s: age,
            })
            .collect();
        rows.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
        rows
    }

    fn apps_status(&self) -> Vec<AppStatus> {
        self.cfg
            .apps
            .iter()
            .map(|a| AppStatus {
                name: a.name.clone(),
                uuid: a.uuid.to_string(),
                interfaces: self
                    .vifs
                    .iter()
                    .filter(|v| v.app_uuid == a.uuid)
                    .map(|v| VifStatus {
                        ni: v.cfg.ni.clone(),
                        tap: v.cfg.tap.clone(),
                        mac: v.cfg.mac.to_string(),
                        ips: self.vif_ips(v),
                        ips6: self.vif_ips6(v),
                        vlan: access_vlan(&v.entry),
                        bpdu_guard_tripped: v.entry.bpdu_guard_tripped(),
                        netns: v.cfg.netns.clone(),
                        counters: counters(&v.entry),
                        error: None,
                        acl_hits: v.filter.as_ref().map_or_else(Vec::new, |f| f.hits()),
                    })
                    .chain(
                        self.failed_vifs
                            .iter()
                            .filter(|f| f.app_uuid == a.uuid)
                            .map(|f| VifStatus {
                                ni: f.cfg.ni.clone(),
                                tap: f.cfg.tap.clone(),
                                mac: f.cfg.mac.to_string(),
                                ips: Vec::new(),
                                ips6: Vec::new(),
                                vlan: f.cfg.vlan,
                                bpdu_guard_tripped: false,
                                netns: f.cfg.netns.clone(),
                                counters: Counters::default(),
                                error: Some(f.error.clone()),
                                acl_hits: Vec::new(),
                            }),
                    )
                    .collect(),
            })
            .collect()
    }

    fn pods_status(&self) -> Vec<PodStatus> {
        self.pods
            .iter()
            .map(|p| PodStatus {
                container_id: p.rec.container_id.clone(),
                ifname: p.rec.ifname.clone(),
                network: p.rec.network.clone(),
                ni: p.rec.ni.clone(),
                name: p.rec.name.clone(),
                mac: p.rec.mac.to_string(),
                ips: match (p.rec.ip, &p.entry) {
                    (Some(ip), _) => vec![ip.to_string()],
                    (None, Some(e)) => e
                        .learned_ips
                        .lock()
                        .map(|ips| ips.iter().map(|i| i.to_string()).collect())
                        .unwrap_or_default(),
                    (None, None) => Vec::new(),
                },
                netns: p.rec.netns.clone(),
                counters: p.entry.as_deref().map(counters).unwrap_or_default(),
            })
            .collect()
    }
}

/// The bridge and root of a spanning tree.
fn stp_status(v: &crate::switch::stp::View) -> StpStatus {
    StpStatus {
        bridge: v.bridge.clone(),
        root_bridge: v.root.clone(),
        last_topology_change_s: v.since_change_s,
    }
}

/// Each VLAN of a VLAN-aware domain.
fn vlans_status(domain: &Domain, now: u32) -> Vec<VlanStatus> {
    let Some(vlans) = domain.vlans() else {
        return Vec::new();
    };
    let rows = domain.mac_rows(now);
    vlans
        .iter()
        .map(|(vid, v)| VlanStatus {
            vlan: vid,
            macs: rows.iter().filter(|r| r.0 == Some(vid)).count() as u64,
            frames: v.frames(),
            flooded: v.flooded(),
        })
        .collect()
}

fn uplink_status(u: UplinkInfo) -> Uplink {
    Uplink {
        port: u.port,
        address: u.address.map(|a| a.to_string()),
        gateway: u.gateway.map(|g| g.to_string()),
        healthy: u.healthy,
        active: u.active,
        link_local6: u.link_local6.map(|a| a.to_string()),
        gateway6: u.gateway6.map(|a| a.to_string()),
        sessions: u.sessions,
    }
}
