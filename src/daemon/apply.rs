//! One live apply: validate, plan against the running config, run the
//! steps, probe, and then keep the new config as the last good one — or
//! run the plan back to the previous config and say which probe failed.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::plan::{self, Plan};
use super::runtime::Runtime;
use super::{lastgood, probe};
use crate::config::{self, Config};

/// The longest probe an apply may ask for.
pub const MAX_PROBE: Duration = Duration::from_secs(600);

/// What the main thread does while a probe waits: serve pod requests, look
/// at signals; true asks the apply to stop (SIGTERM came) and revert.
pub type Between<'a> = &'a mut dyn FnMut(&mut Runtime) -> bool;

/// What `niswitch apply` (or SIGHUP) asks for.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// The config text.
    pub text: String,
    /// Where it came from, for messages (a file name).
    pub source: String,
    pub probe_timeout: Duration,
    pub dry_run: bool,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The steps, as sentences.
    pub plan: Vec<String>,
    pub dry_run: bool,
    /// Time to run the steps, and then to pass the probe.
    pub applied_ms: u64,
    pub probe_ms: u64,
    /// App interfaces that could not be made (the rest runs).
    pub warnings: Vec<String>,
}

fn steps_text(p: &Plan) -> Vec<String> {
    p.steps.iter().map(|s| s.to_string()).collect()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Runtime {
    /// Applies a config; the Err text is what the user reads.
    pub fn apply(&mut self, req: &ApplyRequest, between: Between) -> Result<ApplyReport, String> {
        let result = self.try_apply(req, between);
        if !req.dry_run {
            let a = &mut self.apply_info;
            a.count += 1;
            a.last_at = Some(now_rfc3339());
            let (kind, msg) = match &result {
                Ok(_) => ("ok", String::new()),
                Err((kind, msg)) => {
                    a.failed += 1;
                    (*kind, msg.clone())
                }
            };
            a.last_result = kind.to_string();
            a.last_message = msg;
            if result.is_ok() {
                self.reset_bpdu_guards();
            }
            self.publish();
        }
        result.map_err(|(_, m)| m)
    }

    /// An apply enables again the interfaces BPDU guard disabled.
    fn reset_bpdu_guards(&self) {
        let vifs = self.vifs.values().filter_map(|v| v.entry.as_ref());
        let pods = self.pods.values().filter_map(|p| p.entry.as_ref());
        let nics = self.ports.values().map(|p| &p.nic);
        for e in vifs.chain(pods).chain(nics) {
            e.reset_bpdu_guard();
        }
    }

    fn try_apply(
        &mut self,
        req: &ApplyRequest,
        between: Between,
    ) -> Result<ApplyReport, (&'static str, String)> {
        let new = config::parse(&req.text).map_err(|errs| {
            let mut lines: Vec<String> = errs.iter().map(|e| format!("{}: {e}", req.source)).collect();
            lines.push(format!(
                "refused: {} problem(s) in {}; nothing was changed (fix them; `niswitch check --config FILE` shows them too)",
                errs.len(),
                req.source
            ));
            ("refused", lines.join("\n"))
        })?;
        let old = self.cfg.clone();
        let plan = plan::diff(&old, &new, &self.damaged());
        if req.dry_run {
            return Ok(ApplyReport {
                plan: steps_text(&plan),
                dry_run: true,
                applied_ms: 0,
                probe_ms: 0,
                warnings: Vec::new(),
            });
        }
        let known = probe::host_gateways(&old);
        lastgood::begin(&self.state_dir);
        let t0 = Instant::now();
        let errors = self.execute(&plan, &new);
        let applied_ms = t0.elapsed().as_millis() as u64;
        let failed = match errors.first() {
            Some(e) => Err(format!("step \"{}\" failed: {}", e.step, e.error)),
            // Nothing changed: nothing to prove.
            None if plan.steps.is_empty() => Ok(()),
            None => self
                .probe(&new, &known, req.probe_timeout.min(MAX_PROBE), between)
                .map_err(|why| format!("the probe failed: {why}")),
        };
        let probe_ms = t0.elapsed().as_millis() as u64 - applied_ms;
        if let Err(why) = failed {
            let back = self.revert(&old);
            lastgood::end(&self.state_dir);
            return Err(("reverted", format!("{why}; {back}")));
        }
        lastgood::save(&self.state_dir, &req.text);
        lastgood::end(&self.state_dir);
        // Kept: pods whose NI it removed go now (a revert would have kept them).
        self.drop_orphan_pods();
        tracing::info!(steps = plan.steps.len(), applied_ms, probe_ms, source = %req.source, "config applied");
        Ok(ApplyReport {
            plan: steps_text(&plan),
            dry_run: false,
            applied_ms,
            probe_ms,
            warnings: self
                .failed
                .values()
                .map(|f| format!("{}: {}", f.app, f.error))
                .collect(),
        })
    }

    /// Probes the running data plane for `cfg`, serving `between` each round.
    fn probe(
        &mut self,
        cfg: &Config,
        known: &std::collections::BTreeMap<String, std::net::Ipv4Addr>,
        timeout: Duration,
        between: Between,
    ) -> Result<(), String> {
        let mut p = probe::Probe::new(cfg, known, timeout);
        loop {
            if let Some(done) = p.round(&self.published.load()) {
                return done;
            }
            for _ in 0..4 {
                if between(self) {
                    return Err("niswitch was told to stop".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Runs the plan back to `old`; says how that went.
    fn revert(&mut self, old: &Config) -> String {
        let back = plan::diff(&self.cfg, old, &self.damaged());
        let errors = self.execute(&back, old);
        if errors.is_empty() {
            tracing::warn!("apply failed; the previous config was restored");
            "the previous config was restored".into()
        } else {
            let e: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.step, e.error))
                .collect();
            tracing::error!(errors = %e.join("; "), "restoring the previous config failed in part");
            format!(
                "restoring the previous config failed in part: {}",
                e.join("; ")
            )
        }
    }
}
