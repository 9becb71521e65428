//! The running data plane: builds domains and ports from a validated config,
//! runs one receive thread per port, follows link state, answers the control
//! socket, and on SIGINT/SIGTERM takes everything down again, giving renamed
//! NICs their names back.

mod nic;
pub mod signals;
mod state;
mod taps;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{App, Config, L4Proto, NiType, Vif};
use crate::control;
use crate::ipstack::{MapRule, Router, RouterSetup, UplinkPlan};
use crate::ports::linkwatch::LinkWatch;
use crate::ports::tap::{Tap, TapOptions};
use crate::ports::{ifctl, netns};
use crate::services::acl::{Acl, HostCache};
use crate::services::dhcp::Client;
use crate::services::flowlog::{FlowLog, FlowRecord};
use crate::switch::filter::{VifFilter, VifIdent};
use crate::switch::{Domain, PortRole, PortSpec, Switch, now_secs};
pub use state::State;

/// Options of `niswitch run` besides the config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub control: PathBuf,
    pub state_dir: PathBuf,
    pub metrics: Option<std::net::SocketAddr>,
}

/// Everything the daemon created, so it can be taken down in order.
struct Running {
    state: Arc<State>,
    nics: Vec<nic::OpenedNic>,
    vif_taps: Vec<Arc<Tap>>,
    routers: Vec<Arc<Router>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// The ACL filter of an app interface that has `acls`.
fn vif_filter(app: &App, vif: &Vif, ni: &state::NiState) -> Option<Arc<VifFilter>> {
    let list = vif.acls.as_ref()?;
    let ident = VifIdent {
        app: app.name.clone(),
        app_uuid: app.uuid.to_string(),
        ni: vif.ni.clone(),
        vif: vif.tap.clone(),
    };
    let mapped = vif
        .port_maps
        .iter()
        .map(|m| match m.protocol {
            L4Proto::Tcp => (6, m.app_port),
            L4Proto::Udp => (17, m.app_port),
        })
        .collect();
    Some(Arc::new(VifFilter::new(
        ident,
        Acl::compile(list),
        ni.cfg.local.as_ref().map(|l| l.gateway),
        mapped,
        Some(ni.hosts.clone()),
    )))
}

/// Writes the flow records of every filtered app interface, once a second,
/// and all of them on the way out.
fn flow_logger(state: &State, state_dir: &Path, stop: &AtomicBool) {
    let filters: Vec<Arc<VifFilter>> = state
        .vifs
        .iter()
        .filter_map(|v| v.entry.filter.clone())
        .collect();
    let log = FlowLog::new(state_dir);
    let write = |records: Vec<FlowRecord>| {
        if let Err(e) = log.write(&records) {
            tracing::warn!(error = %e, "could not write flow records");
        }
    };
    while !stop.load(Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        write(filters.iter().flat_map(|f| f.sweep()).collect());
    }
    write(filters.iter().flat_map(|f| f.flush()).collect());
}

/// Runs the data plane until SIGINT or SIGTERM.
pub fn run(cfg: Config, opts: RunOptions) -> Result<()> {
    signals::block().context("blocking signals")?;
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating state directory {}", opts.state_dir.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut run = Running {
        state: Arc::new(State::empty(cfg.clone())),
        nics: Vec::new(),
        vif_taps: Vec::new(),
        routers: Vec::new(),
        threads: Vec::new(),
        stop: stop.clone(),
    };
    let built = build(&cfg, &opts, &mut run);
    if let Err(e) = built {
        teardown(run, &opts);
        return Err(e);
    }
    tracing::info!(control = %opts.control.display(), "niswitch is running");
    let sig = loop {
        if let Some(s) = signals::wait(500) {
            break s;
        }
    };
    tracing::info!(signal = sig, "shutting down");
    teardown(run, &opts);
    Ok(())
}

