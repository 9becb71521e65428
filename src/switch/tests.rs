//! Switch-core tests on in-memory ports.

use super::*;
use crate::frame::VNET_HDR_LEN;
use crate::ports::memory::{MemoryPort, Shared};

pub(super) fn mac(last: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, last])
}

pub(super) fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; VNET_HDR_LEN];
    v.extend(dst.0);
    v.extend(src.0);
    v.extend([0x08, 0x00]);
    v.resize(VNET_HDR_LEN + len, 0xab);
    v
}

struct Bench {
    sw: Arc<Switch>,
    ports: Vec<(Arc<PortEntry>, Arc<MemoryPort>)>,
}

fn setup(n: usize, vif: bool) -> Bench {
    let sw = Switch::new();
    let d = Domain::new("d");
    let ports = (0..n)
        .map(|i| {
            let m = MemoryPort::capturing();
            let e = sw
                .add_port(
                    &d,
                    PortSpec {
                        own_mac: vif.then(|| mac(i as u8 + 1)),
                        ..PortSpec::new(
                            format!("p{i}"),
                            PortRole::Other,
                            Box::new(Shared(m.clone())),
                            1500,
                        )
                    },
                )
                .unwrap();
            (e, m)
        })
        .collect();
    Bench { sw, ports }
}

