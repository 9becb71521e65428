//! A port backed by one end of a datagram socket pair, for tests and
//! benches of the workers: a real descriptor to poll, the other end held by
//! the caller to inject frames and read what the switch sent. A multiqueue
//! port is one pair per queue.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{PortIo, cvt, last_err, queue_hint};

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

/// A multiqueue port of one socket pair per queue; like a multiqueue TAP it
/// writes on the queue of the calling worker.
pub struct QueuesPort(Vec<PairPort>);

impl QueuesPort {
    /// The port with `n` queues and the other ends of their pairs.
    pub fn new(n: usize) -> io::Result<(QueuesPort, Vec<OwnedFd>)> {
        let (ours, theirs) = (0..n.max(1))
            .map(|_| PairPort::new())
            .collect::<io::Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        Ok((QueuesPort(ours), theirs))
    }
}

impl PortIo for QueuesPort {
    fn fd(&self) -> Option<RawFd> {
        self.0[0].fd()
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0[0].recv(buf)
    }
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        self.0[queue_hint() % self.0.len()].send(pkt)
    }
    fn queues(&self) -> usize {
        self.0.len()
    }
    fn queue_fd(&self, q: usize) -> Option<RawFd> {
        self.0.get(q)?.fd()
    }
    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.get(q) {
            Some(p) => p.recv(buf),
            None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
        }
    }
}
