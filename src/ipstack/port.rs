//! A port of the router (on its NI's domain or on an uplink's). The switch
//! hands it frames on the receiving thread; it keeps only those for the
//! router (its MAC or broadcast), lets the NAT fast path translate what it
//! can, and queues the rest, bounded, for the router's control thread,
//! waking it through an eventfd.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use super::napt::{Nat, Side};
use crate::config::Mac;
use crate::frame::VNET_HDR_LEN;
use crate::ports::PortIo;
use crate::ports::waker::Waker;
use crate::sync::lock;

const QUEUE: usize = 1024;

pub struct RouterPort {
    mac: Mac,
    /// Takes the IPv6 multicast a router listens to (an NI with `subnet6`).
    ipv6: bool,
    nat: Option<(Arc<Nat>, Side)>,
    queue: Mutex<VecDeque<Vec<u8>>>,
    wake: Waker,
}

impl RouterPort {
    /// A port with MAC `mac`; with `nat`, frames go through its fast path first.
    pub fn new(mac: Mac, nat: Option<(Arc<Nat>, Side)>) -> io::Result<RouterPort> {
        Ok(RouterPort {
            mac,
            ipv6: false,
            nat,
            queue: Mutex::new(VecDeque::new()),
            wake: Waker::new()?,
        })
    }

    /// Takes the IPv6 multicast a router listens to: all nodes (router
    /// advertisements upstream), all routers (solicitations), DHCPv6
    /// servers and solicited-node addresses.
    pub fn with_ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    fn wanted(&self, dst: &[u8]) -> bool {
        dst == self.mac.0
            || dst == Mac::BROADCAST.0
            || (self.ipv6
                && (dst == [0x33, 0x33, 0, 0, 0, 1]
                    || dst == [0x33, 0x33, 0, 0, 0, 2]
                    || dst == [0x33, 0x33, 0, 1, 0, 2]
                    || dst.starts_with(&[0x33, 0x33, 0xff])))
    }

    /// The descriptor the control thread polls.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.fd()
    }

    /// Wakes the control thread without a frame.
    pub fn wake(&self) {
        self.wake.ring();
    }

    /// Clears the wake-up and takes every queued packet.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        self.wake.clear();
        lock(&self.queue).drain(..).collect()
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
        if !self.wanted(dst) {
            // Flooded frames for someone else: not ours, not an error.
            return Ok(());
        }
        if let Some((nat, side)) = &self.nat
            && nat.handle(*side, pkt)
        {
            return Ok(());
        }
        {
            let mut q = lock(&self.queue);
            if q.len() >= QUEUE {
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            q.push_back(pkt.to_vec());
        }
        self.wake();
        Ok(())
    }
}
