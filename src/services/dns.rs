//! The DNS server of a local network instance: answers `NAME` and
//! `NAME.DOMAIN` of its apps, `router`, static records and `*.` wildcards,
//! NXDOMAIN for unknown local names, and hands everything else to the
//! forwarder, which relays queries to upstream servers under fresh ids.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the NI knows by name.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    pub domain: Option<String>,
    pub router: Option<Ipv4Addr>,
    /// App name (lower case) -> its addresses in this NI (IPv4 and IPv6).
    pub hosts: HashMap<String, Vec<IpAddr>>,
    /// Static records; a name starting with `*.` is a wildcard.
    pub records: Vec<(String, IpAddr)>,
    pub ttl: u32,
    /// Reverse lookups inside this subnet are answered here.
    pub subnet: Option<ipnet::Ipv4Net>,
}

/// What to do with a query.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Not ours: relay to an upstream server.
    Forward,
    /// Not worth an answer (a response, or too short to carry an id).
    Drop,
}

impl Zone {
    fn strip_domain<'a>(&self, name: &'a str) -> Option<&'a str> {
        let d = self.domain.as_deref()?;
        name.strip_suffix(d).and_then(|h| h.strip_suffix('.'))
    }

    /// Addresses for a name, or None when the zone does not know it.
    pub fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let host = self.strip_domain(&name).unwrap_or(&name);
        let mut out: Vec<IpAddr> = Vec::new();
        if !host.contains('.') {
            if host == "router"
                && let Some(r) = self.router
            {
                out.push(r.into());
            }
            if let Some(ips) = self.hosts.get(host) {
                out.extend(ips.iter().copied());
            }
        }
        for (n, ip) in &self.records {
            let hit = match n.strip_prefix("*.") {
                Some(suffix) => {
                    name.len() > suffix.len() + 1
                        && name.ends_with(suffix)
                        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
                }
                None => *n == name,
            };
            if hit && !out.contains(ip) {
                out.push(*ip);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// PTR: Some(names) for an address of the NI's subnet (empty: NXDOMAIN),
    /// None for a name that is not a reverse name of the subnet.
    pub fn reverse(&self, name: &str) -> Option<Vec<String>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let rev = name.strip_suffix(".in-addr.arpa")?;
        let o: Vec<u8> = rev
            .split('.')
            .map(|x| x.parse::<u8>())
            .collect::<Result<_, _>>()
            .ok()?;
        let [d, c, b, a] = o[..] else { return None };
        let ip = Ipv4Addr::new(a, b, c, d);
        if !self.subnet.is_some_and(|s| s.contains(&ip)) {
            return None;
        }
        let qualify = |h: &str| match &self.domain {
            Some(d) => format!("{h}.{d}."),
            None => format!("{h}."),
        };
        let mut out: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, ips)| ips.contains(&IpAddr::V4(ip)))
            .map(|(h, _)| qualify(h))
            .collect();
        out.sort();
        if self.router == Some(ip) {
            out.push(qualify("router"));
        }
        Some(out)
    }

    /// A name the NI is authoritative for: one label, or under its domain.
    fn is_local(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        !name.contains('.')
            || self
                .domain
                .as_deref()
                .is_some_and(|d| name == d || self.strip_domain(&name).is_some())
    }
}

fn error_header(bytes: &[u8], rcode: u8) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[0] = bytes[0];
    h[1] = bytes[1];
    // QR=1, the query's opcode, RD copied; RA=1.
    h[2] = 0x80 | (bytes[2] & 0x79);
    h[3] = 0x80 | rcode;
    h
}

