//! The `host` uplink as the router's uplink set sees it: probed through
//! host sockets (an echo socket, or a TCP connect), healthy by the same
//! rules as a NIC uplink, its address the one the host's routing table
//! picks towards the probe target, and a DNS relay over host sockets to
//! the resolvers of the daemon's namespace. The data path is `hostlink`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use smoltcp::wire::Ipv4Cidr;

use super::health::Health;
use super::hostlink::{HostLink, Sock};
use super::uplink::UplinkInfo;
use crate::config::{HOST_UPLINK, Probe, ProbeTarget};
use crate::services::dns;

const PROBE_PAYLOAD: &[u8] = b"niswitch uplink probe";
/// Queries relayed at once over UDP, and over TCP.
const UDP_MAX: usize = 256;
const TCP_MAX: usize = 32;

enum Waiting {
    Echo(u16),
    Connect(Sock),
}

/// A query relayed over a host TCP connection.
struct TcpQuery {
    sock: Sock,
    server: Ipv4Addr,
    out: Vec<u8>,
    input: Vec<u8>,
}

impl TcpQuery {
    /// Sends what is left of the query and reads what came; false once
    /// the connection is of no more use.
    fn exchange(&mut self, buf: &mut [u8]) -> bool {
        if !self.out.is_empty() {
            match self.sock.send(&self.out) {
                Ok(n) => drop(self.out.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
        loop {
            match self.sock.recv(buf) {
                Ok(0) => return false,
                Ok(n) if self.input.len() + n <= 2 + u16::MAX as usize => {
                    self.input.extend_from_slice(&buf[..n])
                }
                Ok(_) => return false,
                Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
            }
        }
    }
}

pub struct HostUplink {
    pub cost: u8,
    probe: Probe,
    pub health: Health,
    pub link: Arc<HostLink>,
    /// The host's source address towards the probe target, and the next
    /// hop of its default route.
    pub address: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    /// The resolvers of the daemon's namespace.
    pub dns_servers: Vec<Ipv4Addr>,
    /// The echo socket, its target, and whether it is a ping socket.
    echo: Option<(Ipv4Addr, Sock, bool)>,
    waiting: Option<Waiting>,
    seq: u16,
    last_probe: u64,
    udp: HashMap<u16, Sock>,
    tcp: HashMap<u16, TcpQuery>,
    /// The relay's read buffer: one DNS message over TCP at most.
    buf: Vec<u8>,
}

impl HostUplink {
    pub fn new(cost: u8, probe: Probe, link: Arc<HostLink>) -> HostUplink {
        HostUplink {
            cost,
            probe,
            health: Health::default(),
            link,
            address: None,
            gateway: None,
            dns_servers: resolvers(),
            echo: None,
            waiting: None,
            seq: 0,
            last_probe: 0,
            udp: HashMap::new(),
            tcp: HashMap::new(),
            buf: vec![0u8; 2 + u16::MAX as usize],
        }
    }

    /// What the probe aims at: its target, or the default route's next
    /// hop; `Ok(None)`: a default route without a next hop (a point-to-point
    /// link such as a VPN or LTE), which counts as reachable.
    fn target(&self) -> Result<Option<Ipv4Addr>, ()> {
        match self.probe.target {
            ProbeTarget::Gateway => match default_route() {
                Some(hop) => Ok(hop),
                None => Err(()),
            },
            ProbeTarget::Icmp(IpAddr::V4(ip)) | ProbeTarget::Tcp(IpAddr::V4(ip), _) => Ok(Some(ip)),
            _ => Err(()),
        }
    }

    /// Once a second: the last probe's outcome, the next probe, the
    /// flows' expiry.
    pub fn tick(&mut self, now_s: u64) {
        self.link.tick(self.health.healthy);
        if now_s.saturating_sub(self.last_probe) < self.probe.interval as u64 {
            return;
        }
        self.last_probe = now_s;
        self.gateway = default_route().flatten();
        // The host's resolvers change with its connectivity (a new Wi-Fi).
        self.dns_servers = resolvers();
        if let Some(w) = self.waiting.take() {
            let ok = self.answered(&w);
            self.health.result(ok, self.probe.failures, HOST_UPLINK);
        }
        let target = self.target();
        self.address = source_towards(target.ok().flatten().or(self.gateway));
        match target {
            Err(()) => self.health.down(self.probe.failures, HOST_UPLINK),
            Ok(None) => {
                let ok = self.address.is_some();
                self.health.result(ok, self.probe.failures, HOST_UPLINK);
            }
            Ok(Some(ip)) => self.send_probe(ip),
        }
    }

    fn answered(&mut self, w: &Waiting) -> bool {
        match w {
            Waiting::Connect(s) => connected(s),
            Waiting::Echo(seq) => {
                let Some((_, s, ping)) = &self.echo else {
                    return false;
                };
                let mut buf = [0u8; 1500];
                let mut ok = false;
                while let Ok(n) = s.recv(&mut buf) {
                    let msg = Sock::icmp_of(&buf[..n], *ping);
                    ok |= msg.len() >= 8 && msg[0] == 0 && msg[6..8] == seq.to_be_bytes();
                }
                ok
            }
        }
    }

    fn send_probe(&mut self, ip: Ipv4Addr) {
        self.seq = self.seq.wrapping_add(1);
        if let ProbeTarget::Tcp(_, port) = self.probe.target {
            if let Ok(s) = Sock::tcp_connect(SocketAddrV4::new(ip, port)) {
                self.waiting = Some(Waiting::Connect(s));
            }
            return;
        }
        if self.echo.as_ref().is_none_or(|(t, _, _)| *t != ip) {
            self.echo = match Sock::echo(ip) {
                Ok((s, ping)) => Some((ip, s, ping)),
                Err(e) => {
                    self.link.no_echo(&e);
                    None
                }
            };
        }
        let Some((_, s, _)) = &self.echo else { return };
        let mut msg = vec![8, 0, 0, 0, 0x4e, 0x53];
        msg.extend(self.seq.to_be_bytes());
        msg.extend_from_slice(PROBE_PAYLOAD);
        let c = super::wire::csum_fold(super::wire::csum_add(0, &msg));
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        if s.send(&msg).is_ok() {
            self.waiting = Some(Waiting::Echo(self.seq));
        }
    }

    pub fn info(&self, active: bool) -> UplinkInfo {
        UplinkInfo {
            port: HOST_UPLINK.to_string(),
            address: self.address.map(|a| Ipv4Cidr::new(a, 32)),
            gateway: self.gateway,
            healthy: self.health.healthy,
            active,
            link_local6: None,
            gateway6: None,
            sessions: Some(self.link.sessions()),
        }
    }

    /// The relay's sockets, for the router to wake on.
    pub fn wake_fds(&self) -> Vec<i32> {
        let udp = self.udp.values().map(|s| s.fd());
        udp.chain(self.tcp.values().map(|q| q.sock.fd())).collect()
    }

    /// A fresh UDP socket for one query; its port.
    pub fn relay_port(&mut self) -> Option<u16> {
        if self.udp.len() >= UDP_MAX {
            return None;
        }
        // The kernel picks the port; one a TCP query has is not taken.
        for _ in 0..4 {
            let s = Sock::udp_bound(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).ok()?;
            let port = s.local_addr().ok()?.port();
            if !self.tcp.contains_key(&port) {
                self.udp.insert(port, s);
                return Some(port);
            }
        }
        None
    }

    /// A TCP connection to `server`:53 for one query; its port.
    pub fn relay_tcp(&mut self, server: Ipv4Addr) -> Option<u16> {
        if self.tcp.len() >= TCP_MAX {
            return None;
        }
        let sock = Sock::tcp_connect(SocketAddrV4::new(server, 53)).ok()?;
        let port = sock.local_addr().ok()?.port();
        if self.udp.contains_key(&port) {
            return None;
        }
        let q = TcpQuery {
            sock,
            server,
            out: Vec::new(),
            input: Vec::new(),
        };
        self.tcp.insert(port, q);
        Some(port)
    }

    pub fn send_dns(&mut self, query: &[u8], server: Ipv4Addr, port: u16) {
        if let Some(q) = self.tcp.get_mut(&port) {
            q.out = dns::framed(query);
        } else if let Some(s) = self.udp.get(&port) {
            let _ = s.send_to(query, SocketAddrV4::new(server, 53));
        }
    }

    /// Answers from port 53: the answer, its source, the relay port.
    pub fn dns_answers(&mut self) -> Vec<(Vec<u8>, Ipv4Addr, u16)> {
        let mut out = Vec::new();
        if self.udp.is_empty() && self.tcp.is_empty() {
            // The router asks every round; most rounds relay nothing.
            return out;
        }
        let buf = &mut self.buf;
        for (port, s) in &self.udp {
            while let Ok((n, from)) = s.recv_from(buf) {
                if from.port() == 53 {
                    out.push((buf[..n].to_vec(), *from.ip(), *port));
                }
            }
        }
        // A connection that failed, ended or sent too much is closed: its
        // query is not answered (the forwarder gives up on it).
        self.tcp.retain(|port, q| {
            let alive = q.exchange(buf);
            if let Some(answer) = dns::take_framed(&mut q.input) {
                out.push((answer, q.server, *port));
            }
            alive
        });
        out
    }

    pub fn release_port(&mut self, port: u16) {
        self.udp.remove(&port);
        self.tcp.remove(&port);
    }
}

/// Whether a non-blocking connect has completed.
fn connected(s: &Sock) -> bool {
    let mut p = libc::pollfd {
        fd: s.fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLOUT != 0 && s.take_error().is_none()
}

/// The host's default route: Some(next hop), Some(None) for one without a
/// gateway (point-to-point), None without a default route.
fn default_route() -> Option<Option<Ipv4Addr>> {
    let first = crate::ports::route_table::default_routes()
        .into_iter()
        .next();
    first.map(|r| r.gateway)
}

/// The source address the host picks towards `dst` (a connected UDP
/// socket sends nothing).
fn source_towards(dst: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    let dst = dst.unwrap_or(Ipv4Addr::new(192, 0, 2, 1));
    let s = Sock::udp_connect(SocketAddrV4::new(dst, 9)).ok()?;
    let a = *s.local_addr().ok()?.ip();
    (!a.is_unspecified()).then_some(a)
}

/// The IPv4 resolvers in the daemon's namespace's /etc/resolv.conf.
fn resolvers() -> Vec<Ipv4Addr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    parse_resolvers(&text)
}

fn parse_resolvers(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_are_read() {
        let t = "# x\nnameserver 10.0.0.53\nnameserver fe80::1\nsearch lan\nnameserver  1.1.1.1 \n";
        assert_eq!(
            parse_resolvers(t),
            vec![Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(1, 1, 1, 1)]
        );
    }
}