fn build(cfg: &Config, opts: &RunOptions, run: &mut Running) -> Result<()> {
    let switch = Switch::new();
    // Only TAPs an earlier run recorded may be re-attached; any other
    // interface with a wanted name is refused.
    let recorded = taps::load(&opts.state_dir);
    taps::remove_stale(&recorded, cfg);
    let mut made: Vec<taps::Recorded> = Vec::new();
    // One domain per port, per port-less switch NI, per local NI.
    let mut port_domains: HashMap<String, Arc<Domain>> = HashMap::new();
    let mut state = State::empty(cfg.clone());
    state.switch = switch.clone();
    for p in &cfg.ports {
        let d = Domain::new(format!("port:{}", p.name));
        port_domains.insert(p.name.clone(), d.clone());
        let host = p.host_interface.as_ref().map(|h| taps::Recorded {
            name: h.clone(),
            netns: None,
        });
        let reattach = host.as_ref().is_some_and(|h| recorded.contains(h));
        let opened = nic::open(p, reattach)
            .with_context(|| format!("opening port `{}` (device {})", p.name, p.device))?;
        if let Some(h) = host {
            made.push(h);
            taps::record(&opts.state_dir, &made);
        }
        let sock = opened.sock.clone();
        let nic_entry = switch.add_port(
            &d,
            PortSpec {
                name: opened.nic_name.clone(),
                role: PortRole::Nic {
                    port: p.name.clone(),
                },
                io: Box::new(sock),
                mtu: opened.mtu,
                own_mac: None,
                pinned: None,
                link_up: ifctl::is_running(&opened.nic_name),
                filter: None,
            },
        )?;
        let host_entry = match &opened.host {
            None => None,
            Some(tap) => Some(switch.add_port(
                &d,
                PortSpec {
                    name: tap.name().to_string(),
                    role: PortRole::Host {
                        port: p.name.clone(),
                    },
                    io: Box::new(tap.clone()),
                    mtu: opened.mtu,
                    own_mac: None,
                    // The host's MAC lives behind its TAP, never on the LAN side.
                    pinned: Some(opened.mac),
                    link_up: true,
                    filter: None,
                },
            )?),
        };
        state.ports.push(state::PortState {
            name: p.name.clone(),
            nic: nic_entry,
            host: host_entry,
            host_mac: opened.mac,
            ifindex: opened.sock.ifindex,
        });
        run.nics.push(opened);
    }
    for ni in &cfg.network_instances {
        let domain = match (&ni.kind, &ni.port) {
            (NiType::Switch, Some(p)) => port_domains
                .get(p)
                .cloned()
                .with_context(|| format!("NI `{}`: port `{p}` missing", ni.name))?,
            _ => Domain::new(format!("ni:{}", ni.name)),
        };
        let hosts = Arc::new(HostCache::default());
        let router = match &ni.local {
            None => None,
            Some(local) => {
                let clients = cfg
                    .apps
                    .iter()
                    .flat_map(|a| {
                        a.interfaces
                            .iter()
                            .filter(|v| v.ni == ni.name)
                            .map(move |v| Client {
                                mac: v.mac,
                                app: a.name.clone(),
                                fixed: v.ip,
                            })
                    })
                    .collect();
                let maps = cfg
                    .apps
                    .iter()
                    .flat_map(|a| a.interfaces.iter().filter(|v| v.ni == ni.name))
                    .flat_map(|v| {
                        v.port_maps.iter().map(|m| MapRule {
                            proto: m.protocol,
                            uplink_port: m.uplink_port,
                            app_mac: v.mac,
                            app_port: m.app_port,
                        })
                    })
                    .collect();
                let setup = RouterSetup {
                    ni_name: ni.name.clone(),
                    ni_uuid: ni.uuid,
                    local: local.clone(),
                    clients,
                    state_dir: opts.state_dir.clone(),
                    mtu: 1500,
                    uplinks: local
                        .uplinks
                        .iter()
                        .filter_map(|u| {
                            let port = state.ports.iter().find(|p| p.name == *u)?;
                            Some(UplinkPlan {
                                port: u.clone(),
                                cost: cfg.port(u).map_or(0, |p| p.cost),
                                domain: port.nic.domain.clone(),
                                nic: port.nic.clone(),
                            })
                        })
                        .collect(),
                    maps,
                    hosts: hosts.clone(),
                };
                let r = Router::start(&switch, &domain, setup, run.stop.clone())
                    .with_context(|| format!("starting the router of `{}`", ni.name))?;
                let r = Arc::new(r);
                run.routers.push(r.clone());
                Some(r)
            }
        };
        state.nis.push(state::NiState {
            cfg: ni.clone(),
            domain,
            router,
            hosts,
        });
    }
    for app in &cfg.apps {
        for vif in &app.interfaces {
            let ni = state
                .nis
                .iter()
                .find(|n| n.cfg.name == vif.ni)
                .context("unknown NI")?;
            let mtu = match &ni.cfg.port {
                Some(p) => state
                    .ports
                    .iter()
                    .find(|s| s.name == *p)
                    .map_or(1500, |s| s.nic.mtu.load(Relaxed)),
                None => 1500,
            };
            let rec = taps::Recorded {
                name: vif.tap.clone(),
                netns: vif.netns.clone(),
            };
            let topts = TapOptions {
                name: vif.tap.clone(),
                mac: Some(vif.mac),
                mtu: Some(mtu),
                persist: true,
                exclusive: !recorded.contains(&rec),
            };
            let tap = match netns::run_in(vif.netns.as_deref(), || Tap::open(&topts)) {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    // One app's problem (say, its namespace is missing) must
                    // not take the ports and the other apps down.
                    let where_ = vif
                        .netns
                        .as_ref()
                        .map(|n| format!(" in namespace `{n}`"))
                        .unwrap_or_default();
                    let msg = format!("creating TAP `{}`{where_}: {e}", vif.tap);
                    tracing::error!(app = %app.name, "{msg}; this interface stays down");
                    state.failed_vifs.push(state::FailedVif {
                        app: app.name.clone(),
                        app_uuid: app.uuid,
                        cfg: vif.clone(),
                        error: msg,
                    });
                    continue;
                }
            };
            made.push(rec);
            taps::record(&opts.state_dir, &made);
            run.vif_taps.push(tap.clone());
            let entry = switch.add_port(
                &ni.domain,
                PortSpec {
                    name: vif.tap.clone(),
                    role: PortRole::Vif {
                        app: app.name.clone(),
                        ni: vif.ni.clone(),
                        ifnum: vif.ifnum,
                    },
                    io: Box::new(tap),
                    mtu,
                    own_mac: Some(vif.mac),
                    pinned: None,
                    link_up: true,
                    filter: vif_filter(app, vif, ni),
                },
            )?;
            state.vifs.push(state::VifState {
                app: app.name.clone(),
                app_uuid: app.uuid,
                cfg: vif.clone(),
                entry,
            });
        }
    }
    let state = Arc::new(state);
    run.state = state.clone();
    // Receive threads.
    for e in state.all_ports() {
        let sw = switch.clone();
        let stop = run.stop.clone();
        let h = std::thread::Builder::new()
            .name(format!("rx-{}", e.name))
            .spawn(move || sw.serve(&e, &stop))?;
        run.threads.push(h);
    }
    // Flow records.
    let (st, stop, dir) = (state.clone(), run.stop.clone(), opts.state_dir.clone());
    run.threads.push(
        std::thread::Builder::new()
            .name("flowlog".into())
            .spawn(move || flow_logger(&st, &dir, &stop))?,
    );
    // Link state.
    let watch = LinkWatch::open().context("opening the netlink link watch")?;
    let (st, stop) = (state.clone(), run.stop.clone());
    run.threads.push(
        std::thread::Builder::new()
            .name("linkwatch".into())
            .spawn(move || {
                let set = |p: &state::PortState, up: bool| {
                    if p.nic.link_up.swap(up, Relaxed) != up {
                        tracing::info!(port = %p.name, up, "link state changed");
                    }
                };
                watch.run(
                    &stop,
                    |ev| {
                        st.ports
                            .iter()
                            .filter(|p| p.ifindex == ev.ifindex)
                            .for_each(|p| set(p, ev.running))
                    },
                    || {
                        st.ports
                            .iter()
                            .for_each(|p| set(p, ifctl::is_running(&p.nic.name)))
                    },
                )
            })?,
    );
    // MAC table aging.
    let (st, stop) = (state.clone(), run.stop.clone());
    run.threads.push(
        std::thread::Builder::new()
            .name("housekeeping".into())
            .spawn(move || {
                let mut tick = 0u32;
                while !stop.load(Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    tick += 1;
                    if tick % 20 == 0 {
                        for d in st.domains() {
                            d.table.sweep(now_secs(), None);
                        }
                    }
                }
            })?,
    );
    if let Some(addr) = opts.metrics {
        let weak = Arc::downgrade(&state);
        let snap: Arc<dyn Fn() -> Option<control::status::Status> + Send + Sync> =
            Arc::new(move || weak.upgrade().map(|s| s.status()));
        run.threads
            .push(control::metrics::serve(addr, snap, run.stop.clone())?);
    }
    run.threads.push(
        control::serve(
            opts.control.clone(),
            Arc::new(state::WeakState(Arc::downgrade(&state))),
            run.stop.clone(),
        )
        .context("starting the control socket")?,
    );
    Ok(())
}

fn teardown(run: Running, opts: &RunOptions) {
    let Running {
        state,
        nics,
        vif_taps,
        routers,
        threads,
        stop,
    } = run;
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    for r in routers {
        r.join();
    }
    for e in state.all_ports() {
        state.switch.remove_port(&e);
    }
    drop(state);
    for t in vif_taps {
        let _ = t.unpersist();
    }
    for n in nics {
        n.restore();
    }
    taps::record(&opts.state_dir, &[]);
    tracing::info!("niswitch stopped");
}
