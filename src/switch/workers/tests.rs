//! Worker tests on real descriptors: each port is one end of a datagram
//! socket pair (`ports::pair`), the test holds the other end.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;

use super::*;
use crate::config::Mac;
use crate::frame::VNET_HDR_LEN;
use crate::ports::PortIo;
use crate::ports::pair::{self, PairPort, QueuesPort};
use crate::switch::tests::{frame as sized, mac};
use crate::switch::{Domain, PortHook, PortRole, PortSpec};

/// A pair port whose `recv` reports errors of one kind while `left` > 0.
struct Failing {
    inner: PairPort,
    fail: Option<(io::ErrorKind, Arc<AtomicU32>)>,
}

impl PortIo for Failing {
    fn fd(&self) -> Option<RawFd> {
        self.inner.fd()
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, left)) = &self.fail
            && left.load(Relaxed) > 0
        {
            left.fetch_sub(1, Relaxed);
            return Err(io::Error::new(*kind, "injected"));
        }
        self.inner.recv(buf)
    }
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        self.inner.send(pkt)
    }
}

/// A 60-byte frame whose payload is all `tag`.
fn frame(dst: Mac, src: Mac, tag: u8) -> Vec<u8> {
    let mut f = sized(dst, src, 60);
    f[VNET_HDR_LEN + 14..].fill(tag);
    f
}

/// A switch with `n` ports in one domain, served by `workers` workers.
struct Lab {
    sw: Arc<Switch>,
    workers: Workers,
    ports: Vec<Arc<PortEntry>>,
    peers: Vec<OwnedFd>,
}

impl Lab {
    fn new(n: usize, workers: usize) -> Lab {
        Lab::with_io(n, workers, |_| None)
    }

    fn with_io(
        n: usize,
        workers: usize,
        fail: impl Fn(usize) -> Option<(io::ErrorKind, Arc<AtomicU32>)>,
    ) -> Lab {
        let sw = Switch::new();
        let d = Domain::new("d");
        let w = Workers::start(
            &sw,
            Options {
                workers,
                busy_poll_us: 20,
                cpus: Vec::new(),
            },
        )
        .expect("workers");
        let (mut ports, mut peers) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (inner, theirs) = PairPort::new().expect("socketpair");
            let io = Failing {
                inner,
                fail: fail(i),
            };
            let spec = PortSpec::new(format!("p{i}"), PortRole::Other, Box::new(io), 1500);
            let e = sw.add_port(&d, spec).expect("port");
            w.attach(&e).expect("attach");
            ports.push(e);
            peers.push(theirs);
        }
        Lab {
            sw,
            workers: w,
            ports,
            peers,
        }
    }

    fn send(&self, i: usize, pkt: &[u8]) {
        pair::send(&self.peers[i], pkt).expect("send");
    }

    /// The next frame port `i` put out, waiting up to a second.
    fn recv(&self, i: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        let n = pair::recv(&self.peers[i], &mut buf, 1000).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Every port says hello (a broadcast), so all MACs are learned.
    fn learn_all(&self) {
        for i in 0..self.ports.len() {
            self.send(i, &frame(Mac::BROADCAST, mac(i as u8 + 1), 0));
            for j in (0..self.ports.len()).filter(|j| *j != i) {
                assert!(self.recv(j).is_some(), "broadcast from p{i} reaches p{j}");
            }
        }
    }
}

#[test]
fn one_worker_forwards_between_all_its_ports() {
    let lab = Lab::new(4, 1);
    lab.learn_all();
    for i in 0..4 {
        for j in (0..4).filter(|j| *j != i) {
            let f = frame(mac(j as u8 + 1), mac(i as u8 + 1), (i * 4 + j) as u8);
            lab.send(i, &f);
            assert_eq!(lab.recv(j).as_deref(), Some(&f[..]), "p{i} to p{j}");
        }
    }
    assert_eq!(lab.ports[0].stats.rx_packets(), 4);
    assert_eq!(lab.ports[0].stats.tx_packets(), 6);
}

#[test]
fn ports_spread_over_workers_and_still_reach_each_other() {
    let lab = Lab::new(4, 2);
    let loads: Vec<usize> = lab
        .workers
        .shared
        .iter()
        .map(|s| s.load.load(Relaxed))
        .collect();
    assert_eq!(loads, vec![2, 2], "two ports each");
    lab.learn_all();
    // Order is kept per flow.
    for n in 0..50u8 {
        lab.send(0, &frame(mac(2), mac(1), n));
    }
    for n in 0..50u8 {
        let got = lab.recv(1).expect("frame");
        assert_eq!(got[VNET_HDR_LEN + 20], n, "in order");
    }
}

