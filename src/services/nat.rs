//! The NAPT session table of a local NI, kept the way a connection tracker
//! keeps it: each session holds the tuple its first packet had (`orig`) and
//! the tuple that packet had after translation (`xlated`). A packet matching
//! `orig` is rewritten to `xlated`; one matching the swap of `xlated` (the
//! reply) is rewritten to the swap of `orig`. Source NAT, port maps and
//! hairpin are all sessions of this one kind. Translated ports come from a
//! fixed range that never hands out a port-mapped port; the table is bounded;
//! TCP state decides how long a session lives (closed connections expire fast).
//! Ports are taken and given back in O(1), each app holds at most
//! `app_quota` sessions, and idle sessions are swept a chunk at a time.

use std::collections::{HashMap, HashSet, VecDeque};
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

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Icmp => 1,
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// A packet's flow key. For ICMP echo the identifier is `sport` of a
/// request and `dport` of a reply (the other port is 0), so a reply's tuple
/// is the swap of its request's, as with TCP and UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl Tuple {
    /// The tuple of the answer to this packet.
    pub fn swap(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// Which way a packet goes relative to its session's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Original,
    Reply,
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
    pub orig: Tuple,
    pub xlated: Tuple,
    /// The uplink (index) the session lives on.
    pub via: usize,
    /// The translated port this session took from the pool, if any.
    pub port: Option<u16>,
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
    /// The app holds its quota of sessions.
    QuotaExceeded,
    /// The translated flow would be taken for another session's.
    Clash,
}

/// How a new session rewrites its first packet.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    /// New source address; its port is taken from the pool.
    pub src: Option<Ipv4Addr>,
    /// New destination address and port (a port map).
    pub dst: Option<(Ipv4Addr, u16)>,
    pub via: usize,
}

/// Sessions one app may hold at once (by default), so that no app takes
/// every port of its NI.
pub const APP_QUOTA: usize = 8192;
/// Sessions `expire` looks at per call: a sweep of a full table is spread
/// over several calls instead of holding the lock for all of it at once.
pub const EXPIRE_CHUNK: usize = 8192;

/// The translated ports of one protocol: ports freed earlier (oldest first)
/// and the next never-used port of the range. Taking and giving back a
/// port costs O(1), whatever the number of sessions.
struct Pool {
    free: VecDeque<u16>,
    fresh: u32,
}

pub struct NatTable {
    /// Sessions by slot; `keys` point into it.
    slots: Vec<Option<Session>>,
    free_slots: Vec<u32>,
    len: usize,
    keys: HashMap<Tuple, (u32, Dir)>,
    used: HashSet<(Proto, u16)>,
    reserved: HashSet<(Proto, u16)>,
    pools: [Pool; 3],
    range: RangeInclusive<u16>,
    /// Sessions per app address (those that took a port).
    per_app: HashMap<Ipv4Addr, usize>,
    /// Where the next `expire` goes on looking.
    sweep: usize,
    max: usize,
    pub app_quota: usize,
    pub timeouts: Timeouts,
}

fn pool_index(p: Proto) -> usize {
    match p {
        Proto::Icmp => 0,
        Proto::Tcp => 1,
        Proto::Udp => 2,
    }
}

