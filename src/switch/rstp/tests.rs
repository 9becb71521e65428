//! The RSTP state machines driven by crafted BPDUs and by bridges wired to
//! each other: role selection, proposal and agreement, timers, failover,
//! 802.1D partners, topology changes.

use super::bpdu::{self, Bpdu, FLAG_TC, FLAG_TCA, Times, Vector};
use super::*;

const MS: u64 = 1;
const S: u64 = 1000 * MS;

fn bridge(last: u8, priority: u16, ports: usize) -> Bridge {
    let mac = [2, 0, 0, 0, last, 0];
    let ports: Vec<([u8; 6], u32)> = (0..ports)
        .map(|i| ([2, 0, 0, 0, last, i as u8 + 1], 20000))
        .collect();
    let settings = Settings {
        priority,
        ..Settings::default()
    };
    Bridge::new(mac, settings, &ports)
}

/// Bridges and the segments joining their ports: each segment is a list of
/// (bridge, port) that hear each other (a dumb LAN when there are several).
struct Net {
    bridges: Vec<Bridge>,
    segments: Vec<Vec<(usize, usize)>>,
    now: u64,
}

impl Net {
    fn up(&mut self) {
        for seg in self.segments.clone() {
            for (b, p) in seg {
                self.bridges[b].link(p, true, self.now);
            }
        }
        self.deliver();
    }

    /// Carries every BPDU sent to the other ends of its segment, until quiet.
    fn deliver(&mut self) {
        for _ in 0..20 {
            let mut sent = Vec::new();
            for (b, br) in self.bridges.iter_mut().enumerate() {
                for (p, f) in br.take_frames() {
                    sent.push((b, p, f));
                }
                br.take_flushes();
            }
            if sent.is_empty() {
                return;
            }
            for (b, p, f) in sent {
                let Some(seg) = self.segments.iter().find(|s| s.contains(&(b, p))) else {
                    continue;
                };
                let bpdu = bpdu::llc_payload(&f).and_then(Bpdu::parse).expect("a BPDU");
                for &(b2, p2) in seg.iter().filter(|e| **e != (b, p)) {
                    self.bridges[b2].receive(p2, bpdu, self.now);
                }
            }
        }
    }

    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 100 * MS;
            for b in self.bridges.iter_mut() {
                b.tick(self.now);
            }
            self.deliver();
        }
    }

    fn port(&self, b: usize, p: usize) -> (Role, State) {
        let port = &self.bridges[b].ports[p];
        (port.role, port.state)
    }

    fn cut(&mut self, b: usize, p: usize) {
        self.segments.retain(|s| !s.contains(&(b, p)));
        self.bridges[b].link(p, false, self.now);
        self.deliver();
    }
}

#[test]
fn bpdus_round_trip_and_garbage_is_ignored() {
    let b = Bpdu::Config {
        rstp: true,
        flags: FLAG_TC | bpdu::role_flags(bpdu::WireRole::Designated),
        vector: Vector {
            root: 0x8000_0200_0000_0001,
            cost: 20000,
            bridge: 0x8000_0200_0000_0002,
            port: 0x8002,
        },
        times: Times {
            message_age: 1,
            max_age: 20,
            hello: 2,
            forward_delay: 15,
        },
    };
    let f = b.frame([2, 0, 0, 0, 0, 9]);
    assert_eq!(f.len(), 60);
    assert_eq!(bpdu::llc_payload(&f).and_then(Bpdu::parse), Some(b));
    let tcn = Bpdu::Tcn.frame([2, 0, 0, 0, 0, 9]);
    assert_eq!(
        bpdu::llc_payload(&tcn).and_then(Bpdu::parse),
        Some(Bpdu::Tcn)
    );
    for bad in [&f[..20], &[0u8; 60][..], &f[..14]] {
        assert!(bpdu::llc_payload(bad).and_then(Bpdu::parse).is_none());
    }
    let mut wrong_proto = f.clone();
    wrong_proto[17] = 1;
    assert!(
        bpdu::llc_payload(&wrong_proto)
            .and_then(Bpdu::parse)
            .is_none()
    );
}

#[test]
fn two_ports_on_one_lan_never_both_forward_and_fail_over_at_once() {
    // One bridge, both ports on the same dumb segment: a loop.
    let mut n = Net {
        bridges: vec![bridge(1, 32768, 2)],
        segments: vec![vec![(0, 0), (0, 1)]],
        now: 0,
    };
    n.up();
    assert_eq!(n.port(0, 1), (Role::Backup, State::Discarding));
    assert_eq!(n.port(0, 0).0, Role::Designated);
    n.run(3 * S);
    assert_ne!(n.port(0, 0).1, State::Forwarding, "waits 2 x forward delay");
    n.run(6 * S);
    assert_eq!(n.port(0, 0), (Role::Designated, State::Forwarding));
    assert_eq!(n.port(0, 1).1, State::Discarding);
    // The forwarding port's link fails: the backup forwards at once.
    n.bridges[0].link(0, false, n.now);
    assert_eq!(n.port(0, 1), (Role::Designated, State::Forwarding));
    // What was learned behind the failed port is forgotten at once: the
    // stations there are now behind the port that took over.
    assert!(n.bridges[0].take_flushes().contains(&0));
    assert_eq!(n.port(0, 0).0, Role::Disabled);
    // It comes back: it hands over at once, never both forwarding.
    n.bridges[0].link(0, true, n.now);
    n.deliver();
    assert_eq!(n.port(0, 0), (Role::Designated, State::Forwarding));
    assert_eq!(n.port(0, 1), (Role::Backup, State::Discarding));
}