#[test]
fn floods_unknown_then_learns() {
    let b = setup(3, false);
    let (p0, p1, p2) = (&b.ports[0], &b.ports[1], &b.ports[2]);
    b.sw.process(&p0.0, &frame(mac(2), mac(1), 60), 1);
    assert_eq!(p1.1.take().len(), 1);
    assert_eq!(p2.1.take().len(), 1);
    assert!(p0.1.take().is_empty(), "never back out of the ingress port");
    // p1 answers: unicast to a known MAC goes only to p0.
    b.sw.process(&p1.0, &frame(mac(1), mac(2), 60), 1);
    assert_eq!(p0.1.take().len(), 1);
    assert!(p2.1.take().is_empty());
    // And now p0 -> mac(2) is unicast too.
    b.sw.process(&p0.0, &frame(mac(2), mac(1), 60), 1);
    assert_eq!(p1.1.take().len(), 1);
    assert!(p2.1.take().is_empty());
    // Broadcast floods.
    b.sw.process(&p0.0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert_eq!((p1.1.take().len(), p2.1.take().len()), (1, 1));
    assert_eq!(p0.0.stats.rx_packets(), 3);
    assert_eq!(p1.0.stats.tx_packets(), 3);
}

#[test]
fn malformed_frames_are_counted_and_dropped() {
    let b = setup(2, false);
    let p0 = &b.ports[0].0;
    b.sw.process(p0, &[0u8; 5], 1);
    b.sw.process(p0, &[0u8; VNET_HDR_LEN + 13], 1);
    let mut bad = frame(mac(2), mac(1), 60);
    bad[1] = 7;
    b.sw.process(p0, &bad, 1);
    b.sw.process(p0, &frame(mac(2), Mac([1, 0, 0, 0, 0, 1]), 60), 1);
    b.sw.process(p0, &frame(mac(2), Mac([0; 6]), 60), 1);
    assert_eq!(p0.stats.drops(DropReason::Runt), 2);
    assert_eq!(p0.stats.drops(DropReason::BadVnetHeader), 1);
    assert_eq!(p0.stats.drops(DropReason::InvalidSrcMac), 2);
    assert!(b.ports[1].1.take().is_empty());
    b.sw.process(p0, &frame(mac(2), mac(1), 60), 1);
    assert_eq!(b.ports[1].1.take().len(), 1, "still forwarding");
}

#[test]
fn spoofed_source_is_dropped() {
    let b = setup(2, true);
    let p0 = &b.ports[0].0;
    b.sw.process(p0, &frame(Mac::BROADCAST, mac(9), 60), 1);
    assert_eq!(p0.stats.drops(DropReason::SpoofedSrcMac), 1);
    assert!(b.ports[1].1.take().is_empty());
    assert_eq!(
        p0.domain.table.lookup(mac(9), 1),
        None,
        "spoofed MAC not learned"
    );
    b.sw.process(p0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert_eq!(b.ports[1].1.take().len(), 1);
}

#[test]
fn too_big_is_dropped_never_truncated() {
    let b = setup(2, false);
    let p0 = &b.ports[0].0;
    b.sw.process(p0, &frame(Mac::BROADCAST, mac(1), 14 + 1501), 1);
    assert_eq!(b.ports[1].0.stats.drops(DropReason::TooBig), 1);
    b.sw.process(p0, &frame(Mac::BROADCAST, mac(1), 14 + 1500), 1);
    let got = b.ports[1].1.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), VNET_HDR_LEN + 14 + 1500);
    // A 64 KiB GSO frame whose segments fit passes whole.
    let mut gso = frame(Mac::BROADCAST, mac(1), 65000);
    gso[..VNET_HDR_LEN].copy_from_slice(&[1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
    gso[VNET_HDR_LEN + 34 + 12] = 8 << 4;
    b.sw.process(p0, &gso, 1);
    assert_eq!(b.ports[1].1.take()[0].len(), gso.len());
    // The same from a NIC whose driver reports its linear length (128) as
    // hdr_len: the TCP header (32 bytes at 34) says the segments fit.
    gso[..VNET_HDR_LEN].copy_from_slice(&[1, 1, 128, 0, 0xa8, 0x05, 34, 0, 16, 0]);
    b.sw.process(p0, &gso, 1);
    assert_eq!(b.ports[1].1.take().len(), 1, "not dropped as too big");
    assert_eq!(b.ports[1].0.stats.drops(DropReason::TooBig), 1);
}

#[test]
fn link_down_port_is_skipped_others_keep_working() {
    let b = setup(3, false);
    b.ports[2].0.link_up.store(false, Relaxed);
    b.sw.process(&b.ports[0].0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert_eq!(b.ports[1].1.take().len(), 1);
    assert!(b.ports[2].1.take().is_empty());
    assert_eq!(b.ports[2].0.stats.drops(DropReason::LinkDown), 1);
}

#[test]
fn removed_port_leaves_domain_and_table() {
    let b = setup(3, false);
    b.sw.process(
        &b.ports[2].0,
        &frame(Mac::BROADCAST, mac(3), 60),
        now_secs(),
    );
    b.sw.remove_port(&b.ports[2].0);
    b.ports[0].1.take();
    b.ports[1].1.take();
    b.sw.process(&b.ports[0].0, &frame(mac(3), mac(1), 60), now_secs());
    assert_eq!(
        b.ports[1].1.take().len(),
        1,
        "unknown again: flooded to the rest"
    );
    assert!(b.ports[2].1.take().is_empty());
    assert_eq!(b.ports[2].0.domain.members().len(), 2);
}

#[test]
fn separate_domains_do_not_leak() {
    let sw = Switch::new();
    let (d1, d2) = (Domain::new("a"), Domain::new("b"));
    let mk = |d: &Arc<Domain>, n: &str| {
        let m = MemoryPort::capturing();
        let e = sw
            .add_port(
                d,
                PortSpec::new(n, PortRole::Other, Box::new(Shared(m.clone())), 1500),
            )
            .unwrap();
        (e, m)
    };
    let a1 = mk(&d1, "a1");
    let a2 = mk(&d1, "a2");
    let b1 = mk(&d2, "b1");
    sw.process(&a1.0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert_eq!(a2.1.take().len(), 1);
    assert!(b1.1.take().is_empty());
}

#[test]
fn a_bpdu_from_an_app_interface_disables_it_and_no_control_frame_is_forwarded() {
    let stp = Mac([0x01, 0x80, 0xc2, 0, 0, 0]);
    let lldp = Mac([0x01, 0x80, 0xc2, 0, 0, 0x0e]);
    let lacp = Mac([0x01, 0x80, 0xc2, 0, 0, 0x02]);
    // From a port without its own MAC (a NIC): dropped, nothing tripped.
    let nic = setup(2, false);
    for dst in [stp, lacp, lldp] {
        nic.sw.process(&nic.ports[0].0, &frame(dst, mac(1), 60), 1);
    }
    assert!(nic.ports[1].1.take().is_empty());
    assert_eq!(nic.ports[0].0.stats.drops(DropReason::LinkLocal), 3);
    assert!(!nic.ports[0].0.bpdu_guard_tripped());
    // LLDP passes when the NI forwards it.
    nic.ports[0].0.domain.forward_lldp.store(true, Relaxed);
    nic.sw.process(&nic.ports[0].0, &frame(lldp, mac(1), 60), 1);
    assert_eq!(nic.ports[1].1.take().len(), 1);

    // From an app interface: a BPDU trips its guard; it neither sends nor
    // receives until reset, and the others go on.
    let b = setup(3, true);
    let (p0, p1, p2) = (&b.ports[0], &b.ports[1], &b.ports[2]);
    b.sw.process(&p0.0, &frame(stp, mac(1), 60), 1);
    assert!(p0.0.bpdu_guard_tripped());
    assert_eq!(p0.0.stats.drops(DropReason::BpduGuard), 1);
    b.sw.process(&p0.0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert!(p1.1.take().is_empty(), "a disabled interface sends nothing");
    b.sw.process(&p1.0, &frame(Mac::BROADCAST, mac(2), 60), 1);
    assert!(p0.1.take().is_empty(), "nor receives");
    assert_eq!(p2.1.take().len(), 1, "the others go on");
    p0.0.reset_bpdu_guard();
    b.sw.process(&p0.0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert_eq!(p1.1.take().len(), 1, "enabled again");
    // Cisco PVST+ counts as a BPDU too.
    b.sw.process(
        &p2.0,
        &frame(Mac([0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd]), mac(3), 60),
        1,
    );
    assert!(p2.0.bpdu_guard_tripped());
}

/// A router-like port: what is sent to it it hands back to the switch as
/// received on `out` (another port), readdressed to `to`, and it notes
/// whether that frame had already been switched when `inject` returned.
struct Reflector {
    sw: Arc<Switch>,
    out: std::sync::OnceLock<Arc<PortEntry>>,
    to: Mac,
    seen_before_return: Arc<MemoryPort>,
    nested: std::sync::atomic::AtomicBool,
    /// Hands back with `process` (a borrowed frame) instead of `inject`.
    by_process: std::sync::atomic::AtomicBool,
}

struct ReflectorIo(Arc<Reflector>);

impl PortIo for ReflectorIo {
    fn fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn recv(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let r = &self.0;
        let Some(out) = r.out.get() else {
            return Ok(());
        };
        let mut f = pkt.to_vec();
        f[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&r.to.0);
        f[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12].copy_from_slice(&out.own_mac.unwrap_or(mac(99)).0);
        let before = r.seen_before_return.count();
        if r.by_process.load(Relaxed) {
            r.sw.process(out, &f, 1);
        } else {
            r.sw.inject(out, &mut f, 1);
            assert!(f.is_empty(), "inject takes the buffer");
        }
        if r.seen_before_return.count() != before {
            r.nested.store(true, Relaxed);
        }
        Ok(())
    }
}

fn port_on(sw: &Switch, d: &Arc<Domain>, name: &str, m: &Arc<MemoryPort>) -> Arc<PortEntry> {
    let io = Box::new(Shared(m.clone()));
    sw.add_port(d, PortSpec::new(name, PortRole::Other, io, 1500))
        .unwrap()
}

/// A reflector with its inside port in `inside` and its outside one in
/// `outside` (neither storm-limited), watching `watch`.
fn reflector(
    sw: &Arc<Switch>,
    (inside, outside): (&Arc<Domain>, &Arc<Domain>),
    to: Mac,
    watch: Arc<MemoryPort>,
) -> Arc<Reflector> {
    let r = Arc::new(Reflector {
        sw: sw.clone(),
        out: std::sync::OnceLock::new(),
        to,
        seen_before_return: watch,
        nested: Default::default(),
        by_process: Default::default(),
    });
    let io = Box::new(ReflectorIo(r.clone()));
    let spec = PortSpec::new("in", PortRole::Other, io, 1500).own_mac(mac(50));
    sw.add_port(inside, spec).unwrap().floods.set_limit(0);
    let null = Box::new(Shared(MemoryPort::sink()));
    let spec = PortSpec::new("out", PortRole::Other, null, 1500).own_mac(mac(51));
    let out = sw.add_port(outside, spec).unwrap();
    out.floods.set_limit(0);
    let _ = r.out.set(out);
    r
}

/// p0 and a reflector's inside port in one domain; its outside port and
/// the capturing p1 (the reflector watches it) in another.
fn across() -> (Arc<Switch>, Arc<Reflector>, Arc<PortEntry>, Arc<MemoryPort>) {
    let sw = Switch::new();
    let (d1, d2) = (Domain::new("d1"), Domain::new("d2"));
    let p0 = port_on(&sw, &d1, "p0", &MemoryPort::sink());
    let m1 = MemoryPort::capturing();
    port_on(&sw, &d2, "p1", &m1);
    let r = reflector(&sw, (&d1, &d2), mac(7), m1.clone());
    (sw, r, p0, m1)
}

#[test]
fn a_frame_handed_back_is_switched_after_the_pass_not_inside_it() {
    let (sw, r, p0, m1) = across();
    // Handed back with `inject` (taken), then with `process` (copied).
    for by_process in [false, true] {
        r.by_process.store(by_process, Relaxed);
        for i in 0..3u8 {
            let mut f = frame(mac(50), mac(1), 60);
            f[VNET_HDR_LEN + 20] = i;
            sw.process(&p0, &f, 1);
        }
        let got = m1.take();
        assert_eq!(
            got.len(),
            3,
            "every reflected frame reaches the other domain"
        );
        for (i, g) in got.iter().enumerate() {
            assert_eq!(&g[VNET_HDR_LEN..VNET_HDR_LEN + 6], &mac(7).0);
            assert_eq!(g[VNET_HDR_LEN + 20], i as u8, "in order");
        }
        assert!(
            !r.nested.load(Relaxed),
            "switched inside the reflector's send"
        );
    }
    // Outside a pass (a control thread), inject switches at once.
    let mut f = frame(mac(7), mac(51), 60);
    let out = r.out.get().unwrap().clone();
    sw.inject(&out, &mut f, 1);
    assert_eq!(m1.take().len(), 1);
}

#[test]
fn frames_going_round_in_circles_are_cut_off() {
    // The reflector's outside port is in the same domain as its inside one
    // and the frame is a broadcast: every hand-back comes back to it.
    let sw = Switch::new();
    let d = Domain::new("d");
    let m0 = MemoryPort::sink();
    let p0 = port_on(&sw, &d, "p0", &m0);
    let r = reflector(&sw, (&d, &d), Mac::BROADCAST, MemoryPort::sink());
    let out = r.out.get().unwrap().clone();
    sw.process(&p0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert_eq!(out.stats.drops(DropReason::TxFull), 1, "the loop is cut");
    let passes = m0.count();
    assert!((256..=300).contains(&passes), "bounded: {passes}");
    // The next frame gets a pass of its own.
    sw.process(&p0, &frame(Mac::BROADCAST, mac(1), 60), 1);
    assert!(m0.count() > passes + 200);
}

/// Panics on every frame it is asked about.
struct Panics;

impl PortHook for Panics {
    fn egress(&self, _p: &Packet) -> Result<(), DropReason> {
        panic!("injected panic");
    }
    fn ingress(&self, _p: &Packet) -> Result<(), DropReason> {
        Ok(())
    }
}

#[test]
fn a_panic_on_a_handed_back_frame_ends_the_pass() {
    let (sw, r, p0, m1) = across();
    let out = r.out.get().unwrap().clone();
    out.set_hook(Some(Box::new(Panics)));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let f = frame(mac(50), mac(1), 60);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sw.process(&p0, &f, 1);
    }));
    std::panic::set_hook(hook);
    assert!(
        caught.is_err(),
        "the hook panicked on the handed-back frame"
    );
    // The thread is out of the pass: the next frame is switched, not queued.
    out.set_hook(None);
    sw.process(&p0, &f, 1);
    assert_eq!(m1.take().len(), 1);
}