#[test]
fn each_queue_of_a_multiqueue_port_has_its_own_worker() {
    let sw = Switch::new();
    let d = Domain::new("d");
    let opts = Options {
        workers: 2,
        busy_poll_us: 20,
        cpus: Vec::new(),
    };
    let w = Workers::start(&sw, opts).expect("workers");
    let (io, theirs) = QueuesPort::new(2).expect("socketpairs");
    let (t0, t1) = (&theirs[0], &theirs[1]);
    let io = Box::new(io);
    let mq = sw
        .add_port(&d, PortSpec::new("mq", PortRole::Other, io, 1500))
        .expect("port");
    w.attach(&mq).expect("attach");
    let (plain, tp) = PairPort::new().expect("socketpair");
    let spec = PortSpec::new("p", PortRole::Other, Box::new(plain), 1500);
    let p = sw.add_port(&d, spec).expect("port");
    w.attach(&p).expect("attach");
    let loads =
        |w: &Workers| -> Vec<usize> { w.shared.iter().map(|s| s.load.load(Relaxed)).collect() };
    assert_eq!(loads(&w), vec![2, 1], "a queue each, then the plain port");
    let mut buf = vec![0u8; 2048];
    // Frames on either queue are read (each by its own worker).
    for (tag, (peer, src)) in [(t0, 1u8), (t1, 3u8)].into_iter().enumerate() {
        pair::send(peer, &frame(Mac::BROADCAST, mac(src), tag as u8)).expect("send");
        let n = pair::recv(&tp, &mut buf, 1000).expect("flooded to p");
        assert_eq!(buf[VNET_HDR_LEN + 20..n][0], tag as u8);
    }
    // A worker counts its frames after the round that wrote them out.
    wait_for("both workers to count a frame", || {
        w.counts().iter().all(|c| c.frames >= 1)
    });
    // p is served by worker 0, which writes on queue 0.
    pair::send(&tp, &frame(mac(1), mac(2), 9)).expect("send");
    assert!(pair::recv(t0, &mut buf, 1000).is_ok(), "answer on queue 0");
    assert!(pair::recv(t1, &mut buf, 100).is_err(), "nothing on queue 1");
    // Releasing the port lets go of both queues.
    sw.remove_port(&mq);
    w.release(std::slice::from_ref(&mq));
    assert_eq!(Arc::strong_count(&mq), 1);
    assert_eq!(loads(&w), vec![1, 0]);
}

/// Panics on frames whose payload starts with 0xee.
struct PanicOnMarker;

impl PortHook for PanicOnMarker {
    fn egress(&self, p: &crate::frame::Packet) -> Result<(), DropReason> {
        if p.frame().get(14) == Some(&0xee) {
            panic!("injected panic");
        }
        Ok(())
    }
    fn ingress(&self, _p: &crate::frame::Packet) -> Result<(), DropReason> {
        Ok(())
    }
}

#[test]
fn a_panic_on_one_frame_is_counted_and_forwarding_goes_on() {
    let lab = Lab::new(2, 1);
    lab.learn_all();
    lab.ports[0].set_hook(Some(Box::new(PanicOnMarker)));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    lab.send(0, &frame(mac(2), mac(1), 0xee));
    let ok = frame(mac(2), mac(1), 1);
    lab.send(0, &ok);
    let got = lab.recv(1);
    std::panic::set_hook(hook);
    assert_eq!(got.as_deref(), Some(&ok[..]));
    assert_eq!(lab.ports[0].stats.drops(DropReason::Internal), 1);
}

#[test]
fn an_oversized_frame_is_counted_and_the_next_one_passes_at_once() {
    let left = Arc::new(AtomicU32::new(0));
    let l2 = left.clone();
    let lab = Lab::with_io(2, 1, move |i| {
        (i == 0).then(|| (io::ErrorKind::InvalidData, l2.clone()))
    });
    lab.learn_all();
    left.store(1, Relaxed);
    let f = frame(mac(2), mac(1), 7);
    let t0 = Instant::now();
    lab.send(0, &f);
    assert_eq!(lab.recv(1).as_deref(), Some(&f[..]));
    assert!(t0.elapsed() < Duration::from_millis(45), "no stall");
    assert_eq!(lab.ports[0].stats.drops(DropReason::RxError), 1);
}

