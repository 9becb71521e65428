//! A port backed by one end of a datagram socket pair, for tests and
//! benches of the workers: a real descriptor to poll, the other end held by
//! the caller to inject frames and read what the switch sent.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{PortIo, cvt, last_err};

pub struct PairPort {
    fd: OwnedFd,
}

impl PairPort {
    /// The port and the other end of its pair (both non-blocking).
    pub fn new() -> io::Result<(PairPort, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: socketpair into an array of two ints.
        cvt(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })?;
        // SAFETY: both descriptors were just returned and are owned here.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((PairPort { fd: ours }, theirs))
    }
}

/// Sends one datagram on `fd`.
pub fn send(fd: &OwnedFd, pkt: &[u8]) -> io::Result<()> {
    // SAFETY: sending from a buffer we borrow, bounded by its length.
    let n = unsafe { libc::send(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len(), 0) };
    if n < 0 { Err(last_err()) } else { Ok(()) }
}

/// Receives one datagram from `fd`, waiting up to `timeout_ms`.
pub fn recv(fd: &OwnedFd, buf: &mut [u8], timeout_ms: i32) -> io::Result<usize> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut p, 1, timeout_ms) } != 1 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    // SAFETY: reading into a buffer we own, bounded by its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(last_err())
    } else {
        Ok(n as usize)
    }
}

impl PortIo for PairPort {
    fn fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reading into a buffer we own, bounded by its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(last_err())
        } else {
            Ok(n as usize)
        }
    }
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        send(&self.fd, pkt)
    }
}
