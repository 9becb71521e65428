//! An in-memory port for tests and benches: frames sent to it are kept (or
//! only counted); frames are injected by calling the switch directly.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::PortIo;

#[derive(Default)]
pub struct MemoryPort {
    capture: bool,
    sent: Mutex<Vec<Vec<u8>>>,
    count: AtomicU64,
}

impl MemoryPort {
    /// A port that keeps every frame sent to it.
    pub fn capturing() -> Arc<Self> {
        Arc::new(MemoryPort {
            capture: true,
            ..Default::default()
        })
    }
    /// A port that only counts (no allocation per frame).
    pub fn sink() -> Arc<Self> {
        Arc::new(MemoryPort::default())
    }
    /// Frames sent so far, emptied.
    pub fn take(&self) -> Vec<Vec<u8>> {
        self.sent
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Shares one `MemoryPort` between the switch and the test holding it.
pub struct Shared(pub Arc<MemoryPort>);

impl PortIo for Shared {
    fn fd(&self) -> Option<RawFd> {
        None
    }
    fn recv(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        self.0.count.fetch_add(1, Relaxed);
        if self.0.capture
            && let Ok(mut v) = self.0.sent.lock()
        {
            v.push(pkt.to_vec());
        }
        Ok(())
    }
}
