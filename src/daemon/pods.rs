//! Pod interfaces for the CNI plugin (SPEC §7): a TAP made directly in the
//! pod's namespace and attached to an NI; on a local NI an address from the
//! top of the DHCP range, held as the pod's fixed address (so DHCP never
//! hands it out) and its name in the NI's DNS. Recorded before they are
//! made, attached again after a restart, removed by DEL or GC, and moved
//! along when an apply rebuilds their NI.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::records::PodRecord;
use super::runtime::{NiRt, PodRt, Runtime};
use crate::config::{Mac, derive};
use crate::control::{Attachment, PodInfo, PodRequest};
use crate::ports::netns;
use crate::ports::tap::{Tap, TapOptions};
use crate::services::acl::Acl;
use crate::services::vif_filter::{FilterRules, VifFilter, VifIdent};
use crate::switch::{PortEntry, PortHook, PortRole, PortSpec};

/// A CNI error: the spec's code and a message that says what to do.
pub struct PodError {
    pub code: u32,
    pub msg: String,
}

fn err(code: u32, msg: impl Into<String>) -> PodError {
    PodError {
        code,
        msg: msg.into(),
    }
}

/// CNI error codes (spec 1.1, "Error").
const CONTAINER_UNKNOWN: u32 = 3;
const IO_FAILURE: u32 = 5;
const INVALID_CONFIG: u32 = 7;
const NOT_AVAILABLE: u32 = 50;
/// Ours (≥ 100): the MAC is used by another interface of the NI.
pub const MAC_IN_USE: u32 = 100;
/// Ours: no address left in the NI's DHCP range.
pub const NO_ADDRESS: u32 = 101;
/// Ours: the attachment exists on another network.
pub const ATTACHED_ELSEWHERE: u32 = 102;

impl Runtime {
    /// Answers one request of the CNI plugin; a CNI error travels inside
    /// the result as `{"error": {"code", "msg"}}`.
    pub fn pod_request(&mut self, req: PodRequest) -> Value {
        let out = match req {
            PodRequest::Add {
                network,
                ni,
                container_id,
                ifname,
                netns,
                mac,
                name,
            } => {
                let name = name.unwrap_or_else(|| container_id.clone());
                let want = PodWant {
                    network,
                    ni,
                    container_id,
                    ifname,
                    netns,
                    mac,
                    name,
                };
                self.pod_add(want).map(|i| json!(i))
            }
            PodRequest::Get {
                network,
                container_id,
                ifname,
            } => self
                .pod_get(&network, &container_id, &ifname)
                .map(|i| json!(i)),
            PodRequest::Del {
                network,
                container_id,
                ifname,
            } => self
                .pod_del(&network, &container_id, &ifname)
                .map(|_| json!({})),
            PodRequest::Ready { ni } => match self.nis.contains_key(&ni) {
                true => Ok(json!({})),
                false => Err(err(
                    NOT_AVAILABLE,
                    format!(
                        "network instance `{ni}` is not in the running config; add it with `niswitch apply`"
                    ),
                )),
            },
            PodRequest::Gc { network, valid } => {
                Ok(json!({ "removed": self.pod_gc(&network, &valid) }))
            }
        };
        out.unwrap_or_else(|e| json!({"error": {"code": e.code, "msg": e.msg}}))
    }

    fn pod_get(&self, network: &str, cid: &str, ifname: &str) -> Result<PodInfo, PodError> {
        let p = self
            .pods
            .get(&(cid.to_string(), ifname.to_string()))
            .filter(|p| p.rec.network == network)
            .ok_or_else(|| err(CONTAINER_UNKNOWN, format!("niswitch holds no interface {ifname} of container {cid} on network {network}")))?;
        Ok(self.pod_info(&p.rec))
    }

