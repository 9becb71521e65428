//! A port of the router (on its NI's domain or on an uplink's). The switch
//! hands it frames on the receiving thread; it keeps only those for the
//! router (its MAC or broadcast), lets the NAT fast path translate what it
//! can, and queues the rest, bounded, for the router's control thread,
//! waking it through an eventfd.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use super::napt::{Nat, Side};
use crate::config::Mac;
use crate::frame::VNET_HDR_LEN;
use crate::ports::{PortIo, cvt};

const QUEUE: usize = 1024;

pub struct RouterPort {
    mac: Mac,
    nat: Option<(Arc<Nat>, Side)>,
    queue: Mutex<VecDeque<Vec<u8>>>,
    wake: OwnedFd,
}

impl RouterPort {
    /// A port with MAC `mac`; with `nat`, frames go through its fast path first.
    pub fn new(mac: Mac, nat: Option<(Arc<Nat>, Side)>) -> io::Result<RouterPort> {
        // SAFETY: plain eventfd(2) call; the fd is owned below.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: fd was just returned by eventfd(2).
        Ok(RouterPort {
            mac,
            nat,
            queue: Mutex::new(VecDeque::new()),
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The descriptor the control thread polls.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Wakes the control thread without a frame.
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Clears the wake-up and takes every queued packet.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        let mut v = [0u8; 8];
        // SAFETY: reading 8 bytes from our eventfd into a buffer we own.
        unsafe { libc::read(self.wake.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        self.queue
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

impl PortIo for RouterPort {
    fn fd(&self) -> Option<RawFd> {
        None
    }

    fn recv(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let dst = pkt.get(VNET_HDR_LEN..VNET_HDR_LEN + 6).unwrap_or(&[]);
        if dst != self.mac.0 && dst != Mac::BROADCAST.0 {
            // Flooded frames for someone else: not ours, not an error.
            return Ok(());
        }
        if let Some((nat, side)) = &self.nat
            && nat.handle(*side, pkt)
        {
            return Ok(());
        }
        {
            let mut q = self
                .queue
                .lock()
                .map_err(|_| io::Error::other("router queue poisoned"))?;
            if q.len() >= QUEUE {
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            q.push_back(pkt.to_vec());
        }
        self.wake();
        Ok(())
    }
}
