//! The DHCP server of a local network instance (RFC 2131): a lease table for
//! the NI's range and fixed addresses, and the answer to each client message.
//! A client only ever gets a lease for its own MAC; a full range gets no
//! offer, never a duplicate address.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::Mac;

/// How long an offer holds an address for the client that was offered it.
const OFFER_SECS: u64 = 60;
/// How long a declined address stays out of use.
const DECLINE_SECS: u64 = 600;

/// What the server hands out.
#[derive(Debug, Clone)]
pub struct Pool {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub lease_secs: u32,
    pub domain: Option<String>,
    pub mtu: u16,
    /// With no uplink, no router and no DNS options are given.
    pub air_gapped: bool,
    /// NTP servers (option 42).
    pub ntp: Vec<Ipv4Addr>,
    /// Static routes and their next hops (option 121, with the subnet's
    /// own route and the default route).
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
}

/// A client the NI knows: an app VIF, with its fixed address if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub mac: Mac,
    pub app: String,
    pub fixed: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: u64,
    /// Offered, not yet requested.
    #[serde(default)]
    pub offered: bool,
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Broadcast,
    /// IP and MAC of the client (it may not answer ARP yet).
    Unicast(Ipv4Addr, Mac),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub msg: Message,
    pub dest: Dest,
}

/// Why a message got no reply (counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    Malformed,
    NotARequest,
    /// chaddr is not the sender's MAC, or the sender is not a VIF of this NI.
    ForeignClient,
    /// DISCOVER with the range full.
    PoolExhausted,
    /// For another server, or nothing to say (RELEASE, DECLINE).
    Silent,
}

#[derive(Default)]
pub struct Leases {
    by_ip: HashMap<Ipv4Addr, Lease>,
    /// Declined addresses: until when, and who declined them.
    declined: HashMap<Ipv4Addr, (u64, Mac)>,
}

/// Declined addresses one client may keep out of use at a time.
const DECLINES_PER_CLIENT: usize = 2;

/// Parses a DHCP message. Options whose length contradicts their fixed
/// size are refused first: the codec trusts them.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    if !options_sane(bytes) {
        return None;
    }
    Message::decode(&mut Decoder::new(bytes)).ok()
}

/// Walks the option list after the magic cookie: every option fits, and the
/// fixed-size ones have their size.
fn options_sane(bytes: &[u8]) -> bool {
    let mut opts = match bytes.get(236..240) {
        Some([99, 130, 83, 99]) => &bytes[240..],
        _ => return false,
    };
    while let [code, rest @ ..] = opts {
        match code {
            0 => opts = rest,
            255 => return true,
            _ => {
                let [len, data @ ..] = rest else { return false };
                let len = *len as usize;
                if data.len() < len {
                    return false;
                }
                let fits = match code {
                    80 => len == 0,
                    94 => len == 3,
                    81 => len >= 3,
                    151 => len >= 1,
                    152..=155 => len == 4,
                    156 | 157 => len == 1,
                    _ => true,
                };
                if !fits {
                    return false;
                }
                opts = &data[len..];
            }
        }
    }
    true
}

pub fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(300);
    let _ = msg.encode(&mut Encoder::new(&mut buf));
    // Pad to the BOOTP minimum some clients insist on.
    if buf.len() < 300 {
        buf.resize(300, 0);
    }
    buf
}

impl Leases {
    pub fn from_list(list: Vec<Lease>, now: u64) -> Self {
        let mut l = Leases::default();
        for lease in list {
            if lease.expires > now && !lease.offered {
                l.by_ip.insert(lease.ip, lease);
            }
        }
        l
    }

    /// Drops saved leases the current config no longer allows: unknown
    /// clients, addresses outside the range, addresses now fixed for others.
    pub fn retain_valid(&mut self, pool: &Pool, clients: &[Client]) {
        self.by_ip
            .retain(|ip, l| match clients.iter().find(|c| c.mac == l.mac) {
                None => false,
                Some(c) => match c.fixed {
                    Some(f) => f == *ip,
                    None => {
                        *ip >= pool.start
                            && *ip <= pool.end
                            && !clients.iter().any(|o| o.fixed == Some(*ip))
                    }
                },
            });
    }

    /// The (MAC, address) bindings, without expiry times.
    pub fn bindings(&self) -> Vec<(Mac, Ipv4Addr)> {
        let mut v: Vec<(Mac, Ipv4Addr)> = self
            .by_ip
            .values()
            .filter(|l| !l.offered)
            .map(|l| (l.mac, l.ip))
            .collect();
        v.sort();
        v
    }

    /// Bound leases, for persistence and status.
    pub fn list(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self
            .by_ip
            .values()
            .filter(|l| !l.offered)
            .cloned()
            .collect();
        v.sort_by_key(|l| l.ip);
        v
    }

    /// The bound, unexpired address of a MAC.
    pub fn ip_of(&self, mac: Mac, now: u64) -> Option<Ipv4Addr> {
        self.by_ip
            .values()
            .find(|l| l.mac == mac && !l.offered && l.expires > now)
            .map(|l| l.ip)
    }

