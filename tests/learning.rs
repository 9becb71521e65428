//! MAC learning proven by capture, anti-spoofing, isolation of a port-less
//! switch NI, and malformed frames from an app counted and dropped while
//! forwarding goes on.

mod common;
use common::*;

const P: &str = "nswlrn";
const FLOW_ORDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flow_order.py");
const TCP_MOVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tcp_move.py");

fn config() -> String {
    let app = |n: &str, u: u8, ni: &str| {
        format!(
            "  - {{ name: {n}, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430{u:02x}, interfaces: [{{ ni: {ni}, tap: {P}-{n}, netns: {P}-{n} }}] }}\n"
        )
    };
    format!(
        "version: 1\nports:\n  - {{ name: lan, device: {P}-nic }}\nnetwork_instances:\n  - {{ name: iso, type: switch }}\n  - {{ name: onlan, type: switch, port: lan }}\napps:\n{}{}{}{}",
        app("a", 1, "iso"),
        app("b", 2, "iso"),
        app("c", 3, "iso"),
        app("d", 4, "onlan")
    )
}

struct Lab {
    sb: Sandbox,
    d: Daemon,
    ns: Vec<String>,
    up: String,
}

fn lab(prefix_suffix: &str) -> Lab {
    lab_with(prefix_suffix, "")
}

/// The lab with `extra` (top-level config sections) added to the config.
fn lab_with(prefix_suffix: &str, extra: &str) -> Lab {
    let p = format!("{P}{prefix_suffix}");
    let mut sb = Sandbox::new(&p).unwrap();
    let (dev, up) = dev_and_up(&mut sb, &format!("{p}-nic"), &format!("{p}-lan"));
    // The config names namespaces with P; keep a per-test prefix by rewriting.
    let ns: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| sb.ns(n).unwrap())
        .collect();
    assert!(sb.ok(&up, &format!("ip addr add 10.9.0.254/24 dev {p}-lan")));
    let cfg = format!("{}{extra}", config().replace(P, &p));
    let d = start(&mut sb, &dev, &cfg, "nsw");
    for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
        assert!(sb.ok(
            &ns[i],
            &format!("ip addr add 10.9.0.{}/24 dev {p}-{n}", i + 1)
        ));
    }
    Lab { sb, d, ns, up }
}

/// Kills the lab's daemon (kill -9), changes `from` to `to` in its config,
/// starts it again and waits until a reaches b: the new daemon.
fn crash_and_restart(l: &mut Lab, from: &str, to: &str) -> Daemon {
    let ten = std::time::Duration::from_secs(10);
    l.sb.signal(l.d.pid, libc::SIGKILL);
    l.sb.wait(l.d.pid, ten);
    let cfg = std::fs::read_to_string(&l.d.config).expect("config");
    std::fs::write(&l.d.config, cfg.replace(from, to)).expect("config");
    let d = restart(&mut l.sb, &l.d, "nsw2.log", &[]);
    assert!(
        wait_until(ten, || ping(&l.sb, &l.ns[0], "10.9.0.2")),
        "{}",
        l.sb.log(&d.log)
    );
    d
}

