//! TAPs are persistent while niswitch runs, so apps and the host keep their
//! interfaces (and addresses) through a crash and a restart. This module
//! records which TAPs we made — only those may be re-attached after a
//! restart — and removes the ones a restarted daemon no longer has.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ports::tap::{Tap, TapOptions};
use crate::ports::{ifctl, netns};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recorded {
    pub name: String,
    pub netns: Option<String>,
}

const FILE: &str = "taps.json";

/// The TAPs an earlier run recorded.
pub fn load(dir: &Path) -> Vec<Recorded> {
    let Ok(text) = std::fs::read_to_string(dir.join(FILE)) else {
        return Vec::new();
    };
    serde_json::from_str(&text).unwrap_or_else(|_| {
        tracing::warn!("ignoring unreadable {FILE}");
        Vec::new()
    })
}

/// Writes the list atomically (temp file + rename).
pub fn record(dir: &Path, taps: &[Recorded]) {
    let Ok(text) = serde_json::to_string_pretty(taps) else {
        return;
    };
    let tmp = dir.join(format!("{FILE}.tmp"));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(FILE));
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

/// Deletes recorded TAPs that the config no longer names.
pub fn remove_stale(recorded: &[Recorded], cfg: &Config) {
    let want = wanted(cfg);
    for r in recorded.iter().filter(|r| !want.contains(r)) {
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
}