    fn held_by_other(&self, ip: Ipv4Addr, mac: Mac, now: u64) -> bool {
        self.by_ip
            .get(&ip)
            .is_some_and(|l| l.mac != mac && l.expires > now)
            || self.declined.get(&ip).is_some_and(|(t, _)| *t > now)
    }

    fn remove_mac(&mut self, mac: Mac) {
        self.by_ip.retain(|_, l| l.mac != mac);
    }

    /// Drops expired leases and declines; true when anything changed.
    pub fn expire(&mut self, now: u64) -> bool {
        let before = self.by_ip.len() + self.declined.len();
        self.by_ip.retain(|_, l| l.expires > now);
        self.declined.retain(|_, (t, _)| *t > now);
        before != self.by_ip.len() + self.declined.len()
    }

    fn usable(
        &self,
        pool: &Pool,
        fixed_ips: &[Ipv4Addr],
        ip: Ipv4Addr,
        mac: Mac,
        now: u64,
    ) -> bool {
        ip >= pool.start
            && ip <= pool.end
            && ip != pool.gateway
            && !fixed_ips.contains(&ip)
            && !self.held_by_other(ip, mac, now)
    }

    /// The address for a client: its fixed one, its current one, the one it
    /// asks for if free, or the first free one.
    fn choose(
        &self,
        pool: &Pool,
        clients: &[Client],
        c: &Client,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        if let Some(ip) = c.fixed {
            return Some(ip);
        }
        let fixed: Vec<Ipv4Addr> = clients.iter().filter_map(|c| c.fixed).collect();
        if let Some(l) = self.by_ip.values().find(|l| l.mac == c.mac)
            && self.usable(pool, &fixed, l.ip, c.mac, now)
        {
            return Some(l.ip);
        }
        if let Some(r) = requested
            && self.usable(pool, &fixed, r, c.mac, now)
        {
            return Some(r);
        }
        (u32::from(pool.start)..=u32::from(pool.end))
            .map(Ipv4Addr::from)
            .find(|ip| self.usable(pool, &fixed, *ip, c.mac, now))
    }

    /// Whether `ip` may be bound to client `c` right now.
    fn acceptable(
        &self,
        pool: &Pool,
        clients: &[Client],
        c: &Client,
        ip: Ipv4Addr,
        now: u64,
    ) -> bool {
        match c.fixed {
            Some(f) => f == ip,
            None => {
                let fixed: Vec<Ipv4Addr> = clients.iter().filter_map(|c| c.fixed).collect();
                self.usable(pool, &fixed, ip, c.mac, now)
            }
        }
    }

    fn bind(&mut self, mac: Mac, ip: Ipv4Addr, expires: u64, offered: bool) {
        self.remove_mac(mac);
        self.by_ip.insert(
            ip,
            Lease {
                mac,
                ip,
                expires,
                offered,
            },
        );
    }

