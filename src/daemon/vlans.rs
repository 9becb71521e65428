//! VLANs from the config to the switch: after every apply, each domain
//! learns the VLANs its members carry untagged (VIFs with `vlan`, ports in
//! `vlan_access_ports`, a host interface with `host_vlan`) and each member
//! its access VLAN (SPEC §3.1).

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

impl Members<'_> {
    /// The access VLAN of one member (0: a trunk).
    fn access(&self, e: &PortEntry) -> u16 {
        let vlan = match &e.role {
            PortRole::Nic { port } => self.nis.iter().find_map(|n| n.access_vlan(port)),
            PortRole::Host { port } => (self.ports.iter())
                .find(|p| p.name == *port)
                .and_then(|p| p.host_vlan),
            PortRole::Vif { .. } => self
                .cfg
                .apps
                .iter()
                .flat_map(|a| &a.interfaces)
                .find(|v| v.tap == e.name)
                .and_then(|v| v.vlan),
            PortRole::Other => None,
        };
        vlan.unwrap_or(0)
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
            if done.iter().any(|d| Arc::ptr_eq(d, &p.domain)) {
                continue;
            }
            done.push(&p.domain);
            // The NIs switching in this port's domain, and all their ports.
            let nis: Vec<&Ni> = (cfg.network_instances.iter())
                .filter(|n| n.all_ports().contains(&name.as_str()))
                .collect();
            let mut ports = vec![name.as_str()];
            ports.extend(nis.iter().flat_map(|n| n.all_ports()));
            let members = Members {
                cfg,
                nis,
                ports: cfg
                    .ports
                    .iter()
                    .filter(|p| ports.contains(&p.name.as_str()))
                    .collect(),
            };
            members.apply(&p.domain);
        }
        for ni in self.nis.values().filter(|n| n.cfg.port.is_none()) {
            let Some(n) = cfg.ni(&ni.cfg.name) else {
                continue;
            };
            let members = Members {
                cfg,
                nis: vec![n],
                ports: Vec::new(),
            };
            members.apply(&ni.domain);
        }
    }
}

/// The access VLAN a port entry has now (None: a trunk or no VLANs).
pub(super) fn access_vlan(e: &Arc<PortEntry>) -> Option<u16> {
    let v = e.vlan.load(std::sync::atomic::Ordering::Relaxed);
    (v != 0).then_some(v)
}
