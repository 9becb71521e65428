//! The ACL of one app interface applied to its frames, both ways, with a
//! flow table: the rules are evaluated on a flow's first packet and the
//! verdict is cached, so later packets cost one hash lookup (plus the
//! rule's token bucket, if it has one). Replies to a flow the app started
//! pass with it; a flow the remote side starts needs a rule (or a port map)
//! of its own. The table also counts each flow's packets and bytes, which
//! `sweep` turns into flow records. ARP, DHCP and DNS to the gateway always
//! pass; everything else unmatched is dropped. The rules can be replaced
//! while traffic flows (live apply): every flow is judged again by the new
//! rules on its next packet, keeping its direction and counters.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::acl::{Acl, Bucket, FlowKey, HostCache};
use super::flowlog::FlowRecord;
use super::metadata::METADATA_IP;
use crate::clock::{mono_f64_coarse as mono, unix_ms};
use crate::frame::{ETH_HDR_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, Packet};

const ETHERTYPE_IPV6: u16 = 0x86dd;
use crate::switch::{DropReason, PortHook};
use crate::sync::lock;

/// Most flows one interface tracks; beyond, packets are judged uncached.
const MAX_FLOWS: usize = 65536;
/// A flow without packets for this long ends (UDP, ICMP, dropped flows).
const IDLE_SECS: f64 = 30.0;
/// An allowed TCP connection without packets for this long ends.
const TCP_IDLE_SECS: f64 = 600.0;
/// A closed TCP connection is reported this long after its last packet.
const CLOSED_SECS: f64 = 2.0;
/// A long flow is reported this often.
const REPORT_SECS: f64 = 60.0;

/// Who the interface is, for flow records.
#[derive(Debug, Clone)]
pub struct VifIdent {
    pub app: String,
    pub app_uuid: String,
    pub ni: String,
    pub vif: String,
}

struct Flow {
    allow: bool,
    rule: Option<usize>,
    inbound: bool,
    /// Host-cache generation when a drop was decided: a newer DNS answer
    /// has the rules evaluated again.
    generation: u64,
    /// The rules version that decided: newer rules judge the flow again.
    version: u64,
    start_ms: u64,
    last: f64,
    reported: f64,
    closing: bool,
    tx_pkts: u64,
    tx_bytes: u64,
    rx_pkts: u64,
    rx_bytes: u64,
}

impl Flow {
    /// Counts a packet of the flow.
    fn count(&mut self, v: &View, out: bool, now: f64) {
        self.last = now;
        if v.tcp_flags & 0x05 != 0 {
            self.closing = true;
        }
        if out {
            self.tx_pkts += v.pkts;
            self.tx_bytes += v.bytes;
        } else {
            self.rx_pkts += v.pkts;
            self.rx_bytes += v.bytes;
        }
    }
}

struct State {
    flows: HashMap<FlowKey, Flow>,
    buckets: Vec<Option<Bucket>>,
}

/// What a filter judges by; replaced as a whole on a live apply.
pub struct FilterRules {
    pub ident: VifIdent,
    pub acl: Acl,
    /// False: the interface has no ACLs; everything passes and flows are
    /// only recorded.
    pub enforce: bool,
    pub gateway: Option<Ipv4Addr>,
    /// The router's IPv6 addresses (a local NI with `subnet6`).
    pub router6: Vec<Ipv6Addr>,
    /// (protocol, app port) of the interface's port maps: inbound allowed.
    pub mapped: Vec<(u8, u16)>,
}

struct Rules {
    r: FilterRules,
    version: u64,
    /// Flows each rule decided.
    hits: Vec<AtomicU64>,
}

pub struct VifFilter {
    rules: ArcSwap<Rules>,
    hosts: Option<Arc<HostCache>>,
    state: Mutex<State>,
}

/// What a packet is, for the filter.
struct View {
    key: FlowKey,
    tcp_flags: u8,
    /// Packets on the wire (a GSO packet counts its segments) and bytes.
    pkts: u64,
    bytes: u64,
    /// Neighbour discovery or MLD: IPv6's ARP.
    control: bool,
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl Rules {
    fn new(r: FilterRules, version: u64) -> Rules {
        let hits = (0..r.acl.len()).map(|_| AtomicU64::new(0)).collect();
        Rules { r, version, hits }
    }
}

/// The protocol, addresses and L4 header of an untagged IPv4 or IPv6
/// packet, and whether it is a first fragment (ports readable).
fn l3(f: &[u8]) -> Option<(u8, IpAddr, IpAddr, &[u8], bool)> {
    let ip = f.get(ETH_HDR_LEN..)?;
    match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        ETHERTYPE_IPV4 => {
            let ihl = (*ip.first()? & 0x0f) as usize * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
                return None;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
            Some((ip[9], src.into(), dst.into(), &ip[ihl..], first))
        }
        ETHERTYPE_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let addr = |at: usize| {
                <[u8; 16]>::try_from(&ip[at..at + 16])
                    .ok()
                    .map(Ipv6Addr::from)
            };
            Some((ip[6], addr(8)?.into(), addr(24)?.into(), &ip[40..], true))
        }
        _ => None,
    }
}