impl NatTable {
    /// `range`: ports for translated sources; `reserved`: ports that port
    /// maps own; `max`: most sessions at once.
    pub fn new(
        range: RangeInclusive<u16>,
        reserved: impl IntoIterator<Item = (Proto, u16)>,
        max: usize,
    ) -> Self {
        let pool = || Pool {
            free: VecDeque::new(),
            fresh: u32::from(*range.start()),
        };
        NatTable {
            slots: Vec::new(),
            free_slots: Vec::new(),
            len: 0,
            keys: HashMap::new(),
            used: HashSet::new(),
            reserved: reserved.into_iter().collect(),
            pools: [pool(), pool(), pool()],
            range,
            per_app: HashMap::new(),
            sweep: 0,
            max,
            app_quota: APP_QUOTA,
            timeouts: Timeouts::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ports port maps own now (a live apply changed the port maps).
    /// A port that is no longer reserved goes back to its pool.
    pub fn set_reserved(&mut self, reserved: impl IntoIterator<Item = (Proto, u16)>) {
        let new: HashSet<(Proto, u16)> = reserved.into_iter().collect();
        for &(proto, port) in self.reserved.difference(&new) {
            let pool = &mut self.pools[pool_index(proto)];
            if u32::from(port) < pool.fresh && self.range.contains(&port) {
                pool.free.push_back(port);
            }
        }
        self.reserved = new;
    }

    /// A free port of the range: the longest-free one first. Entries that
    /// are reserved or in use (a port given back twice) are skipped.
    fn allocate(&mut self, proto: Proto) -> Option<u16> {
        let hi = u32::from(*self.range.end());
        let pool = &mut self.pools[pool_index(proto)];
        loop {
            let p = match pool.free.pop_front() {
                Some(p) => p,
                None if pool.fresh <= hi => {
                    pool.fresh += 1;
                    (pool.fresh - 1) as u16
                }
                None => return None,
            };
            if !self.reserved.contains(&(proto, p)) && self.used.insert((proto, p)) {
                return Some(p);
            }
        }
    }

    fn release_port(&mut self, proto: Proto, port: u16) {
        if self.used.remove(&(proto, port)) {
            self.pools[pool_index(proto)].free.push_back(port);
        }
    }

    /// The tuple a packet of a known session is rewritten to, and the
    /// session's uplink; updates its TCP state and idle time.
    pub fn lookup(&mut self, t: &Tuple, tcp_flags: u8, now: u64) -> Option<(Tuple, usize)> {
        let (slot, dir) = *self.keys.get(t)?;
        let s = self.slots.get_mut(slot as usize)?.as_mut()?;
        s.last = now;
        if t.proto == Proto::Tcp {
            s.state = next_state(s.state, tcp_flags);
        }
        let to = match dir {
            Dir::Original => s.xlated,
            Dir::Reply => s.orig.swap(),
        };
        Some((to, s.via))
    }

    /// Starts a session for a packet with tuple `orig` and returns the tuple
    /// to rewrite it to.
    pub fn create(
        &mut self,
        orig: Tuple,
        rw: Rewrite,
        tcp_flags: u8,
        now: u64,
    ) -> Result<Tuple, NatError> {
        if self.len >= self.max {
            return Err(NatError::TableFull);
        }
        let mut x = orig;
        if let Some((ip, port)) = rw.dst {
            x.dst = ip;
            x.dport = port;
        }
        let mut port = None;
        if let Some(ip) = rw.src {
            if self.per_app.get(&orig.src).copied().unwrap_or(0) >= self.app_quota {
                return Err(NatError::QuotaExceeded);
            }
            let p = self.allocate(orig.proto).ok_or(NatError::PortsExhausted)?;
            x.src = ip;
            x.sport = p;
            port = Some(p);
        }
        if self.keys.contains_key(&orig) || self.keys.contains_key(&x.swap()) {
            if let Some(p) = port {
                self.release_port(orig.proto, p);
            }
            return Err(NatError::Clash);
        }
        let state = if orig.proto == Proto::Tcp {
            next_state(TcpState::Opening, tcp_flags)
        } else {
            TcpState::Established
        };
        let session = Session {
            orig,
            xlated: x,
            via: rw.via,
            port,
            state,
            created: now,
            last: now,
        };
        let slot = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(session);
                i
            }
            None => {
                self.slots.push(Some(session));
                (self.slots.len() - 1) as u32
            }
        };
        self.keys.insert(orig, (slot, Dir::Original));
        self.keys.insert(x.swap(), (slot, Dir::Reply));
        if port.is_some() {
            *self.per_app.entry(orig.src).or_default() += 1;
        }
        self.len += 1;
        Ok(x)
    }

