//! The connectivity probe after an apply (SPEC §8): every management port's
//! host TAP still reaches its gateway (an ARP request sent as the host
//! would), and every local NI with uplinks has a healthy one, within the
//! timeout. A check that passed once stays passed. The probe runs in rounds
//! on the current snapshot, so its caller can serve other work in between.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::state::State;
use crate::config::Config;
use crate::ports::arping;

/// The gateways the host uses on each management port's TAP now, by TAP
/// name: remembered before an apply, in case the apply loses them.
pub fn host_gateways(cfg: &Config) -> BTreeMap<String, Ipv4Addr> {
    cfg.ports
        .iter()
        .filter(|p| p.management)
        .filter_map(|p| p.host_interface.as_ref())
        .filter_map(|t| Some((t.clone(), arping::default_gateway(t)?)))
        .collect()
}

/// One thing the probe checks.
enum Check {
    HostGateway {
        port: String,
        tap: String,
        gw: Ipv4Addr,
    },
    Uplink {
        ni: String,
    },
}

impl Check {
    /// None when it passes; otherwise what is wrong.
    fn run(&self, st: &State) -> Option<String> {
        match self {
            Check::HostGateway { port, tap, gw } => {
                match arping::arping(tap, *gw, Duration::from_millis(200)) {
                    Ok(true) => None,
                    Ok(false) => Some(format!(
                        "management port `{port}`: the host TAP {tap} got no ARP reply from its gateway {gw}"
                    )),
                    Err(e) => Some(format!("management port `{port}`: host TAP {tap}: {e}")),
                }
            }
            Check::Uplink { ni } => {
                let router = st
                    .nis
                    .iter()
                    .find(|n| n.cfg.name == *ni)
                    .and_then(|n| n.router.as_ref());
                let Some(r) = router else {
                    return Some(format!("network instance `{ni}` has no running router"));
                };
                let ups = r.uplinks();
                if ups.iter().any(|u| u.healthy) {
                    return None;
                }
                let why: Vec<String> = ups
                    .iter()
                    .map(|u| match u.address {
                        None => format!("{}: no address", u.port),
                        Some(a) => format!("{} ({a}): probes unanswered", u.port),
                    })
                    .collect();
                Some(format!(
                    "network instance `{ni}` has no healthy uplink ({})",
                    why.join(", ")
                ))
            }
        }
    }
}

fn checks(cfg: &Config, known: &BTreeMap<String, Ipv4Addr>) -> Vec<Check> {
    let mut v = Vec::new();
    for p in cfg.ports.iter().filter(|p| p.management) {
        let Some(tap) = &p.host_interface else {
            continue;
        };
        match arping::default_gateway(tap).or_else(|| known.get(tap).copied()) {
            Some(gw) => v.push(Check::HostGateway {
                port: p.name.clone(),
                tap: tap.clone(),
                gw,
            }),
            None => {
                tracing::info!(port = %p.name, tap = %tap, "the host has no gateway on this TAP; nothing to probe")
            }
        }
    }
    for n in &cfg.network_instances {
        if n.local.as_ref().is_some_and(|l| !l.uplinks.is_empty()) {
            v.push(Check::Uplink { ni: n.name.clone() });
        }
    }
    v
}

/// A probe under way.
pub struct Probe {
    open: Vec<Check>,
    deadline: Instant,
}

impl Probe {
    /// The checks of `cfg`; `known` are the host gateways seen before.
    pub fn new(cfg: &Config, known: &BTreeMap<String, Ipv4Addr>, timeout: Duration) -> Probe {
        let now = Instant::now();
        Probe {
            open: checks(cfg, known),
            deadline: now.checked_add(timeout).unwrap_or(now),
        }
    }

    /// One round on the snapshot `st`: None while checks are still open and
    /// time is left; Err names what still failed when it ran out.
    pub fn round(&mut self, st: &State) -> Option<Result<(), String>> {
        let mut failures = Vec::new();
        self.open.retain(|c| match c.run(st) {
            None => false,
            Some(why) => {
                failures.push(why);
                true
            }
        });
        if self.open.is_empty() {
            return Some(Ok(()));
        }
        (Instant::now() >= self.deadline).then(|| Err(failures.join("; ")))
    }
}