#[test]
fn learned_unicast_is_not_flooded_but_broadcast_is() {
    if !root_or_skip("learned_unicast_is_not_flooded_but_broadcast_is") {
        return;
    }
    need(&["tcpdump", "ping"]);
    let mut l = lab("l");
    let p = l.sb.prefix().to_string();
    // a and b talk: both MACs are learned.
    assert!(ping(&l.sb, &l.ns[0], "10.9.0.2"));
    let cap = capture(
        &mut l.sb,
        &l.ns[2].clone(),
        &format!("{p}-c"),
        "icmp or arp",
        "c.pcap.txt",
    );
    // Forget the neighbour so a broadcasts an ARP request again, then unicast pings.
    l.sb.sh(&l.ns[0], &format!("ip neigh flush dev {p}-a"));
    assert!(l.sb.ok(&l.ns[0], "ping -c 5 -i 0.1 -W 1 10.9.0.2"));
    let seen = captured(&mut l.sb, cap, "c.pcap.txt");
    assert!(
        seen.contains("Request who-has 10.9.0.2"),
        "c sees a's broadcast:\n{seen}"
    );
    assert!(
        !seen.contains("ICMP echo"),
        "c must not see a<->b unicast:\n{seen}"
    );
    let st = l.d.status();
    let table = st["network_instances"][0]["mac_table"].to_string();
    assert!(
        table.contains(&format!("{p}-a")) && table.contains(&format!("{p}-b")),
        "{table}"
    );
    // The workers serve the NIC and the four app interfaces between them.
    let workers = st["dataplane"]["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!workers.is_empty(), "{st}");
    let sum = |k: &str| {
        workers
            .iter()
            .map(|w| w[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    // Each app TAP has a queue per worker; so has the NIC where its workers
    // are pinned (a fanout group, on Linux 6.2 and later; one socket before).
    let n = workers.len() as u64;
    let ports = sum("ports");
    assert!(ports == 1 + 4 * n || ports == 5 * n, "{st}");
    // With no dataplane section, a worker is pinned to each CPU.
    let cpus = allowed_cpus();
    let placed: Vec<_> = workers.iter().map(|w| w["cpu"].as_u64()).collect();
    if cpus.len() >= 2 {
        assert_eq!(
            placed,
            cpus.into_iter().map(Some).collect::<Vec<_>>(),
            "{st}"
        );
    } else {
        assert_eq!(placed, [None], "{st}");
    }
    assert!(sum("frames") >= 10, "{st}");
    assert_eq!(st["dataplane"]["busy_poll_us"], 0, "{st}");
}

#[test]
fn spoofed_source_mac_is_dropped_and_counted() {
    if !root_or_skip("spoofed_source_mac_is_dropped_and_counted") {
        return;
    }
    need(&["tcpdump"]);
    let mut l = lab("s");
    let p = l.sb.prefix().to_string();
    let cap = capture(
        &mut l.sb,
        &l.ns[1].clone(),
        &format!("{p}-b"),
        "udp port 9999",
        "b.txt",
    );
    let send = |src: &str, payload: &str| {
        format!(
            "/usr/bin/python3 -c \"from scapy.all import *; sendp(Ether(src='{src}',dst='ff:ff:ff:ff:ff:ff')/IP(src='10.9.0.1',dst='10.9.0.255')/UDP(sport=9999,dport=9999)/'{payload}', iface='{p}-a', count=5, verbose=0)\""
        )
    };
    assert!(l.sb.ok(&l.ns[0], &send("02:66:66:66:66:66", "spoofed")));
    let own = mac_of(&l.sb, &l.ns[0], &format!("{p}-a"));
    assert!(l.sb.ok(&l.ns[0], &send(&own, "genuine")));
    let seen = captured(&mut l.sb, cap, "b.txt");
    assert!(
        seen.matches("UDP").count() >= 5,
        "genuine frames arrive:\n{seen}"
    );
    assert!(
        !seen.contains("02:66:66:66:66:66") && seen.matches("UDP").count() < 10,
        "spoofed frames must not arrive:\n{seen}"
    );
    assert!(
        l.d.drops(&format!("{p}-a"), "spoofed_src_mac") >= 5,
        "{}",
        l.d.status()
    );
}

#[test]
fn portless_switch_ni_reaches_only_its_own_apps() {
    if !root_or_skip("portless_switch_ni_reaches_only_its_own_apps") {
        return;
    }
    let l = lab("i");
    assert!(ping(&l.sb, &l.ns[0], "10.9.0.3"), "a -> c inside the NI");
    assert!(
        !l.sb.ok(&l.ns[0], "ping -c 2 -i 0.2 -W 1 10.9.0.4"),
        "a must not reach d on another NI"
    );
    assert!(
        !l.sb.ok(&l.ns[0], "ping -c 2 -i 0.2 -W 1 10.9.0.254"),
        "a must not reach the LAN"
    );
    assert!(
        ping(&l.sb, &l.ns[3], "10.9.0.254"),
        "d on the port's NI reaches the LAN"
    );
    assert!(
        !l.sb.ok(&l.up, "ping -c 2 -i 0.2 -W 1 10.9.0.1"),
        "the LAN must not reach a"
    );
}

#[test]
fn malformed_frames_are_counted_and_forwarding_goes_on() {
    if !root_or_skip("malformed_frames_are_counted_and_forwarding_goes_on") {
        return;
    }
    let l = lab("m");
    let p = l.sb.prefix().to_string();
    let own = mac_of(&l.sb, &l.ns[0], &format!("{p}-a"));
    // Garbage of every length, a truncated IPv4 header, a bogus ethertype,
    // a multicast source, all from app a.
    let script = format!(
        "import os\nfrom scapy.all import *\nfor n in range(1, 200, 3):\n    sendp(Raw(os.urandom(n)), iface='{p}-a', verbose=0)\n\
         sendp(Ether(src='{own}', dst='ff:ff:ff:ff:ff:ff', type=0x0800)/Raw(b'\\x45\\x00'), iface='{p}-a', count=5, verbose=0)\n\
         sendp(Ether(src='{own}', dst='ff:ff:ff:ff:ff:ff', type=0x1234)/Raw(os.urandom(30)), iface='{p}-a', count=5, verbose=0)\n\
         sendp(Ether(src='01:00:5e:00:00:01', dst='ff:ff:ff:ff:ff:ff')/Raw(b'x'*50), iface='{p}-a', count=5, verbose=0)\n"
    );
    let file = write_file(&l.sb, "garbage.py", &script);
    assert!(
        l.sb.ok(&l.ns[0], &format!("/usr/bin/python3 {}", file.display())),
        "scapy ran"
    );
    let tap = format!("{p}-a");
    let dropped: u64 = [
        "runt",
        "invalid_src_mac",
        "spoofed_src_mac",
        "bad_vnet_header",
    ]
    .iter()
    .map(|r| l.d.drops(&tap, r))
    .sum();
    assert!(dropped >= 60, "garbage counted as drops: {}", l.d.status());
    assert!(l.d.drops(&tap, "invalid_src_mac") >= 5);
    assert!(ping(&l.sb, &l.ns[0], "10.9.0.2"), "still forwarding");
    assert!(ping(&l.sb, &l.ns[1], "10.9.0.3"), "still forwarding");
}

#[test]
fn vlan_tagged_frames_cross_the_nic_with_their_tag() {
    if !root_or_skip("vlan_tagged_frames_cross_the_nic_with_their_tag") {
        return;
    }
    need(&["tcpdump"]);
    let mut l = lab("v");
    let p = l.sb.prefix().to_string();
    let d_ns = l.ns[3].clone();
    let cap = capture(
        &mut l.sb,
        &d_ns,
        &format!("{p}-d"),
        "vlan 100 and udp port 9998",
        "d.txt",
    );
    let send = format!(
        "/usr/bin/python3 -c \"from scapy.all import *; sendp(Ether(src='02:77:00:00:00:01',dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=100)/IP(src='10.100.0.254',dst='10.100.0.255')/UDP(sport=9998,dport=9998)/'tagged', iface='{p}-lan', count=3, verbose=0)\""
    );
    assert!(l.sb.ok(&l.up, &send));
    let seen = captured(&mut l.sb, cap, "d.txt");
    assert!(
        seen.matches("vlan 100").count() >= 3,
        "tagged frames reach the app with their tag:\n{seen}"
    );
}

/// Frames each worker has read so far.
fn worker_frames(d: &Daemon) -> Vec<u64> {
    let st = d.status();
    let workers = st["dataplane"]["workers"].as_array().cloned();
    let frames = |w: serde_json::Value| w["frames"].as_u64().unwrap_or(0);
    workers
        .unwrap_or_default()
        .into_iter()
        .map(frames)
        .collect()
}

/// Frames each worker read since `before` (`worker_frames` then).
fn frames_since(d: &Daemon, before: &[u64]) -> Vec<u64> {
    let now = worker_frames(d);
    now.iter().zip(before).map(|(a, b)| a - b).collect()
}

#[test]
fn a_multiqueue_tap_spreads_an_apps_flows_over_workers_in_order() {
    if !root_or_skip("a_multiqueue_tap_spreads_an_apps_flows_over_workers_in_order") {
        return;
    }
    need(&["python3", "ping"]);
    let mut l = lab_with("q", "dataplane: { workers: 2 }\n");
    let p = l.sb.prefix().to_string();
    let queues =
        l.sb.out(&l.ns[0], &format!("ls /sys/class/net/{p}-a/queues"));
    assert!(
        queues.contains("rx-1") && !queues.contains("rx-2"),
        "a queue per worker: {queues}"
    );
    assert!(ping(&l.sb, &l.ns[0], "10.9.0.2"));
    let (b, ten) = (l.ns[1].clone(), std::time::Duration::from_secs(10));
    let args = ["recv", "9000", "3"];
    let recv = spawn_until(&mut l.sb, &b, FLOW_ORDER, &args, "recv.log", "ready", ten);
    // The sender outruns a debug build on a busy machine; a TAP drops what
    // its queue cannot hold, unseen by the sender. A queue that holds the
    // whole burst keeps this about order, not about speed.
    assert!(l.sb.ok(&l.ns[0], &format!("ip link set {p}-a txqueuelen 50000")));
    let before = worker_frames(&l.d);
    // 16 flows from a (16 source ports), 3000 datagrams each, interleaved.
    let send = format!("{FLOW_ORDER} send 10.9.0.2 9000 16 3000");
    assert!(l.sb.ok(&l.ns[0], &send));
    assert_eq!(l.sb.wait(recv, std::time::Duration::from_secs(40)), Some(0));
    let after = worker_frames(&l.d);
    let out = l.sb.log("recv.log");
    let n = |k: &str| -> u64 {
        let mut words = out.split_whitespace().skip_while(|w| *w != k);
        words.nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    assert_eq!(n("flows"), 16, "{out}");
    assert!(
        n("received") >= 16 * 3000 / 2,
        "most datagrams arrive: {out}"
    );
    assert_eq!(n("reordered"), 0, "each flow in order: {out}");
    // The kernel put a's flows on both queues, so both workers carried them.
    let moved: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        moved.len() == 2 && moved.iter().all(|m| *m >= 1000),
        "{moved:?}"
    );

    // A crash leaves the TAPs; a start with one worker takes them over
    // although they were made multiqueue.
    let d = crash_and_restart(&mut l, "workers: 2", "workers: 1");
    assert_eq!(worker_frames(&d).len(), 1);
}

/// The CPUs a thread of `pid` named `name` may run on, and its policy.
fn thread_placement(pid: u32, name: &str) -> Option<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let dir = tasks
        .flatten()
        .map(|t| t.path())
        .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == name))?;
    let field = |file: &str, key: &str| -> Option<String> {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        Some(line.rsplit([':', '\t', ' ']).next()?.trim().to_string())
    };
    Some((
        field("status", "Cpus_allowed_list")?,
        field("sched", "policy")?,
    ))
}

#[test]
fn a_worker_that_cannot_be_pinned_floats_and_status_says_so() {
    if !root_or_skip("a_worker_that_cannot_be_pinned_floats_and_status_says_so") {
        return;
    }
    need(&["ping", "taskset"]);
    let cpus = allowed_cpus();
    assert!(
        cpus.starts_with(&[0, 1]),
        "this test needs CPUs 0 and 1; it may use {cpus:?}"
    );
    // CPU 1023 is valid in a config but not on this machine.
    let mut l = lab_with("pf", "dataplane: { cpus: [0, 1023] }\n");
    let st = l.d.status();
    assert_eq!(st["dataplane"]["workers"][0]["cpu"], 0, "{st}");
    assert!(st["dataplane"]["workers"][1]["cpu"].is_null(), "{st}");
    let floating = thread_placement(l.d.pid, "worker-1").map(|(_, policy)| policy);
    assert_eq!(floating.as_deref(), Some("0"), "SCHED_OTHER, as any thread");
    let log = std::fs::read_to_string(l.sb.path(&l.d.log)).unwrap_or_default();
    assert!(log.contains("cannot pin a worker to its CPU"), "{log}");
    // Both workers serve: pings from each CPU cross, each on its worker
    // (CPU 1 has no pinned worker: its frames go to queue 1, worker 1).
    for cpu in 0..2 {
        let before = worker_frames(&l.d);
        let cmd = format!("taskset -c {cpu} ping -c 3 -i 0.2 -W 1 10.9.0.2");
        assert!(l.sb.ok(&l.ns[0], &cmd), "from CPU {cpu}");
        let moved = frames_since(&l.d, &before);
        assert!(
            moved[cpu] >= 3,
            "from CPU {cpu}: frames per worker {moved:?}"
        );
    }
    // A clean stop says nothing of a change of workers: it ends them as
    // they are.
    l.sb.signal(l.d.pid, libc::SIGTERM);
    assert_eq!(
        l.sb.wait(l.d.pid, std::time::Duration::from_secs(10)),
        Some(0)
    );
    let log = std::fs::read_to_string(l.sb.path(&l.d.log)).unwrap_or_default();
    assert!(!log.contains("at the next start"), "{log}");
}

#[test]
fn pinned_workers_serve_frames_on_the_cpu_that_sends_them() {
    if !root_or_skip("pinned_workers_serve_frames_on_the_cpu_that_sends_them") {
        return;
    }
    need(&["python3", "ping", "taskset"]);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs; the machine has {cpus}"
    );
    let mut l = lab_with("pc", "dataplane: { cpus: [1, 0] }\n");
    // Worker i on cpus[i], SCHED_BATCH (policy 3), as status says.
    for (i, cpu) in [(0, "1"), (1, "0")] {
        let placed = thread_placement(l.d.pid, &format!("worker-{i}"));
        assert_eq!(
            placed,
            Some((cpu.to_string(), "3".to_string())),
            "worker {i}"
        );
    }
    // A pinned worker takes an app's frames after the app's time slice, so
    // its TAP holds a slice's worth.
    let p = l.sb.prefix().to_string();
    let qlen =
        l.sb.out(&l.ns[0], &format!("cat /sys/class/net/{p}-a/tx_queue_len"));
    assert_eq!(qlen.trim(), "4096");
    let st = l.d.status();
    assert_eq!(st["dataplane"]["workers"][0]["cpu"], 1, "{st}");
    assert_eq!(st["dataplane"]["workers"][1]["cpu"], 0, "{st}");
    assert!(ping(&l.sb, &l.ns[0], "10.9.0.2"));
    assert!(ping(&l.sb, &l.up, "10.9.0.4"));
    // 16 flows from one CPU, sent by app a into its TAP, then by the LAN
    // host into the NIC (a socket per worker): all of them on the worker
    // pinned there (the flows' hashes alone would spread them over both).
    let senders = [(&l.ns[0], "10.9.0.2"), (&l.up, "10.9.0.4")];
    for ((cpu, worker), (ns, dst)) in [(0, 1), (1, 0)]
        .into_iter()
        .flat_map(|c| senders.map(|s| (c, s)))
    {
        let before = worker_frames(&l.d);
        let send = format!("taskset -c {cpu} {FLOW_ORDER} send {dst} 9000 16 300");
        assert!(l.sb.ok(ns, &send));
        let moved = frames_since(&l.d, &before);
        let (here, there) = (moved[worker], moved[1 - worker]);
        assert!(
            here >= 1000 && there * 20 <= here,
            "sent from CPU {cpu} to {dst}: frames per worker {moved:?}"
        );
    }
    // A TCP connection keeps its worker while it is busy, though its sender
    // moves to the other CPU (its segments also leave from the CPU that
    // handles its ACKs): both directions stay on one worker, in order.
    let ten = std::time::Duration::from_secs(10);
    let b = l.ns[1].clone();
    let before = worker_frames(&l.d);
    let srv = spawn_until(
        &mut l.sb,
        &b,
        TCP_MOVE,
        &["serve", "9001"],
        "tcp.log",
        "ready",
        ten,
    );
    assert!(l.sb.ok(&l.ns[0], &format!("{TCP_MOVE} send 10.9.0.2 9001 8 0 1")));
    assert_eq!(l.sb.wait(srv, ten), Some(0));
    assert!(
        l.sb.log("tcp.log").contains("received 16777216"),
        "{}",
        l.sb.log("tcp.log")
    );
    let moved = frames_since(&l.d, &before);
    let (most, least) = (moved.iter().max(), moved.iter().min());
    assert!(
        most.zip(least)
            .is_some_and(|(m, l)| *m >= 100 && l * 10 <= *m),
        "one connection from two CPUs: frames per worker {moved:?}"
    );

    // A crash leaves the steered TAPs; a start with floating workers takes
    // the program off (flows spread by hash again) and the queue back to 1000.
    let d = crash_and_restart(&mut l, "cpus: [1, 0]", "workers: 2");
    let qlen =
        l.sb.out(&l.ns[0], &format!("cat /sys/class/net/{p}-a/tx_queue_len"));
    assert_eq!(qlen.trim(), "1000");
    let before = worker_frames(&d);
    let send = format!("taskset -c 0 {FLOW_ORDER} send 10.9.0.2 9000 16 300");
    assert!(l.sb.ok(&l.ns[0], &send));
    let moved = frames_since(&d, &before);
    assert!(
        moved.len() == 2 && moved.iter().all(|m| *m >= 200),
        "16 flows spread by hash over 2 workers: {moved:?}"
    );
}