    /// Every session, for status and tests.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.slots.iter().flatten()
    }

    /// Sessions app `ip` holds that took a port.
    pub fn app_sessions(&self, ip: Ipv4Addr) -> usize {
        self.per_app.get(&ip).copied().unwrap_or(0)
    }

    fn timeout(&self, s: &Session) -> u64 {
        let t = &self.timeouts;
        match (s.orig.proto, s.state) {
            (Proto::Udp, _) => t.udp,
            (Proto::Icmp, _) => t.icmp,
            (Proto::Tcp, TcpState::Opening) => t.tcp_opening,
            (Proto::Tcp, TcpState::Established) => t.tcp_established,
            (Proto::Tcp, TcpState::Closing | TcpState::Closed) => t.tcp_closing,
        }
    }

    /// Drops idle sessions among the next `EXPIRE_CHUNK` slots (called
    /// once a second, it sweeps the whole table every few seconds);
    /// returns how many went.
    pub fn expire(&mut self, now: u64) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut gone = 0;
        for _ in 0..n.min(EXPIRE_CHUNK) {
            self.sweep = (self.sweep + 1) % n;
            let i = self.sweep;
            let idle = self.slots[i]
                .as_ref()
                .is_some_and(|s| now.saturating_sub(s.last) > self.timeout(s));
            if idle {
                self.remove(i);
                gone += 1;
            }
        }
        gone
    }

    /// Drops the sessions of the uplinks for which `dead` holds (down, or
    /// their address changed); returns how many went.
    pub fn remove_via(&mut self, dead: impl Fn(usize) -> bool) -> usize {
        let doomed: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].as_ref().is_some_and(|s| dead(s.via)))
            .collect();
        doomed.iter().for_each(|&i| self.remove(i));
        doomed.len()
    }

    fn remove(&mut self, slot: usize) {
        let Some(s) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.keys.remove(&s.orig);
        self.keys.remove(&s.xlated.swap());
        if let Some(p) = s.port {
            self.release_port(s.orig.proto, p);
            if let Some(c) = self.per_app.get_mut(&s.orig.src) {
                *c -= 1;
                if *c == 0 {
                    self.per_app.remove(&s.orig.src);
                }
            }
        }
        self.free_slots.push(slot as u32);
        self.len -= 1;
    }
}

