//! The running daemon: a reconciler of desired state. A config becomes a
//! plan against what runs (`plan`), whose steps change the data plane
//! (`steps` on the `runtime`); a probe decides whether the new config is
//! kept (`apply`, `lastgood`). Starting is an apply from nothing, stopping
//! one to nothing. The main thread owns the runtime and serializes applies
//! from the control socket and SIGHUP; background threads read the
//! published snapshot (`state`, `workers`).

mod apply;
mod lastgood;
mod mainloop;
mod nic;
mod plan;
mod pods;
mod probe;
mod records;
mod runtime;
pub mod signals;
mod state;
mod steps;
mod vlans;
mod workers;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::config::{self, Config};
use crate::control::{self, Handler, Request};
use crate::notify;
pub use apply::{ApplyReport, ApplyRequest};
use mainloop::{Job, MainLoop, Work};
use runtime::Runtime;
pub use state::State;

/// The probe timeout of SIGHUP and of an apply that names none.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `niswitch run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    pub control: PathBuf,
    pub state_dir: PathBuf,
    pub metrics: Option<std::net::SocketAddr>,
}

/// A config with nothing in it but the running `dataplane` (which only a
/// new start changes): where a start begins and a stop ends.
pub(crate) fn empty_config(dataplane: &config::Dataplane) -> Config {
    Config {
        version: 1,
        ports: Vec::new(),
        network_instances: Vec::new(),
        apps: Vec::new(),
        dataplane: dataplane.clone(),
    }
}

/// The config to start from: the file given, or the last good one when the
/// file is invalid or unreadable, or when the last run died in an apply.
fn startup_config(opts: &RunOptions) -> Result<(Config, String, String)> {
    let file = opts.config.display().to_string();
    let given = std::fs::read_to_string(&opts.config)
        .map_err(|e| vec![format!("{file}: cannot read it: {e}")])
        .and_then(|t| match config::parse(&t) {
            Ok(c) => Ok((c, t)),
            Err(errs) => Err(errs.iter().map(|e| format!("{file}: {e}")).collect()),
        });
    let last = lastgood::load(&opts.state_dir);
    let from_last = |why: &str| -> Result<(Config, String, String)> {
        let text = last.clone().context("no last good config")?;
        let cfg =
            config::parse(&text).map_err(|_| anyhow::anyhow!("the last good config is invalid"))?;
        let src = lastgood::path(&opts.state_dir).display().to_string();
        eprintln!("niswitch: {why}; starting from the last good config {src}");
        Ok((cfg, text, src))
    };
    if lastgood::interrupted(&opts.state_dir) && last.is_some() {
        lastgood::end(&opts.state_dir);
        return from_last("the last run ended in the middle of an apply");
    }
    match given {
        Ok((cfg, text)) => Ok((cfg, text, file)),
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            if last.is_none() {
                bail!(
                    "refusing to run: {} problem(s) in {file}, and no last good config in {}",
                    problems.len(),
                    opts.state_dir.display()
                );
            }
            from_last(&format!("{} problem(s) in {file}", problems.len()))
        }
    }
}

/// Runs the data plane until SIGINT or SIGTERM.
pub fn run(opts: RunOptions) -> Result<()> {
    signals::block().context("blocking signals")?;
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating state directory {}", opts.state_dir.display()))?;
    let (cfg, text, source) = startup_config(&opts)?;
    let mut ledger = records::Ledger::open(&opts.state_dir);
    ledger.clean_up(&cfg);
    let mut rt = Runtime::new(opts.state_dir.clone(), ledger, &cfg.dataplane)
        .context("starting the data plane's workers")?;
    let start = plan::diff(&empty_config(&cfg.dataplane), &cfg, &Default::default());
    let errors = rt.execute(&start, &cfg);
    if let Some(e) = errors.first() {
        rt.shutdown();
        bail!("{}: {}", e.step, e.error);
    }
    rt.restore_pods();
    let stop = Arc::new(AtomicBool::new(false));
    let (jobs_tx, jobs) = mpsc::channel::<Job>();
    let threads = match start_workers(&opts, &rt, jobs_tx, &stop) {
        Ok(t) => t,
        Err(e) => {
            rt.shutdown();
            return Err(e);
        }
    };
    tracing::info!(control = %opts.control.display(), config = %source, "niswitch is running");
    notify::ready();
    let sig = MainLoop::new(&jobs, &cfg, text).run(&mut rt, &opts.config);
    tracing::info!(signal = sig, "shutting down");
    notify::stopping();
    rt.shutdown();
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    tracing::info!("niswitch stopped");
    Ok(())
}

fn start_workers(
    opts: &RunOptions,
    rt: &Runtime,
    jobs: mpsc::Sender<Job>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>> {
    let st = rt.published.clone();
    let mut threads = vec![
        workers::link_watch(st.clone(), stop.clone())?,
        workers::housekeeping(st.clone(), stop.clone())?,
        workers::flow_logger(
            st.clone(),
            rt.retired.clone(),
            opts.state_dir.clone(),
            stop.clone(),
        )?,
    ];
    if let Some(addr) = opts.metrics {
        let s = st.clone();
        let snap: Arc<dyn Fn() -> Option<control::status::Status> + Send + Sync> =
            Arc::new(move || Some(s.load().status()));
        threads.push(control::metrics::serve(addr, snap, stop.clone())?);
    }
    let handler = Arc::new(ControlHandler {
        published: st,
        jobs: std::sync::Mutex::new(jobs),
        config: opts.config.clone(),
    });
    threads.push(
        control::serve(opts.control.clone(), handler, stop.clone())
            .context("starting the control socket")?,
    );
    Ok(threads)
}

/// Answers the control socket: status from the published snapshot, applies
/// handed to the main thread (one at a time, in order of arrival).
struct ControlHandler {
    published: Arc<ArcSwap<State>>,
    jobs: std::sync::Mutex<mpsc::Sender<Job>>,
    config: PathBuf,
}

impl ControlHandler {
    /// Runs `work` on the main thread, after the work queued before it.
    fn on_main(&self, work: Work, pod: bool) -> Result<Value, String> {
        let (tx, rx) = mpsc::channel();
        let sent = self
            .jobs
            .lock()
            .map_err(|_| "the daemon's work queue failed; restart niswitch".to_string())?
            .send(Job {
                work,
                reply: tx,
                pod,
            });
        sent.map_err(|_| "niswitch is shutting down; try again once it runs".to_string())?;
        rx.recv()
            .map_err(|_| "niswitch stopped before it answered".to_string())?
    }
}

impl Handler for ControlHandler {
    fn handle(&self, req: Request) -> Result<Value, String> {
        match req {
            Request::Status => {
                serde_json::to_value(self.published.load().status()).map_err(|e| e.to_string())
            }
            Request::Info => {
                let st = self.published.load();
                Ok(json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "pid": std::process::id(),
                    "config": self.config,
                    "state_dir": st.state_dir,
                }))
            }
            Request::Pod(p) => self.on_main(Box::new(move |rt, _| Ok(rt.pod_request(p))), true),
            Request::Apply {
                config,
                source,
                probe_timeout,
                dry_run,
            } => {
                let req = ApplyRequest {
                    text: config,
                    source,
                    probe_timeout: Duration::from_secs(probe_timeout),
                    dry_run,
                };
                let work: Work = Box::new(move |rt, between| {
                    let report = rt.apply(&req, between)?;
                    serde_json::to_value(report).map_err(|e| e.to_string())
                });
                self.on_main(work, false)
            }
        }
    }
}
