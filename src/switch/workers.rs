//! Run-to-completion workers: a few threads (by default one per core), each
//! owning some ports and polling their descriptors with one epoll set. A
//! worker reads a batch from every ready port and switches each frame to its
//! end on its own thread, unless the port keeps it busy while its partner
//! idles: then it hands the port's frames to the partner (`spill`). After
//! traffic it keeps polling without sleeping for `busy_poll_us`, so that a
//! request and its reply (which the kernel often produces while the request
//! is being written) cross without a thread wake-up. A port goes to the
//! least loaded worker, except that the queues of a multiqueue port go one
//! to each worker (queue i to worker i, which also writes on queue i, so
//! that both directions of a flow meet on one worker); releasing a port is
//! a handshake, after which no worker touches it.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spare::SpareMeter;
use spill::SpillRing;

mod spare;
mod spill;

use super::{DropReason, PortEntry, Switch, now_secs, stats};
use crate::clock;
use crate::frame::MAX_PACKET;
use crate::ports::epoll::{self, Epoll};
use crate::ports::steering::CpuSteering;
use crate::ports::waker::Waker;
use crate::sync::lock;

/// Frames read from one port before the worker turns to the next.
const BATCH: usize = 32;
/// Receive errors in a row after which a port rests.
const ERRORS_TO_REST: u32 = 8;
/// How long a port that keeps failing is left alone.
const REST: Duration = Duration::from_millis(20);
/// How long a port waits when its partner's spill ring is full (the ring
/// holds a few milliseconds of frames).
const SPILL_REST: Duration = Duration::from_millis(1);
/// Frames handed over that a worker switches before it turns to its own
/// ports again.
const SPILL_BATCH: usize = 64;
/// The share of its CPU (percent) a partner must have had to spare, idle
/// or running itself, to be handed frames. The receiving app often runs
/// there; the partner yields between batches, so the app keeps its share
/// and shows in the measure. At 90 a sender that moves between CPUs kept
/// the partner below it, and 64-byte UDP got half the help it gets at 40
/// (see docs/PERFORMANCE.md).
const SPARE_TO_SPILL: u8 = 40;
/// How long (ms) a partner must have switched no whole batch of its own to
/// be handed a port's frames: where every worker is kept busy by its own
/// apps, handing frames around only adds a copy (four flooding app pairs
/// fell from about 1000 to 680 kpps).
const QUIET_TO_SPILL_MS: u64 = 20;
/// How long `release` waits for a worker to let go of a port.
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// Frames an app's TAP queue holds when its worker is pinned to the app's
/// CPU. Such a worker takes the app's frames after the app's time slice
/// (see `pin_to`); the kernel's 1000 hold about a millisecond of an app
/// sending at full speed, so the rest would be dropped while the worker
/// waits for its turn, not because it is slow. 4096 hold a slice's worth.
const PINNED_TXQUEUELEN: u32 = 4096;
/// The kernel's own for a TAP, set again on one an earlier run made longer.
const TXQUEUELEN: u32 = 1000;
/// The epoll token of a worker's own wake-up.
const WAKE_TOKEN: u64 = u64::MAX;
/// The epoll token of the wake-up for frames handed over.
const SPILL_TOKEN: u64 = u64::MAX - 1;

/// How the data plane is served.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub workers: usize,
    pub busy_poll_us: u32,
    /// CPUs to pin the workers to, one each (worker i on `cpus[i]`); empty:
    /// the workers float, and multiqueue TAPs spread flows by their hash.
    pub cpus: Vec<usize>,
}

enum Cmd {
    /// Poll this queue of the port.
    Attach(Arc<PortEntry>, usize),
    /// Let go of every queue of the port with this key.
    Release(usize),
}

/// What the control side and one worker thread share.
struct Shared {
    epoll: Epoll,
    wake: Waker,
    inbox: Mutex<Vec<(u64, Cmd)>>,
    issued: AtomicU64,
    done: AtomicU64,
    load: AtomicUsize,
    /// Frames read, frames handed to the partner, and times the worker went
    /// to sleep (for status).
    frames: AtomicU64,
    spilled: AtomicU64,
    sleeps: AtomicU64,
    /// Frames the partner hands this worker.
    spill: SpillRing,
    /// The share of its CPU the worker could have lately (`spare`); 100 for
    /// a floating worker.
    spare: AtomicU8,
    /// When (`clock::mono_ms`) the worker last read a whole batch from a
    /// port and switched it itself.
    full_at_ms: AtomicU64,
    /// Set once the worker is pinned to its CPU.
    pinned: AtomicBool,
}

