//! Opening a configured port: the NIC (renamed to `k<device>` when its host
//! TAP takes its name, or adopted as found after a crash) and, for a
//! management port, the host TAP carrying the NIC's own MAC. What the NIC
//! was like (name, MTU, IPv6 state) is handed to the caller to record
//! before anything changes; `restore` puts it back on a clean exit, and
//! `restore_original` after a crash.

use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Mac, Port};
use crate::ports::afpacket::AfPacket;
use crate::ports::steering::CpuSteering;
use crate::ports::tap::{Tap, TapOptions};
use crate::ports::{ifctl, rtnl};

pub struct OpenedNic {
    pub cfg: Port,
    /// The NIC's name while we run.
    pub nic_name: String,
    pub sock: Arc<AfPacket>,
    pub mac: Mac,
    pub mtu: u32,
    pub host: Option<Arc<Tap>>,
    renamed: bool,
    ipv6_was: Option<String>,
    mtu_was: Option<u32>,
}

/// A NIC as it was before niswitch changed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Original {
    pub device: String,
    /// The name niswitch gives it while it runs, if any.
    pub renamed_to: Option<String>,
    /// Its MTU, when niswitch sets one.
    pub mtu: Option<u32>,
    /// Its `disable_ipv6`, when niswitch turns IPv6 off (a management port).
    pub ipv6: Option<String>,
}

/// Puts a NIC that an earlier run changed back as it was (after a crash,
/// when the config no longer names it).
pub fn restore_original(o: &Original) {
    let name = match &o.renamed_to {
        Some(k) if ifctl::exists(k) && !ifctl::is_tap(k) && !ifctl::exists(&o.device) => {
            let ok = ifctl::set_up(k, false)
                .and_then(|_| ifctl::rename(k, &o.device))
                .and_then(|_| ifctl::set_up(&o.device, true));
            match ok {
                Ok(()) => {
                    tracing::info!(nic = %o.device, "gave a NIC renamed by an earlier run its name back")
                }
                Err(e) => {
                    tracing::warn!(nic = %k, error = %e, "could not give the NIC its name back")
                }
            }
            o.device.clone()
        }
        _ => o.device.clone(),
    };
    if let Some(m) = o.mtu {
        let _ = ifctl::set_mtu(&name, m);
    }
    if let Some(v) = &o.ipv6 {
        let _ = ifctl::write_sysctl(&ipv6_sysctl(&name), v);
    }
}

fn ipv6_sysctl(name: &str) -> String {
    format!("net/ipv6/conf/{name}/disable_ipv6")
}

/// What the NIC named `now` was like: `prior` (recorded by an earlier run
/// that changed it) wins over what is seen now.
fn original(cfg: &Port, now: &str, prior: Option<&Original>) -> Original {
    let mtu = cfg.mtu.and_then(|_| ifctl::mtu(now).ok());
    let ipv6 = cfg
        .management
        .then(|| std::fs::read_to_string(format!("/proc/sys/{}", ipv6_sysctl(now))).ok())
        .flatten()
        .map(|v| v.trim().to_string());
    Original {
        device: cfg.device.clone(),
        renamed_to: cfg.renamed_to.clone(),
        mtu: prior.and_then(|p| p.mtu).or(mtu),
        ipv6: prior.and_then(|p| p.ipv6.clone()).or(ipv6),
    }
}

