//! The plan of a live apply: what differs between the running config and a
//! new one, as an ordered list of named steps. Pure logic, so `apply
//! --dry-run` can print it and tests can check it without a network.
//!
//! Identity: a port and a network instance are known by name, an app
//! interface (VIF) by its TAP name. What changes in place and what is made
//! again:
//! - a port whose `cost` or `host_vlan` changes is updated in place (the
//!   routers using it as an uplink restart on a new cost); any other
//!   change (an MTU too: every interface of its domain follows it) makes
//!   it again, and every NI on it with it;
//! - an NI's flood limit, LLDP forwarding, VLAN access ports and BPDU
//!   guard ports and a local NI's DNS settings change in place; a local NI whose other
//!   settings change (or whose uplink ports change) gets a new router on
//!   the same domain: its VIFs and MAC table stay; a switch NI whose port
//!   changes gets a new domain and its VIFs move to it;
//! - a VIF is made again only when its NI, MAC or namespace changes; its
//!   ACLs, port maps, fixed IP, VLAN and app name change in place.
//!
//! VLANs are not steps: after every plan each domain is given the VLANs
//! of the config (`vlans.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::config::{App, Config, Ni, NiType, Port, Vif};

/// One step of a plan, in the order it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    RemoveVif(String),
    /// Take a VIF out of its NI's domain, keeping its TAP (the NI is rebuilt).
    DetachVif(String),
    StopRouter(String),
    RemoveNi(String),
    RemovePort(String),
    AddPort(String),
    UpdatePort(String),
    AddNi(String),
    StartRouter(String),
    /// Give a running router its NI's new clients and port maps.
    RefreshRouter(String),
    /// Change an NI's flood limit in place.
    UpdateNi(String),
    AddVif(String),
    AttachVif(String),
    UpdateVif(String),
    /// Change how the workers poll (their number changes at the next start).
    UpdateDataplane,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::RemoveVif(t) => write!(f, "remove app interface {t}"),
            Step::DetachVif(t) => write!(f, "detach app interface {t} (its TAP stays)"),
            Step::StopRouter(n) => write!(f, "stop the router of network instance {n}"),
            Step::RemoveNi(n) => write!(f, "remove network instance {n}"),
            Step::RemovePort(p) => write!(f, "remove port {p}"),
            Step::AddPort(p) => write!(f, "add port {p}"),
            Step::UpdatePort(p) => write!(f, "update port {p} in place (cost, host VLAN)"),
            Step::AddNi(n) => write!(f, "add network instance {n}"),
            Step::StartRouter(n) => write!(f, "start the router of network instance {n}"),
            Step::RefreshRouter(n) => {
                write!(f, "update the DHCP clients, names and port maps of {n}")
            }
            Step::UpdateNi(n) => {
                write!(
                    f,
                    "update network instance {n} in place (flood_limit, forward_lldp, VLAN access ports, BPDU guard, dns)"
                )
            }
            Step::AddVif(t) => write!(f, "add app interface {t}"),
            Step::AttachVif(t) => write!(f, "attach app interface {t} again"),
            Step::UpdateVif(t) => {
                write!(
                    f,
                    "update app interface {t} in place (ACLs, port maps, IP, VLAN)"
                )
            }
            Step::UpdateDataplane => write!(
                f,
                "update the data plane's busy polling (a new number of workers takes effect at the next start)"
            ),
        }
    }
}

/// The steps that take the running config to the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// A VIF with the app it belongs to.
struct VifOf<'a> {
    app: &'a App,
    vif: &'a Vif,
}

fn vifs(cfg: &Config) -> BTreeMap<&str, VifOf<'_>> {
    cfg.apps
        .iter()
        .flat_map(|app| {
            app.interfaces
                .iter()
                .map(move |vif| (vif.tap.as_str(), VifOf { app, vif }))
        })
        .collect()
}

/// How a port changed.
#[derive(PartialEq)]
enum PortChange {
    Same,
    InPlace,
    Replace,
}

fn port_change(old: &Port, new: &Port) -> PortChange {
    if old == new {
        return PortChange::Same;
    }
    let settled = Port {
        cost: new.cost,
        host_vlan: new.host_vlan,
        ..old.clone()
    };
    if settled == *new {
        PortChange::InPlace
    } else {
        PortChange::Replace
    }
}