#[test]
fn two_bridges_agree_fast_and_the_alternate_takes_over() {
    // Bridge 0 has the better priority: the root. Two links between them.
    let mut n = Net {
        bridges: vec![bridge(1, 4096, 2), bridge(2, 32768, 2)],
        segments: vec![vec![(0, 0), (1, 0)], vec![(0, 1), (1, 1)]],
        now: 0,
    };
    n.up();
    n.run(500 * MS);
    assert_eq!(n.bridges[1].root_id(), n.bridges[0].id);
    assert_eq!(n.port(1, 0), (Role::Root, State::Forwarding));
    assert_eq!(n.port(1, 1), (Role::Alternate, State::Discarding));
    assert_eq!(
        n.port(0, 0),
        (Role::Designated, State::Forwarding),
        "proposal and agreement: no forward delay"
    );
    n.run(9 * S);
    assert_eq!(n.port(0, 1), (Role::Designated, State::Forwarding));
    // The root port's link fails: the alternate is the root port at once.
    n.cut(1, 0);
    n.bridges[0].link(0, false, n.now);
    assert_eq!(n.port(1, 1), (Role::Root, State::Forwarding));
}

#[test]
fn an_8021d_root_gets_configuration_bpdus_and_tcns() {
    let mut b = bridge(9, 32768, 2);
    b.link(0, true, 0);
    b.link(1, true, 0);
    let kernel = |port: u16, flags: u8| Bpdu::Config {
        rstp: false,
        flags,
        vector: Vector {
            root: 0x1000_0200_0000_0077,
            cost: 0,
            bridge: 0x1000_0200_0000_0077,
            port,
        },
        times: Times {
            message_age: 0,
            max_age: 20,
            hello: 2,
            forward_delay: 15,
        },
    };
    b.take_frames();
    b.receive(0, kernel(0x8001, 0), 100);
    b.receive(1, kernel(0x8002, 0), 100);
    assert_eq!(b.root_id(), 0x1000_0200_0000_0077);
    assert_eq!(
        (b.ports[0].role, b.ports[0].state),
        (Role::Root, State::Forwarding)
    );
    assert_eq!(
        (b.ports[1].role, b.ports[1].state),
        (Role::Alternate, State::Discarding)
    );
    // The root port began to forward: a TCN goes to the 802.1D root until
    // it acknowledges; nothing else is sent on these ports.
    let sent: Vec<_> = (b.take_frames().into_iter())
        .map(|(p, f)| (p, bpdu::llc_payload(&f).and_then(Bpdu::parse)))
        .collect();
    assert!(sent.contains(&(0, Some(Bpdu::Tcn))), "{sent:?}");
    b.tick(2200);
    let sent = b.take_frames();
    assert!(
        !sent.is_empty() && sent.iter().all(|(p, _)| *p == 0),
        "{sent:?}"
    );
    b.receive(0, kernel(0x8001, FLAG_TCA | FLAG_TC), 200);
    assert!(!b.ports[0].tcn_pending);
    assert!(
        b.take_flushes().contains(&1),
        "a TC flushes the other ports"
    );
    // The root's information stops: after 3 x its hello it is gone.
    b.tick(100 + 7 * S);
    assert_eq!(b.root_id(), b.id);
}

#[test]
fn a_port_that_hears_no_bridge_is_an_edge_port_after_3_hellos() {
    // Port 0 alone on its LAN, port 1 to a root bridge.
    let mut n = Net {
        bridges: vec![bridge(1, 32768, 2), bridge(2, 4096, 1)],
        segments: vec![vec![(0, 0)], vec![(0, 1), (1, 0)]],
        now: 0,
    };
    n.up();
    n.run(2 * S);
    assert_eq!(n.port(0, 0), (Role::Designated, State::Discarding));
    n.run(1500 * MS);
    assert_eq!(n.port(0, 0), (Role::Designated, State::Forwarding));
    assert!(n.bridges[0].ports[0].edge);
    // A topology change from the root flushes no edge port; a BPDU on it
    // ends its being an edge port.
    let root = n.bridges[1].id;
    let tc = Bpdu::Config {
        rstp: true,
        flags: FLAG_TC | bpdu::role_flags(bpdu::WireRole::Designated),
        vector: Vector {
            root,
            cost: 0,
            bridge: root,
            port: 0x8001,
        },
        times: Times {
            message_age: 0,
            max_age: 20,
            hello: 1,
            forward_delay: 4,
        },
    };
    n.bridges[0].take_flushes();
    n.bridges[0].receive(1, tc, n.now);
    assert_eq!(n.bridges[0].last_change_ms, Some(n.now));
    assert!(!n.bridges[0].take_flushes().contains(&0));
    n.bridges[0].receive(0, Bpdu::Tcn, n.now);
    assert!(!n.bridges[0].ports[0].edge);
}