#[test]
fn a_port_that_keeps_failing_rests_instead_of_spinning() {
    let left = Arc::new(AtomicU32::new(0));
    let l2 = left.clone();
    let lab = Lab::with_io(2, 1, move |i| {
        (i == 0).then(|| (io::ErrorKind::Other, l2.clone()))
    });
    lab.learn_all();
    left.store(u32::MAX, Relaxed);
    // Readable but failing: the worker backs off and rests the port, so
    // two rounds of errors take at least one rest, not a spin's microseconds.
    let t0 = Instant::now();
    lab.send(0, &frame(mac(2), mac(1), 1));
    let errors = || lab.ports[0].stats.drops(DropReason::RxError);
    while errors() < 2 * u64::from(ERRORS_TO_REST) {
        assert!(t0.elapsed() < Duration::from_secs(5), "{} errors", errors());
        std::thread::yield_now();
    }
    assert!(
        t0.elapsed() >= REST,
        "rested between rounds: {:?}",
        t0.elapsed()
    );
    // The other port is served meanwhile.
    let f = frame(mac(1), mac(2), 2);
    lab.send(1, &f);
    assert!(lab.recv(0).is_some());
    // Once the port recovers, its frame is read.
    left.store(0, Relaxed);
    assert!(
        lab.recv(1).is_some(),
        "the waiting frame passes after the rest"
    );
}

#[test]
fn a_released_port_is_no_longer_read_or_held() {
    let lab = Lab::new(2, 1);
    lab.learn_all();
    let p0 = lab.ports[0].clone();
    lab.sw.remove_port(&p0);
    lab.workers.release(std::slice::from_ref(&p0));
    // Only this test and the lab hold it: the worker let go.
    assert_eq!(Arc::strong_count(&p0), 2);
    lab.send(0, &frame(mac(2), mac(1), 3));
    assert!(lab.recv(1).is_none(), "nothing read from a released port");
    assert_eq!(lab.workers.shared[0].load.load(Relaxed), 1);
}

/// The nice value of this process's thread named `name`.
fn nice_of_thread(name: &str) -> Option<i32> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after "(comm)": state is the 1st, nice the 17th.
            let rest = stat.rsplit_once(')')?.1;
            return rest.split_whitespace().nth(16)?.parse().ok();
        }
    }
    None
}

/// Whether this process may give a thread `WORKER_NICE` (tried on a
/// thread of its own).
fn may_raise_priority() -> bool {
    std::thread::spawn(|| {
        // SAFETY: gettid(2) and setpriority(2) on the calling thread only.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICE) == 0
        }
    })
    .join()
    .unwrap_or(false)
}

#[test]
fn workers_run_ahead_of_the_apps_when_allowed() {
    let lab = Lab::new(1, 1);
    let nice = nice_of_thread("worker-0").expect("the worker thread");
    if may_raise_priority() {
        assert_eq!(nice, WORKER_NICE);
    } else {
        assert_eq!(nice, 0, "without the privilege the default stays");
    }
    drop(lab);
}