/// The switch NI with several ports that `port` belongs to, if any.
fn group<'a>(cfg: &'a Config, port: &str) -> Option<&'a str> {
    (cfg.network_instances.iter())
        .find(|n| n.ports.iter().any(|p| p == port))
        .map(|n| n.name.as_str())
}

/// How an NI changed.
#[derive(PartialEq, Clone, Copy)]
enum NiChange {
    Same,
    /// Only its flood limit.
    InPlace,
    /// New router, same domain and VIFs.
    Router,
    /// New domain: its VIFs move.
    Replace,
}

fn ni_change(old: &Ni, new: &Ni, replaced: &BTreeSet<&str>, cost: &BTreeSet<&str>) -> NiChange {
    let moved = old.kind != new.kind
        || old.port != new.port
        || old.ports != new.ports
        || old.stp.as_ref().map(|s| s.priority) != new.stp.as_ref().map(|s| s.priority)
        || old.uuid != new.uuid;
    let on_replaced_port = new.all_ports().iter().any(|p| replaced.contains(p));
    if moved || on_replaced_port {
        return NiChange::Replace;
    }
    let uplinks = new
        .local
        .as_ref()
        .map(|l| l.uplinks.as_slice())
        .unwrap_or(&[]);
    let uplink_moved = uplinks
        .iter()
        .any(|u| replaced.contains(u.as_str()) || cost.contains(u.as_str()));
    // The flood limit, LLDP forwarding, access ports and a local NI's DNS
    // change in place.
    let settled = Ni {
        flood_limit: new.flood_limit,
        forward_lldp: new.forward_lldp,
        vlan_access_ports: new.vlan_access_ports.clone(),
        stp: new.stp.clone(),
        local: old.local.clone().map(|l| crate::config::LocalNi {
            dns: new.local.as_ref().map_or(l.dns.clone(), |n| n.dns.clone()),
            ..l
        }),
        ..old.clone()
    };
    let limit_only = settled == *new;
    if (old != new && !limit_only) || (new.kind == NiType::Local && uplink_moved) {
        NiChange::Router
    } else if old != new {
        NiChange::InPlace
    } else {
        NiChange::Same
    }
}

/// What a router knows of one VIF: its MAC, app name, fixed IP, port maps,
/// and the app's UUID and user data for the metadata server.
fn router_view(v: &VifOf) -> impl PartialEq + use<> {
    (
        v.vif.mac,
        v.app.name.clone(),
        v.vif.ip,
        v.vif.port_maps.clone(),
        (v.app.uuid, v.app.user_data.clone()),
    )
}

/// What of the running config could not be made; the next plan tries again.
#[derive(Debug, Clone, Default)]
pub struct Damaged {
    /// App interfaces by TAP.
    pub vifs: BTreeSet<String>,
    /// Local NIs whose router did not start.
    pub routers: BTreeSet<String>,
}

