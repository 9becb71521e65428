//! The DNS relay's sockets on one uplink: for each query a UDP socket on a
//! random port, or, for a query that came over TCP, a TCP connection to the
//! upstream server from a random port. Answers come back with the port
//! they reached, which the forwarder checks together with the query's id.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::services::dns;

/// Ports the relay draws from, one per query: above the NAT's range.
const PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// Queries one uplink relays at once over UDP...
const UDP_MAX: usize = 256;
/// ... and over TCP.
const TCP_MAX: usize = 32;
/// The largest TCP answer: a 64 KiB message and its length.
const TCP_ANSWER_MAX: usize = 2 + u16::MAX as usize;

/// A query on its way over TCP.
struct TcpQuery {
    handle: SocketHandle,
    server: Ipv4Addr,
    /// The framed query, until the connection takes it.
    out: Vec<u8>,
    input: Vec<u8>,
}

#[derive(Default)]
pub struct Relay {
    udp: HashMap<u16, SocketHandle>,
    tcp: HashMap<u16, TcpQuery>,
}

impl Relay {
    /// A port no query of this uplink uses.
    fn free_port(&self) -> Option<u16> {
        let span = (*PORTS.end() - *PORTS.start()) as u32 + 1;
        (0..16)
            .map(|_| PORTS.start() + (crate::rand::u32() % span) as u16)
            .find(|p| !self.udp.contains_key(p) && !self.tcp.contains_key(p))
    }

    /// A fresh UDP socket for one query; its port, or None when too many wait.
    pub fn udp_port(&mut self, sockets: &mut SocketSet<'static>) -> Option<u16> {
        if self.udp.len() >= UDP_MAX {
            return None;
        }
        let port = self.free_port()?;
        let buf = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0u8; 8192]);
        let mut s = udp::Socket::new(buf(), buf());
        s.bind(IpListenEndpoint { addr: None, port }).ok()?;
        self.udp.insert(port, sockets.add(s));
        Some(port)
    }

    /// A TCP connection to `server`:53 for one query; its local port, or
    /// None when too many wait or the uplink has no address.
    pub fn tcp_port(
        &mut self,
        sockets: &mut SocketSet<'static>,
        iface: &mut Interface,
        server: Ipv4Addr,
    ) -> Option<u16> {
        if self.tcp.len() >= TCP_MAX {
            return None;
        }
        let port = self.free_port()?;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; 16384]),
            tcp::SocketBuffer::new(vec![0u8; 1024]),
        );
        let remote = IpEndpoint::new(IpAddress::Ipv4(server), 53);
        s.connect(iface.context(), remote, port).ok()?;
        let q = TcpQuery {
            handle: sockets.add(s),
            server,
            out: Vec::new(),
            input: Vec::new(),
        };
        self.tcp.insert(port, q);
        Some(port)
    }

    /// Sends `query` to `server` from relay port `port`.
    pub fn send(
        &mut self,
        sockets: &mut SocketSet<'static>,
        query: &[u8],
        server: Ipv4Addr,
        port: u16,
    ) {
        if let Some(q) = self.tcp.get_mut(&port) {
            q.out = dns::framed(query);
        } else if let Some(h) = self.udp.get(&port) {
            let ep = IpEndpoint::new(IpAddress::Ipv4(server), 53);
            let _ = sockets.get_mut::<udp::Socket>(*h).send_slice(query, ep);
        }
    }

    /// Answers that came back from port 53: the answer, its source, and
    /// the relay port it reached. Also moves queries into their TCP
    /// connections once these are open.
    pub fn answers(&mut self, sockets: &mut SocketSet<'static>) -> Vec<(Vec<u8>, Ipv4Addr, u16)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        for (port, h) in &self.udp {
            let sock = sockets.get_mut::<udp::Socket>(*h);
            while let Ok((n, meta)) = sock.recv_slice(&mut buf) {
                if let IpAddress::Ipv4(from) = meta.endpoint.addr
                    && meta.endpoint.port == 53
                {
                    out.push((buf[..n].to_vec(), from, *port));
                }
            }
        }
        for (port, q) in &mut self.tcp {
            let sock = sockets.get_mut::<tcp::Socket>(q.handle);
            if !q.out.is_empty() && sock.can_send() {
                let n = sock.send_slice(&q.out).unwrap_or(0);
                q.out.drain(..n);
            }
            while sock.can_recv() && q.input.len() < TCP_ANSWER_MAX {
                match sock.recv_slice(&mut buf) {
                    Ok(n) if n > 0 => q.input.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if let Some(answer) = dns::take_framed(&mut q.input) {
                out.push((answer, q.server, *port));
            }
        }
        out
    }

    /// Closes the socket of a query that was answered or given up.
    pub fn release(&mut self, sockets: &mut SocketSet<'static>, port: u16) {
        if let Some(h) = self.udp.remove(&port) {
            sockets.remove(h);
        }
        if let Some(q) = self.tcp.remove(&port) {
            sockets.get_mut::<tcp::Socket>(q.handle).abort();
            sockets.remove(q.handle);
        }
    }
}
