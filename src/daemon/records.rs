//! What niswitch made on the host, written down before it is made: the
//! TAPs (persistent while niswitch runs, so apps and the host keep their
//! interfaces through a crash), the NICs it changed (with their original
//! name, MTU and IPv6 state), and the pod interfaces the CNI plugin asked
//! for (attached again after a restart). After a crash, even
//! one in the middle of an apply, the next start removes recorded TAPs its
//! config no longer names and gives recorded NICs their names back, and
//! only recorded TAPs may be re-attached.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ports::tap::{Tap, TapOptions};
use crate::ports::{ifctl, netns};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recorded {
    pub name: String,
    pub netns: Option<String>,
}

pub use super::nic::Original;

/// A pod interface: what the CNI plugin asked for and what it was given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodRecord {
    pub network: String,
    pub ni: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub mac: crate::config::Mac,
    pub ip: Option<std::net::Ipv4Addr>,
    pub name: String,
}

const TAPS: &str = "taps.json";
const NICS: &str = "nics.json";
const PODS: &str = "pods.json";

/// The records, kept in the state directory.
pub struct Ledger {
    dir: PathBuf,
    taps: Vec<Recorded>,
    nics: Vec<Original>,
    pods: Vec<PodRecord>,
}

fn load<T: for<'de> Deserialize<'de>>(dir: &Path, file: &str) -> Vec<T> {
    let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
        return Vec::new();
    };
    serde_json::from_str(&text).unwrap_or_else(|_| {
        tracing::warn!("ignoring unreadable {file}");
        Vec::new()
    })
}

/// Writes a list atomically and durably (temp file, fsync, rename, fsync
/// of the directory).
fn write<T: Serialize>(dir: &Path, file: &str, list: &[T]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(list).map_err(std::io::Error::other)?;
    crate::durable::write(&dir.join(file), text.as_bytes())
}

/// Writes a record before something is made: failing, it is not made.
fn save<T: Serialize>(dir: &Path, file: &str, list: &[T]) -> std::io::Result<()> {
    write(dir, file, list).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot record it in {}: {e}", dir.join(file).display()),
        )
    })
}

/// Writes a record after something is gone: failing, the next start
/// looks for it in vain, which is harmless.
fn forget<T: Serialize>(dir: &Path, file: &str, list: &[T]) {
    if let Err(e) = write(dir, file, list) {
        tracing::warn!(file, error = %e, "could not update the record of what niswitch made");
    }
}

impl Ledger {
    /// The records an earlier run left.
    pub fn open(dir: &Path) -> Ledger {
        Ledger {
            dir: dir.to_path_buf(),
            taps: load(dir, TAPS),
            nics: load(dir, NICS),
            pods: load(dir, PODS),
        }
    }

    pub fn pods(&self) -> &[PodRecord] {
        &self.pods
    }

    pub fn add_pod(&mut self, p: PodRecord) -> std::io::Result<()> {
        self.pods
            .retain(|x| (&x.container_id, &x.ifname) != (&p.container_id, &p.ifname));
        self.pods.push(p);
        save(&self.dir, PODS, &self.pods)
    }

    pub fn remove_pod(&mut self, container_id: &str, ifname: &str) {
        self.pods
            .retain(|x| (x.container_id.as_str(), x.ifname.as_str()) != (container_id, ifname));
        forget(&self.dir, PODS, &self.pods);
    }

    pub fn has_tap(&self, t: &Recorded) -> bool {
        self.taps.contains(t)
    }

    pub fn add_tap(&mut self, t: Recorded) -> std::io::Result<()> {
        if self.taps.contains(&t) {
            return Ok(());
        }
        self.taps.push(t);
        save(&self.dir, TAPS, &self.taps)
    }

    pub fn remove_tap(&mut self, t: &Recorded) {
        self.taps.retain(|x| x != t);
        forget(&self.dir, TAPS, &self.taps);
    }

    /// What an earlier run recorded of the NIC `device`.
    pub fn nic(&self, device: &str) -> Option<&Original> {
        self.nics.iter().find(|n| n.device == device)
    }

    /// Records a NIC as it was, before niswitch changes it.
    pub fn add_nic(&mut self, o: Original) -> std::io::Result<()> {
        if self.nics.contains(&o) {
            return Ok(());
        }
        self.nics.retain(|n| n.device != o.device);
        self.nics.push(o);
        save(&self.dir, NICS, &self.nics)
    }

    pub fn remove_nic(&mut self, device: &str) {
        self.nics.retain(|n| n.device != device);
        forget(&self.dir, NICS, &self.nics);
    }

    /// Undoes what an earlier run left and `cfg` does not want: its TAPs
    /// are deleted, its renamed NICs get their names back.
    pub fn clean_up(&mut self, cfg: &Config) {
        let want = wanted(cfg);
        for r in self.taps.clone().into_iter().filter(|r| !want.contains(r)) {
            remove_tap(&r);
            self.remove_tap(&r);
        }
        // A NIC the config still names keeps its record: opening it again
        // restores its true original on the next clean exit.
        let keep = |o: &Original| {
            cfg.ports
                .iter()
                .any(|p| p.device == o.device && p.renamed_to == o.renamed_to)
        };
        for o in self.nics.clone().into_iter().filter(|o| !keep(o)) {
            super::nic::restore_original(&o);
            self.remove_nic(&o.device);
        }
    }
}

/// Every TAP a config asks for: host TAPs, then app VIFs.
pub fn wanted(cfg: &Config) -> Vec<Recorded> {
    let hosts = cfg
        .ports
        .iter()
        .filter_map(|p| p.host_interface.clone())
        .map(|name| Recorded { name, netns: None });
    let vifs = cfg
        .apps
        .iter()
        .flat_map(|a| &a.interfaces)
        .map(|v| Recorded {
            name: v.tap.clone(),
            netns: v.netns.clone(),
        });
    hosts.chain(vifs).collect()
}

fn remove_tap(r: &Recorded) {
    let name = r.name.clone();
    let res = netns::run_in(r.netns.as_deref(), move || {
        if ifctl::is_tap(&name) {
            let t = Tap::open(&TapOptions {
                name: name.clone(),
                ..Default::default()
            })?;
            t.unpersist()?;
        }
        Ok(())
    });
    match res {
        Ok(()) => tracing::info!(tap = %r.name, "removed TAP left by an earlier run"),
        Err(e) => tracing::debug!(tap = %r.name, error = %e, "stale TAP not removed"),
    }
}