    fn pod_add(&mut self, want: PodWant) -> Result<PodInfo, PodError> {
        let key = (want.container_id.clone(), want.ifname.clone());
        if let Some(p) = self.pods.get(&key) {
            if p.rec.network == want.network && p.rec.ni == want.ni {
                return Ok(self.pod_info(&p.rec));
            }
            return Err(err(
                ATTACHED_ELSEWHERE,
                format!(
                    "interface {} of this container is already attached to network {}; delete it first",
                    want.ifname, p.rec.network
                ),
            ));
        }
        let rec = self.pod_record(&want)?;
        self.ledger
            .add_pod(rec.clone())
            .map_err(|e| err(IO_FAILURE, e.to_string()))?;
        let made = self.make_pod_tap(&rec, true).and_then(|tap| {
            self.pods.insert(
                key.clone(),
                PodRt {
                    rec: rec.clone(),
                    tap,
                    entry: None,
                    filter: None,
                },
            );
            self.attach_pod(&key)
                .map_err(|e| err(IO_FAILURE, e.to_string()))
        });
        if let Err(e) = made {
            if let Some(p) = self.pods.remove(&key) {
                let _ = p.tap.unpersist();
            }
            self.ledger.remove_pod(&rec.container_id, &rec.ifname);
            return Err(e);
        }
        self.refresh_pod_router(&rec.ni);
        tracing::info!(container = %rec.container_id, ifname = %rec.ifname, ni = %rec.ni, "pod interface added");
        self.publish();
        Ok(self.pod_info(&rec))
    }

    /// Checks a request and decides the pod's MAC and address.
    fn pod_record(&self, w: &PodWant) -> Result<PodRecord, PodError> {
        let ni = self.nis.get(&w.ni).ok_or_else(|| {
            err(INVALID_CONFIG, format!("network instance `{}` is not in the running config; name one that `niswitch status` lists", w.ni))
        })?;
        if !Path::new(&w.netns).exists() {
            return Err(err(
                CONTAINER_UNKNOWN,
                format!("network namespace {} does not exist", w.netns),
            ));
        }
        let used = self.macs_in_use(&w.ni);
        let mac = match &w.mac {
            None => self.derive_mac(ni.cfg.uuid, w, &used)?,
            Some(m) => {
                let mac = m
                    .parse::<Mac>()
                    .map_err(|e| err(INVALID_CONFIG, format!("MAC `{m}`: {e}")))?;
                if mac.is_multicast() || mac.is_zero() {
                    return Err(err(
                        INVALID_CONFIG,
                        format!("MAC {mac} is multicast or all-zero; give a unicast MAC"),
                    ));
                }
                if used.contains(&mac) {
                    return Err(err(
                        MAC_IN_USE,
                        format!(
                            "MAC {mac} is used by another interface on the domain of {}; pick another or leave MAC unset",
                            w.ni
                        ),
                    ));
                }
                mac
            }
        };
        let ip = match &ni.cfg.local {
            None => None,
            Some(_) => Some(self.free_address(&w.ni).ok_or_else(|| {
                err(NO_ADDRESS, format!("no free address left in the DHCP range of {}; widen dhcp_range or remove pods", w.ni))
            })?),
        };
        Ok(PodRecord {
            network: w.network.clone(),
            ni: w.ni.clone(),
            container_id: w.container_id.clone(),
            ifname: w.ifname.clone(),
            netns: w.netns.clone(),
            mac,
            ip,
            name: w.name.clone(),
        })
    }

    /// Every MAC on NI `ni`'s domain: its ports' own MACs (interfaces of
    /// every NI sharing the domain, routers), the host's, the configured
    /// interfaces and the pods (attached or not).
    fn macs_in_use(&self, ni: &str) -> Vec<Mac> {
        let Some(n) = self.nis.get(ni) else {
            return Vec::new();
        };
        let members = n.domain.members();
        let own = members.iter().filter_map(|e| e.own_mac);
        let host = n.cfg.port.as_ref().and_then(|p| self.ports.get(p));
        let vifs = self.cfg.apps.iter().flat_map(|a| &a.interfaces);
        let pods = self.ledger.pods().iter().map(|p| p.mac);
        own.chain(host.map(|p| p.opened.mac))
            .chain(vifs.map(|v| v.mac))
            .chain(pods)
            .collect()
    }

