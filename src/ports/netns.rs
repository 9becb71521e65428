//! Runs work inside a network namespace — a named one (as `ip netns` makes
//! them, under /run/netns) or one given by path (a container runtime's
//! `CNI_NETNS`) — on a short-lived thread, so the caller's own namespace is
//! never changed. Descriptors opened there keep working everywhere.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::cvt;

pub const NETNS_DIR: &str = "/run/netns";

/// Runs `f` with the calling thread moved into namespace `name`, or in the
/// current namespace when `name` is None.
pub fn run_in<T: Send>(
    name: Option<&str>,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let Some(name) = name else { return f() };
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad namespace name `{name}`"),
        ));
    }
    run_in_path(Path::new(&format!("{NETNS_DIR}/{name}")), f)
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace `{name}`: {e}")))
}

/// Runs `f` inside the network namespace at `path`.
pub fn run_in_path<T: Send>(
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let ns = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on a namespace fd we hold; affects this thread only.
            cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("namespace worker panicked"))?
    })
}
