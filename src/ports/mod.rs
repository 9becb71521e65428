//! Ports: anything that sends and receives frames (virtio-net header +
//! Ethernet). TAPs, AF_PACKET sockets on NICs and in-memory ports implement
//! `PortIo`; this module knows nothing of switching.

pub mod afpacket;
pub mod arping;
pub mod epoll;
pub mod ifctl;
pub mod linkwatch;
pub mod memory;
pub mod netns;
pub mod pair;
mod queues;
pub mod route_table;
pub mod rtnl;
pub mod steering;
pub mod tap;
pub mod waker;

use std::io;
use std::os::fd::RawFd;

/// Frame I/O of one port. `recv` is non-blocking (WouldBlock when empty);
/// `send` may be called from several threads at once. A port may have
/// several receive queues (a multiqueue TAP), each polled on its own; `fd`
/// and `recv` are its first.
pub trait PortIo: Send + Sync {
    /// The descriptor to poll for readability, if the port has one.
    fn fd(&self) -> Option<RawFd>;
    /// Reads one packet (virtio-net header + frame) into `buf`.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one packet (virtio-net header + frame).
    fn send(&self, pkt: &[u8]) -> io::Result<()>;
    /// How many receive queues the port has.
    fn queues(&self) -> usize {
        1
    }
    /// The descriptor to poll for queue `q`.
    fn queue_fd(&self, q: usize) -> Option<RawFd> {
        if q == 0 { self.fd() } else { None }
    }
    /// Reads one packet from queue `q`.
    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        if q == 0 {
            self.recv(buf)
        } else {
            Err(io::Error::from(io::ErrorKind::WouldBlock))
        }
    }
}

thread_local! {
    /// The queue this thread prefers when it writes to a multiqueue port:
    /// a worker's own index, so that the kernel steers a flow's frames from
    /// the app to the queue of the worker that serves the flow's answers.
    static QUEUE_HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Sets the calling thread's queue hint (see `QUEUE_HINT`).
pub fn set_queue_hint(q: usize) {
    QUEUE_HINT.with(|h| h.set(q));
}

/// The calling thread's queue hint.
pub(crate) fn queue_hint() -> usize {
    QUEUE_HINT.with(|h| h.get())
}

/// The last OS error as an `io::Error`.
pub(crate) fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// Maps a libc return value to `io::Result`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(last_err()) } else { Ok(r) }
}

impl<T: PortIo + ?Sized> PortIo for std::sync::Arc<T> {
    fn fd(&self) -> Option<RawFd> {
        (**self).fd()
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv(buf)
    }
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        (**self).send(pkt)
    }
    fn queues(&self) -> usize {
        (**self).queues()
    }
    fn queue_fd(&self, q: usize) -> Option<RawFd> {
        (**self).queue_fd(q)
    }
    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv_queue(q, buf)
    }
}