/// ICMPv6 that IPv6 needs to work at all, as ARP for IPv4: MLD, router
/// and neighbour discovery, redirects.
fn ipv6_control(proto: u8, l4: &[u8]) -> bool {
    proto == 58 && matches!(l4.first(), Some(130..=137 | 143))
}

/// Reads an untagged IPv4 or IPv6 packet: None for anything else. `out`:
/// sent by the app (its address is the source).
fn view(p: &Packet, out: bool) -> Option<View> {
    let f = p.frame();
    let (proto, src, dst, l4, first) = l3(f)?;
    let (mut sport, mut dport, mut tcp_flags) = (0, 0, 0);
    if first && matches!(proto, 6 | 17) && l4.len() >= 4 {
        sport = u16::from_be_bytes([l4[0], l4[1]]);
        dport = u16::from_be_bytes([l4[2], l4[3]]);
        if proto == 6 && l4.len() >= 14 {
            tcp_flags = l4[13];
        }
    }
    let echo = match proto {
        1 => matches!(l4.first(), Some(0 | 8)),
        58 => matches!(l4.first(), Some(128 | 129)),
        _ => false,
    };
    if first && echo && l4.len() >= 8 {
        // Echo: the identifier is the app's "port" both ways.
        let id = u16::from_be_bytes([l4[4], l4[5]]);
        (sport, dport) = if out { (id, 0) } else { (0, id) };
    }
    let bytes = f.len() as u64;
    let seg = p.gso_size() as u64;
    let pkts = if p.is_gso() && seg > 0 {
        let hdr = p.gso_header_len().unwrap_or(f.len() - l4.len() + 20) as u64;
        bytes.saturating_sub(hdr).div_ceil(seg).max(1)
    } else {
        1
    };
    let key = if out {
        FlowKey {
            proto,
            local: src,
            lport: sport,
            remote: dst,
            rport: dport,
        }
    } else {
        FlowKey {
            proto,
            local: dst,
            lport: dport,
            remote: src,
            rport: sport,
        }
    };
    Some(View {
        key,
        tcp_flags,
        pkts,
        bytes,
        control: ipv6_control(proto, l4),
    })
}

impl PortHook for VifFilter {
    fn egress(&self, p: &Packet) -> Result<(), DropReason> {
        self.judge(p, true)
    }

    fn ingress(&self, p: &Packet) -> Result<(), DropReason> {
        self.judge(p, false)
    }
}

impl VifFilter {
    pub fn new(rules: FilterRules, hosts: Option<Arc<HostCache>>) -> VifFilter {
        let buckets = rules.acl.buckets(mono());
        VifFilter {
            rules: ArcSwap::from_pointee(Rules::new(rules, 0)),
            hosts,
            state: Mutex::new(State {
                flows: HashMap::new(),
                buckets,
            }),
        }
    }

    /// Replaces the rules; each flow is judged again on its next packet.
    pub fn set_rules(&self, rules: FilterRules) {
        let version = self.rules.load().version + 1;
        let buckets = rules.acl.buckets(mono());
        lock(&self.state).buckets = buckets;
        self.rules.store(Arc::new(Rules::new(rules, version)));
    }

    /// Flows each rule decided since the rules were last set.
    pub fn hits(&self) -> Vec<u64> {
        self.rules
            .load()
            .hits
            .iter()
            .map(|h| h.load(Relaxed))
            .collect()
    }

    /// ARP, neighbour discovery, DHCP (v4 and v6), DNS with the router
    /// and, on a local NI, the metadata server pass whatever the rules say.
    fn always(&self, r: &FilterRules, v: &View) -> bool {
        let k = &v.key;
        // The key is the app's view both ways: its port, the server's.
        let dhcp = k.proto == 17 && matches!((k.lport, k.rport), (68, 67) | (546, 547));
        let router = match k.remote {
            IpAddr::V4(a) => Some(a) == r.gateway,
            IpAddr::V6(a) => r.router6.contains(&a),
        };
        let dns = matches!(k.proto, 6 | 17) && router && k.rport == 53;
        let metadata = k.proto == 6
            && r.gateway.is_some()
            && (k.remote, k.rport) == (IpAddr::V4(METADATA_IP), 80);
        v.control || dhcp || dns || metadata
    }