/// What one worker did so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerCounts {
    /// The CPU it is pinned to, if any (None too where pinning failed).
    pub cpu: Option<usize>,
    /// Ports it polls (a multiqueue port counts at each worker polling one
    /// of its queues).
    pub ports: usize,
    pub frames: u64,
    /// Frames it read and handed to its partner to switch.
    pub spilled: u64,
    pub sleeps: u64,
}

pub struct Workers {
    shared: Vec<Arc<Shared>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    busy_poll_us: Arc<AtomicU32>,
    /// Which worker holds which port's queue (by the entry's address); one
    /// row per queue.
    owner: Mutex<Vec<(usize, usize)>>,
    /// With pinned workers: steers multiqueue TAPs by the sender's CPU.
    steering: Option<CpuSteering>,
    /// The CPU of each worker, when pinned.
    cpus: Vec<usize>,
}

/// The key of a port while a worker holds it.
fn key(port: &Arc<PortEntry>) -> usize {
    Arc::as_ptr(port) as usize
}

impl Workers {
    /// Starts `opts.workers` threads serving ports of `switch`.
    pub fn start(switch: &Arc<Switch>, opts: Options) -> io::Result<Workers> {
        let stop = Arc::new(AtomicBool::new(false));
        let busy_poll_us = Arc::new(AtomicU32::new(opts.busy_poll_us));
        let mut shared = Vec::new();
        let mut threads = Vec::new();
        let count = if opts.cpus.is_empty() {
            opts.workers.max(1)
        } else {
            opts.cpus.len()
        };
        let steering = steering_for(&opts.cpus);
        let all = (0..count)
            .map(|_| Shared::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        for (index, s) in all.iter().enumerate() {
            let cpu = opts.cpus.get(index).copied();
            let own = s.clone();
            let mut w = Worker {
                index,
                switch: switch.clone(),
                shared: s.clone(),
                partner: (count > 1).then(|| all[(index + 1) % count].clone()),
                stop: stop.clone(),
                busy_poll_us: busy_poll_us.clone(),
                slots: Vec::new(),
                resting: Vec::new(),
                meter: None,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu
                            && pin_to(cpu)
                        {
                            own.pinned.store(true, Relaxed);
                            w.meter = Some(SpareMeter::new(cpu));
                        }
                        w.run()
                    })?,
            );
            shared.push(s.clone());
        }
        Ok(Workers {
            shared,
            threads: Mutex::new(threads),
            stop,
            busy_poll_us,
            owner: Mutex::new(Vec::new()),
            steering,
            cpus: opts.cpus,
        })
    }

    /// The program that steers a multiqueue TAP's frames to the worker on
    /// the sender's CPU, when the workers are pinned.
    pub fn steering(&self) -> Option<&CpuSteering> {
        self.steering.as_ref()
    }

    pub fn count(&self) -> usize {
        self.shared.len()
    }

    /// How many frames an app's TAP queue should hold for these workers.
    pub fn tap_txqueuelen(&self) -> u32 {
        match self.cpus.is_empty() {
            true => TXQUEUELEN,
            false => PINNED_TXQUEUELEN,
        }
    }

    /// The CPU of each worker, when pinned (`Options::cpus`).
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    pub fn busy_poll_us(&self) -> u32 {
        self.busy_poll_us.load(Relaxed)
    }

    /// Each worker's ports, frames and sleeps.
    pub fn counts(&self) -> Vec<WorkerCounts> {
        self.shared
            .iter()
            .enumerate()
            .map(|(i, s)| WorkerCounts {
                cpu: self.cpus.get(i).copied().filter(|_| s.pinned.load(Relaxed)),
                ports: s.load.load(Relaxed),
                frames: s.frames.load(Relaxed),
                spilled: s.spilled.load(Relaxed),
                sleeps: s.sleeps.load(Relaxed),
            })
            .collect()
    }

    /// Changes the busy-poll time while traffic flows.
    pub fn set_busy_poll_us(&self, us: u32) {
        self.busy_poll_us.store(us, Relaxed);
    }

    /// Gives a port (one with a descriptor per queue) to the least loaded
    /// worker, or each of its queues to the worker of the same index.
    pub fn attach(&self, port: &Arc<PortEntry>) -> io::Result<()> {
        let queues = port.io.queues();
        if queues == 0 || (0..queues).any(|q| port.io.queue_fd(q).is_none()) {
            return Err(io::Error::other(format!(
                "port {} has nothing to poll",
                port.name
            )));
        }
        for q in 0..queues {
            let i = if queues > 1 {
                q % self.shared.len()
            } else {
                self.least_loaded()?
            };
            let w = &self.shared[i];
            w.load.fetch_add(1, Relaxed);
            lock(&self.owner).push((key(port), i));
            w.send(Cmd::Attach(port.clone(), q));
        }
        Ok(())
    }

    fn least_loaded(&self) -> io::Result<usize> {
        self.shared
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.load.load(Relaxed))
            .map(|(i, _)| i)
            .ok_or_else(|| io::Error::other("no workers"))
    }

    /// Takes ports away from their workers and waits until no worker uses
    /// them any more (their descriptors then close with the last handle).
    pub fn release(&self, ports: &[Arc<PortEntry>]) {
        let mut waits = Vec::new();
        {
            let mut owner = lock(&self.owner);
            for p in ports {
                let k = key(p);
                let mut held: Vec<usize> = Vec::new();
                while let Some(at) = owner.iter().position(|(pk, _)| *pk == k) {
                    let (_, i) = owner.swap_remove(at);
                    self.shared[i].load.fetch_sub(1, Relaxed);
                    if !held.contains(&i) {
                        held.push(i);
                    }
                }
                for i in held {
                    waits.push((i, self.shared[i].send(Cmd::Release(k))));
                }
            }
        }
        let deadline = Instant::now() + RELEASE_WAIT;
        for (i, seq) in waits {
            while self.shared[i].done.load(Acquire) < seq && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Stops every worker and waits for them.
    pub fn shutdown(&self) {
        self.stop.store(true, Relaxed);
        self.shared.iter().for_each(|s| s.wake.ring());
        for t in std::mem::take(&mut *lock(&self.threads)) {
            let _ = t.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn new() -> io::Result<Shared> {
        let epoll = Epoll::new()?;
        let wake = Waker::new()?;
        epoll.add(wake.fd(), WAKE_TOKEN, epoll::IN)?;
        let spill = SpillRing::new()?;
        epoll.add(spill.wake_fd(), SPILL_TOKEN, epoll::IN)?;
        Ok(Shared {
            epoll,
            wake,
            inbox: Mutex::new(Vec::new()),
            issued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            load: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            spill,
            spare: AtomicU8::new(100),
            full_at_ms: AtomicU64::new(0),
            pinned: AtomicBool::new(false),
        })
    }

    /// Queues a command for the worker; returns its sequence number.
    fn send(&self, cmd: Cmd) -> u64 {
        let seq = {
            let mut inbox = lock(&self.inbox);
            let seq = self.issued.fetch_add(1, Relaxed) + 1;
            inbox.push((seq, cmd));
            seq
        };
        self.wake.ring();
        seq
    }
}

/// A port's queue a worker holds, its run of receive errors, and whether
/// its frames go to the partner.
struct Slot {
    port: Arc<PortEntry>,
    queue: usize,
    errors: u32,
    /// The last batch read was a whole one: the port may keep this worker
    /// busy.
    full: bool,
    /// Frames handed to the partner are not all switched yet: the partner's
    /// `pushed` count after the last of them.
    spilling: Option<u64>,
}

impl Slot {
    fn fd(&self) -> Option<RawFd> {
        self.port.io.queue_fd(self.queue)
    }
}

struct Worker {
    index: usize,
    switch: Arc<Switch>,
    shared: Arc<Shared>,
    /// The worker this one hands frames to when it is saturated.
    partner: Option<Arc<Shared>>,
    stop: Arc<AtomicBool>,
    busy_poll_us: Arc<AtomicU32>,
    /// Ports by epoll token (the index).
    slots: Vec<Option<Slot>>,
    /// Ports taken out of the epoll set until the given time.
    resting: Vec<(usize, Instant)>,
    /// Measures the CPU of a pinned worker.
    meter: Option<SpareMeter>,
}

impl Worker {
    fn run(&mut self) {
        stats::use_shard_of_worker(self.index);
        crate::ports::set_queue_hint(self.index);
        raise_priority(self.index);
        let mut buf = vec![0u8; MAX_PACKET];
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut spin_until: Option<Instant> = None;
        while !self.stop.load(Relaxed) {
            let mut timeout = self.timeout(spin_until);
            if timeout != 0 {
                match self.shared.spill.may_sleep() {
                    true => drop(self.shared.sleeps.fetch_add(1, Relaxed)),
                    false => timeout = 0,
                }
            }
            // SAFETY: epoll_wait into an array we own, bounded by its length.
            let n = unsafe {
                libc::epoll_wait(
                    self.shared.epoll.fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            };
            self.shared.spill.awake();
            let mut frames = 0;
            for ev in events.iter().take(n.max(0) as usize) {
                match ev.u64 {
                    WAKE_TOKEN => self.commands(),
                    SPILL_TOKEN => self.shared.spill.woken(),
                    token => frames += self.serve(token as usize, &mut buf),
                }
            }
            let taken = self.take_spilled();
            self.wake_rested();
            // Measured mostly after a sleep through the timeout: a reply
            // the kernel produced while this round wrote waits for it.
            let slept = n == 0 && timeout != 0;
            if let Some(spare) = (self.meter.as_mut()).and_then(|m| m.sample(Instant::now(), slept))
            {
                self.shared.spare.store(spare, Relaxed);
            }
            if frames > 0 {
                self.shared.frames.fetch_add(frames as u64, Relaxed);
            }
            let busy = self.busy_poll_us.load(Relaxed);
            if frames + taken > 0 && busy > 0 {
                spin_until = Some(Instant::now() + Duration::from_micros(busy.into()));
            } else if spin_until.is_some_and(|t| Instant::now() >= t) {
                spin_until = None;
            }
        }
    }

    /// 0 while busy polling; otherwise until the next rested port is due,
    /// or the next measure of a pinned worker's CPU (or a second, to notice
    /// a stop).
    fn timeout(&self, spin_until: Option<Instant>) -> i32 {
        if spin_until.is_some() {
            return 0;
        }
        let now = Instant::now();
        self.resting
            .iter()
            .map(|(_, t)| t.saturating_duration_since(now).as_millis() as i32 + 1)
            .min()
            .unwrap_or(match self.meter {
                Some(_) => spare::INTERVAL.as_millis() as i32,
                None => 1000,
            })
    }

    /// Takes the queued attach and release commands, in order.
    fn commands(&mut self) {
        self.shared.wake.clear();
        let cmds = std::mem::take(&mut *lock(&self.shared.inbox));
        let mut last = None;
        for (seq, cmd) in cmds {
            match cmd {
                Cmd::Attach(port, queue) => self.attach(port, queue),
                Cmd::Release(k) => self.release(k),
            }
            last = Some(seq);
        }
        if let Some(seq) = last {
            self.shared.done.store(seq, Release);
        }
    }

    fn attach(&mut self, port: Arc<PortEntry>, queue: usize) {
        let Some(fd) = port.io.queue_fd(queue) else {
            return;
        };
        let token = match self.slots.iter().position(Option::is_none) {
            Some(t) => t,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        if let Err(e) = self.shared.epoll.add(fd, token as u64, epoll::IN) {
            tracing::warn!(port = %port.name, error = %e, "cannot poll the port");
            return;
        }
        self.slots[token] = Some(Slot {
            port,
            queue,
            errors: 0,
            full: false,
            spilling: None,
        });
    }

    /// Lets go of every queue of the port with key `k`.
    fn release(&mut self, k: usize) {
        for token in 0..self.slots.len() {
            let held = self.slots[token].as_ref();
            if held.is_none_or(|s| key(&s.port) != k) {
                continue;
            }
            let Some(slot) = self.slots[token].take() else {
                continue;
            };
            if let Some(fd) = slot.fd() {
                self.shared.epoll.delete(fd);
            }
            self.resting.retain(|(t, _)| *t != token);
        }
    }

    /// Reads up to a batch from one port and switches each frame, or hands
    /// it to the partner (see `spill`); returns how many frames it read.
    fn serve(&mut self, token: usize, buf: &mut [u8]) -> usize {
        let Some(Some(slot)) = self.slots.get_mut(token) else {
            return 0;
        };
        if slot.port.is_closing() {
            return 0;
        }
        let ring = self.partner.as_deref().map(|p| &p.spill);
        let batch = match (
            ring,
            spill_mode(slot, &self.shared, self.partner.as_deref()),
        ) {
            (Some(ring), Mode::Spill) => {
                let mut frames = ring.frames();
                let room = |n, bytes| ring.has_room(n, bytes);
                let b = read_batch(slot, buf, room, |_, f| frames.add(f));
                if b.frames > 0 {
                    if let Err(lost) = ring.push(&slot.port, frames) {
                        (0..lost.len()).for_each(|_| slot.port.stats.drop(DropReason::TxFull));
                    }
                    slot.spilling = Some(ring.pushed());
                    ring.kick();
                    self.shared.spilled.fetch_add(b.frames as u64, Relaxed);
                }
                b
            }
            // The partner's CPU is taken now: the port waits until the
            // partner has switched what it was given, to keep the order.
            (_, Mode::Wait) => Batch {
                frames: 0,
                stop: Stop::NoRoom,
            },
            _ => {
                let (switch, now) = (&self.switch, now_secs());
                let b = read_batch(
                    slot,
                    buf,
                    |_, _| true,
                    |p, f| switch_guarded(switch, p, f, now),
                );
                if b.stop == Stop::Batch {
                    self.shared.full_at_ms.store(clock::mono_ms(), Relaxed);
                }
                b
            }
        };
        slot.full = batch.stop == Stop::Batch;
        match batch.stop {
            Stop::Failing => self.rest(token, REST),
            Stop::NoRoom => self.rest(token, SPILL_REST),
            Stop::Batch | Stop::Empty => {}
        }
        batch.frames
    }

    /// Switches frames the partner handed over, about `SPILL_BATCH` at most.
    fn take_spilled(&self) -> usize {
        let ring = &self.shared.spill;
        if ring.is_empty() {
            return 0;
        }
        let now = now_secs();
        let mut n = 0;
        while n < SPILL_BATCH
            && let Some(s) = ring.pop()
        {
            if !s.port.is_closing() {
                let each = |f| switch_guarded(&self.switch, &s.port, f, now);
                s.frames.iter().for_each(each);
            }
            n += s.frames.len();
            ring.finish(s);
        }
        if n >= SPILL_BATCH {
            // More waits: let an app this CPU also runs have its turn (a
            // worker is nice -10), so that its time shows in `spare`.
            // SAFETY: sched_yield(2) takes no arguments.
            unsafe { libc::sched_yield() };
        }
        n
    }

    /// Leaves a port alone for a while: one that keeps failing, instead of
    /// spinning on its error, or one whose partner's ring is full.
    fn rest(&mut self, token: usize, time: Duration) {
        let Some(Some(slot)) = self.slots.get_mut(token) else {
            return;
        };
        slot.errors = 0;
        if let Some(fd) = slot.fd() {
            self.shared.epoll.delete(fd);
            self.resting.push((token, Instant::now() + time));
        }
    }

    /// Puts rested ports whose time is up back into the epoll set.
    fn wake_rested(&mut self) {
        if self.resting.is_empty() {
            return;
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.resting.drain(..).partition(|(_, t)| *t <= now);
        self.resting = later;
        for (token, _) in due {
            if let Some(Some(slot)) = self.slots.get(token)
                && let Some(fd) = slot.fd()
            {
                let _ = self.shared.epoll.add(fd, token as u64, epoll::IN);
            }
        }
    }
}

/// What a worker does with a port's next frames.
enum Mode {
    /// Switches them itself.
    Own,
    /// Hands them to the partner.
    Spill,
    /// Leaves them queued until the partner has switched what it has.
    Wait,
}

/// Hands a port's frames over while it keeps this worker busy and the
/// partner's CPU has room, measured with the partner's own time as spare
/// (it yields between batches, so an app it would starve shows up in that
/// measure), no port of its own keeps it busy (`quiet`), and it has handed
/// this worker nothing lately: frames go one way at a time (two busy
/// workers traded a flood that moved between CPUs, each frame crossing
/// twice). To start, the partner must also sleep.
fn spill_mode(slot: &mut Slot, own: &Shared, partner: Option<&Shared>) -> Mode {
    let Some(partner) = partner else {
        return Mode::Own;
    };
    if slot
        .spilling
        .is_some_and(|last| partner.spill.done() >= last)
    {
        slot.spilling = None;
    }
    if slot.spilling.is_none() && !slot.full {
        return Mode::Own;
    }
    let now = clock::mono_ms();
    let handed = !own.spill.is_empty() || own.spill.pushed_lately(now);
    let room = partner.spare.load(Relaxed) >= SPARE_TO_SPILL && !handed && quiet(partner, now);
    match slot.spilling {
        Some(_) if room => Mode::Spill,
        Some(_) => Mode::Wait,
        None if slot.full && room && partner.spill.owner_idle() => Mode::Spill,
        None => Mode::Own,
    }
}

/// Whether a worker has switched no whole batch of its own lately (`now`
/// from `clock::mono_ms`).
fn quiet(w: &Shared, now: u64) -> bool {
    now.saturating_sub(w.full_at_ms.load(Relaxed)) >= QUIET_TO_SPILL_MS
}

/// Why a batch of reads ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// A whole batch was read: the port may have more.
    Batch,
    /// The port had no more.
    Empty,
    /// Receive errors in a row: the port rests.
    Failing,
    /// `room` said no: the partner's ring is full.
    NoRoom,
}

struct Batch {
    frames: usize,
    stop: Stop,
}

/// Reads up to `BATCH` frames from a slot's queue while `room` allows
/// (given the frames and bytes read so far), giving each to `each`; counts
/// receive errors.
fn read_batch(
    slot: &mut Slot,
    buf: &mut [u8],
    room: impl Fn(usize, usize) -> bool,
    mut each: impl FnMut(&Arc<PortEntry>, &[u8]),
) -> Batch {
    let port = &slot.port;
    let (mut frames, mut bytes) = (0, 0);
    for _ in 0..BATCH {
        if !room(frames, bytes) {
            return Batch {
                frames,
                stop: Stop::NoRoom,
            };
        }
        match port.io.recv_queue(slot.queue, buf) {
            Ok(n) => {
                frames += 1;
                bytes += n;
                slot.errors = 0;
                each(port, &buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Batch {
                    frames,
                    stop: Stop::Empty,
                };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // One bad frame (too large): counted, the next is read.
                port.stats.drop(DropReason::RxError);
            }
            Err(e) => {
                port.stats.drop(DropReason::RxError);
                slot.errors += 1;
                tracing::debug!(port = %port.name, error = %e, "receive failed");
                let stop = match slot.errors >= ERRORS_TO_REST {
                    true => Stop::Failing,
                    false => Stop::Empty,
                };
                return Batch { frames, stop };
            }
        }
    }
    Batch {
        frames,
        stop: Stop::Batch,
    }
}

/// Switches one frame; a bug triggered by it is counted and must not end
/// the worker.
fn switch_guarded(switch: &Switch, port: &PortEntry, frame: &[u8], now: u32) {
    let run = std::panic::AssertUnwindSafe(|| switch.process(port, frame, now));
    if std::panic::catch_unwind(run).is_err() {
        port.stats.drop(DropReason::Internal);
    }
}

/// The program that steers app TAPs to the worker on the sender's CPU, when
/// the workers are pinned. Without it (no CAP_BPF) the pinned workers still
/// serve, and the TAPs spread flows by their hash.
fn steering_for(cpus: &[usize]) -> Option<CpuSteering> {
    if cpus.len() < 2 {
        return None;
    }
    CpuSteering::load(cpus)
        .inspect_err(
            |e| tracing::warn!(error = %e, "app TAPs are steered by flow hash, not by CPU"),
        )
        .ok()
}

/// Pins the calling worker thread to `cpu`, where it shares the CPU with
/// the apps whose frames it serves; one the daemon may not use leaves it
/// floating, with a warning, and false (status then shows no CPU).
///
/// A pinned worker is SCHED_BATCH: woken by a frame, it does not preempt
/// the app that sent it. An app that then waits for an answer (a ping, a
/// request) hands the CPU over at once; one that keeps sending (a flood, a
/// bulk transfer) runs on for its time slice and leaves the worker a batch,
/// instead of a switch of tasks for every frame.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET bounds-checks `cpu`, and
    // sched_setaffinity(2) on the calling thread reads the set we own.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        tracing::warn!(cpu, error = %io::Error::last_os_error(), "cannot pin a worker to its CPU");
        return false;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on the calling thread with a param we own.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "a pinned worker stays SCHED_OTHER");
    }
    true
}

/// The nice value of the workers: frames are the device's first duty, and
/// an app that floods must not starve the worker that serves the others
/// (the kernel bridge, working in softirq, has the same precedence).
const WORKER_NICE: i32 = -10;

/// Gives the calling worker thread `WORKER_NICE`; without the privilege
/// (CAP_SYS_NICE) it keeps the default and says so once.
fn raise_priority(index: usize) {
    // SAFETY: gettid(2) and setpriority(2) on the calling thread only.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICE)
    };
    if r != 0 && index == 0 {
        tracing::info!(
            error = %io::Error::last_os_error(),
            "workers keep the default priority (nice {WORKER_NICE} needs CAP_SYS_NICE)"
        );
    }
}

#[cfg(test)]
mod tests;