/// The plan from `old` to `new`, making again what `damaged` names.
pub fn diff(old: &Config, new: &Config, damaged: &Damaged) -> Plan {
    let failed = &damaged.vifs;
    let mut p = Phases::default();
    // Ports.
    let mut replaced_ports = BTreeSet::new();
    let mut cost_changed = BTreeSet::new();
    for o in &old.ports {
        match new.port(&o.name) {
            None => p.remove_ports.push(Step::RemovePort(o.name.clone())),
            // A port that joins or leaves a switch NI with several ports
            // changes domains: it is made again.
            Some(n) if group(old, &o.name) != group(new, &n.name) => {
                replaced_ports.insert(o.name.as_str());
                p.remove_ports.push(Step::RemovePort(o.name.clone()));
                p.add_ports.push(Step::AddPort(o.name.clone()));
            }
            Some(n) => match port_change(o, n) {
                PortChange::Same => {}
                PortChange::InPlace => {
                    if o.cost != n.cost {
                        cost_changed.insert(o.name.as_str());
                    }
                    p.add_ports.push(Step::UpdatePort(o.name.clone()));
                }
                PortChange::Replace => {
                    replaced_ports.insert(o.name.as_str());
                    p.remove_ports.push(Step::RemovePort(o.name.clone()));
                    p.add_ports.push(Step::AddPort(o.name.clone()));
                }
            },
        }
    }
    for n in new.ports.iter().filter(|n| old.port(&n.name).is_none()) {
        p.add_ports.push(Step::AddPort(n.name.clone()));
    }
    // Network instances.
    let mut ni_changes: BTreeMap<&str, NiChange> = BTreeMap::new();
    for o in &old.network_instances {
        let Some(n) = new.ni(&o.name) else {
            p.remove_nis.push(Step::RemoveNi(o.name.clone()));
            continue;
        };
        let change = ni_change(o, n, &replaced_ports, &cost_changed);
        ni_changes.insert(o.name.as_str(), change);
        match change {
            NiChange::Same if damaged.routers.contains(&o.name) && n.local.is_some() => {
                p.add_nis.push(Step::StartRouter(o.name.clone()));
            }
            NiChange::Same => {}
            NiChange::InPlace => p.add_nis.push(Step::UpdateNi(o.name.clone())),
            NiChange::Router => {
                if o.local.is_some() {
                    p.remove_nis.push(Step::StopRouter(o.name.clone()));
                }
                if n.local.is_some() {
                    p.add_nis.push(Step::StartRouter(o.name.clone()));
                }
            }
            NiChange::Replace => {
                p.remove_nis.push(Step::RemoveNi(o.name.clone()));
                p.add_nis.push(Step::AddNi(o.name.clone()));
            }
        }
    }
    for n in new
        .network_instances
        .iter()
        .filter(|n| old.ni(&n.name).is_none())
    {
        p.add_nis.push(Step::AddNi(n.name.clone()));
    }
    // App interfaces.
    let (ov, nv) = (vifs(old), vifs(new));
    let mut refresh: BTreeSet<String> = BTreeSet::new();
    for (tap, o) in &ov {
        let Some(n) = nv.get(tap) else {
            p.remove_vifs.push(Step::RemoveVif(tap.to_string()));
            refresh.insert(o.vif.ni.clone());
            continue;
        };
        let remade = o.vif.ni != n.vif.ni || o.vif.mac != n.vif.mac || o.vif.netns != n.vif.netns;
        let ni = ni_changes.get(n.vif.ni.as_str()).copied();
        if failed.contains(*tap) {
            p.add_vifs.push(Step::AddVif(tap.to_string()));
        } else if remade {
            p.remove_vifs.push(Step::RemoveVif(tap.to_string()));
            p.add_vifs.push(Step::AddVif(tap.to_string()));
        } else if ni == Some(NiChange::Replace) {
            p.remove_vifs.push(Step::DetachVif(tap.to_string()));
            p.add_vifs.push(Step::AttachVif(tap.to_string()));
        }
        if !failed.contains(*tap) && !remade && (o.vif != n.vif || o.app != n.app) {
            p.add_vifs.push(Step::UpdateVif(tap.to_string()));
        }
        if remade || router_view(o) != router_view(n) {
            refresh.insert(o.vif.ni.clone());
            refresh.insert(n.vif.ni.clone());
        }
    }
    for (tap, n) in nv.iter().filter(|(t, _)| !ov.contains_key(*t)) {
        p.add_vifs.push(Step::AddVif(tap.to_string()));
        refresh.insert(n.vif.ni.clone());
    }
    // Routers that keep running learn their NI's new clients before the
    // new interfaces appear.
    for ni in refresh {
        let running = matches!(
            ni_changes.get(ni.as_str()),
            Some(NiChange::Same | NiChange::InPlace)
        );
        if running && new.ni(&ni).is_some_and(|n| n.local.is_some()) {
            p.add_nis.push(Step::RefreshRouter(ni));
        }
    }
    if old.dataplane != new.dataplane {
        p.add_ports.push(Step::UpdateDataplane);
    }
    p.into_plan()
}

#[derive(Default)]
struct Phases {
    remove_vifs: Vec<Step>,
    remove_nis: Vec<Step>,
    remove_ports: Vec<Step>,
    add_ports: Vec<Step>,
    add_nis: Vec<Step>,
    add_vifs: Vec<Step>,
}

impl Phases {
    fn into_plan(self) -> Plan {
        let mut steps = self.remove_vifs;
        steps.extend(self.remove_nis);
        steps.extend(self.remove_ports);
        steps.extend(self.add_ports);
        steps.extend(self.add_nis);
        steps.extend(self.add_vifs);
        Plan { steps }
    }
}

#[cfg(test)]
mod tests;
