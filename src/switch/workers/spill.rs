//! Spilling: the frames a saturated worker hands to its partner. A worker
//! that reads a full batch from a queue while its partner sleeps stops
//! switching that queue's frames itself and copies each batch it reads into
//! one buffer in the partner's ring instead; the partner switches and writes
//! them on its own CPU. A frame's write into a TAP runs the receiving
//! namespace's stack, about two thirds of a small frame's cost, so an app
//! flooding from a CPU it shares with its worker gets the other CPU's help
//! instead of waiting for a balancer. A batch crosses as one item, so the
//! two CPUs touch the ring's counters and the port's reference count once a
//! batch, not once a frame. One producer and one consumer per ring, so a
//! queue's frames stay in order as long as the producer switches nothing of
//! that queue itself before the partner has done everything it handed over
//! (`done`).

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*, fence};

use crossbeam_queue::ArrayQueue;

use super::super::PortEntry;
use crate::clock;
use crate::frame::MAX_PACKET;
use crate::ports::waker::Waker;

/// Frames a ring holds: about ten milliseconds of a flood, longer than a
/// producer rests when the ring is full (`SPILL_REST`, rounded up to the
/// next millisecond by epoll).
const DEPTH: u64 = 4096;
/// How long (ms) after handing frames over a producer still counts as
/// handing over (`pushed_lately`).
const LATELY_MS: u64 = 2;
/// Used buffers kept for reuse (a new one costs an allocation a batch, not
/// a frame; 16 of up to `SPARE_CAPACITY` bound what a ring keeps to 1 MiB).
const SPARES: usize = 16;
/// Bytes a ring holds at most (a GSO frame is up to 64 KiB).
const MAX_BYTES: usize = 4 << 20;
/// A used buffer up to this size is kept for the next batch; a larger one
/// (GSO frames') is freed.
const SPARE_CAPACITY: usize = 64 << 10;

/// Frames back to back in one buffer, in order.
#[derive(Default)]
pub(super) struct Frames {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Frames {
    /// Copies a frame in after the others.
    pub fn add(&mut self, frame: &[u8]) {
        self.data.extend_from_slice(frame);
        self.ends.push(self.data.len());
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The frames, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.data[a..b])
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// A batch of one port's frames handed over.
pub(super) struct Spilled {
    pub port: Arc<PortEntry>,
    pub frames: Frames,
}

/// The frames one worker's partner handed it, in order.
pub(super) struct SpillRing {
    queue: ArrayQueue<Spilled>,
    spares: ArrayQueue<Frames>,
    bytes: AtomicUsize,
    /// Frames pushed so far (by the one producer).
    pushed: AtomicU64,
    /// Frames taken off and switched so far (by the owner).
    done: AtomicU64,
    /// When (`clock::mono_ms`) the producer last handed frames over.
    pushed_at_ms: AtomicU64,
    /// The owner sleeps or is about to: the producer must ring `wake`.
    asleep: AtomicBool,
    wake: Waker,
}

impl SpillRing {
    pub fn new() -> io::Result<SpillRing> {
        Ok(SpillRing {
            queue: ArrayQueue::new(DEPTH as usize),
            spares: ArrayQueue::new(SPARES),
            bytes: AtomicUsize::new(0),
            pushed: AtomicU64::new(0),
            done: AtomicU64::new(0),
            pushed_at_ms: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            wake: Waker::new()?,
        })
    }

    /// The descriptor the owner polls to be woken.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.fd()
    }

    /// Producer: an empty buffer for the next batch.
    pub fn frames(&self) -> Frames {
        self.spares.pop().unwrap_or_default()
    }

    /// Producer: whether a frame of any size fits after the `frames` frames
    /// of `bytes` bytes it has read for the next batch.
    pub fn has_room(&self, frames: usize, bytes: usize) -> bool {
        let queued = (self.pushed.load(Relaxed)).saturating_sub(self.done.load(Relaxed));
        queued + (frames as u64) < DEPTH
            && !self.queue.is_full()
            && self.bytes.load(Relaxed) + bytes + MAX_PACKET <= MAX_BYTES
    }

    /// Producer: hands a batch over; gives it back when there was no room
    /// (only after `has_room` said there was none).
    pub fn push(&self, port: &Arc<PortEntry>, frames: Frames) -> Result<(), Frames> {
        let (n, bytes) = (frames.len() as u64, frames.data.len());
        self.bytes.fetch_add(bytes, Relaxed);
        let item = Spilled {
            port: port.clone(),
            frames,
        };
        if let Err(back) = self.queue.push(item) {
            self.bytes.fetch_sub(bytes, Relaxed);
            return Err(back.frames);
        }
        self.pushed.fetch_add(n, Relaxed);
        Ok(())
    }

    /// Producer: how many frames it has pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Relaxed)
    }

    /// Producer, after pushing: wakes the owner if it sleeps.
    pub fn kick(&self) {
        self.pushed_at_ms.store(clock::mono_ms(), Relaxed);
        fence(SeqCst);
        if self.asleep.swap(false, SeqCst) {
            self.wake.ring();
        }
    }

    /// Producer: whether the owner sleeps (it has nothing else to do).
    pub fn owner_idle(&self) -> bool {
        self.asleep.load(Relaxed)
    }

    /// How many frames the owner has switched so far: once this reaches
    /// what the producer pushed, it has nothing of the producer's left.
    pub fn done(&self) -> u64 {
        self.done.load(Acquire)
    }

    /// Whether the producer handed frames over in the last millisecond or
    /// two before `now` (`clock::mono_ms`): it may be between batches.
    pub fn pushed_lately(&self, now: u64) -> bool {
        now.saturating_sub(self.pushed_at_ms.load(Relaxed)) < LATELY_MS
    }

    /// Whether frames handed over wait to be switched.
    pub fn is_empty(&self) -> bool {
        self.done.load(Relaxed) == self.pushed.load(Relaxed)
    }

    /// Owner: the next batch handed over.
    pub fn pop(&self) -> Option<Spilled> {
        self.queue.pop()
    }

    /// Owner: the batch is switched; its buffer is kept for reuse.
    pub fn finish(&self, s: Spilled) {
        let Spilled { port, mut frames } = s;
        drop(port);
        self.bytes.fetch_sub(frames.data.len(), Relaxed);
        self.done.fetch_add(frames.len() as u64, Release);
        if frames.data.capacity() <= SPARE_CAPACITY {
            frames.clear();
            let _ = self.spares.push(frames);
        }
    }

    /// Owner, before a blocking wait: marks it asleep, unless frames wait
    /// (then false, and it must not block).
    pub fn may_sleep(&self) -> bool {
        self.asleep.store(true, SeqCst);
        fence(SeqCst);
        if self.queue.is_empty() {
            return true;
        }
        self.asleep.store(false, Relaxed);
        false
    }

    /// Owner, after its wait.
    pub fn awake(&self) {
        self.asleep.store(false, Relaxed);
    }

    /// Owner: its wake-up descriptor fired.
    pub fn woken(&self) {
        self.wake.clear();
    }
}
