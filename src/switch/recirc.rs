//! Frames handed back to the switch while it switches another on the same
//! thread: a router's NAT that turns a frame delivered to it into one that
//! leaves through another domain, or a host uplink that answers an app at
//! once. They wait here and are switched, in order, once the frame at hand
//! is done: a loop in the pass, never a nested one (what Open vSwitch calls
//! recirculation). Buffers are kept for reuse: no allocation per frame.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use super::PortEntry;

/// Frames one pass may take back. A NAT makes one per frame it is given,
/// so more means frames going round in circles (a loop between routers).
const MAX_PER_PASS: usize = 256;
/// Spare buffers kept for reuse.
const MAX_SPARE: usize = 16;

#[derive(Default)]
struct Pass {
    active: bool,
    /// Frames handed back since the pass began.
    taken: usize,
    queue: VecDeque<(Arc<PortEntry>, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

thread_local! {
    static PASS: RefCell<Pass> = RefCell::default();
}

/// This thread is switching a frame until this is dropped; dropped by a
/// panic too, which also forgets what the pass had queued.
pub(super) struct InPass(());

impl Drop for InPass {
    fn drop(&mut self) {
        PASS.with(|p| {
            let mut p = p.borrow_mut();
            p.active = false;
            while let Some((_, buf)) = p.queue.pop_front() {
                keep(&mut p, buf);
            }
        });
    }
}

/// Starts a pass; None when this thread is already in one.
pub(super) fn enter() -> Option<InPass> {
    PASS.with(|p| {
        let mut p = p.borrow_mut();
        (!p.active).then(|| {
            p.active = true;
            p.taken = 0;
            InPass(())
        })
    })
}

/// How a handed-back frame arrives.
pub(super) enum Frame<'a> {
    /// Copied into a buffer of the queue's.
    Borrowed(&'a [u8]),
    /// Taken: the caller's vector is swapped for an empty spare one.
    Owned(&'a mut Vec<u8>),
}

/// Queues a frame to be switched as received on `from` after the frame at
/// hand; false when the pass has taken its most (the frame is not taken).
pub(super) fn hand_back(from: Arc<PortEntry>, frame: Frame<'_>) -> bool {
    PASS.with(|p| {
        let mut p = p.borrow_mut();
        if p.taken >= MAX_PER_PASS {
            return false;
        }
        p.taken += 1;
        let mut buf = p.spare.pop().unwrap_or_default();
        match frame {
            Frame::Borrowed(b) => buf.extend_from_slice(b),
            Frame::Owned(v) => std::mem::swap(&mut buf, v),
        }
        p.queue.push_back((from, buf));
        true
    })
}

/// The next queued frame, if any.
pub(super) fn next() -> Option<(Arc<PortEntry>, Vec<u8>)> {
    PASS.with(|p| p.borrow_mut().queue.pop_front())
}

/// Gives back a buffer `next` returned, once its frame is switched.
pub(super) fn recycle(buf: Vec<u8>) {
    PASS.with(|p| keep(&mut p.borrow_mut(), buf));
}

fn keep(p: &mut Pass, mut buf: Vec<u8>) {
    if p.spare.len() < MAX_SPARE {
        buf.clear();
        p.spare.push(buf);
    }
}