    fn judge(&self, p: &Packet, out: bool) -> Result<(), DropReason> {
        let Some(v) = view(p, out) else {
            let f = p.frame();
            let arp = f.len() >= ETH_HDR_LEN && u16::from_be_bytes([f[12], f[13]]) == ETHERTYPE_ARP;
            return if arp || !self.rules.load().r.enforce {
                Ok(())
            } else {
                Err(DropReason::AclDenied)
            };
        };
        let rules = self.rules.load();
        if self.always(&rules.r, &v) {
            return Ok(());
        }
        let now = mono();
        let generation = self
            .hosts
            .as_ref()
            .map_or(0, |h| h.generation.load(Relaxed));
        let mut st = lock(&self.state);
        let st = &mut *st;
        // A known flow that these rules (and this DNS generation) decided:
        // one lookup, the counters, the rate limit.
        let began_inbound = match st.flows.get_mut(&v.key) {
            Some(f) if f.version == rules.version && (f.allow || f.generation == generation) => {
                f.count(&v, out, now);
                let (allow, rule) = (f.allow, f.rule);
                return self.limit(st, allow, rule, now);
            }
            known => known.map(|f| f.inbound),
        };
        // A new flow, or one the new rules judge again (keeping the
        // direction it began in).
        let flow = self.decide(
            &rules,
            &v.key,
            began_inbound.map_or(out, |i| !i),
            now,
            generation,
        );
        if let Some(r) = flow.rule
            && let Some(h) = rules.hits.get(r)
        {
            h.fetch_add(1, Relaxed);
        }
        let full = st.flows.len() >= MAX_FLOWS;
        let f = match st.flows.get_mut(&v.key) {
            Some(f) => {
                (f.allow, f.rule, f.generation, f.version) =
                    (flow.allow, flow.rule, generation, rules.version);
                f
            }
            None if full => return self.limit(st, flow.allow, flow.rule, now),
            None => st.flows.entry(v.key).or_insert(flow),
        };
        f.count(&v, out, now);
        let (allow, rule) = (f.allow, f.rule);
        self.limit(st, allow, rule, now)
    }

    /// A new flow's verdict.
    fn decide(&self, rules: &Rules, key: &FlowKey, out: bool, now: f64, generation: u64) -> Flow {
        let mapped = !out && rules.r.mapped.contains(&(key.proto, key.lport));
        let (allow, rule) = if mapped || !rules.r.enforce {
            (true, None)
        } else {
            let wall = unix_ms() / 1000;
            let host = |pattern: &str, ip: IpAddr| {
                self.hosts
                    .as_ref()
                    .is_some_and(|h| h.allows(pattern, ip, wall))
            };
            let verdict = rules.r.acl.evaluate(key, &host);
            (verdict.allow, verdict.rule)
        };
        Flow {
            allow,
            rule,
            inbound: !out,
            generation,
            version: rules.version,
            start_ms: unix_ms(),
            last: now,
            reported: now,
            closing: false,
            tx_pkts: 0,
            tx_bytes: 0,
            rx_pkts: 0,
            rx_bytes: 0,
        }
    }

    fn limit(
        &self,
        st: &mut State,
        allow: bool,
        rule: Option<usize>,
        now: f64,
    ) -> Result<(), DropReason> {
        if !allow {
            return Err(DropReason::AclDenied);
        }
        let bucket = rule
            .and_then(|r| st.buckets.get_mut(r))
            .and_then(|b| b.as_mut());
        match bucket.map(|b| b.take(now)) {
            Some(false) => Err(DropReason::AclRateLimited),
            _ => Ok(()),
        }
    }

    /// Flows that ended (closed, idle) or ran another 60 s, as records;
    /// ended flows are forgotten.
    pub fn sweep(&self) -> Vec<FlowRecord> {
        let now = mono();
        let now_ms = unix_ms();
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        st.flows.retain(|k, f| {
            let idle = now - f.last;
            let ended = (f.closing && idle >= CLOSED_SECS)
                || idle
                    >= if k.proto == 6 && f.allow {
                        TCP_IDLE_SECS
                    } else {
                        IDLE_SECS
                    };
            if ended || now - f.reported >= REPORT_SECS {
                f.reported = now;
                let end_ms = if ended {
                    now_ms.saturating_sub(((now - f.last) * 1000.0) as u64)
                } else {
                    now_ms
                };
                out.push(self.record(k, f, end_ms));
            }
            !ended
        });
        out
    }

    fn record(&self, k: &FlowKey, f: &Flow, end_ms: u64) -> FlowRecord {
        let rules = self.rules.load();
        let ident = &rules.r.ident;
        let (src, sport, dst, dport) = if f.inbound {
            (k.remote, k.rport, k.local, k.lport)
        } else {
            (k.local, k.lport, k.remote, k.rport)
        };
        FlowRecord {
            app: ident.app.clone(),
            app_uuid: ident.app_uuid.clone(),
            ni: ident.ni.clone(),
            vif: ident.vif.clone(),
            proto: k.proto,
            src: src.to_string(),
            sport,
            dst: dst.to_string(),
            dport,
            inbound: f.inbound,
            start: rfc3339(f.start_ms),
            end: rfc3339(end_ms.max(f.start_ms)),
            tx_pkts: f.tx_pkts,
            tx_bytes: f.tx_bytes,
            rx_pkts: f.rx_pkts,
            rx_bytes: f.rx_bytes,
            action: if f.allow { "allow" } else { "drop" }.to_string(),
            acl: f.rule,
        }
    }

    /// Every flow now, as records (for a clean shutdown).
    pub fn flush(&self) -> Vec<FlowRecord> {
        let now_ms = unix_ms();
        let mut st = lock(&self.state);
        let out = st
            .flows
            .iter()
            .map(|(k, f)| self.record(k, f, now_ms))
            .collect();
        st.flows.clear();
        out
    }
}

#[cfg(test)]
mod tests;
