//! The descriptors of a port's receive queues (a multiqueue TAP, a NIC's
//! fanout group): one per queue, the first also the port's own. A worker
//! sends on the queue of its own index.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::queue_hint;

pub(crate) struct Queues(Vec<OwnedFd>);

impl Queues {
    pub fn new(first: OwnedFd, more: Vec<OwnedFd>) -> Queues {
        let mut fds = vec![first];
        fds.extend(more);
        Queues(fds)
    }

    pub fn first(&self) -> &OwnedFd {
        &self.0[0]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn raw(&self, q: usize) -> Option<RawFd> {
        self.0.get(q).map(|fd| fd.as_raw_fd())
    }

    /// Reads queue `q` with `read` (WouldBlock for a queue there is not).
    pub fn read(
        &self,
        q: usize,
        read: impl FnOnce(&OwnedFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        match self.0.get(q) {
            Some(fd) => read(fd),
            None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
        }
    }

    /// The queue the calling thread sends on: its worker's (a TAP spreading
    /// flows by hash then keeps the flow's frames from the app on that
    /// queue too).
    pub fn for_send(&self) -> &OwnedFd {
        match self.0.len() {
            1 => &self.0[0],
            n => &self.0[queue_hint() % n],
        }
    }
}
