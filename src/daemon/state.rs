//! What the running daemon holds, and the answers it gives on the control
//! socket (status).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use serde_json::Value;
use uuid::Uuid;

use crate::config::{Config, Mac, Ni, Vif};
use crate::control::status::*;
use crate::control::{Handler, Request};
use crate::ipstack::Router;
use crate::services::acl::HostCache;
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
    /// Addresses the NI's DNS server answered, for `host` ACL rules.
    pub hosts: Arc<HostCache>,
}

pub struct VifState {
    pub app: String,
    pub app_uuid: Uuid,
    pub cfg: Vif,
    pub entry: Arc<PortEntry>,
}

/// An app interface that could not be created (the rest runs on).
pub struct FailedVif {
    pub app: String,
    pub app_uuid: Uuid,
    pub cfg: Vif,
    pub error: String,
}

pub struct State {
    pub cfg: Config,
    pub switch: Arc<Switch>,
    pub ports: Vec<PortState>,
    pub nis: Vec<NiState>,
    pub vifs: Vec<VifState>,
    pub failed_vifs: Vec<FailedVif>,
}

fn counters(e: &PortEntry) -> Counters {
    let s = &e.stats;
    Counters {
        rx_packets: s.rx_packets.load(Relaxed),
        tx_packets: s.tx_packets.load(Relaxed),
        rx_bytes: s.rx_bytes.load(Relaxed),
        tx_bytes: s.tx_bytes.load(Relaxed),
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
            ports: Vec::new(),
            nis: Vec::new(),
            vifs: Vec::new(),
            failed_vifs: Vec::new(),
        }
    }

    /// Every port entry the daemon attached.
    pub fn all_ports(&self) -> Vec<Arc<PortEntry>> {
        let mut v: Vec<Arc<PortEntry>> = Vec::new();
        for p in &self.ports {
            v.push(p.nic.clone());
            v.extend(p.host.clone());
        }
        v.extend(self.vifs.iter().map(|x| x.entry.clone()));
        for r in self.nis.iter().filter_map(|n| n.router.as_ref()) {
            v.push(r.entry.clone());
            v.extend(r.uplink_entries.iter().cloned());
        }
        v
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
        let now = now_secs();
        let ports = self
            .ports
            .iter()
            .map(|p| PortStatus {
                name: p.name.clone(),
                device: p.nic.name.clone(),
                link_up: p.nic.link_up.load(Relaxed),
                mtu: p.nic.mtu.load(Relaxed),
                counters: counters(&p.nic),
                host_interface: p.host.as_ref().map(|h| TapStatus {
                    tap: h.name.clone(),
                    mac: p.host_mac.to_string(),
                    counters: counters(h),
                }),
            })
            .collect();
        let network_instances = self
            .nis
            .iter()
            .map(|n| {
                let mut mac_table: Vec<MacEntry> = n
                    .domain
                    .table
                    .entries(now)
                    .into_iter()
                    .map(|(mac, port, age)| MacEntry {
                        mac: mac.to_string(),
                        port: self
                            .switch
                            .port(port)
                            .map_or_else(|| format!("#{port}"), |e| e.name.clone()),
                        age_s: age,
                    })
                    .collect();
                mac_table.sort_by(|a, b| a.mac.cmp(&b.mac));
                NiStatus {
                    name: n.cfg.name.clone(),
                    uuid: n.cfg.uuid.to_string(),
                    kind: format!("{:?}", n.cfg.kind).to_lowercase(),
                    port: n.cfg.port.clone(),
                    mac_table,
                    leases: self.leases(n),
                    uplinks: n.router.as_ref().map(|r| r.uplinks()).unwrap_or_default(),
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
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    }),
                }
            })
            .collect();
        let apps = self
            .cfg
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
                        netns: v.cfg.netns.clone(),
                        counters: counters(&v.entry),
                        error: None,
                        acl_hits: v.entry.filter.as_ref().map_or_else(Vec::new, |f| {
                            f.hits.iter().map(|h| h.load(Relaxed)).collect()
                        }),
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
                                netns: f.cfg.netns.clone(),
                                counters: Counters::default(),
                                error: Some(f.error.clone()),
                                acl_hits: Vec::new(),
                            }),
                    )
                    .collect(),
            })
            .collect();
        Status {
            ports,
            network_instances,
            apps,
        }
    }
}

/// The control handler holds the state weakly, so a lingering connection
/// never keeps ports (and their TAPs) alive past shutdown.
pub struct WeakState(pub Weak<State>);

impl Handler for WeakState {
    fn handle(&self, req: Request) -> Result<Value, String> {
        let st = self.0.upgrade().ok_or("niswitch is shutting down")?;
        match req {
            Request::Status => serde_json::to_value(st.status()).map_err(|e| e.to_string()),
        }
    }
}