    /// The attachment's derived MAC; one that collides is derived again
    /// from a counter.
    fn derive_mac(&self, ni: uuid::Uuid, w: &PodWant, used: &[Mac]) -> Result<Mac, PodError> {
        (0..8u8)
            .map(|n| {
                let salt = if n == 0 {
                    String::new()
                } else {
                    format!("#{n}")
                };
                derive::pod_mac(&ni, &w.container_id, &format!("{}{salt}", w.ifname))
            })
            .find(|m| !used.contains(m))
            .ok_or_else(|| {
                err(
                    MAC_IN_USE,
                    "no free MAC could be derived; pass one with MAC= in CNI_ARGS",
                )
            })
    }

    /// The highest address of the DHCP range nobody holds (DHCP hands out
    /// from the bottom, so the two rarely meet).
    fn free_address(&self, ni: &str) -> Option<Ipv4Addr> {
        let n = self.nis.get(ni)?;
        let l = n.cfg.local.as_ref()?;
        let leased: Vec<Ipv4Addr> = n
            .router
            .as_ref()
            .map(|r| r.leases().iter().map(|l| l.ip).collect())
            .unwrap_or_default();
        let fixed = self
            .cfg
            .apps
            .iter()
            .flat_map(|a| &a.interfaces)
            .filter_map(|v| v.ip);
        let pods = self.ledger.pods().iter().filter_map(|p| p.ip);
        let taken: Vec<Ipv4Addr> = fixed.chain(pods).chain(leased).chain([l.gateway]).collect();
        (u32::from(l.dhcp_range.start)..=u32::from(l.dhcp_range.end))
            .rev()
            .map(Ipv4Addr::from)
            .find(|ip| !taken.contains(ip))
    }

    /// The pod's TAP in its namespace; `exclusive` unless re-attaching.
    fn make_pod_tap(&self, rec: &PodRecord, exclusive: bool) -> Result<Arc<Tap>, PodError> {
        let opts = TapOptions {
            name: rec.ifname.clone(),
            mac: Some(rec.mac),
            mtu: Some(self.ni_mtu(&rec.ni)),
            persist: true,
            exclusive,
            queues: self.workers.count(),
            txqueuelen: Some(self.workers.tap_txqueuelen()),
        };
        netns::run_in_path(Path::new(&rec.netns), || Tap::open(&opts))
            .map(|t| {
                self.steer(&t);
                Arc::new(t)
            })
            .map_err(|e| {
                err(
                    IO_FAILURE,
                    format!("creating {} in {}: {e}", rec.ifname, rec.netns),
                )
            })
    }

    /// Attaches a pod's TAP to its NI's domain (when the NI runs).
    pub(super) fn attach_pod(&mut self, key: &(String, String)) -> std::io::Result<()> {
        let Some(p) = self.pods.get(key) else {
            return Ok(());
        };
        let Some(ni) = self.nis.get(&p.rec.ni) else {
            return Ok(());
        };
        let short: String = p.rec.container_id.chars().take(12).collect();
        let spec = PortSpec::new(
            format!("pod:{short}:{}", p.rec.ifname),
            PortRole::Vif {
                app: p.rec.name.clone(),
                ni: p.rec.ni.clone(),
                ifnum: 0,
            },
            Box::new(p.tap.clone()),
            self.ni_mtu(&p.rec.ni),
        )
        .own_mac(p.rec.mac);
        let entry: Arc<PortEntry> = self.switch.add_port(&ni.domain, spec)?;
        super::steps::guard_port(&entry, ni, p.rec.ip, true);
        let filter = flow_recorder(&p.rec, ni);
        if let Some(f) = &filter {
            entry.set_hook(Some(Box::new(f.clone()) as Box<dyn PortHook>));
        }
        if let Err(e) = self.serve(&entry) {
            self.switch.remove_port(&entry);
            return Err(e);
        }
        if let Some(p) = self.pods.get_mut(key) {
            p.entry = Some(entry);
            p.filter = filter;
        }
        Ok(())
    }

