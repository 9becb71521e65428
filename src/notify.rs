//! Tells systemd how the daemon is doing (sd_notify): ready, reloading,
//! stopping, a status line, and the watchdog heartbeat. Every function does
//! nothing when NOTIFY_SOCKET is unset (not started by systemd), and a failed
//! notification is only logged at debug level: it never stops the daemon.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Whether a service manager is listening (NOTIFY_SOCKET is set).
fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

fn send(what: &str, states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify {what} failed");
    }
}

/// The daemon is up and serving: READY=1 and STATUS=running.
pub fn ready() {
    send(
        "ready",
        &[NotifyState::Ready, NotifyState::Status("running")],
    );
}

/// The daemon starts reloading its config: RELOADING=1 and MONOTONIC_USEC=now
/// (systemd 253 and later want both with Type=notify-reload; Type=notify
/// ignores the timestamp). Call [`ready`] when the reload is done.
pub fn reloading() {
    if !enabled() {
        return;
    }
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("reloading", &[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::debug!(error = %e, "reading CLOCK_MONOTONIC failed");
            send("reloading", &[NotifyState::Reloading]);
        }
    }
}

/// A one-line status that `systemctl status` shows: STATUS=msg.
pub fn status(msg: &str) {
    send("status", &[NotifyState::Status(msg)]);
}

/// The daemon is shutting down: STOPPING=1.
pub fn stopping() {
    send("stopping", &[NotifyState::Stopping]);
}

/// The watchdog heartbeat, kicked by the thread whose liveness it proves
/// (the daemon's main thread, which owns the data plane's configuration):
/// a stuck main thread stops the heartbeat and systemd restarts the daemon.
pub struct Watchdog {
    period: Duration,
    next: Instant,
}

/// The watchdog systemd asked for (WATCHDOG_USEC, meant for this process),
/// or None without one or without NOTIFY_SOCKET.
pub fn watchdog() -> Option<Watchdog> {
    if !enabled() {
        return None;
    }
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    Some(Watchdog {
        period: Duration::from_micros(usec) / 2,
        next: Instant::now(),
    })
}

impl Watchdog {
    /// Sends WATCHDOG=1 when half the interval has passed since the last one.
    pub fn kick(&mut self) {
        let now = Instant::now();
        if now >= self.next {
            send("watchdog", &[NotifyState::Watchdog]);
            self.next = now + self.period;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Environment variables are process-wide, so every check that sets or
    /// clears NOTIFY_SOCKET lives in this one test, which restores them.
    #[test]
    fn notifications_with_and_without_a_socket() {
        let saved: Vec<_> = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]
            .into_iter()
            .map(|k| (k, std::env::var_os(k)))
            .collect();

        // Without NOTIFY_SOCKET: nothing happens, nothing fails.
        // SAFETY: no other test in this crate reads or writes these variables.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::set_var("WATCHDOG_USEC", "1000000");
            std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        }
        ready();
        reloading();
        status("idle");
        stopping();
        assert!(watchdog().is_none());

        // With a socket standing in for systemd's.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // SAFETY: as above.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };

        ready();
        let msg = recv(&sock);
        assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
        assert!(msg.lines().any(|l| l == "STATUS=running"), "{msg:?}");

        reloading();
        let msg = recv(&sock);
        assert!(msg.lines().any(|l| l == "RELOADING=1"), "{msg:?}");
        let usec = msg
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(usec.is_some_and(|u| u > 0), "{msg:?}");

        status("applying config");
        assert_eq!(recv(&sock), "STATUS=applying config\n");

        stopping();
        assert_eq!(recv(&sock), "STOPPING=1\n");

        // The watchdog beats at the first kick, then once per half interval.
        let mut w = watchdog().expect("watchdog enabled");
        w.kick();
        w.kick();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
        sock.set_nonblocking(true).expect("nonblocking");
        assert!(
            sock.recv(&mut [0u8; 64]).is_err(),
            "one beat per half interval"
        );
        sock.set_nonblocking(false).expect("blocking");
        std::thread::sleep(Duration::from_millis(510));
        w.kick();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");

        // A watchdog meant for another process is not ours.
        // SAFETY: as above.
        unsafe { std::env::set_var("WATCHDOG_PID", "0") };
        assert!(watchdog().is_none());

        // A socket that went away is logged, not fatal.
        drop(sock);
        ready();

        for (k, v) in saved {
            // SAFETY: as above.
            unsafe {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
    }
}
