//! The main thread's loop: it owns the runtime and does, one at a time, the
//! work the control socket hands it (applies, pod requests), SIGHUP
//! reloads, and the start's own probe; it looks at signals and kicks the
//! systemd watchdog every round, also while a probe waits (when pod requests
//! are served and applies wait their turn).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::apply::ApplyRequest;
use super::runtime::Runtime;
use super::{DEFAULT_PROBE_TIMEOUT, lastgood, probe, signals};
use crate::config::Config;
use crate::notify;

/// Work for the main thread; `between` serves others while it waits.
pub type Work = Box<
    dyn FnOnce(&mut Runtime, &mut dyn FnMut(&mut Runtime) -> bool) -> Result<Value, String> + Send,
>;

pub struct Job {
    pub work: Work,
    pub reply: mpsc::Sender<Result<Value, String>>,
    /// A pod request: served even while an apply's probe waits.
    pub pod: bool,
}

/// The start's own probe: a config that passes it becomes the last good one.
struct StartProbe {
    probe: probe::Probe,
    text: String,
    next: Instant,
}

pub struct MainLoop<'a> {
    jobs: &'a mpsc::Receiver<Job>,
    deferred: VecDeque<Job>,
    stop: Option<i32>,
    reload: bool,
    watchdog: Option<notify::Watchdog>,
    start: Option<StartProbe>,
}

impl<'a> MainLoop<'a> {
    pub fn new(jobs: &'a mpsc::Receiver<Job>, cfg: &Config, text: String) -> Self {
        let known = probe::host_gateways(cfg);
        MainLoop {
            jobs,
            deferred: VecDeque::new(),
            stop: None,
            reload: false,
            watchdog: notify::watchdog(),
            start: Some(StartProbe {
                probe: probe::Probe::new(cfg, &known, DEFAULT_PROBE_TIMEOUT),
                text,
                next: Instant::now(),
            }),
        }
    }

    /// Serves until SIGINT or SIGTERM, which it returns.
    pub fn run(&mut self, rt: &mut Runtime, config: &Path) -> i32 {
        loop {
            let job = self
                .deferred
                .pop_front()
                .or_else(|| self.jobs.recv_timeout(Duration::from_millis(50)).ok());
            if let Some(job) = job {
                let out = (job.work)(rt, &mut |rt: &mut Runtime| self.between(rt));
                let _ = job.reply.send(out);
            }
            self.signals();
            if let Some(sig) = self.stop {
                return sig;
            }
            if std::mem::take(&mut self.reload) {
                self.sighup(rt, config);
            }
            self.start_probe(rt);
            if let Some(w) = &mut self.watchdog {
                w.kick();
            }
        }
    }

    /// Takes every pending signal; a stop wins over a reload.
    fn signals(&mut self) {
        while let Some(sig) = signals::wait(0) {
            match sig {
                libc::SIGHUP => self.reload = true,
                s => self.stop = Some(s),
            }
        }
    }

    /// While an apply's probe waits: pod requests are served, other work
    /// waits; true when a stop signal came.
    fn between(&mut self, rt: &mut Runtime) -> bool {
        self.signals();
        if let Some(w) = &mut self.watchdog {
            w.kick();
        }
        while let Ok(job) = self.jobs.try_recv() {
            if job.pod {
                let out = (job.work)(rt, &mut |_: &mut Runtime| false);
                let _ = job.reply.send(out);
            } else {
                self.deferred.push_back(job);
            }
        }
        self.stop.is_some()
    }

    /// One round of the start's probe every 200 ms until it ends; a pass
    /// keeps the config as the last good one unless an apply came first.
    fn start_probe(&mut self, rt: &mut Runtime) {
        let Some(s) = self.start.as_mut().filter(|s| Instant::now() >= s.next) else {
            return;
        };
        s.next = Instant::now() + Duration::from_millis(200);
        let Some(done) = s.probe.round(&rt.published.load()) else {
            return;
        };
        match done {
            Ok(()) if rt.apply_info.count == 0 => lastgood::save(&rt.state_dir, &s.text),
            Ok(()) => {}
            Err(why) => tracing::warn!(
                "the starting config failed its probe ({why}); it is not kept as the last good config"
            ),
        }
        self.start = None;
    }

    /// SIGHUP: the `--config` file again, applied as `niswitch apply` does.
    fn sighup(&mut self, rt: &mut Runtime, config: &Path) {
        notify::reloading();
        let file = config.display().to_string();
        let outcome = std::fs::read_to_string(config)
            .map_err(|e| format!("cannot read {file}: {e}"))
            .and_then(|text| {
                let req = ApplyRequest {
                    text,
                    source: file.clone(),
                    probe_timeout: DEFAULT_PROBE_TIMEOUT,
                    dry_run: false,
                };
                rt.apply(&req, &mut |rt: &mut Runtime| self.between(rt))
            });
        match outcome {
            Ok(r) => {
                tracing::info!(steps = r.plan.len(), "SIGHUP: {file} applied");
                notify::status("running");
            }
            Err(e) => {
                tracing::error!("SIGHUP: {file} not applied: {e}");
                notify::status(&format!("reload failed: {e}"));
            }
        }
        notify::ready();
    }
}