/// Answers one query (wire format).
pub fn answer(zone: &Zone, bytes: &[u8]) -> Verdict {
    if bytes.len() < 12 {
        return Verdict::Drop;
    }
    if bytes[2] & 0x80 != 0 {
        return Verdict::Drop;
    }
    let Ok(q) = Message::from_vec(bytes) else {
        return Verdict::Reply(error_header(bytes, ResponseCode::FormErr.low()));
    };
    if q.metadata.op_code != OpCode::Query {
        return Verdict::Reply(error_header(bytes, ResponseCode::NotImp.low()));
    }
    if q.queries.len() != 1 {
        return Verdict::Reply(error_header(bytes, ResponseCode::FormErr.low()));
    }
    let query = &q.queries[0];
    let name = query.name().to_ascii();
    let reverse = zone.reverse(&name);
    let found = if reverse.is_some() {
        None
    } else {
        zone.lookup(&name)
    };
    if reverse.is_none() && found.is_none() && !zone.is_local(&name) {
        return Verdict::Forward;
    }
    let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.authoritative = true;
    r.add_query(query.clone());
    if q.edns.is_some() {
        r.set_edns(Edns::new());
    }
    match (found, reverse) {
        (None, Some(names)) if !names.is_empty() => {
            if matches!(query.query_type(), RecordType::PTR | RecordType::ANY) {
                for n in names {
                    if let Ok(n) = Name::from_ascii(&n) {
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            zone.ttl,
                            RData::PTR(PTR(n)),
                        ));
                    }
                }
            }
        }
        (None, _) => r.metadata.response_code = ResponseCode::NXDomain,
        (Some(ips), _) => {
            let t = query.query_type();
            for ip in ips {
                let rdata = match (ip, t) {
                    (IpAddr::V4(a), RecordType::A | RecordType::ANY) => RData::A(A(a)),
                    (IpAddr::V6(a), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(a)),
                    _ => continue,
                };
                r.add_answer(Record::from_rdata(query.name().clone(), zone.ttl, rdata));
            }
        }
    }
    match r.to_vec() {
        Ok(v) => Verdict::Reply(v),
        Err(_) => Verdict::Reply(error_header(bytes, ResponseCode::ServFail.low())),
    }
}

/// Largest DNS payload that leaves in one unfragmented UDP datagram.
pub const MAX_UDP_ANSWER: usize = 1472;

/// The largest UDP answer the client of `query` takes: 512 bytes, or what
/// its EDNS record offers, up to one unfragmented datagram.
pub fn udp_limit(query: &[u8]) -> usize {
    let offered = Message::from_vec(query)
        .ok()
        .and_then(|m| m.edns.map(|e| e.max_payload() as usize));
    offered.unwrap_or(512).clamp(512, MAX_UDP_ANSWER)
}

/// DNS over TCP (RFC 1035 §4.2.2, RFC 7766): each message behind its
/// length in two bytes. Takes the first whole message off `input`.
pub fn take_framed(input: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = u16::from_be_bytes([*input.first()?, *input.get(1)?]) as usize;
    if input.len() < 2 + len {
        return None;
    }
    let msg = input[2..2 + len].to_vec();
    input.drain(..2 + len);
    Some(msg)
}

/// A message with its two-byte length in front, for TCP.
pub fn framed(msg: &[u8]) -> Vec<u8> {
    let len = msg.len().min(u16::MAX as usize);
    [&(len as u16).to_be_bytes()[..], &msg[..len]].concat()
}

/// The addresses (A and AAAA) an answer gives for its question's name,
/// with their TTLs (CNAME chains included: the addresses count for the
/// asked name).
pub fn answered_addrs(reply: &[u8]) -> Vec<(String, IpAddr, u32)> {
    let Ok(m) = Message::from_vec(reply) else {
        return Vec::new();
    };
    let Some(q) = m.queries.first() else {
        return Vec::new();
    };
    let name = q.name().to_ascii();
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((name.clone(), IpAddr::V4(a.0), r.ttl)),
            RData::AAAA(a) => Some((name.clone(), IpAddr::V6(a.0), r.ttl)),
            _ => None,
        })
        .collect()
}

/// An answer that fits `max` bytes: unchanged, or cut to its header and
/// question with the TC bit set, so the client knows to ask again.
pub fn fit(reply: Vec<u8>, max: usize) -> Vec<u8> {
    if reply.len() <= max {
        return reply;
    }
    match Message::from_vec(&reply)
        .ok()
        .and_then(|m| m.truncate().to_vec().ok())
    {
        Some(t) if t.len() <= max => t,
        _ => {
            let mut h = reply[..12.min(reply.len())].to_vec();
            h.resize(12, 0);
            h[2] |= 0x02;
            h[4..12].fill(0);
            h
        }
    }
}

