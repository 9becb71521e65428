//! Runs the Rapid Spanning Tree of one domain against its NIC ports: a
//! thread takes the BPDUs the switch hands over, watches the ports' links
//! and the clock, and applies what `rstp::Bridge` decides — each port's
//! state (the switch forwards only on forwarding ports), BPDUs out of the
//! ports, MACs flushed on a topology change. A BPDU on a port with BPDU
//! guard disables that port instead.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::rstp::bpdu::{Bpdu, llc_payload};
use super::rstp::{Bridge, Role, Settings, State};
use super::{Domain, PortEntry, STP_DISCARDING, STP_FORWARDING, STP_LEARNING};
use crate::config::Mac;
use crate::frame::VNET_HDR_LEN;
use crate::sync::lock;

/// Path cost of a port (802.1D-2004's value for 1 Gbit/s).
const PATH_COST: u32 = 20_000;
const TICK: Duration = Duration::from_millis(100);

/// A port of the tree as `status` shows it.
#[derive(Debug, Clone)]
pub struct PortView {
    pub name: String,
    pub role: Role,
    pub state: State,
    /// No bridge heard on its LAN: an edge port.
    pub edge: bool,
}

/// The tree as `status` shows it.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub bridge: String,
    pub root: String,
    /// Seconds since the last topology change, if there was one.
    pub since_change_s: Option<u64>,
    pub ports: Vec<PortView>,
}

/// One domain's spanning tree, running.
pub struct Stp {
    domain: Arc<Domain>,
    ports: Vec<Arc<PortEntry>>,
    /// Which ports have BPDU guard (changed in place by an apply).
    guarded: Arc<[AtomicBool]>,
    view: Arc<Mutex<View>>,
    thread: Option<JoinHandle<()>>,
    stop: std::sync::mpsc::SyncSender<()>,
}

/// What the thread owns.
struct Runner {
    bridge: Bridge,
    ports: Vec<Arc<PortEntry>>,
    /// Ports where a BPDU trips BPDU guard.
    guarded: Arc<[AtomicBool]>,
    links: Vec<bool>,
    domain: Arc<Domain>,
    view: Arc<Mutex<View>>,
    t0: Instant,
}

/// A bridge id as 802.1D writes it: priority.MAC.
fn id_text(id: u64) -> String {
    let b = id.to_be_bytes();
    let mac = Mac([b[2], b[3], b[4], b[5], b[6], b[7]]);
    format!("{}.{mac}", u16::from_be_bytes([b[0], b[1]]))
}

impl Stp {
    /// Starts the tree on `ports` (NIC ports of `domain`, each with its MAC),
    /// `guarded` naming those with BPDU guard.
    pub fn start(
        domain: &Arc<Domain>,
        ports: Vec<(Arc<PortEntry>, Mac, bool)>,
        settings: Settings,
    ) -> std::io::Result<Stp> {
        let bridge_mac = ports
            .iter()
            .map(|p| p.1.0)
            .min()
            .unwrap_or([2, 0, 0, 0, 0, 1]);
        let wire: Vec<([u8; 6], u32)> = ports.iter().map(|p| (p.1.0, PATH_COST)).collect();
        let (tx, rx) = sync_channel(256);
        let (stop, stopped) = sync_channel(1);
        let view = Arc::new(Mutex::new(View::default()));
        for (p, _, _) in &ports {
            p.stp.store(STP_DISCARDING, Relaxed);
        }
        domain.set_bpdu_sink(Some(tx));
        let r_ports: Vec<Arc<PortEntry>> = ports.iter().map(|p| p.0.clone()).collect();
        let guarded: Arc<[AtomicBool]> = ports.iter().map(|p| AtomicBool::new(p.2)).collect();
        let mut r = Runner {
            bridge: Bridge::new(bridge_mac, settings, &wire),
            links: vec![false; ports.len()],
            guarded: guarded.clone(),
            ports: ports.into_iter().map(|p| p.0).collect(),
            domain: domain.clone(),
            view: view.clone(),
            t0: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("stp:{}", domain.name))
            .spawn(move || {
                loop {
                    match stopped.try_recv() {
                        Ok(()) | Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                        Err(_) => {}
                    }
                    match rx.recv_timeout(TICK) {
                        Ok((port, frame)) => r.bpdu(port, &frame),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    // Whatever else queued up is read before acting once.
                    for (port, frame) in rx.try_iter().take(64) {
                        r.bpdu(port, &frame);
                    }
                    r.step();
                }
            })?;
        Ok(Stp {
            domain: domain.clone(),
            ports: r_ports,
            guarded,
            view,
            thread: Some(thread),
            stop,
        })
    }

    /// Gives BPDU guard to the ports named (by NIC entry) in `guarded`.
    pub fn set_guarded(&self, guarded: impl Fn(&PortEntry) -> bool) {
        for (p, g) in self.ports.iter().zip(self.guarded.iter()) {
            g.store(guarded(p), Relaxed);
        }
    }

    /// Where the tree's current view is kept (for `status`).
    pub fn view(&self) -> Arc<Mutex<View>> {
        self.view.clone()
    }
}

impl Drop for Stp {
    /// Stops the thread; BPDUs are dropped again, and the ports discard:
    /// those that stay in a tree get a new one (an apply), the others are
    /// made again.
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
        self.domain.set_bpdu_sink(None);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for p in &self.ports {
            p.stp.store(STP_DISCARDING, Relaxed);
        }
    }
}