    /// Takes the pods of NI `ni` out of its domain (it is being rebuilt).
    pub(super) fn detach_pods(&mut self, ni: &str) {
        let retired = self.retired.clone();
        let entries: Vec<Arc<PortEntry>> = self
            .pods
            .values_mut()
            .filter(|p| p.rec.ni == ni)
            .filter_map(|p| p.detach(&retired))
            .collect();
        if !entries.is_empty() {
            self.release(entries);
        }
    }

    /// Attaches the pods of NI `ni` (it was made again).
    pub(super) fn attach_pods(&mut self, ni: &str) {
        let keys: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.rec.ni == ni && p.entry.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Err(e) = self.attach_pod(&k) {
                tracing::warn!(container = %k.0, ifname = %k.1, error = %e, "could not attach the pod interface again");
            }
        }
    }

    /// On the way out: pods stay in their namespaces (their TAPs persist and
    /// their records stay), to be attached again by the next start.
    pub(super) fn leave_pods(&mut self) {
        let retired = self.retired.clone();
        let entries: Vec<Arc<PortEntry>> = self
            .pods
            .values_mut()
            .filter_map(|p| p.detach(&retired))
            .collect();
        self.release(entries);
        self.pods.clear();
    }

    /// Pods whose NI an apply removed are removed too.
    pub(super) fn drop_orphan_pods(&mut self) {
        let gone: Vec<PodRecord> = self
            .pods
            .values()
            .filter(|p| !self.nis.contains_key(&p.rec.ni))
            .map(|p| p.rec.clone())
            .collect();
        for r in gone {
            tracing::warn!(container = %r.container_id, ni = %r.ni, "its network instance was removed: pod interface removed");
            let _ = self.pod_del(&r.network, &r.container_id, &r.ifname);
        }
    }

    fn pod_del(&mut self, network: &str, cid: &str, ifname: &str) -> Result<(), PodError> {
        let key = (cid.to_string(), ifname.to_string());
        if self.pods.get(&key).is_none_or(|p| p.rec.network != network) {
            return Ok(());
        }
        let Some(mut p) = self.pods.remove(&key) else {
            return Ok(());
        };
        if let Some(e) = p.detach(&self.retired) {
            self.release(vec![e]);
        }
        if let Err(e) = p.tap.unpersist() {
            tracing::debug!(error = %e, "pod TAP already gone");
        }
        self.ledger.remove_pod(cid, ifname);
        self.refresh_pod_router(&p.rec.ni);
        tracing::info!(container = %cid, ifname, "pod interface removed");
        self.publish();
        Ok(())
    }

    fn pod_gc(&mut self, network: &str, valid: &[Attachment]) -> Vec<Attachment> {
        let stale: Vec<Attachment> = self
            .pods
            .values()
            .filter(|p| p.rec.network == network)
            .map(|p| Attachment {
                container_id: p.rec.container_id.clone(),
                ifname: p.rec.ifname.clone(),
            })
            .filter(|a| !valid.contains(a))
            .collect();
        for a in &stale {
            let _ = self.pod_del(network, &a.container_id, &a.ifname);
        }
        stale
    }

    /// After a start: the pods an earlier run recorded are attached again
    /// (their TAPs stayed in their namespaces); those whose namespace or NI
    /// is gone are forgotten.
    pub fn restore_pods(&mut self) {
        let recs: Vec<PodRecord> = self.ledger.pods().to_vec();
        let mut nis = std::collections::BTreeSet::new();
        for rec in recs {
            let key = (rec.container_id.clone(), rec.ifname.clone());
            // A namespace that is gone took the TAP with it.
            let tap = match Path::new(&rec.netns).exists() {
                true => self.make_pod_tap(&rec, false).map_err(|e| e.msg),
                false => Err("its namespace is gone".into()),
            };
            let tap = match tap {
                Ok(t) => t,
                Err(why) => {
                    tracing::info!(container = %rec.container_id, "pod interface not restored: {why}");
                    self.ledger.remove_pod(&rec.container_id, &rec.ifname);
                    continue;
                }
            };
            // A pod whose NI is not running stays detached until it is.
            nis.insert(rec.ni.clone());
            self.pods.insert(
                key.clone(),
                PodRt {
                    rec,
                    tap,
                    entry: None,
                    filter: None,
                },
            );
            if let Err(e) = self.attach_pod(&key) {
                tracing::warn!(container = %key.0, error = %e, "could not attach a restored pod interface");
            }
        }
        for ni in nis {
            self.refresh_pod_router(&ni);
        }
        self.publish();
    }

    fn refresh_pod_router(&mut self, ni: &str) {
        let cfg = self.cfg.clone();
        if self.nis.get(ni).is_some_and(|n| n.router.is_some())
            && let Err(e) = self.step(&super::plan::Step::RefreshRouter(ni.to_string()), &cfg)
        {
            tracing::warn!(ni, error = %e, "could not update the router's clients");
        }
    }

    fn pod_info(&self, rec: &PodRecord) -> PodInfo {
        let local = self.nis.get(&rec.ni).and_then(|n| n.cfg.local.clone());
        let prefix = local.as_ref().map_or(32, |l| l.subnet.prefix_len());
        let gw = local.as_ref().map(|l| l.gateway);
        let routes = match (&local, gw) {
            (Some(l), Some(g)) if !l.uplinks.is_empty() => {
                vec![("0.0.0.0/0".to_string(), g.to_string())]
            }
            _ => Vec::new(),
        };
        PodInfo {
            network: rec.network.clone(),
            ni: rec.ni.clone(),
            container_id: rec.container_id.clone(),
            ifname: rec.ifname.clone(),
            netns: rec.netns.clone(),
            mac: rec.mac.to_string(),
            mtu: self.ni_mtu(&rec.ni),
            address: rec.ip.map(|ip| format!("{ip}/{prefix}")),
            gateway: rec.ip.and(gw).map(|g| g.to_string()),
            routes,
            dns_servers: rec
                .ip
                .and(gw)
                .map(|g| vec![g.to_string()])
                .unwrap_or_default(),
            dns_domain: local.and_then(|l| l.dns.domain),
            name: Some(rec.name.clone()),
        }
    }
}

/// What an ADD asks for.
struct PodWant {
    network: String,
    ni: String,
    container_id: String,
    ifname: String,
    netns: String,
    mac: Option<String>,
    name: String,
}

/// A pod interface on a local NI has its flows recorded like an app's
/// without ACLs (unless the NI says `flow_log: false`); pods carry no app
/// UUID, so the container ID stands for it.
fn flow_recorder(rec: &PodRecord, ni: &NiRt) -> Option<Arc<VifFilter>> {
    let local = ni.cfg.local.as_ref().filter(|l| l.flow_log)?;
    let rules = FilterRules {
        ident: VifIdent {
            app: rec.name.clone(),
            app_uuid: rec.container_id.clone(),
            ni: rec.ni.clone(),
            vif: rec.ifname.clone(),
        },
        acl: Acl::compile(&[]),
        enforce: false,
        gateway: Some(local.gateway),
        router6: super::steps::router6(ni),
        mapped: Vec::new(),
    };
    Some(Arc::new(VifFilter::new(rules, Some(ni.hosts.clone()))))
}
