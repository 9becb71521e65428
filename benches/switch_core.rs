//! Frames per second of the switch core on in-memory ports (64 B and 1500 B
//! frames, unicast to a learned MAC and flooded; 64 B IPv4 with and without
//! port security on the sending interface), the MAC table under learning
//! churn, a worker forwarding between real descriptors (socket pairs:
//! the cost of epoll, the reads and the writes, without a kernel stack;
//! and a saturated port's frames handed to the other worker), and VLANs: 64 B unicast from an access port to a trunk (a tag put in)
//! and back (a tag taken out), against the same ports without VLANs.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use niswitch::config::Mac;
use niswitch::frame::VNET_HDR_LEN;
use niswitch::ports::memory::{MemoryPort, Shared};
use niswitch::ports::pair::{self, PairPort, QueuesPort};
use niswitch::switch::workers::{Options, Workers};
use niswitch::switch::{Domain, MacTable, PortEntry, PortRole, PortSpec, Switch};

fn mac(n: u32) -> Mac {
    let b = n.to_be_bytes();
    Mac([2, 0, b[0], b[1], b[2], b[3]])
}

fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; VNET_HDR_LEN];
    v.extend(dst.0);
    v.extend(src.0);
    v.extend([0x08, 0x00]);
    v.resize(VNET_HDR_LEN + len, 0);
    v
}

fn setup(n: usize) -> (Arc<Switch>, Vec<Arc<PortEntry>>) {
    let sw = Switch::new();
    let d = Domain::new("bench");
    let ports = (0..n)
        .map(|i| {
            sw.add_port(
                &d,
                PortSpec::new(
                    format!("p{i}"),
                    PortRole::Other,
                    Box::new(Shared(MemoryPort::sink())),
                    1500,
                )
                .own_mac(mac(i as u32 + 1)),
            )
            .expect("port")
        })
        .collect();
    (sw, ports)
}

fn forwarding(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    for len in [64usize, 1500] {
        for batch in [1usize, 32] {
            let (sw, ports) = setup(4);
            // Teach the table where mac(2) lives.
            sw.process(&ports[1], &frame(Mac::BROADCAST, mac(2), 64), 1);
            let f = frame(mac(2), mac(1), len);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("unicast_{len}B"), batch),
                &batch,
                |b, &batch| {
                    b.iter(|| {
                        for _ in 0..batch {
                            sw.process(&ports[0], &f, 1);
                        }
                    })
                },
            );
        }
        let (sw, ports) = setup(4);
        let f = frame(Mac::BROADCAST, mac(1), len);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("flood_{len}B_to_3"), |b| {
            b.iter(|| sw.process(&ports[0], &f, 1))
        });
    }
    g.finish();
}

/// A 64-byte IPv4 UDP frame from 10.0.0.1.
fn udp_frame(dst: Mac, src: Mac) -> Vec<u8> {
    let mut v = frame(dst, src, 64);
    let ip = VNET_HDR_LEN + 14;
    v[ip..ip + 20].copy_from_slice(&[
        0x45, 0, 0, 50, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    v[ip + 20..ip + 24].copy_from_slice(&[0x13, 0x88, 0x13, 0x89]);
    v
}

fn port_security(c: &mut Criterion) {
    let mut g = c.benchmark_group("port_security");
    g.throughput(Throughput::Elements(32));
    for (name, on) in [("off", false), ("strict", true)] {
        let (sw, ports) = setup(4);
        sw.process(&ports[1], &frame(Mac::BROADCAST, mac(2), 64), 1);
        ports[0].guard.enable(on, true);
        ports[0].guard.set(&["10.0.0.1".parse().expect("ip")]);
        let f = udp_frame(mac(2), mac(1));
        g.bench_function(format!("unicast_64B_udp_{name}"), |b| {
            b.iter(|| {
                for _ in 0..32 {
                    sw.process(&ports[0], &f, 1);
                }
            })
        });
        assert_eq!(
            ports[0]
                .stats
                .drop_counts()
                .iter()
                .map(|(_, n)| n)
                .sum::<u64>(),
            0
        );
    }
    g.finish();
}

fn table(c: &mut Criterion) {
    let t = MacTable::new(16384, 300, 16);
    for i in 0..1000 {
        t.learn(mac(i), (i % 4) as u16, 8192, 0);
    }
    let mut g = c.benchmark_group("mactable");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup_hit", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 1) % 1000;
            t.lookup(mac(i), 1)
        })
    });
    g.bench_function("refresh", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 1) % 1000;
            t.learn(mac(i), (i % 4) as u16, 8192, 1)
        })
    });
    g.bench_function("churn_random_sources", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(7919);
            t.learn(mac(1_000_000 + i), 5, 256, 2)
        })
    });
    g.finish();
}

/// 64-byte frames from one socket pair through a worker to another, sent
/// in bursts of 32 and read back.
fn worker(c: &mut Criterion) {
    pairs_bench(c, 1, "socketpair_64B_burst_32", 32);
}

