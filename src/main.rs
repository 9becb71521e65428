//! The `niswitch` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use niswitch::config::{self, derive};
use niswitch::control::{self, Request, status};
use niswitch::services::flowlog;
use niswitch::{daemon, demo, privileges};

#[derive(Parser)]
#[command(
    name = "niswitch",
    version,
    about = "A pure-userspace software switch for edge network instances"
)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, default_value = control::DEFAULT_SOCKET)]
    control: PathBuf,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the data plane in the foreground until SIGINT/SIGTERM; SIGHUP
    /// re-reads the config file and applies it live.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Serve Prometheus metrics on ADDR:PORT at /metrics.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// Where leases and other state that must survive a restart live.
        #[arg(long, default_value = "/var/lib/niswitch")]
        state_dir: PathBuf,
    },
    /// Validate a config and print it normalized, with derived MACs and TAP names.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Push a new config to the running daemon: only what differs changes;
    /// if the connectivity probe fails, the previous config is restored.
    Apply {
        #[arg(long)]
        config: PathBuf,
        /// Seconds the probe may take before the previous config is restored (up to 600).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=600))]
        probe_timeout: u64,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show ports, network instances and apps of the running daemon.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show flow records (allowed and dropped flows of app interfaces with ACLs).
    Flows {
        /// Keep printing new records as they are written.
        #[arg(long)]
        follow: bool,
        /// Print the JSON records instead of one line each.
        #[arg(long)]
        json: bool,
        /// Read this state directory instead of asking the running daemon.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Print the MAC derived for an app interface (SPEC §4).
    Mac {
        #[arg(long)]
        app: Uuid,
        #[arg(long)]
        ni: Uuid,
        #[arg(long)]
        ifnum: u8,
        #[arg(long, default_value_t = 0)]
        appnum: u8,
    },
    /// Print the address kubelet should use as --node-ip (SPEC §7.1).
    NodeIp {
        /// The address(es) of the interface whose subnet holds this VIP (one per family).
        #[arg(long, value_delimiter = ',', value_name = "IP[,IP]")]
        vip: Vec<String>,
        /// ipv4 (the default, or ipv6 when only IPv6 has a default route), ipv6, or dual.
        #[arg(long, value_enum)]
        family: Option<niswitch::nodeip::Family>,
        /// Print {"node_ip": …, "ipv4": …, "ipv6": …}.
        #[arg(long)]
        json: bool,
    },
    /// Build a sandbox of namespaces, run niswitch in it, show it working, tear it down.
    Demo {
        /// Keep going after a failed step (still exits non-zero).
        #[arg(long)]
        keep_going: bool,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("niswitch: {msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    niswitch::logging::init(&cli.log_level);
    match cli.cmd {
        Cmd::Check { config } => match config::load(&config) {
            Ok(cfg) => {
                print!("{}", config::to_yaml(&cfg));
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in &errs {
                    eprintln!("{}: {e}", config.display());
                }
                eprintln!("{} problem(s) in {}", errs.len(), config.display());
                ExitCode::from(1)
            }
        },
        Cmd::Mac {
            app,
            ni,
            ifnum,
            appnum,
        } => {
            println!("{}", derive::vif_mac(&app, &ni, ifnum, appnum));
            ExitCode::SUCCESS
        }
        Cmd::Run {
            config,
            metrics,
            state_dir,
        } => {
            if let Err(m) = privileges::require_net_admin("run") {
                return fail(m);
            }
            let opts = daemon::RunOptions {
                config,
                control: cli.control,
                state_dir,
                metrics,
            };
            match daemon::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("{e:#}")),
            }
        }
        Cmd::Apply {
            config,
            probe_timeout,
            dry_run,
        } => apply(&cli.control, &config, probe_timeout, dry_run),
        Cmd::Status { json } => match control::call(&cli.control, &Request::Status) {
            Ok(v) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    match serde_json::from_value::<status::Status>(v) {
                        Ok(s) => print!("{}", status::render(&s)),
                        Err(e) => return fail(format!("unexpected status reply: {e}")),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Flows {
            follow,
            json,
            state_dir,
        } => {
            let dir = match state_dir.map_or_else(|| daemon_state_dir(&cli.control), Ok) {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            flows(&dir, json, follow)
        }
        Cmd::NodeIp { vip, family, json } => match niswitch::nodeip::command(&vip, family, json) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Demo { keep_going } => {
            if let Err(m) = privileges::require_net_admin("demo") {
                return fail(m);
            }
            match demo::run(keep_going) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => fail(format!("{e:#}")),
            }
        }
    }
}

fn flows(dir: &std::path::Path, json: bool, follow: bool) -> ExitCode {
    match flowlog::show(dir, json, follow, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The running daemon's state directory, asked over the control socket.
fn daemon_state_dir(control: &std::path::Path) -> Result<PathBuf, String> {
    let info = control::call(control, &Request::Info)
        .map_err(|e| format!("{e} (or name the directory with --state-dir)"))?;
    info["state_dir"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "the daemon did not say where its state is; pass --state-dir".into())
}

/// `niswitch apply`: checks the file here first (same messages as `check`),
/// then has the daemon plan, apply and probe it.
fn apply(control: &std::path::Path, file: &std::path::Path, probe: u64, dry_run: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
    };
    if let Err(errs) = config::parse(&text) {
        for e in &errs {
            eprintln!("{}: {e}", file.display());
        }
        return fail(format!(
            "refused: {} problem(s) in {}; nothing was changed",
            errs.len(),
            file.display()
        ));
    }
    let req = Request::Apply {
        config: text,
        source: file.display().to_string(),
        probe_timeout: probe,
        dry_run,
    };
    // Room for the steps, the probe and a revert after it.
    let wait = std::time::Duration::from_secs(probe.saturating_mul(2).saturating_add(120));
    match control::call_with_timeout(control, &req, wait) {
        Ok(v) => {
            let steps: Vec<&str> = v["plan"]
                .as_array()
                .map_or_else(Vec::new, |a| a.iter().filter_map(|s| s.as_str()).collect());
            if steps.is_empty() {
                println!("nothing to change");
            }
            for (i, s) in steps.iter().enumerate() {
                println!("{:>3}. {s}", i + 1);
            }
            if let Some(w) = v["warnings"].as_array() {
                w.iter()
                    .filter_map(|w| w.as_str())
                    .for_each(|w| eprintln!("warning: {w}"));
            }
            if !dry_run {
                println!(
                    "applied in {} ms; probe passed in {} ms",
                    v["applied_ms"], v["probe_ms"]
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
