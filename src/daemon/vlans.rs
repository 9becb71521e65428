//! VLANs from the config to the switch: each domain learns the VLANs its
//! members carry untagged (VIFs with `vlan`, ports in `vlan_access_ports`,
//! a host interface with `host_vlan`) and each member its access VLAN
//! (SPEC §3.1). A new domain gets its VLANs before any port in it is
//! served, a new port its access VLAN as it is attached, and every domain
//! the new config's VLANs before and after the steps of an apply: no
//! frame ever crosses VLANs while an apply runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::runtime::Runtime;
use crate::config::{Config, Ni};
use crate::switch::{Domain, PortEntry, PortRole};

/// The access VLANs of one domain's members, as the config gives them.
struct Members<'a> {
    cfg: &'a Config,
    /// The NIs switching in the domain.
    nis: Vec<&'a Ni>,
    /// The ports whose domain it is.
    ports: Vec<&'a crate::config::Port>,
}

impl<'a> Members<'a> {
    /// The domain of port `port`: the NIs switching on it, and all their ports.
    fn of_port(cfg: &'a Config, port: &str) -> Self {
        let nis: Vec<&Ni> = (cfg.network_instances.iter())
            .filter(|n| n.all_ports().contains(&port))
            .collect();
        let mut names = vec![port];
        names.extend(nis.iter().flat_map(|n| n.all_ports()));
        let ports = (cfg.ports.iter())
            .filter(|p| names.contains(&p.name.as_str()))
            .collect();
        Members { cfg, nis, ports }
    }

    /// The domain of a switch NI without ports.
    fn of_ni(cfg: &'a Config, ni: &'a Ni) -> Self {
        Members {
            cfg,
            nis: vec![ni],
            ports: Vec::new(),
        }
    }

    /// The access VLAN of a member (0: a trunk); None: the config does not
    /// name it (a VIF about to go keeps what it has).
    fn access_of(&self, role: &PortRole, name: &str) -> Option<u16> {
        let vlan = match role {
            PortRole::Nic { port } => self.nis.iter().find_map(|n| n.access_vlan(port)),
            PortRole::Host { port } => (self.ports.iter())
                .find(|p| p.name == *port)
                .and_then(|p| p.host_vlan),
            PortRole::Vif { .. } => {
                let vif =
                    (self.cfg.apps.iter().flat_map(|a| &a.interfaces)).find(|v| v.tap == name)?;
                vif.vlan
            }
            PortRole::Other => None,
        };
        Some(vlan.unwrap_or(0))
    }

    fn access(&self, e: &PortEntry) -> u16 {
        self.access_of(&e.role, &e.name)
            .unwrap_or_else(|| e.vlan.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Every VLAN with an access member: what the domain's trunks carry.
    fn carried(&self) -> BTreeSet<u16> {
        let names: BTreeSet<&str> = self.nis.iter().map(|n| n.name.as_str()).collect();
        let vifs = (self.cfg.apps.iter().flat_map(|a| &a.interfaces))
            .filter(|v| names.contains(v.ni.as_str()))
            .filter_map(|v| v.vlan);
        let ports = (self.nis.iter().flat_map(|n| &n.vlan_access_ports)).map(|a| a.vlan);
        let host = self.ports.iter().filter_map(|p| p.host_vlan);
        vifs.chain(ports).chain(host).collect()
    }

    fn apply(&self, domain: &Domain) {
        domain.set_vlans(&self.carried(), |e| self.access(e));
    }
}

impl Runtime {
    /// Gives every domain its VLANs and every member its access VLAN.
    pub(super) fn sync_vlans(&self, cfg: &Config) {
        let mut done: Vec<&Arc<Domain>> = Vec::new();
        for (name, p) in &self.ports {
            if !done.iter().any(|d| Arc::ptr_eq(d, &p.domain)) {
                done.push(&p.domain);
                Members::of_port(cfg, name).apply(&p.domain);
            }
        }
        for ni in self.nis.values().filter(|n| n.cfg.port.is_none()) {
            if let Some(n) = cfg.ni(&ni.cfg.name) {
                Members::of_ni(cfg, n).apply(&ni.domain);
            }
        }
    }
}

/// A new domain's VLANs, before any port joins it: that of port `port`, or
/// of the port-less switch NI `ni`.
pub(super) fn new_domain(cfg: &Config, domain: &Domain, port: Option<&str>, ni: Option<&Ni>) {
    match (port, ni) {
        (Some(p), _) => Members::of_port(cfg, p).apply(domain),
        (None, Some(n)) => Members::of_ni(cfg, n).apply(domain),
        (None, None) => {}
    }
}

/// The access VLAN a new port of `port`'s domain gets (0: a trunk).
pub(super) fn port_access(cfg: &Config, port: &str, role: &PortRole, name: &str) -> u16 {
    Members::of_port(cfg, port)
        .access_of(role, name)
        .unwrap_or(0)
}

/// The access VLAN a port entry has now (None: a trunk or no VLANs).
pub(super) fn access_vlan(e: &Arc<PortEntry>) -> Option<u16> {
    let v = e.vlan.load(std::sync::atomic::Ordering::Relaxed);
    (v != 0).then_some(v)
}