impl Runner {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn bpdu(&mut self, port: u16, frame: &[u8]) {
        let Some(i) = self.ports.iter().position(|p| p.id == port) else {
            return;
        };
        if self.guarded[i].load(Relaxed) {
            self.ports[i].trip_bpdu_guard();
            return;
        }
        if let Some(b) = llc_payload(frame).and_then(Bpdu::parse) {
            let now = self.now();
            self.bridge.receive(i, b, now);
        }
    }

    /// Links, the clock, then what the bridge decided.
    fn step(&mut self) {
        let now = self.now();
        for (i, p) in self.ports.iter().enumerate() {
            let up = p.link_up.load(Relaxed) && !p.bpdu_guard_tripped();
            if up != self.links[i] {
                self.links[i] = up;
                tracing::info!(port = %p.name, up, "spanning tree: link");
                self.bridge.link(i, up, now);
            }
        }
        self.bridge.tick(now);
        // States first (so an agreement we send is true when it arrives),
        // then flushes, then BPDUs.
        self.apply_states();
        for i in self.bridge.take_flushes() {
            self.domain.flush_port(self.ports[i].id);
        }
        for (i, frame) in self.bridge.take_frames() {
            let mut pkt = vec![0u8; VNET_HDR_LEN];
            pkt.extend(frame);
            let _ = self.ports[i].io.send(&pkt);
        }
        self.publish(now);
    }

    /// Gives each port its state: those that stop forwarding before those
    /// that start, so that two never forward at once in between.
    fn apply_states(&self) {
        let state = |s: State| match s {
            State::Forwarding => STP_FORWARDING,
            State::Learning => STP_LEARNING,
            State::Discarding => STP_DISCARDING,
        };
        for forwarding in [false, true] {
            for (p, bp) in self.ports.iter().zip(&self.bridge.ports) {
                let st = state(bp.state);
                if (st == STP_FORWARDING) == forwarding && p.stp.swap(st, Relaxed) != st {
                    tracing::info!(port = %p.name, role = ?bp.role, state = ?bp.state, "spanning tree: port");
                }
            }
        }
    }

    /// The tree as `status` shows it.
    fn publish(&self, now: u64) {
        let mut ports = Vec::new();
        for (p, bp) in self.ports.iter().zip(&self.bridge.ports) {
            ports.push(PortView {
                name: p.name.clone(),
                role: bp.role,
                state: bp.state,
                edge: bp.edge,
            });
        }
        *lock(&self.view) = View {
            bridge: id_text(self.bridge.id),
            root: id_text(self.bridge.root_id()),
            since_change_s: self.bridge.last_change_ms.map(|t| (now - t) / 1000),
            ports,
        };
    }
}
