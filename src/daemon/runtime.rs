//! The running data plane as objects keyed the way a plan names them:
//! ports by name, network instances by name, app interfaces by TAP. Steps
//! (`steps.rs`) change it; after each apply a snapshot is published for
//! status, metrics and the background threads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use uuid::Uuid;

use super::nic::OpenedNic;
use super::plan::{Plan, Step};
use super::records::Ledger;
use super::state::{self, ApplyInfo, State};
use crate::config::{self, Dataplane};
use crate::config::{Config, Ni, Vif};
use crate::ipstack::Router;
use crate::ports::PortIo;
use crate::ports::tap::Tap;
use crate::services::acl::HostCache;
use crate::services::vif_filter::VifFilter;
use crate::switch::workers::{self, Workers};
use crate::switch::{Domain, PortEntry, Switch};

pub(super) struct PortRt {
    pub opened: OpenedNic,
    pub domain: Arc<Domain>,
    pub nic: Arc<PortEntry>,
    pub host: Option<Arc<PortEntry>>,
}

pub(super) struct NiRt {
    pub cfg: Ni,
    pub domain: Arc<Domain>,
    pub router: Option<Arc<Router>>,
    /// Addresses the NI's DNS server answered, for `host` ACL rules; kept
    /// across router restarts.
    pub hosts: Arc<HostCache>,
    /// The spanning tree of a switch NI with several ports.
    pub stp: Option<crate::switch::stp::Stp>,
}

pub(super) struct VifRt {
    pub app: String,
    pub app_uuid: Uuid,
    pub cfg: Vif,
    pub tap: Arc<Tap>,
    /// None while detached (its NI is being rebuilt).
    pub entry: Option<Arc<PortEntry>>,
    pub filter: Option<Arc<VifFilter>>,
}

/// A pod interface of the CNI plugin.
pub(super) struct PodRt {
    pub rec: super::records::PodRecord,
    pub tap: Arc<Tap>,
    /// None while detached (its NI is being rebuilt).
    pub entry: Option<Arc<PortEntry>>,
    /// Records its flows on a local NI (unless `flow_log: false`).
    pub filter: Option<Arc<VifFilter>>,
}

impl PodRt {
    /// Takes the pod's port out of its NI's runtime view; its filter goes
    /// to `retired`, so the flow logger writes its last records.
    pub fn detach(&mut self, retired: &Retired) -> Option<Arc<PortEntry>> {
        if let Some(f) = self.filter.take()
            && let Ok(mut r) = retired.lock()
        {
            r.push(f);
        }
        self.entry.take()
    }
}

/// Filters whose interface went away or lost its ACLs: the flow logger
/// writes their last records.
pub(super) type Retired = Arc<Mutex<Vec<Arc<VifFilter>>>>;

pub(super) struct Runtime {
    pub switch: Arc<Switch>,
    pub cfg: Config,
    pub state_dir: PathBuf,
    pub ports: BTreeMap<String, PortRt>,
    pub nis: BTreeMap<String, NiRt>,
    pub vifs: BTreeMap<String, VifRt>,
    /// App interfaces that could not be made, with the reason.
    pub failed: BTreeMap<String, state::FailedVif>,
    /// Pod interfaces by (container ID, interface name).
    pub pods: BTreeMap<(String, String), PodRt>,
    /// The domains of switch NIs with several ports, by NI: each of their
    /// ports joins it instead of a domain of its own.
    pub shared: BTreeMap<String, Arc<Domain>>,
    pub ledger: Ledger,
    pub retired: Retired,
    pub published: Arc<ArcSwap<State>>,
    pub apply_info: ApplyInfo,
    /// The threads that serve the ports.
    pub workers: Arc<Workers>,
}

/// A step that went wrong, and why.
pub(super) struct StepError {
    pub step: Step,
    pub error: String,
}

