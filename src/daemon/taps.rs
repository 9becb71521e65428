//! TAPs are persistent while niswitch runs, so apps and the host keep their
//! interfaces (and addresses) through a crash and a restart. This module
//! records which TAPs we made, and removes the ones a restarted daemon no
//! longer has in its config.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ports::netns;
use crate::ports::tap::{Tap, TapOptions};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recorded {
    pub name: String,
    pub netns: Option<String>,
}

const FILE: &str = "taps.json";

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

fn is_tap(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}/tun_flags")).exists()
}

/// Deletes recorded TAPs that the config no longer names.
pub fn remove_stale(dir: &Path, cfg: &Config) {
    let Ok(text) = std::fs::read_to_string(dir.join(FILE)) else {
        return;
    };
    let Ok(list) = serde_json::from_str::<Vec<Recorded>>(&text) else {
        tracing::warn!("ignoring unreadable {FILE}");
        return;
    };
    for r in list {
        let wanted = cfg
            .apps
            .iter()
            .flat_map(|a| &a.interfaces)
            .any(|v| v.tap == r.name && v.netns == r.netns);
        if wanted {
            continue;
        }
        let name = r.name.clone();
        let res = netns::run_in(r.netns.as_deref(), move || {
            if is_tap(&name) {
                let t = Tap::open(&TapOptions {
                    name: name.clone(),
                    persist: false,
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
