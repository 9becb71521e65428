//! The control socket: JSON lines over AF_UNIX between the daemon and the
//! CLI (and later the CNI plugin). One request per line, one reply per line;
//! a bad or oversized request gets an error reply and the daemon carries
//! on. The socket is root-only from the moment its name appears.

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
/// The largest request line accepted (a config for `apply` fits easily).
pub const MAX_REQUEST: usize = 4 << 20;
/// How long a client waits for a reply, unless the request says otherwise.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Where the daemon keeps its state and which config file it runs.
    Info,
    /// Pod interfaces of the CNI plugin (SPEC §7).
    Pod(PodRequest),
    /// A live apply of the config text (SPEC §8).
    Apply {
        config: String,
        /// Where the text came from, for messages.
        source: String,
        /// Seconds the probe may take.
        probe_timeout: u64,
        #[serde(default)]
        dry_run: bool,
    },
}

/// What the CNI plugin asks of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PodRequest {
    /// ConnectPodAtL2 (and the address for L3): a TAP named `ifname` in the
    /// namespace at `netns`, on NI `ni`; idempotent for the same attachment.
    Add {
        network: String,
        ni: String,
        container_id: String,
        ifname: String,
        netns: String,
        #[serde(default)]
        mac: Option<String>,
        /// The name the pod resolves as in the NI's DNS.
        #[serde(default)]
        name: Option<String>,
    },
    /// The attachment as the daemon holds it (CHECK).
    Get {
        network: String,
        container_id: String,
        ifname: String,
    },
    /// Removes the attachment and releases its address; nothing to remove is fine.
    Del {
        network: String,
        container_id: String,
        ifname: String,
    },
    /// Whether the NI exists (STATUS).
    Ready { ni: String },
    /// Removes the attachments of `network` not listed in `valid`.
    Gc {
        network: String,
        valid: Vec<Attachment>,
    },
}

/// A (container ID, interface name) pair, as CNI GC names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// A pod interface as the daemon holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    pub network: String,
    pub ni: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub mac: String,
    pub mtu: u32,
    /// For a local NI: the leased address (CIDR) and the gateway.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    /// Routes to set in the pod: (destination CIDR, next hop).
    #[serde(default)]
    pub routes: Vec<(String, String)>,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    #[serde(default)]
    pub dns_domain: Option<String>,
    /// The pod's name in the NI's DNS.
    #[serde(default)]
    pub name: Option<String>,
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
    let listener = bind_private(&path)?;
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
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(&listener),
                    Err(e) => {
                        tracing::warn!(error = %e, "control accept failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        })
}

/// Waits up to 200 ms for a client to connect (then `stop` is looked at).
fn wait_readable(l: &UnixListener) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 200) };
}

/// Binds under a temporary name, makes the socket root-only, then renames
/// it into place: nobody else can ever connect to it.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", tmp.display())))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!("placing {}: {e}", path.display()),
        ));
    }
    Ok(listener)
}

fn error_reply(msg: String) -> Reply {
    Reply {
        ok: false,
        result: None,
        error: Some(msg),
    }
}

fn connection(s: UnixStream, h: Arc<dyn Handler>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut w) = s.try_clone() else { return };
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        // One request per line, each at most MAX_REQUEST bytes.
        let n = match (&mut reader).take(MAX_REQUEST as u64).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let oversized = n >= MAX_REQUEST && !line.ends_with('\n');
        if !oversized && line.trim().is_empty() {
            continue;
        }
        let reply = if oversized {
            error_reply(format!(
                "request larger than {} MiB refused; send one JSON request per line (a config that big is not supported)",
                MAX_REQUEST >> 20
            ))
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => match h.handle(req) {
                    Ok(v) => Reply {
                        ok: true,
                        result: Some(v),
                        error: None,
                    },
                    Err(e) => error_reply(e),
                },
                Err(e) => error_reply(format!(
                    "bad request: {e}; use the niswitch command line (or send {{\"cmd\":\"status\"}})"
                )),
            }
        };
        let Ok(mut text) = serde_json::to_string(&reply) else {
            return;
        };
        text.push('\n');
        if w.write_all(text.as_bytes()).is_err() || oversized {
            return;
        }
    }
}

use std::io::Read as _;

/// Sends one request to the daemon and returns its result, with errors
/// phrased for the user.
pub fn call(path: &Path, req: &Request) -> Result<Value, String> {
    call_with_timeout(path, req, REPLY_TIMEOUT)
}

/// `call`, waiting up to `timeout` for the reply.
pub fn call_with_timeout(path: &Path, req: &Request, timeout: Duration) -> Result<Value, String> {
    let s = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            format!("no niswitch daemon is running (nothing answers on {}); start one with `niswitch run --config FILE`", path.display())
        }
        io::ErrorKind::PermissionDenied => format!("permission denied on {}: run as root (or a member of its group)", path.display()),
        _ => format!("cannot reach the daemon on {}: {e}", path.display()),
    })?;
    let _ = s.set_read_timeout(Some(timeout));
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut text = serde_json::to_string(req).map_err(|e| e.to_string())?;
    text.push('\n');
    w.write_all(text.as_bytes())
        .map_err(|e| format!("sending to the daemon: {e}"))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                "the daemon did not answer within {} s; see its log (journalctl -u niswitch)",
                timeout.as_secs()
            ),
            _ => format!("reading the daemon's reply: {e}"),
        })?;
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
