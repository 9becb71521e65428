//! Rapid Spanning Tree (IEEE 802.1w, as 802.1D-2004 §17 has it) for the NIC
//! ports of a switch NI, as pure logic: BPDUs, link changes and the clock
//! go in; port roles and states, BPDUs to send and MAC-table flushes come
//! out. `stp.rs` runs it against real ports.
//!
//! What it does: root and port role selection by priority vectors (root,
//! designated, alternate, backup); rapid transitions — an alternate takes
//! over as root port at once, a designated port forwards at once on its
//! partner's agreement to its proposal, after 2 × forward delay otherwise;
//! a bridge that proposes to us gets our agreement after our other ports
//! are synced (discarding until they agree in turn); received information
//! ages out after 3 × hello, at once with the link; topology changes flush
//! the MACs learned on the other ports and travel on. A port that hears no
//! BPDU for 3 × hello after its link came up is an edge port (a LAN with
//! no other bridge on it): it forwards at once. A port that hears an
//! 802.1D bridge speaks 802.1D to it (configuration and TCN BPDUs), so the
//! kernel's bridge with `stp_state 1` interoperates.
//!
//! One step beyond the standard, because a dumb LAN segment has no partner
//! to agree: a port of ours that backs up another port of ours on the same
//! segment (it hears that port's BPDUs) takes over forwarding at once when
//! that port fails or hands over — the segment had exactly one forwarding
//! port of this bridge before and has exactly one after, so no loop opens.

pub mod bpdu;

use bpdu::{
    Bpdu, FLAG_AGREEMENT, FLAG_FORWARDING, FLAG_LEARNING, FLAG_PROPOSAL, FLAG_TC, FLAG_TCA, Times,
    Vector, WireRole, role_flags, role_of,
};

/// A port's role in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Disabled,
    Root,
    Designated,
    Alternate,
    Backup,
}

/// What a port does with frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Discarding,
    Learning,
    Forwarding,
}

/// The bridge's own settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Bridge priority (a multiple of 4096; smaller wins the root election).
    pub priority: u16,
    pub hello: u16,
    pub max_age: u16,
    pub forward_delay: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            priority: 32768,
            hello: 1,
            max_age: 20,
            forward_delay: 4,
        }
    }
}

/// Designated information received on a port.
#[derive(Debug, Clone, Copy)]
struct Info {
    vector: Vector,
    times: Times,
    at_ms: u64,
}

/// One port of the bridge.
#[derive(Debug, Clone)]
pub struct Port {
    pub id: u16,
    pub mac: [u8; 6],
    pub path_cost: u32,
    enabled: bool,
    pub role: Role,
    pub state: State,
    info: Option<Info>,
    /// The partner speaks 802.1D: send it configuration BPDUs.
    stp_peer: bool,
    proposing: bool,
    agreed: bool,
    /// A proposal to answer with an agreement (root port).
    agree: bool,
    /// When the next forward-delay step (to learning, to forwarding) is due.
    step_at: Option<u64>,
    tc_until: u64,
    /// Acknowledge a TCN in the next configuration BPDU (802.1D partner).
    tca: bool,
    /// A TCN of ours waits for the root's acknowledgement.
    tcn_pending: bool,
    send_now: bool,
    last_tx: u64,
    /// When the link came up, whether a BPDU came since, and whether the
    /// port is an edge port: no BPDU for 3 × hello (802.1D's auto-edge).
    up_at: u64,
    bpdu_seen: bool,
    pub edge: bool,
    /// BPDUs sent in the second starting at `tx_second` (at most `TX_HOLD`).
    tx_second: u64,
    tx_count: u32,
}

/// BPDUs a port sends in one second at most (802.1D's TxHoldCount).
const TX_HOLD: u32 = 6;

