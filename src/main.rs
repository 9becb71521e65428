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
    /// Run the data plane in the foreground until SIGINT/SIGTERM.
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
        /// The daemon's state directory.
        #[arg(long, default_value = "/var/lib/niswitch")]
        state_dir: PathBuf,
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
    /// Build a sandbox of namespaces, run niswitch in it, show it working, tear it down.
    Demo {
        /// Keep going after a failed step (still exits non-zero).
        #[arg(long)]
        keep_going: bool,
    },
}

fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("niswitch: {msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log_level);
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
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    for e in &errs {
                        eprintln!("{}: {e}", config.display());
                    }
                    return fail(format!(
                        "refusing to run: {} problem(s) in {}",
                        errs.len(),
                        config.display()
                    ));
                }
            };
            if let Err(m) = privileges::require_net_admin("run") {
                return fail(m);
            }
            match daemon::run(
                cfg,
                daemon::RunOptions {
                    control: cli.control,
                    state_dir,
                    metrics,
                },
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("{e:#}")),
            }
        }
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
        } => match flowlog::show(&state_dir, json, follow, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
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