fn next_state(s: TcpState, flags: u8) -> TcpState {
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

    const APP: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 20);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
    const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    fn flow(proto: Proto, port: u16) -> Tuple {
        Tuple {
            proto,
            src: APP,
            sport: port,
            dst: REMOTE,
            dport: 80,
        }
    }

    fn snat(via: usize) -> Rewrite {
        Rewrite {
            src: Some(EXT),
            dst: None,
            via,
        }
    }

    #[test]
    fn a_flow_keeps_its_port_and_replies_find_it() {
        let mut t = NatTable::new(20000..=20010, [], 100);
        let k = flow(Proto::Tcp, 40000);
        let x = t.create(k, snat(0), TCP_SYN, 1).unwrap();
        assert_eq!((x.src, x.dst, x.dport), (EXT, REMOTE, 80));
        assert_eq!(t.lookup(&k, TCP_ACK, 2), Some((x, 0)));
        assert_eq!(
            t.lookup(&x.swap(), TCP_SYN | TCP_ACK, 2),
            Some((k.swap(), 0))
        );
        t.lookup(&k, TCP_ACK, 2);
        assert_eq!(t.sessions().next().unwrap().state, TcpState::Established);
        // A packet from another remote to the same port finds nothing.
        let mut other = x.swap();
        other.src = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(t.lookup(&other, 0, 2), None);
    }

    #[test]
    fn a_port_map_and_its_hairpin_are_sessions_too() {
        let mut t = NatTable::new(20000..=20010, [(Proto::Tcp, 8080)], 100);
        // From the LAN to EXT:8080, mapped to the app's port 80.
        let inbound = Tuple {
            proto: Proto::Tcp,
            src: REMOTE,
            sport: 5555,
            dst: EXT,
            dport: 8080,
        };
        let map = Rewrite {
            src: None,
            dst: Some((APP, 80)),
            via: 1,
        };
        let x = t.create(inbound, map, TCP_SYN, 0).unwrap();
        assert_eq!((x.src, x.sport, x.dst, x.dport), (REMOTE, 5555, APP, 80));
        // The app's answer goes back as EXT:8080.
        assert_eq!(t.lookup(&x.swap(), TCP_ACK, 0), Some((inbound.swap(), 1)));
        // Hairpin: another app to EXT:8080 is mapped and its source moved to
        // the gateway, so that the answer comes back through the router.
        let gw = Ipv4Addr::new(10, 50, 0, 1);
        let hp = Tuple {
            src: Ipv4Addr::new(10, 50, 0, 30),
            ..inbound
        };
        let rw = Rewrite {
            src: Some(gw),
            dst: Some((APP, 80)),
            via: 0,
        };
        let y = t.create(hp, rw, TCP_SYN, 0).unwrap();
        assert_eq!((y.src, y.dst, y.dport), (gw, APP, 80));
        assert_ne!(y.sport, 8080, "reserved ports are not handed out");
        assert_eq!(t.lookup(&y.swap(), TCP_ACK, 0), Some((hp.swap(), 0)));
        // The same first packet again is not a second session.
        assert_eq!(t.create(hp, rw, TCP_SYN, 0), Err(NatError::Clash));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reserved_ports_are_never_handed_out_and_the_table_is_bounded() {
        let mut t = NatTable::new(20000..=20003, [(Proto::Tcp, 20001)], 100);
        let ports: Vec<u16> = (0..3)
            .map(|i| {
                t.create(flow(Proto::Tcp, 1000 + i), snat(0), TCP_SYN, 1)
                    .unwrap()
                    .sport
            })
            .collect();
        assert!(!ports.contains(&20001));
        assert_eq!(
            t.create(flow(Proto::Tcp, 2000), snat(0), TCP_SYN, 1),
            Err(NatError::PortsExhausted)
        );
        // UDP has its own ports.
        assert!(t.create(flow(Proto::Udp, 5000), snat(0), 0, 1).is_ok());
        let mut small = NatTable::new(20000..=29999, [], 2);
        for p in 1..=2 {
            small
                .create(flow(Proto::Tcp, p), snat(0), TCP_SYN, 1)
                .unwrap();
        }
        assert_eq!(
            small.create(flow(Proto::Tcp, 3), snat(0), TCP_SYN, 1),
            Err(NatError::TableFull)
        );
    }

    #[test]
    fn closed_connections_expire_fast_and_ports_return() {
        let mut t = NatTable::new(20000..=20000, [], 100);
        let k = flow(Proto::Tcp, 1);
        let x = t.create(k, snat(0), TCP_SYN, 0).unwrap();
        t.lookup(&x.swap(), TCP_SYN | TCP_ACK, 0);
        t.lookup(&k, TCP_ACK, 0).unwrap();
        assert_eq!(t.expire(1000), 0, "established lives long");
        t.lookup(&k, TCP_FIN | TCP_ACK, 1000).unwrap();
        assert_eq!(t.expire(1005), 0);
        assert_eq!(t.expire(1011), 1, "closing expires after 10 s");
        assert!(t.is_empty());
        let again = t.create(flow(Proto::Tcp, 2), snat(0), TCP_SYN, 1012);
        assert_eq!(again.map(|x| x.sport), Ok(20000), "the port is free again");
    }

    #[test]
    fn udp_and_icmp_time_out_and_a_dead_uplink_takes_its_sessions() {
        let mut t = NatTable::new(20000..=20100, [], 100);
        let mut echo = flow(Proto::Icmp, 7);
        echo.dport = 0;
        t.create(flow(Proto::Udp, 53), snat(0), 0, 0).unwrap();
        let x = t.create(echo, snat(0), 0, 0).unwrap();
        // The echo reply carries the identifier as its destination port.
        assert_eq!(x.swap().dport, x.sport);
        assert_eq!(t.expire(31), 1, "ICMP after 30 s");
        assert_eq!(t.expire(61), 1, "UDP after 60 s");
        t.create(flow(Proto::Udp, 1), snat(0), 0, 100).unwrap();
        t.create(flow(Proto::Udp, 2), snat(1), 0, 100).unwrap();
        assert_eq!(t.remove_via(|via| via == 0), 1);
        assert_eq!(t.remove_via(|_| true), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn an_app_over_its_quota_gets_no_more_sessions_and_others_still_do() {
        let mut t = NatTable::new(20000..=29999, [], 1000);
        t.app_quota = 3;
        for p in 1..=3 {
            t.create(flow(Proto::Udp, p), snat(0), 0, 0).unwrap();
        }
        assert_eq!(
            t.create(flow(Proto::Udp, 4), snat(0), 0, 0),
            Err(NatError::QuotaExceeded)
        );
        let other = Tuple {
            src: Ipv4Addr::new(10, 50, 0, 21),
            ..flow(Proto::Udp, 4)
        };
        assert!(
            t.create(other, snat(0), 0, 0).is_ok(),
            "another app is not limited"
        );
        // Inbound port-map sessions take no port and count against no quota.
        let map = Rewrite {
            src: None,
            dst: Some((APP, 80)),
            via: 0,
        };
        let inbound = Tuple {
            src: REMOTE,
            dst: EXT,
            ..flow(Proto::Tcp, 9)
        };
        assert!(t.create(inbound, map, TCP_SYN, 0).is_ok());
        assert_eq!(t.app_sessions(APP), 3);
        // Expired sessions give the quota back.
        assert_eq!(t.expire(61), 5);
        assert_eq!(t.app_sessions(APP), 0);
        assert!(t.create(flow(Proto::Udp, 4), snat(0), 0, 62).is_ok());
    }

    #[test]
    fn ports_come_back_oldest_first_and_a_released_reservation_is_reused() {
        let mut t = NatTable::new(20000..=20002, [(Proto::Udp, 20001)], 100);
        let a = t.create(flow(Proto::Udp, 1), snat(0), 0, 0).unwrap().sport;
        let b = t.create(flow(Proto::Udp, 2), snat(0), 0, 0).unwrap().sport;
        assert_eq!((a, b), (20000, 20002));
        assert_eq!(
            t.create(flow(Proto::Udp, 3), snat(0), 0, 0),
            Err(NatError::PortsExhausted)
        );
        // The port map goes away: its port joins the pool.
        t.set_reserved([]);
        let c = t.create(flow(Proto::Udp, 3), snat(0), 0, 0).unwrap().sport;
        assert_eq!(c, 20001);
        // Reserving a port again while it is in use never hands it out twice.
        t.set_reserved([(Proto::Udp, 20001)]);
        t.set_reserved([]);
        assert_eq!(t.expire(61), 3);
        let mut again: Vec<u16> = (4..7)
            .map(|p| t.create(flow(Proto::Udp, p), snat(0), 0, 62).unwrap().sport)
            .collect();
        again.sort();
        assert_eq!(again, vec![20000, 20001, 20002], "each port once");
    }

    #[test]
    fn a_full_table_expires_over_several_calls() {
        let n = EXPIRE_CHUNK + 100;
        let mut t = NatTable::new(1024..=65535, [], n);
        t.app_quota = n;
        for p in 0..n {
            t.create(flow(Proto::Udp, p as u16), snat(0), 0, 0).unwrap();
        }
        assert_eq!(t.expire(61), EXPIRE_CHUNK, "one chunk per call");
        assert_eq!(t.expire(61), 100);
        assert!(t.is_empty());
    }
}