impl Runtime {
    /// An empty data plane whose ports `dataplane`'s workers will serve.
    pub fn new(state_dir: PathBuf, ledger: Ledger, dataplane: &Dataplane) -> std::io::Result<Self> {
        let allowed = config::allowed_cpus();
        if dataplane.workers.is_none()
            && dataplane.cpus == config::default_cpus_of(allowed.as_deref())
            && let Some(note) = config::default_cpus_shortfall(allowed.as_deref())
        {
            tracing::warn!("{note}");
        }
        let switch = Switch::new();
        let workers = Arc::new(Workers::start(
            &switch,
            workers::Options {
                workers: dataplane.worker_count(),
                busy_poll_us: dataplane.busy_poll_us,
                cpus: dataplane.cpus.iter().map(|&c| c as usize).collect(),
            },
        )?);
        let cfg = super::empty_config(dataplane);
        let published = Arc::new(ArcSwap::from_pointee(State::empty(cfg.clone())));
        Ok(Runtime {
            switch,
            cfg,
            state_dir,
            ports: BTreeMap::new(),
            nis: BTreeMap::new(),
            vifs: BTreeMap::new(),
            failed: BTreeMap::new(),
            pods: BTreeMap::new(),
            shared: BTreeMap::new(),
            ledger,
            retired: Arc::default(),
            published,
            apply_info: ApplyInfo::default(),
            workers,
        })
    }

    /// What could not be made: interfaces, and routers of local NIs.
    pub fn damaged(&self) -> super::plan::Damaged {
        super::plan::Damaged {
            vifs: self.failed.keys().cloned().collect(),
            routers: self
                .nis
                .iter()
                .filter(|(_, n)| n.cfg.local.is_some() && n.router.is_none())
                .map(|(name, _)| name.clone())
                .collect(),
        }
    }

    /// Runs a plan's steps towards `new`; a failed step is reported and the
    /// rest still run, so the data plane is as close to `new` as it can be.
    pub fn execute(&mut self, plan: &Plan, new: &Config) -> Vec<StepError> {
        let mut errors = Vec::new();
        // The new VLANs hold while the steps run, as they will after.
        self.sync_vlans(new);
        // Tests (debug builds) stretch an apply to kill the daemon between steps.
        let pause = cfg!(debug_assertions)
            .then(|| std::env::var("NISWITCH_TEST_STEP_PAUSE_MS").ok())
            .flatten()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        for step in &plan.steps {
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
            tracing::debug!(step = %step, "apply");
            if let Err(e) = self.step(step, new) {
                tracing::warn!(step = %step, error = %format!("{e:#}"), "step failed");
                errors.push(StepError {
                    step: step.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
        self.sync_vlans(new);
        // A shared domain no port holds any more is forgotten.
        self.shared.retain(|_, d| Arc::strong_count(d) > 1);
        self.cfg = new.clone();
        self.publish();
        errors
    }

    /// Hands a port to a worker, which serves it from now on.
    pub fn serve(&mut self, entry: &Arc<PortEntry>) -> std::io::Result<()> {
        self.workers.attach(entry)
    }

    /// Steers an app's or pod's multiqueue TAP by the sender's CPU when the
    /// workers are pinned; otherwise the TAP spreads flows by their hash
    /// (also when an earlier run left it steered).
    pub fn steer(&self, tap: &Tap) {
        if tap.queues() > 1
            && let Err(e) = tap.steer(self.workers.steering())
        {
            tracing::warn!(tap = tap.name(), error = %e, "cannot set how the TAP spreads flows");
        }
    }

    /// Waits until no worker serves `entries` (already removed) any more.
    pub fn join_rx(&mut self, entries: &[Arc<PortEntry>]) {
        self.workers.release(entries);
    }

    /// Makes the current objects the ones status and the threads see.
    pub fn publish(&self) {
        self.published.store(Arc::new(state::snapshot(self)));
    }

    /// Takes everything down: apps, NIs, ports; names given back to NICs.
    pub fn shutdown(mut self) {
        let empty = super::empty_config(&self.cfg.dataplane);
        let plan = super::plan::diff(&self.cfg, &empty, &Default::default());
        self.leave_pods();
        for e in self.execute(&plan, &empty) {
            tracing::warn!(step = %e.step, error = %e.error, "during shutdown");
        }
        self.workers.shutdown();
        self.published.store(Arc::new(State::empty(empty)));
    }
}
