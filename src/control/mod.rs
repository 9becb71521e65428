//! The control socket: JSON lines over AF_UNIX between the daemon and the
//! CLI (and later the CNI plugin). One request per line, one reply per line;
//! a bad request gets an error reply and the daemon carries on.

pub mod metrics;
pub mod status;

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DEFAULT_SOCKET: &str = "/run/niswitch/niswitch.sock";
/// Clients served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What answers requests inside the daemon.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Result<Value, String>;
}

/// Binds the socket (replacing a stale one) and serves until `stop` is set.
pub fn serve(
    path: PathBuf,
    handler: Arc<dyn Handler>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not touching it",
                    path.display()
                ),
            ));
        }
        if UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another niswitch answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    listener.set_nonblocking(true)?;
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            while !stop.load(Relaxed) {
                if active.load(Relaxed) >= MAX_CONNECTIONS {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                match listener.accept() {
                    Ok((s, _)) => {
                        let h = handler.clone();
                        active.fetch_add(1, Relaxed);
                        let spawned = std::thread::Builder::new()
                            .name("control-conn".into())
                            .spawn({
                                let active = active.clone();
                                move || {
                                    connection(s, h);
                                    active.fetch_sub(1, Relaxed);
                                }
                            });
                        if spawned.is_err() {
                            active.fetch_sub(1, Relaxed);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control accept failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        })
}

fn connection(s: UnixStream, h: Arc<dyn Handler>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut w) = s.try_clone() else { return };
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        // One request per line, each at most 1 MiB.
        match (&mut reader).take(1 << 20).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => match h.handle(req) {
                Ok(v) => Reply {
                    ok: true,
                    result: Some(v),
                    error: None,
                },
                Err(e) => Reply {
                    ok: false,
                    result: None,
                    error: Some(e),
                },
            },
            Err(e) => Reply {
                ok: false,
                result: None,
                error: Some(format!("bad request: {e}")),
            },
        };
        let Ok(mut text) = serde_json::to_string(&reply) else {
            return;
        };
        text.push('\n');
        if w.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

use std::io::Read as _;

/// Sends one request to the daemon and returns its result, with errors
/// phrased for the user.
pub fn call(path: &Path, req: &Request) -> Result<Value, String> {
    let s = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            format!("no niswitch daemon is running (nothing answers on {}); start one with `niswitch run --config FILE`", path.display())
        }
        io::ErrorKind::PermissionDenied => format!("permission denied on {}: run as root (or a member of its group)", path.display()),
        _ => format!("cannot reach the daemon on {}: {e}", path.display()),
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut text = serde_json::to_string(req).map_err(|e| e.to_string())?;
    text.push('\n');
    w.write_all(text.as_bytes())
        .map_err(|e| format!("sending to the daemon: {e}"))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("reading the daemon's reply: {e}"))?;
    let reply: Reply = serde_json::from_str(&line)
        .map_err(|e| format!("the daemon's reply is not understood: {e}"))?;
    if reply.ok {
        Ok(reply.result.unwrap_or(Value::Null))
    } else {
        Err(reply
            .error
            .unwrap_or_else(|| "the daemon reported an error".into()))
    }
}
