//! The NAPT session table of a local NI: which app flow (protocol, app
//! address and port, remote address and port) leaves under which uplink
//! port, and back. Ports come from a fixed range that never hands out a
//! port-mapped port; the table is bounded; TCP state decides how long a
//! session lives (closed connections expire fast).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Icmp,
    Tcp,
    Udp,
}

impl Proto {
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            1 => Some(Proto::Icmp),
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// A flow as the app sees it. For ICMP echo, `port` is the identifier and
/// `rport` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Inside {
    pub proto: Proto,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub remote: Ipv4Addr,
    pub rport: u16,
}

/// The same flow as the remote side sees it (towards the uplink address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outside {
    pub proto: Proto,
    pub port: u16,
    pub remote: Ipv4Addr,
    pub rport: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// SYN seen, no answer yet.
    Opening,
    Established,
    /// FIN seen from either side.
    Closing,
    /// RST seen.
    Closed,
}

/// TCP header flags the table cares about.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[derive(Debug, Clone)]
pub struct Session {
    pub inside: Inside,
    pub port: u16,
    pub state: TcpState,
    pub created: u64,
    pub last: u64,
}

/// Seconds a session lives without packets, per protocol and TCP state.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub tcp_opening: u64,
    pub tcp_established: u64,
    pub tcp_closing: u64,
    pub udp: u64,
    pub icmp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_opening: 60,
            tcp_established: 7440,
            tcp_closing: 10,
            udp: 60,
            icmp: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    /// The table holds its maximum number of sessions.
    TableFull,
    /// Every port of the range is in use for this protocol.
    PortsExhausted,
}

pub struct NatTable {
    sessions: HashMap<Inside, Session>,
    outside: HashMap<Outside, Inside>,
    used: HashSet<(Proto, u16)>,
    reserved: HashSet<(Proto, u16)>,
    range: RangeInclusive<u16>,
    cursor: u16,
    max: usize,
    pub timeouts: Timeouts,
}