/// Opens a configured port; `reattach` allows taking over the host TAP an
/// earlier run of niswitch left (and recorded). `record` is called with
/// what the NIC was like before anything changes; its error stops the open.
/// With `steering` (pinned workers) the NIC gets a socket per worker.
pub fn open(
    cfg: &Port,
    reattach: bool,
    prior: Option<&Original>,
    steering: Option<&CpuSteering>,
    record: &mut dyn FnMut(&Original) -> io::Result<()>,
) -> io::Result<OpenedNic> {
    let adopted = cfg
        .renamed_to
        .as_ref()
        .filter(|k| ifctl::exists(k) && !ifctl::is_tap(k));
    let orig = original(cfg, adopted.unwrap_or(&cfg.device), prior);
    record(&orig)?;
    let mut renamed = false;
    let nic_name = match &cfg.renamed_to {
        None => cfg.device.clone(),
        Some(k) => {
            let device_is_nic = ifctl::exists(&cfg.device) && !ifctl::is_tap(&cfg.device);
            if ifctl::exists(k) && !device_is_nic && !ifctl::is_tap(k) {
                // Our host TAP (or nothing) holds the device's name: `k` is
                // the NIC an earlier run renamed.
                tracing::info!(nic = %k, "adopting NIC renamed by an earlier run");
            } else if device_is_nic && !ifctl::exists(k) {
                let was_up = ifctl::flags(&cfg.device).is_ok_and(|f| f & libc::IFF_UP != 0);
                ifctl::set_up(&cfg.device, false)?;
                if let Err(e) = ifctl::rename(&cfg.device, k) {
                    if was_up {
                        let _ = ifctl::set_up(&cfg.device, true);
                    }
                    return Err(io::Error::new(
                        e.kind(),
                        format!("rename {} to {k}: {e}", cfg.device),
                    ));
                }
                tracing::info!(from = %cfg.device, to = %k, "renamed NIC");
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "NIC `{}` not found, or both it and `{k}` exist (refusing to guess which is the NIC)",
                        cfg.device
                    ),
                ));
            }
            renamed = true;
            k.clone()
        }
    };
    let rollback = |e: io::Error| {
        if renamed {
            let _ = ifctl::set_up(&nic_name, false);
            let _ = ifctl::rename(&nic_name, &cfg.device);
            let _ = ifctl::set_up(&cfg.device, true);
        }
        e
    };
    let mac = ifctl::mac(&nic_name).map_err(rollback)?;
    if let Some(m) = cfg.mtu {
        ifctl::set_mtu(&nic_name, m).map_err(rollback)?;
    }
    let mtu = ifctl::mtu(&nic_name).map_err(rollback)?;
    if orig.ipv6.is_some() {
        let _ = ifctl::write_sysctl(&ipv6_sysctl(&nic_name), "1");
    }
    let (mtu_was, ipv6_was) = (orig.mtu, orig.ipv6.clone());
    let sock = Arc::new(AfPacket::open(&nic_name, steering).map_err(rollback)?);
    if cfg.management {
        // The host now lives on its TAP; an address left on the NIC would
        // shadow it.
        match rtnl::flush_ipv4(sock.ifindex) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(nic = %nic_name, removed = n, "removed IPv4 addresses from the NIC (the host TAP carries them now)")
            }
            Err(e) => {
                tracing::warn!(nic = %nic_name, error = %e, "could not remove IPv4 addresses from the NIC")
            }
        }
    }
    let host = match &cfg.host_interface {
        None => None,
        Some(h) => {
            let tap = Tap::open(&TapOptions {
                name: h.clone(),
                mac: Some(mac),
                mtu: Some(mtu),
                persist: true,
                exclusive: !reattach,
                // The host's own traffic: one queue is enough.
                queues: 1,
                txqueuelen: None,
            })
            .map_err(rollback)?;
            Some(Arc::new(tap))
        }
    };
    Ok(OpenedNic {
        cfg: cfg.clone(),
        nic_name,
        sock,
        mac,
        mtu,
        host,
        renamed,
        ipv6_was,
        mtu_was,
    })
}

impl OpenedNic {
    /// Removes the host TAP and gives the NIC back its name and settings;
    /// false when the name could not be given back (the record of the
    /// rename must then stay, for the next start to retry).
    /// The caller has already dropped every other handle to the host TAP.
    pub fn restore(self) -> bool {
        if let Some(h) = self.host {
            let _ = h.unpersist();
            drop(h);
        }
        drop(self.sock);
        if let Some(m) = self.mtu_was {
            let _ = ifctl::set_mtu(&self.nic_name, m);
        }
        if let Some(v) = &self.ipv6_was {
            let _ = ifctl::write_sysctl(&ipv6_sysctl(&self.nic_name), v);
        }
        if self.renamed {
            let ok = ifctl::set_up(&self.nic_name, false)
                .and_then(|_| ifctl::rename(&self.nic_name, &self.cfg.device));
            match ok {
                Ok(()) => {
                    let _ = ifctl::set_up(&self.cfg.device, true);
                    tracing::info!(nic = %self.cfg.device, "restored NIC name");
                }
                Err(e) => {
                    tracing::error!(nic = %self.nic_name, error = %e, "could not restore the NIC's name; the next start retries");
                    return false;
                }
            }
        }
        true
    }
}
