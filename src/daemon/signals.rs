//! SIGINT/SIGTERM (stop) and SIGHUP (reload): blocked in every thread,
//! awaited by the main one.

use std::io;

fn set() -> libc::sigset_t {
    // SAFETY: sigset_t is initialised by sigemptyset before use.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, libc::SIGINT);
        libc::sigaddset(&mut s, libc::SIGTERM);
        libc::sigaddset(&mut s, libc::SIGHUP);
        s
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread spawned after.
pub fn block() -> io::Result<()> {
    let s = set();
    // SAFETY: pthread_sigmask with a valid set.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    if r != 0 {
        Err(io::Error::from_raw_os_error(r))
    } else {
        Ok(())
    }
}

/// Waits up to `ms` milliseconds for one of them; returns it if one came.
pub fn wait(ms: u64) -> Option<i32> {
    let s = set();
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: sigtimedwait with a valid set and timeout.
    let r = unsafe { libc::sigtimedwait(&s, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}