/// One spanning-tree bridge: a switch NI with several ports.
pub struct Bridge {
    pub id: u64,
    settings: Settings,
    pub ports: Vec<Port>,
    root: Vector,
    root_port: Option<usize>,
    /// When the last topology change was seen (ms of the caller's clock).
    pub last_change_ms: Option<u64>,
    frames: Vec<(usize, Vec<u8>)>,
    flushes: Vec<usize>,
    /// Ports taking over a failed port's segment (see `takeover_from`).
    takeover: Vec<u16>,
}

const PORT_PRIORITY: u16 = 0x80;

impl Bridge {
    /// A bridge with MAC `mac` whose ports are `(mac, path cost)`, numbered from 1.
    pub fn new(mac: [u8; 6], settings: Settings, ports: &[([u8; 6], u32)]) -> Bridge {
        let mut id = [0u8; 8];
        id[..2].copy_from_slice(&settings.priority.to_be_bytes());
        id[2..].copy_from_slice(&mac);
        let id = u64::from_be_bytes(id);
        let ports = (ports.iter().enumerate())
            .map(|(i, (mac, cost))| Port {
                id: PORT_PRIORITY << 8 | (i as u16 + 1),
                mac: *mac,
                path_cost: *cost,
                enabled: false,
                role: Role::Disabled,
                state: State::Discarding,
                info: None,
                stp_peer: false,
                proposing: false,
                agreed: false,
                agree: false,
                step_at: None,
                tc_until: 0,
                tca: false,
                tcn_pending: false,
                send_now: false,
                last_tx: 0,
                tx_second: 0,
                tx_count: 0,
                up_at: 0,
                bpdu_seen: false,
                edge: false,
            })
            .collect();
        let own = Vector {
            root: id,
            cost: 0,
            bridge: id,
            port: 0,
        };
        Bridge {
            id,
            settings,
            ports,
            root: own,
            root_port: None,
            last_change_ms: None,
            frames: Vec::new(),
            flushes: Vec::new(),
            takeover: Vec::new(),
        }
    }

    /// The root bridge's id.
    pub fn root_id(&self) -> u64 {
        self.root.root
    }