/// Waits up to 5 s for `cond`.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_busy_port_hands_its_frames_to_the_idle_partner_in_order() {
    let sw = Switch::new();
    let d = Domain::new("d");
    let opts = Options {
        workers: 2,
        busy_poll_us: 0,
        cpus: Vec::new(),
    };
    let w = Workers::start(&sw, opts).expect("workers");
    let (a, a_peer) = PairPort::new().expect("socketpair");
    let (b, b_peer) = PairPort::new().expect("socketpair");
    let spec = |name: &str, io: PairPort, m: u8| {
        PortSpec::new(name, PortRole::Other, Box::new(io), 1500).pinned(mac(m))
    };
    let pa = sw.add_port(&d, spec("a", a, 1)).expect("port a");
    let pb = sw.add_port(&d, spec("b", b, 2)).expect("port b");
    pa.set_hook(Some(Box::new(PanicOnMarker)));
    // Frames wait in a's queue before a worker polls it, so that the first
    // batch read is a whole one; one frame in the middle panics.
    let mut sent = Vec::new();
    for n in 0..120u8 {
        if n == 60 {
            pair::send(&a_peer, &frame(mac(2), mac(1), 0xee)).expect("send");
        }
        let f = frame(mac(2), mac(1), n);
        pair::send(&a_peer, &f).expect("send");
        sent.push(f);
    }
    // b goes to worker 0, which then sleeps; a to worker 1, whose partner
    // is worker 0.
    w.attach(&pb).expect("attach b");
    wait_for("worker 0 sleeps with b", || w.counts()[0].sleeps >= 2);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    w.attach(&pa).expect("attach a");
    let mut buf = vec![0u8; 2048];
    let mut got = Vec::new();
    while let Ok(n) = pair::recv(&b_peer, &mut buf, 1000) {
        got.push(buf[..n].to_vec());
        if got.len() == sent.len() {
            break;
        }
    }
    std::panic::set_hook(hook);
    assert!(
        got == sent,
        "all {} frames in order, got {}",
        sent.len(),
        got.len()
    );
    let spilled = w.counts()[1].spilled;
    assert!(
        spilled > 0 && spilled < 121,
        "worker 1 handed over {spilled}"
    );
    assert_eq!(
        pa.stats.drops(DropReason::Internal),
        1,
        "the panic is counted"
    );
    // Once the partner has switched them all, worker 1 switches again. The
    // partner counts a frame done after writing it out.
    wait_for("the partner to finish what it was handed", || {
        w.shared[0].spill.is_empty()
    });
    let f = frame(mac(2), mac(1), 200);
    pair::send(&a_peer, &f).expect("send");
    assert_eq!(pair::recv(&b_peer, &mut buf, 1000).ok(), Some(f.len()));
    assert_eq!(
        w.counts()[1].spilled,
        spilled,
        "a lone frame is not handed over"
    );
    // The ring let go of the port with its frames.
    sw.remove_port(&pa);
    w.release(std::slice::from_ref(&pa));
    assert_eq!(Arc::strong_count(&pa), 1);
}

#[test]
fn frames_are_handed_over_one_way_at_a_time_to_a_quiet_partner() {
    let sw = Switch::new();
    let (io, _peer) = PairPort::new().expect("socketpair");
    let spec = PortSpec::new("a", PortRole::Other, Box::new(io), 1500);
    let port = sw.add_port(&Domain::new("d"), spec).expect("port");
    let (own, partner) = (Shared::new().expect("own"), Shared::new().expect("partner"));
    let mut slot = Slot {
        port: port.clone(),
        queue: 0,
        errors: 0,
        full: true,
        spilling: None,
    };
    assert!(partner.spill.may_sleep(), "the partner sleeps");
    let mode = |slot: &mut Slot| spill_mode(slot, &own, Some(&partner));
    partner.full_at_ms.store(clock::mono_ms(), Relaxed);
    assert!(
        matches!(mode(&mut slot), Mode::Own),
        "the partner just switched a whole batch of its own"
    );
    partner.full_at_ms.store(0, Relaxed);
    assert!(matches!(mode(&mut slot), Mode::Spill), "an idle partner");
    // Frames were handed over and are not all switched yet.
    assert!(hand_one(&partner.spill, &port));
    slot.spilling = Some(partner.spill.pushed());
    assert!(hand_one(&own.spill, &port), "the partner hands one back");
    assert!(
        matches!(mode(&mut slot), Mode::Wait),
        "handed frames, the worker hands none over and waits for its own"
    );
    let back = own.spill.pop().expect("the frame handed back");
    own.spill.finish(back);
    own.spill.kick();
    assert!(
        matches!(mode(&mut slot), Mode::Wait),
        "the partner handed a frame over just now: it may hand more"
    );
    wait_for("the hand-over to be a while ago", || {
        !own.spill.pushed_lately(clock::mono_ms())
    });
    assert!(matches!(mode(&mut slot), Mode::Spill), "one way again");
    partner.full_at_ms.store(clock::mono_ms(), Relaxed);
    assert!(
        matches!(mode(&mut slot), Mode::Wait),
        "the partner is kept busy by a port of its own now"
    );
    let s = partner.spill.pop().expect("the frame handed over");
    partner.spill.finish(s);
    assert!(matches!(mode(&mut slot), Mode::Own), "all switched");
}

/// Hands one frame over through `ring`; whether there was room.
fn hand_one(ring: &SpillRing, port: &Arc<PortEntry>) -> bool {
    let mut frames = ring.frames();
    frames.add(&[0u8; 60]);
    ring.push(port, frames).is_ok()
}