impl NatTable {
    /// `range`: uplink ports for translated flows; `reserved`: ports that
    /// port maps own; `max`: most sessions at once.
    pub fn new(
        range: RangeInclusive<u16>,
        reserved: impl IntoIterator<Item = (Proto, u16)>,
        max: usize,
    ) -> Self {
        NatTable {
            sessions: HashMap::new(),
            outside: HashMap::new(),
            used: HashSet::new(),
            reserved: reserved.into_iter().collect(),
            cursor: *range.start(),
            range,
            max,
            timeouts: Timeouts::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn outside_key(s: &Session) -> Outside {
        Outside {
            proto: s.inside.proto,
            port: s.port,
            remote: s.inside.remote,
            rport: s.inside.rport,
        }
    }

    fn allocate(&mut self, proto: Proto) -> Option<u16> {
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let span = (hi - lo) as u32 + 1;
        for _ in 0..span {
            let p = self.cursor;
            self.cursor = if p >= hi { lo } else { p + 1 };
            if !self.used.contains(&(proto, p)) && !self.reserved.contains(&(proto, p)) {
                self.used.insert((proto, p));
                return Some(p);
            }
        }
        None
    }

    /// The uplink port of an outbound packet's flow, creating the session
    /// on first sight. `tcp_flags` is 0 for UDP and ICMP.
    pub fn outbound(&mut self, key: Inside, tcp_flags: u8, now: u64) -> Result<u16, NatError> {
        if let Some(s) = self.sessions.get_mut(&key) {
            s.last = now;
            s.state = next_state(s.state, tcp_flags, true);
            return Ok(s.port);
        }
        if self.sessions.len() >= self.max {
            return Err(NatError::TableFull);
        }
        let port = self.allocate(key.proto).ok_or(NatError::PortsExhausted)?;
        let state = if key.proto == Proto::Tcp {
            next_state(TcpState::Opening, tcp_flags, true)
        } else {
            TcpState::Established
        };
        let s = Session {
            inside: key,
            port,
            state,
            created: now,
            last: now,
        };
        self.outside.insert(Self::outside_key(&s), key);
        self.sessions.insert(key, s);
        Ok(port)
    }

    /// The app flow an inbound packet belongs to, if any.
    pub fn inbound(&mut self, key: Outside, tcp_flags: u8, now: u64) -> Option<Inside> {
        let inside = *self.outside.get(&key)?;
        if let Some(s) = self.sessions.get_mut(&inside) {
            s.last = now;
            s.state = next_state(s.state, tcp_flags, false);
        }
        Some(inside)
    }

    /// The session of an app flow.
    pub fn get(&self, key: &Inside) -> Option<&Session> {
        self.sessions.get(key)
    }

    fn timeout(&self, s: &Session) -> u64 {
        let t = &self.timeouts;
        match (s.inside.proto, s.state) {
            (Proto::Udp, _) => t.udp,
            (Proto::Icmp, _) => t.icmp,
            (Proto::Tcp, TcpState::Opening) => t.tcp_opening,
            (Proto::Tcp, TcpState::Established) => t.tcp_established,
            (Proto::Tcp, TcpState::Closing | TcpState::Closed) => t.tcp_closing,
        }
    }

    /// Drops idle sessions; returns how many went.
    pub fn expire(&mut self, now: u64) -> usize {
        let dead: Vec<Inside> = self
            .sessions
            .values()
            .filter(|s| now.saturating_sub(s.last) > self.timeout(s))
            .map(|s| s.inside)
            .collect();
        for k in &dead {
            self.remove(k);
        }
        dead.len()
    }

    fn remove(&mut self, k: &Inside) {
        if let Some(s) = self.sessions.remove(k) {
            self.outside.remove(&Self::outside_key(&s));
            self.used.remove(&(s.inside.proto, s.port));
        }
    }

    /// Forgets every session (the active uplink changed: its address is gone).
    pub fn clear(&mut self) {
        self.sessions.clear();
        self.outside.clear();
        self.used.clear();
    }
}

fn next_state(s: TcpState, flags: u8, _outbound: bool) -> TcpState {
    if flags & TCP_RST != 0 {
        return TcpState::Closed;
    }
    if flags & TCP_FIN != 0 {
        return TcpState::Closing;
    }
    match s {
        TcpState::Opening if flags & TCP_ACK != 0 && flags & TCP_SYN == 0 => TcpState::Established,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(port: u16) -> Inside {
        Inside {
            proto: Proto::Tcp,
            ip: Ipv4Addr::new(10, 50, 0, 20),
            port,
            remote: Ipv4Addr::new(192, 0, 2, 80),
            rport: 80,
        }
    }

    fn back(key: &Inside, port: u16) -> Outside {
        Outside {
            proto: key.proto,
            port,
            remote: key.remote,
            rport: key.rport,
        }
    }

    #[test]
    fn a_flow_keeps_its_port_and_replies_find_it() {
        let mut t = NatTable::new(20000..=20010, [], 100);
        let k = flow(40000);
        let p = t.outbound(k, TCP_SYN, 1).unwrap();
        assert_eq!(t.outbound(k, TCP_ACK, 2).unwrap(), p);
        assert_eq!(t.inbound(back(&k, p), TCP_SYN | TCP_ACK, 2), Some(k));
        assert_eq!(t.get(&k).unwrap().state, TcpState::Established);
        // A packet from another remote to the same port finds nothing.
        let mut other = back(&k, p);
        other.remote = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(t.inbound(other, 0, 2), None);
    }

    #[test]
    fn reserved_ports_are_never_handed_out_and_the_table_is_bounded() {
        let mut t = NatTable::new(20000..=20003, [(Proto::Tcp, 20001)], 100);
        let ports: Vec<u16> = (0..3)
            .map(|i| t.outbound(flow(1000 + i), TCP_SYN, 1).unwrap())
            .collect();
        assert!(!ports.contains(&20001));
        assert_eq!(
            t.outbound(flow(2000), TCP_SYN, 1),
            Err(NatError::PortsExhausted)
        );
        // UDP has its own ports.
        let mut u = flow(5000);
        u.proto = Proto::Udp;
        assert!(t.outbound(u, 0, 1).is_ok());
        let mut small = NatTable::new(20000..=29999, [], 2);
        small.outbound(flow(1), TCP_SYN, 1).unwrap();
        small.outbound(flow(2), TCP_SYN, 1).unwrap();
        assert_eq!(
            small.outbound(flow(3), TCP_SYN, 1),
            Err(NatError::TableFull)
        );
    }

    #[test]
    fn closed_connections_expire_fast_and_ports_return() {
        let mut t = NatTable::new(20000..=20000, [], 100);
        let k = flow(1);
        let p = t.outbound(k, TCP_SYN, 0).unwrap();
        t.inbound(back(&k, p), TCP_SYN | TCP_ACK, 0);
        t.outbound(k, TCP_ACK, 0).unwrap();
        assert_eq!(t.expire(1000), 0, "established lives long");
        t.outbound(k, TCP_FIN | TCP_ACK, 1000).unwrap();
        assert_eq!(t.expire(1005), 0);
        assert_eq!(t.expire(1011), 1, "closing expires after 10 s");
        assert!(t.is_empty());
        assert_eq!(
            t.outbound(flow(2), TCP_SYN, 1012),
            Ok(20000),
            "the port is free again"
        );
    }

    #[test]
    fn udp_and_icmp_time_out() {
        let mut t = NatTable::new(20000..=20100, [], 100);
        let mut u = flow(53);
        u.proto = Proto::Udp;
        let mut i = flow(7);
        i.proto = Proto::Icmp;
        i.rport = 0;
        t.outbound(u, 0, 0).unwrap();
        t.outbound(i, 0, 0).unwrap();
        assert_eq!(t.expire(31), 1, "ICMP after 30 s");
        assert_eq!(t.expire(61), 1, "UDP after 60 s");
        t.outbound(u, 0, 100).unwrap();
        t.clear();
        assert!(t.is_empty());
    }
}
