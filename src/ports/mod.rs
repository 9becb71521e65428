//! Ports: anything that sends and receives frames (virtio-net header +
//! Ethernet). TAPs, AF_PACKET sockets on NICs and in-memory ports implement
//! `PortIo`; this module knows nothing of switching.

pub mod afpacket;
pub mod arping;
pub mod ifctl;
pub mod linkwatch;
pub mod memory;
pub mod netns;
pub mod pair;
pub mod route_table;
pub mod rtnl;
pub mod tap;
pub mod waker;

use std::io;
use std::os::fd::RawFd;

/// Frame I/O of one port. `recv` is non-blocking (WouldBlock when empty);
/// `send` may be called from several threads at once.
pub trait PortIo: Send + Sync {
    /// The descriptor to poll for readability, if the port has one.
    fn fd(&self) -> Option<RawFd>;
    /// Reads one packet (virtio-net header + frame) into `buf`.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one packet (virtio-net header + frame).
    fn send(&self, pkt: &[u8]) -> io::Result<()>;
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
}