    /// Answers one client message arriving from Ethernet source `src`.
    pub fn handle(
        &mut self,
        pool: &Pool,
        clients: &[Client],
        src: Mac,
        msg: &Message,
        now: u64,
    ) -> Result<Reply, Ignored> {
        if msg.opcode() != Opcode::BootRequest {
            return Err(Ignored::NotARequest);
        }
        // hlen first: the codec slices chaddr by it.
        if msg.hlen() != 6 || msg.chaddr() != src.0 {
            return Err(Ignored::ForeignClient);
        }
        let Some(c) = clients.iter().find(|c| c.mac == src) else {
            return Err(Ignored::ForeignClient);
        };
        let Some(kind) = msg.opts().msg_type() else {
            return Err(Ignored::Malformed);
        };
        let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        };
        let lease_end = now + pool.lease_secs as u64;
        match kind {
            MessageType::Discover => {
                // A bound client is offered its address and keeps its
                // binding (RFC 2131 §4.3.1): only RELEASE, DECLINE or
                // expiry end it.
                if let Some(ip) = self.ip_of(c.mac, now).filter(|_| c.fixed.is_none()) {
                    return Ok(self.reply(pool, msg, MessageType::Offer, ip));
                }
                let ip = self
                    .choose(pool, clients, c, requested, now)
                    .ok_or(Ignored::PoolExhausted)?;
                if c.fixed.is_none() {
                    self.bind(c.mac, ip, now + OFFER_SECS, true);
                }
                Ok(self.reply(pool, msg, MessageType::Offer, ip))
            }
            MessageType::Request => {
                if let Some(sid) = server_id
                    && sid != pool.gateway
                {
                    // The client chose another server: forget our offer.
                    self.by_ip.retain(|_, l| !(l.mac == c.mac && l.offered));
                    return Err(Ignored::Silent);
                }
                let ciaddr = msg.ciaddr();
                let want = if !ciaddr.is_unspecified() {
                    Some(ciaddr)
                } else {
                    requested
                };
                // A bound client may renew its address, never swap it.
                let bound = self.ip_of(c.mac, now);
                match want {
                    Some(ip)
                        if pool.subnet.contains(&ip)
                            && bound.is_none_or(|b| b == ip)
                            && self.acceptable(pool, clients, c, ip, now) =>
                    {
                        self.bind(c.mac, ip, lease_end, false);
                        Ok(self.reply(pool, msg, MessageType::Ack, ip))
                    }
                    _ => Ok(self.nak(pool, msg)),
                }
            }
            MessageType::Release => {
                let ip = msg.ciaddr();
                if self.by_ip.get(&ip).is_some_and(|l| l.mac == c.mac) {
                    self.by_ip.remove(&ip);
                }
                Err(Ignored::Silent)
            }
            MessageType::Decline => {
                let theirs = self
                    .declined
                    .values()
                    .filter(|(t, m)| *m == c.mac && *t > now)
                    .count();
                if let Some(ip) = requested
                    && self.by_ip.get(&ip).is_some_and(|l| l.mac == c.mac)
                {
                    self.by_ip.remove(&ip);
                    // A client may not take the whole range out of use.
                    if theirs < DECLINES_PER_CLIENT {
                        self.declined.insert(ip, (now + DECLINE_SECS, c.mac));
                    }
                }
                Err(Ignored::Silent)
            }
            MessageType::Inform => {
                let mut r = self.reply(pool, msg, MessageType::Ack, Ipv4Addr::UNSPECIFIED);
                r.msg.opts_mut().remove(OptionCode::AddressLeaseTime);
                r.msg.opts_mut().remove(OptionCode::Renewal);
                r.msg.opts_mut().remove(OptionCode::Rebinding);
                Ok(r)
            }
            _ => Err(Ignored::NotARequest),
        }
    }

    fn base(msg: &Message, yiaddr: Ipv4Addr) -> Message {
        let mut r = Message::new_with_id(
            msg.xid(),
            msg.ciaddr(),
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            msg.giaddr(),
            &msg.chaddr()[..6],
        );
        r.set_opcode(Opcode::BootReply);
        r.set_flags(msg.flags());
        r
    }

    fn reply(&self, pool: &Pool, msg: &Message, kind: MessageType, ip: Ipv4Addr) -> Reply {
        let mut r = Self::base(msg, ip);
        let o = r.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(pool.gateway));
        o.insert(DhcpOption::AddressLeaseTime(pool.lease_secs));
        o.insert(DhcpOption::Renewal(pool.lease_secs / 2));
        o.insert(DhcpOption::Rebinding(pool.lease_secs / 8 * 7));
        o.insert(DhcpOption::SubnetMask(pool.subnet.netmask()));
        o.insert(DhcpOption::InterfaceMtu(pool.mtu));
        if let Some(d) = &pool.domain {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
        if !pool.ntp.is_empty() {
            o.insert(DhcpOption::NtpServers(pool.ntp.clone()));
        }
        if !pool.air_gapped {
            o.insert(DhcpOption::Router(vec![pool.gateway]));
            o.insert(DhcpOption::DomainNameServer(vec![pool.gateway]));
        }
        // A client that takes option 121 ignores option 3 (RFC 3442): the
        // list holds the subnet and the default route too.
        let mut routes = vec![(pool.subnet.trunc(), Ipv4Addr::UNSPECIFIED)];
        routes.extend(pool.routes.iter().copied());
        if !pool.air_gapped {
            let default = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default();
            routes.push((default, pool.gateway));
        } else {
            // No default route: the metadata server is reached by its own.
            routes.push((Ipv4Net::from(super::metadata::METADATA_IP), pool.gateway));
        }
        if routes.len() > 1 {
            o.insert(DhcpOption::ClasslessStaticRoute(routes));
        }
        let ciaddr = msg.ciaddr();
        let dest = if !ciaddr.is_unspecified() {
            Dest::Unicast(ciaddr, Mac(chaddr6(msg)))
        } else if msg.flags().broadcast() || ip.is_unspecified() {
            Dest::Broadcast
        } else {
            Dest::Unicast(ip, Mac(chaddr6(msg)))
        };
        Reply { msg: r, dest }
    }

    fn nak(&self, pool: &Pool, msg: &Message) -> Reply {
        let mut r = Self::base(msg, Ipv4Addr::UNSPECIFIED);
        r.set_flags(msg.flags().set_broadcast());
        let o = r.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Nak));
        o.insert(DhcpOption::ServerIdentifier(pool.gateway));
        Reply {
            msg: r,
            dest: Dest::Broadcast,
        }
    }
}

fn chaddr6(msg: &Message) -> [u8; 6] {
    let c = msg.chaddr();
    let mut m = [0u8; 6];
    for (d, s) in m.iter_mut().zip(c) {
        *d = *s;
    }
    m
}

/// The message type of a reply, for logs and tests.
pub fn kind(msg: &Message) -> Option<MessageType> {
    msg.opts().msg_type()
}

pub use v4::MessageType as Kind;

#[cfg(test)]
mod tests;
