//! The daemon's background threads. Each reads the published snapshot anew
//! on every round, so what an apply adds or removes is seen at once: the
//! link watch, MAC-table aging, and the flow logger.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use super::runtime::Retired;
use super::state::{PortState, State};
use crate::ports::ifctl;
use crate::ports::linkwatch::LinkWatch;
use crate::services::flowlog::{FlowLog, FlowRecord};
use crate::switch::now_secs;

type Published = Arc<ArcSwap<State>>;

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .with_context(|| format!("starting the {name} thread"))
}

/// Follows the NICs' link state (netlink events, and a full resync when
/// events were lost).
pub fn link_watch(st: Published, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    let watch = LinkWatch::open().context("opening the netlink link watch")?;
    spawn("linkwatch", move || {
        let set = |p: &PortState, up: bool| {
            if p.nic.link_up.swap(up, Relaxed) != up {
                tracing::info!(port = %p.name, up, "link state changed");
            }
        };
        watch.run(
            &stop,
            |ev| {
                st.load()
                    .ports
                    .iter()
                    .filter(|p| p.ifindex == ev.ifindex)
                    .for_each(|p| set(p, ev.running))
            },
            || {
                st.load()
                    .ports
                    .iter()
                    .for_each(|p| set(p, ifctl::is_running(&p.nic.name)))
            },
        )
    })
}

/// Ages the MAC tables every five seconds.
pub fn housekeeping(st: Published, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    spawn("housekeeping", move || {
        let mut tick = 0u32;
        while !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            tick += 1;
            if tick % 20 == 0 {
                for d in st.load().domains() {
                    d.sweep_aged(now_secs());
                }
            }
        }
    })
}

/// Writes the flow records of every filtered app or pod interface four times a
/// second, the last ones of retired filters, and all of them on the way out.
pub fn flow_logger(
    st: Published,
    retired: Retired,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    spawn("flowlog", move || {
        let log = FlowLog::new(&dir);
        let write = |records: Vec<FlowRecord>| {
            if !records.is_empty()
                && let Err(e) = log.write(&records)
            {
                tracing::warn!(error = %e, "could not write flow records");
            }
        };
        let gone = || {
            let list = retired.lock().map(|mut r| std::mem::take(&mut *r));
            list.unwrap_or_default()
                .iter()
                .flat_map(|f| f.flush())
                .collect::<Vec<_>>()
        };
        // Records of every current filter: swept (ended flows) or all.
        let current = |all: bool| {
            let now = st.load();
            let vifs = now.vifs.iter().filter_map(|v| v.filter.as_ref());
            let filters = vifs.chain(now.pods.iter().filter_map(|p| p.filter.as_ref()));
            filters
                .flat_map(|f| if all { f.flush() } else { f.sweep() })
                .collect::<Vec<_>>()
        };
        while !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            write(current(false));
            write(gone());
        }
        write(current(true));
        write(gone());
    })
}