/// Two socket-pair ports on `workers` floating workers; bursts of `burst`
/// 64-byte frames from the first to the second, read back. Returns the
/// frames the workers handed over.
fn pairs_bench(c: &mut Criterion, workers: usize, name: &str, burst: usize) -> u64 {
    let sw = Switch::new();
    let d = Domain::new("bench");
    let opts = Options {
        workers,
        busy_poll_us: 0,
        cpus: Vec::new(),
    };
    let workers = Workers::start(&sw, opts).expect("workers");
    let peers: Vec<_> = (0..2)
        .map(|i| {
            let (io, peer) = PairPort::new().expect("socketpair");
            let spec = PortSpec::new(format!("p{i}"), PortRole::Other, Box::new(io), 1500);
            let e = sw.add_port(&d, spec).expect("port");
            workers.attach(&e).expect("attach");
            peer
        })
        .collect();
    let mut buf = vec![0u8; 2048];
    // Teach the table where mac(2) lives.
    pair::send(&peers[1], &frame(Mac::BROADCAST, mac(2), 64)).expect("send");
    pair::recv(&peers[0], &mut buf, 1000).expect("flooded");
    let f = frame(mac(2), mac(1), 64);
    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(burst as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            for _ in 0..burst {
                pair::send(&peers[0], &f).expect("send");
            }
            for _ in 0..burst {
                pair::recv(&peers[1], &mut buf, 1000).expect("forwarded");
            }
        })
    });
    g.finish();
    let handed = workers.counts().iter().map(|w| w.spilled).sum();
    workers.shutdown();
    handed
}

/// 64-byte frames of two flows, one on each queue of a two-queue port, each
/// served by its own worker, to a plain port: what a multiqueue TAP buys
/// when workers have CPUs to run on.
fn multiqueue(c: &mut Criterion) {
    let sw = Switch::new();
    let d = Domain::new("bench");
    let opts = Options {
        workers: 2,
        busy_poll_us: 0,
        cpus: Vec::new(),
    };
    let workers = Workers::start(&sw, opts).expect("workers");
    let (io, queues) = QueuesPort::new(2).expect("socketpairs");
    let mq = sw.add_port(&d, PortSpec::new("mq", PortRole::Other, Box::new(io), 1500));
    workers.attach(&mq.expect("port")).expect("attach");
    let (io, out) = PairPort::new().expect("socketpair");
    let p = sw.add_port(&d, PortSpec::new("p", PortRole::Other, Box::new(io), 1500));
    workers.attach(&p.expect("port")).expect("attach");
    let mut buf = vec![0u8; 2048];
    pair::send(&out, &frame(Mac::BROADCAST, mac(2), 64)).expect("send");
    pair::recv(&queues[0], &mut buf, 1000).expect("flooded");
    let f = frame(mac(2), mac(1), 64);
    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(32));
    g.bench_function("two_queues_64B_burst_32", |b| {
        b.iter(|| {
            for i in 0..32 {
                pair::send(&queues[i % 2], &f).expect("send");
            }
            for _ in 0..32 {
                pair::recv(&out, &mut buf, 1000).expect("forwarded");
            }
        })
    });
    g.finish();
    workers.shutdown();
}

/// Bursts of 128 64-byte frames from one port to another, each port on its
/// own floating worker: after a whole batch the sender's worker only reads
/// and hands the frames to the receiver's worker, which switches and writes
/// them (`spill`).
fn spill(c: &mut Criterion) {
    let handed = pairs_bench(c, 2, "spill_64B_burst_128", 128);
    assert!(handed > 0, "no frame was handed over");
}

/// Port 0 on access VLAN 100 (or nothing with `vlans` false), port 1 a trunk.
fn vlan(c: &mut Criterion) {
    let mut g = c.benchmark_group("vlan");
    g.throughput(Throughput::Elements(32));
    for (name, vlans) in [("untagged", false), ("tagged", true)] {
        let (sw, ports) = setup(2);
        let carried = if vlans {
            [100].into()
        } else {
            Default::default()
        };
        ports[0]
            .domain
            .set_vlans(&carried, |e| if e.name == "p0" { 100 } else { 0 });
        let mut back = frame(mac(1), mac(2), 64);
        if vlans {
            let at = VNET_HDR_LEN + 12;
            back.splice(at..at, [0x81, 0, 0, 100]);
        }
        let out = frame(mac(2), mac(1), 64);
        g.bench_function(format!("access_to_trunk_64B_{name}"), |b| {
            b.iter(|| {
                for _ in 0..32 {
                    sw.process(&ports[0], &out, 1);
                }
            })
        });
        g.bench_function(format!("trunk_to_access_64B_{name}"), |b| {
            b.iter(|| {
                for _ in 0..32 {
                    sw.process(&ports[1], &back, 1);
                }
            })
        });
        let drops: u64 = (ports.iter())
            .flat_map(|p| p.stats.drop_counts())
            .map(|(_, n)| n)
            .sum();
        assert_eq!(drops, 0);
    }
    g.finish();
}

criterion_group!(
    benches,
    forwarding,
    port_security,
    table,
    worker,
    multiqueue,
    spill,
    vlan
);
criterion_main!(benches);
