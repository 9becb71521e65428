//! An app's UDP flow or ICMP echo flow carried over one host datagram
//! socket: a connected UDP socket per flow (as passt does), and for echo a
//! ping socket, or a raw ICMP socket where ping sockets are not allowed.
//! Answers come back to the app from the flow's remote end. A UDP port
//! map's flow shares its listener's socket and answers the client through it.

use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;

use super::frames::{self, Ends};
use super::sock::Sock;

pub enum Kind {
    Udp,
    /// Echo with the app's identifier; `ping`: a ping socket (the kernel
    /// picks the identifier on the wire and hands replies back by it).
    Echo {
        ident: u16,
        ping: bool,
    },
}

pub struct DgramFlow {
    pub sock: Arc<Sock>,
    /// A port map's client, answered through the shared listener.
    client: Option<SocketAddrV4>,
    pub ends: Ends,
    pub kind: Kind,
    pub last_seen: u64,
}

impl DgramFlow {
    pub fn udp(ends: Ends, now: u64) -> io::Result<DgramFlow> {
        let sock = Sock::udp_connect(SocketAddrV4::new(ends.remote.0, ends.remote.1))?;
        Ok(DgramFlow {
            sock: Arc::new(sock),
            client: None,
            ends,
            kind: Kind::Udp,
            last_seen: now,
        })
    }

    /// An echo flow to `ends.remote.0`; the app's identifier is
    /// `ends.app.1`.
    pub fn echo(ends: Ends, now: u64) -> io::Result<DgramFlow> {
        let (sock, ping) = Sock::echo(ends.remote.0)?;
        Ok(DgramFlow {
            sock: Arc::new(sock),
            client: None,
            ends,
            kind: Kind::Echo {
                ident: ends.app.1,
                ping,
            },
            last_seen: now,
        })
    }

    /// A UDP port map's flow from `client` (seen by the app as
    /// `ends.remote`), answered through the map's `listener`.
    pub fn mapped(ends: Ends, listener: Arc<Sock>, client: SocketAddrV4, now: u64) -> DgramFlow {
        DgramFlow {
            sock: listener,
            client: Some(client),
            ends,
            kind: Kind::Udp,
            last_seen: now,
        }
    }

    /// Whether the flow has a socket of its own to wait on.
    pub fn owns_socket(&self) -> bool {
        self.client.is_none()
    }

    /// The app's datagram (UDP payload, or the whole ICMP message) to the host.
    pub fn send(&mut self, data: &[u8], now: u64) -> io::Result<()> {
        self.last_seen = now;
        match self.client {
            Some(to) => self.sock.send_to(data, to).map(drop),
            None => self.sock.send(data).map(drop),
        }
    }

    /// Everything the socket has, as frames to the app (fragmented at the
    /// NI's `mtu`).
    pub fn drain(&mut self, now: u64, mtu: usize, out: &mut Vec<Vec<u8>>) -> io::Result<()> {
        BUF.with_borrow_mut(|buf| self.drain_into(buf, now, mtu, out))
    }

    fn drain_into(
        &mut self,
        buf: &mut [u8],
        now: u64,
        mtu: usize,
        out: &mut Vec<Vec<u8>>,
    ) -> io::Result<()> {
        loop {
            let n = match self.sock.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    out.push(self.unreachable());
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.last_seen = now;
            match self.kind {
                Kind::Udp => frames::udp(&self.ends, &buf[..n], mtu, out),
                Kind::Echo { ident, ping } => {
                    let msg = Sock::icmp_of(&buf[..n], ping);
                    if let Some(f) = self.echo_reply(msg, ident, ping) {
                        frames::fragment(f, mtu, out);
                    }
                }
            }
        }
    }

    /// An echo reply for the app, with its own identifier back.
    fn echo_reply(&self, msg: &[u8], ident: u16, ping: bool) -> Option<Vec<u8>> {
        if msg.len() < 8 || msg[0] != 0 {
            return None;
        }
        let id = u16::from_be_bytes([msg[4], msg[5]]);
        if !ping && id != ident {
            // A raw socket sees every echo reply from the remote end.
            return None;
        }
        let id = ident.to_be_bytes();
        let rest = [id[0], id[1], msg[6], msg[7]];
        Some(frames::icmp(&self.ends, 0, 0, rest, &msg[8..]))
    }

    /// Port unreachable, quoting the app's datagram's start.
    fn unreachable(&self) -> Vec<u8> {
        let mut first8 = [0u8; 8];
        first8[..2].copy_from_slice(&self.ends.app.1.to_be_bytes());
        first8[2..4].copy_from_slice(&self.ends.remote.1.to_be_bytes());
        first8[4..6].copy_from_slice(&8u16.to_be_bytes());
        let q = frames::quote(&self.ends, 17, first8);
        frames::icmp(&self.ends, 3, 3, [0; 4], &q)
    }
}

thread_local! {
    /// The read buffer of the thread draining sockets: one datagram at most.
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 65536]);
}