    /// BPDUs to send: (port index, frame without virtio-net header).
    pub fn take_frames(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.frames)
    }

    /// Ports whose learned MACs are to be forgotten (a topology change).
    pub fn take_flushes(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.flushes)
    }

    /// A port's link went up or down.
    pub fn link(&mut self, i: usize, up: bool, now: u64) {
        let Some(p) = self.ports.get_mut(i) else {
            return;
        };
        if p.enabled == up {
            return;
        }
        p.enabled = up;
        (p.up_at, p.bpdu_seen, p.edge) = (now, false, false);
        p.info = None;
        p.stp_peer = false;
        p.proposing = false;
        p.agreed = false;
        p.step_at = None;
        if !up {
            // What was learned behind a port without a link is useless.
            self.flushes.push(i);
            let pid = p.id;
            self.takeover_from(pid);
        }
        self.update(now);
        self.takeover.clear();
    }

    /// Ports of ours that backed up port `pid` on its segment lose that
    /// information at once and may forward at once (see the module doc).
    fn takeover_from(&mut self, pid: u16) {
        let id = self.id;
        for q in self.ports.iter_mut() {
            let backs_up = q
                .info
                .is_some_and(|i| i.vector.bridge == id && i.vector.port == pid);
            if backs_up && q.role == Role::Backup {
                q.info = None;
                self.takeover.push(q.id);
            }
        }
    }

    /// A BPDU arrived on port `i`.
    pub fn receive(&mut self, i: usize, bpdu: Bpdu, now: u64) {
        let Some(p) = self.ports.get_mut(i) else {
            return;
        };
        if !p.enabled {
            return;
        }
        (p.bpdu_seen, p.edge) = (true, false);
        let (rstp, flags, vector, times) = match bpdu {
            Bpdu::Tcn => {
                if p.role == Role::Designated {
                    p.tca = true;
                    p.send_now = true;
                    self.topology_change(i, now, false);
                }
                return self.update(now);
            }
            Bpdu::Config {
                rstp,
                flags,
                vector,
                times,
            } => (rstp, flags, vector, times),
        };
        p.stp_peer = !rstp;
        if flags & FLAG_TCA != 0 {
            p.tcn_pending = false;
        }
        let role = if rstp {
            role_of(flags)
        } else {
            WireRole::Designated
        };
        match role {
            WireRole::Designated if times.message_age < times.max_age => {
                p.info = Some(Info {
                    vector,
                    times,
                    at_ms: now,
                });
                p.agree = rstp && flags & FLAG_PROPOSAL != 0;
            }
            WireRole::Root if flags & FLAG_AGREEMENT != 0 && p.role == Role::Designated => {
                p.agreed = true;
            }
            _ => {}
        }
        // Our own change, back through the LAN, is not news.
        if flags & FLAG_TC != 0 && vector.bridge != self.id {
            self.topology_change(i, now, false);
        }
        self.update(now);
    }

    /// The clock moved: information ages, forward-delay steps fall due,
    /// hellos are sent.
    pub fn tick(&mut self, now: u64) {
        self.update(now);
    }

    /// A topology change came in on port `from` (`detected` false), or
    /// started there when it began to forward: the other ports' MACs are
    /// flushed and the change travels on through them (and, when detected,
    /// through `from` too).
    fn topology_change(&mut self, from: usize, now: u64, detected: bool) {
        self.last_change_ms = Some(now);
        let until = now + 2 * self.hello_ms();
        // An 802.1D partner is told for max age + forward delay (802.1D
        // 17.21.7), so that it ages its MACs out fast for that long.
        let legacy_until = now + self.max_age_ms() + self.forward_delay_ms();
        for (j, q) in self.ports.iter_mut().enumerate() {
            if !q.enabled || (j == from && !detected) {
                continue;
            }
            if j != from && !q.edge {
                self.flushes.push(j);
            }
            if matches!(q.role, Role::Root | Role::Designated) {
                q.tc_until = if q.stp_peer { legacy_until } else { until };
                q.send_now = true;
                if q.role == Role::Root && q.stp_peer {
                    q.tcn_pending = true;
                }
            }
        }
    }

    fn max_age_ms(&self) -> u64 {
        let max_age = match self.root_port.and_then(|r| self.ports[r].info) {
            Some(i) => i.times.max_age,
            None => self.settings.max_age,
        };
        max_age.max(1) as u64 * 1000
    }

    fn hello_ms(&self) -> u64 {
        let hello = match self.root_port.and_then(|r| self.ports[r].info) {
            Some(i) => i.times.hello,
            None => self.settings.hello,
        };
        hello.max(1) as u64 * 1000
    }

    fn forward_delay_ms(&self) -> u64 {
        let fd = match self.root_port.and_then(|r| self.ports[r].info) {
            Some(i) => i.times.forward_delay,
            None => self.settings.forward_delay,
        };
        fd.max(1) as u64 * 1000
    }

    /// Drops information older than 3 × its hello.
    fn age(&mut self, now: u64) {
        for p in self.ports.iter_mut() {
            if let Some(i) = p.info
                && now.saturating_sub(i.at_ms) > 3 * (i.times.hello.max(1) as u64) * 1000
            {
                p.info = None;
            }
        }
    }

    /// The root priority vector and the root port.
    fn select_root(&mut self) {
        let mut best = (
            Vector {
                root: self.id,
                cost: 0,
                bridge: self.id,
                port: 0,
            },
            0u16,
        );
        let mut root_port = None;
        for (i, p) in self.ports.iter().enumerate() {
            let Some(info) = p.info.filter(|_| p.enabled) else {
                continue;
            };
            if info.vector.bridge == self.id {
                continue;
            }
            let v = Vector {
                cost: info.vector.cost.saturating_add(p.path_cost),
                ..info.vector
            };
            if (v, p.id) < best {
                best = (v, p.id);
                root_port = Some(i);
            }
        }
        self.root = best.0;
        self.root_port = root_port;
    }

    /// The vector this bridge offers on port `p`.
    fn designated(&self, p: &Port) -> Vector {
        Vector {
            root: self.root.root,
            cost: self.root.cost,
            bridge: self.id,
            port: p.id,
        }
    }

    fn role_of(&self, i: usize) -> Role {
        let p = &self.ports[i];
        if !p.enabled {
            return Role::Disabled;
        }
        if self.root_port == Some(i) {
            return Role::Root;
        }
        match p.info {
            Some(info) if info.vector < self.designated(p) => {
                if info.vector.bridge == self.id {
                    Role::Backup
                } else {
                    Role::Alternate
                }
            }
            _ => Role::Designated,
        }
    }

    /// Roles, states and what to send, from what is known now.
    fn update(&mut self, now: u64) {
        self.age(now);
        let old_root = self.root;
        self.select_root();
        if self.root != old_root {
            // An agreement was to what we offered before.
            self.ports.iter_mut().for_each(|p| p.agreed = false);
        }
        let roles: Vec<Role> = (0..self.ports.len()).map(|i| self.role_of(i)).collect();
        // Ports of ours giving up a segment to another port of ours (handover).
        let mut handing: Vec<u16> = (self.ports.iter().zip(&roles))
            .filter(|(p, r)| **r == Role::Backup && p.state == State::Forwarding)
            .filter_map(|(p, _)| p.info.map(|i| i.vector.port))
            .collect();
        handing.extend(&self.takeover);
        let (fd, hello) = (self.forward_delay_ms(), self.hello_ms());
        let mut became_forwarding = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let p = &mut self.ports[i];
            let was = (p.role, p.state);
            p.role = *role;
            match role {
                Role::Disabled | Role::Alternate | Role::Backup => {
                    p.state = State::Discarding;
                    (p.proposing, p.agreed, p.step_at) = (false, false, None);
                }
                Role::Root => {
                    p.state = State::Forwarding;
                    (p.proposing, p.agreed, p.step_at) = (false, false, None);
                }
                Role::Designated => {
                    if was.0 == Role::Root {
                        // A former root port may lead back to the old root:
                        // it waits for an agreement or the forward delay.
                        (p.state, p.step_at) = (State::Discarding, None);
                    }
                    p.edge |= !p.bpdu_seen && now >= p.up_at + 3 * hello;
                    designated_step(p, now, fd, handing.contains(&p.id));
                }
            }
            if was.0 != p.role {
                p.send_now = true;
            }
            // An edge port coming up changes no one's path (802.1D 17.29).
            if was.1 != State::Forwarding && p.state == State::Forwarding && !p.edge {
                became_forwarding.push(i);
            }
        }
        if self.root_port.is_some_and(|r| self.ports[r].agree) {
            self.sync(now);
        }
        for i in became_forwarding {
            self.topology_change(i, now, true);
        }
        self.transmit(now, hello);
    }

    /// A proposal came on the root port: every other designated port that
    /// has no agreement of its own goes back to discarding and proposes,
    /// then the root port agrees.
    fn sync(&mut self, now: u64) {
        let fd = self.forward_delay_ms();
        for (i, p) in self.ports.iter_mut().enumerate() {
            if Some(i) == self.root_port {
                p.agree = false;
                p.send_now = true;
                p.agreed = true;
                continue;
            }
            // An 802.1D partner cannot agree: its port discards too and
            // waits the forward delay.
            if p.role == Role::Designated && !p.agreed && !p.edge {
                p.state = State::Discarding;
                p.proposing = true;
                p.step_at = Some(now + fd);
                p.send_now = true;
            }
        }
    }

    /// Sends what is due: designated ports every hello and on news, the
    /// root port its agreement and topology changes.
    fn transmit(&mut self, now: u64, hello: u64) {
        let times = self.times_out();
        for i in 0..self.ports.len() {
            let p = &mut self.ports[i];
            if now / 1000 != p.tx_second {
                (p.tx_second, p.tx_count) = (now / 1000, 0);
            }
            if p.tx_count >= TX_HOLD {
                continue;
            }
            let p = &self.ports[i];
            let due = p.send_now || now.saturating_sub(p.last_tx) >= hello;
            let bpdu = match p.role {
                Role::Designated if due => Some(self.designated_bpdu(p, now, times)),
                Role::Root if p.send_now || (due && now < p.tc_until) => {
                    Some(self.root_bpdu(p, now, times))
                }
                _ => None,
            };
            let p = &mut self.ports[i];
            p.send_now = false;
            let Some(b) = bpdu.flatten() else {
                continue;
            };
            if let Bpdu::Config { flags, .. } = b
                && flags & FLAG_TCA != 0
            {
                p.tca = false;
            }
            p.last_tx = now;
            p.tx_count += 1;
            self.frames.push((i, b.frame(p.mac)));
        }
    }

    /// The times this bridge sends: its own as root, else the root's with
    /// the message one second older. None once the message is too old.
    fn times_out(&self) -> Option<Times> {
        match self.root_port.and_then(|r| self.ports[r].info) {
            None => Some(Times {
                message_age: 0,
                max_age: self.settings.max_age,
                hello: self.settings.hello,
                forward_delay: self.settings.forward_delay,
            }),
            Some(i) => {
                let age = i.times.message_age + 1;
                (age < i.times.max_age).then_some(Times {
                    message_age: age,
                    ..i.times
                })
            }
        }
    }

    fn designated_bpdu(&self, p: &Port, now: u64, times: Option<Times>) -> Option<Bpdu> {
        let times = times?;
        let tc = if now < p.tc_until { FLAG_TC } else { 0 };
        let flags = if p.stp_peer {
            tc | if p.tca { FLAG_TCA } else { 0 }
        } else {
            let proposal = if p.proposing && !p.agreed {
                FLAG_PROPOSAL
            } else {
                0
            };
            tc | proposal | role_flags(WireRole::Designated) | state_flags(p.state)
        };
        Some(Bpdu::Config {
            rstp: !p.stp_peer,
            flags,
            vector: self.designated(p),
            times,
        })
    }

    fn root_bpdu(&self, p: &Port, now: u64, times: Option<Times>) -> Option<Bpdu> {
        if p.stp_peer {
            return (p.tcn_pending && now < p.tc_until).then_some(Bpdu::Tcn);
        }
        let tc = if now < p.tc_until { FLAG_TC } else { 0 };
        Some(Bpdu::Config {
            rstp: true,
            flags: tc | FLAG_AGREEMENT | role_flags(WireRole::Root) | state_flags(p.state),
            vector: self.designated(p),
            times: times?,
        })
    }
}

/// A designated port's way to forwarding: at once on an agreement, a
/// handover or as an edge port, else discarding → learning → forwarding a
/// forward delay apart, proposing meanwhile (to an RSTP partner).
fn designated_step(p: &mut Port, now: u64, fd: u64, handover: bool) {
    if p.state == State::Forwarding {
        return;
    }
    if p.agreed || handover || p.edge {
        p.state = State::Forwarding;
        p.step_at = None;
        return;
    }
    match p.step_at {
        None => {
            p.step_at = Some(now + fd);
            p.proposing = !p.stp_peer;
            p.send_now = true;
        }
        Some(at) if now >= at => {
            p.state = match p.state {
                State::Discarding => State::Learning,
                _ => State::Forwarding,
            };
            p.step_at = (p.state != State::Forwarding).then_some(now + fd);
        }
        Some(_) => {}
    }
}

fn state_flags(s: State) -> u8 {
    match s {
        State::Discarding => 0,
        State::Learning => FLAG_LEARNING,
        State::Forwarding => FLAG_LEARNING | FLAG_FORWARDING,
    }
}

#[cfg(test)]
mod tests;