/// SERVFAIL for a query nobody can answer (no upstream, or it timed out).
pub fn servfail(bytes: &[u8]) -> Option<Vec<u8>> {
    (bytes.len() >= 12).then(|| error_header(bytes, ResponseCode::ServFail.low()))
}

/// A query relayed upstream, waiting for its answer.
#[derive(Debug, Clone)]
struct Pending<C> {
    id: u16,
    client: C,
    sent: u64,
    query: Vec<u8>,
    /// The relay port it left from: its answer must come back to it.
    port: u16,
}

/// Relays queries to upstream servers under fresh ids (drawn by `ids`, an
/// unpredictable source), each from its own port, and accepts an answer
/// only when id, port and question all match: an off-path attacker must
/// guess about 30 bits, and a guess that misses leaves the query waiting
/// for the real answer.
pub struct Forwarder<C = SocketAddr> {
    pending: HashMap<u16, Pending<C>>,
    ids: Box<dyn FnMut() -> u16 + Send>,
    cap: usize,
    timeout_ms: u64,
}

/// The question section (name, type, class) of a message with one
/// question, with the name in lowercase.
fn question(m: &[u8]) -> Option<Vec<u8>> {
    if m.len() < 12 || m[4..6] != [0, 1] {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *m.get(i)? as usize;
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        i += 1 + len;
    }
    if m.get(i)? & 0xc0 != 0 {
        return None;
    }
    Some(m.get(12..i + 5)?.to_ascii_lowercase())
}

impl<C: Clone> Forwarder<C> {
    pub fn new(ids: impl FnMut() -> u16 + Send + 'static) -> Self {
        Forwarder {
            pending: HashMap::new(),
            ids: Box::new(ids),
            cap: 4096,
            timeout_ms: 4000,
        }
    }

    fn next_id(&mut self) -> u16 {
        loop {
            let id = (self.ids)();
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// The query to send upstream from relay port `port` (with a new id),
    /// or None when too many wait or it is not a one-question query.
    pub fn outgoing(&mut self, query: &[u8], client: C, now_ms: u64, port: u16) -> Option<Vec<u8>> {
        if self.pending.len() >= self.cap {
            return None;
        }
        question(query)?;
        let id = self.next_id();
        let mut q = query.to_vec();
        let orig = u16::from_be_bytes([q[0], q[1]]);
        q[0..2].copy_from_slice(&id.to_be_bytes());
        let p = Pending {
            id: orig,
            client,
            sent: now_ms,
            query: query.to_vec(),
            port,
        };
        self.pending.insert(id, p);
        Some(q)
    }

    /// An upstream answer that reached relay port `port`: restored to the
    /// client's id, where it goes, and the port that is now free. An
    /// answer whose id, port or question does not match is dropped.
    pub fn incoming(&mut self, reply: &[u8], port: u16) -> Option<(Vec<u8>, C)> {
        if reply.len() < 12 || reply[2] & 0x80 == 0 {
            return None;
        }
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        let p = self.pending.get(&id)?;
        if p.port != port || question(reply)? != question(&p.query)? {
            return None;
        }
        let p = self.pending.remove(&id)?;
        let mut r = reply.to_vec();
        r[0..2].copy_from_slice(&p.id.to_be_bytes());
        Some((r, p.client))
    }

    /// Whether a query still waits on relay port `port`.
    pub fn waits_on(&self, port: u16) -> bool {
        self.pending.values().any(|p| p.port == port)
    }

    /// Queries that waited too long: a SERVFAIL for each, where it goes,
    /// and the relay port to close.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(Vec<u8>, C, u16)> {
        let t = self.timeout_ms;
        let old: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.sent) > t)
            .map(|(k, _)| *k)
            .collect();
        old.into_iter()
            .filter_map(|k| self.pending.remove(&k))
            .filter_map(|p| servfail(&p.query).map(|r| (r, p.client, p.port)))
            .collect()
    }

    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests;
