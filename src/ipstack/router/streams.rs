//! Small TCP servers on the router's stack (the metadata server, DNS over
//! TCP): a pool of smoltcp sockets on one endpoint, a few always listening,
//! each accepted connection bounded in lifetime, idle time, buffered input
//! and in how many one client may hold. The protocol reads a connection's
//! input and queues output; the pool writes the output as the window
//! allows and closes the connection once asked to and drained.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

/// The bounds of one server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Connections at once, the listening ones included.
    pub max: usize,
    /// Sockets kept listening, so that SYNs arriving together are taken.
    pub ready: usize,
    /// Connections one client address may hold.
    pub per_client: usize,
    /// A connection is cut this long after it was accepted...
    pub lifetime_ms: u64,
    /// ... or after this long without a byte either way.
    pub idle_ms: u64,
    /// Input held but not consumed; more cuts the connection.
    pub max_input: usize,
    pub rx_buffer: usize,
    pub tx_buffer: usize,
}

/// One accepted connection as the protocol sees it.
pub(super) struct Conn {
    handle: SocketHandle,
    /// The client, once the connection is accepted.
    pub peer: Option<IpEndpoint>,
    opened_ms: u64,
    last_ms: u64,
    /// Bytes received and not yet consumed by the protocol.
    pub input: Vec<u8>,
    output: Vec<u8>,
    /// Queries handed on and not yet answered: the connection stays open.
    pub waiting: usize,
    closing: bool,
    closed_rounds: u8,
}

impl Conn {
    /// Queues bytes to send.
    pub fn reply(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Closes the connection once everything queued is sent.
    pub fn finish(&mut self) {
        self.closing = true;
    }
}

pub(super) struct Pool {
    ep: IpListenEndpoint,
    limits: Limits,
    conns: Vec<Conn>,
}

impl Pool {
    pub fn new(ep: IpListenEndpoint, limits: Limits) -> Pool {
        Pool {
            ep,
            limits,
            conns: Vec::new(),
        }
    }

    /// One round: takes new input, lets `serve` consume it, writes output,
    /// cuts what broke a bound (counted in `refused`), drops closed
    /// connections and keeps listeners ready.
    pub fn service(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
        refused: &AtomicU64,
        mut serve: impl FnMut(&mut Conn),
    ) {
        let limits = self.limits;
        let mut peers: Vec<IpEndpoint> = Vec::new();
        for c in &mut self.conns {
            let s = sockets.get_mut::<tcp::Socket>(c.handle);
            if s.is_listening() {
                c.opened_ms = now_ms;
                c.last_ms = now_ms;
                continue;
            }
            if c.peer.is_none() {
                c.peer = s.remote_endpoint();
                let same = |p: &&IpEndpoint| Some(p.addr) == c.peer.map(|e| e.addr);
                if peers.iter().filter(same).count() >= limits.per_client {
                    s.abort();
                    refused.fetch_add(1, Relaxed);
                    continue;
                }
            }
            // Connections on their way out do not count against the client.
            if matches!(
                s.state(),
                State::SynReceived | State::Established | State::CloseWait
            ) {
                peers.extend(c.peer);
            }
            if !pump(s, c, &limits, now_ms, &mut serve) {
                s.abort();
                refused.fetch_add(1, Relaxed);
            }
        }
        self.conns.retain_mut(|c| {
            let s = sockets.get::<tcp::Socket>(c.handle);
            // Nothing more comes of a connection in TIME-WAIT: it goes at
            // once. A closed one goes once its RST is out (it forgets its
            // peer then), or after a few rounds without a way to send it.
            if s.state() == State::Closed {
                c.closed_rounds += 1;
            }
            let done = s.state() == State::TimeWait
                || (s.state() == State::Closed
                    && (s.remote_endpoint().is_none() || c.closed_rounds > 3));
            if done {
                sockets.remove(c.handle);
            }
            !done
        });
        self.listen(sockets, now_ms);
    }

    /// An answer for the connection from `peer` that waited on it: queued
    /// and written at once. Gone connections lose it.
    pub fn answer(
        &mut self,
        sockets: &mut SocketSet<'static>,
        peer: IpEndpoint,
        bytes: &[u8],
        now_ms: u64,
    ) {
        let Some(c) = self.conns.iter_mut().find(|c| c.peer == Some(peer)) else {
            return;
        };
        c.reply(bytes);
        c.waiting = c.waiting.saturating_sub(1);
        let s = sockets.get_mut::<tcp::Socket>(c.handle);
        if s.state() != State::Closed {
            flush(s, c, now_ms);
        }
    }

    fn listen(&mut self, sockets: &mut SocketSet<'static>, now_ms: u64) {
        let listening = |conns: &Vec<Conn>, sockets: &SocketSet<'static>| {
            conns
                .iter()
                .filter(|c| sockets.get::<tcp::Socket>(c.handle).is_listening())
                .count()
        };
        while listening(&self.conns, sockets) < self.limits.ready
            && self.conns.len() < self.limits.max
        {
            let l = &self.limits;
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0u8; l.rx_buffer]),
                tcp::SocketBuffer::new(vec![0u8; l.tx_buffer]),
            );
            if s.listen(self.ep).is_err() {
                return;
            }
            self.conns.push(Conn {
                handle: sockets.add(s),
                peer: None,
                opened_ms: now_ms,
                last_ms: now_ms,
                input: Vec::new(),
                output: Vec::new(),
                waiting: 0,
                closing: false,
                closed_rounds: 0,
            });
        }
    }
}

/// Moves one connection's bytes both ways; false: it broke a bound.
fn pump(
    s: &mut tcp::Socket,
    c: &mut Conn,
    limits: &Limits,
    now_ms: u64,
    serve: &mut impl FnMut(&mut Conn),
) -> bool {
    let mut buf = [0u8; 2048];
    while s.can_recv() && c.input.len() <= limits.max_input {
        match s.recv_slice(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                c.input.extend_from_slice(&buf[..n]);
                c.last_ms = now_ms;
            }
        }
    }
    if !c.input.is_empty() {
        serve(c);
    }
    // Too much that the protocol would not take (it may answer first).
    if c.input.len() > limits.max_input {
        return false;
    }
    flush(s, c, now_ms);
    now_ms.saturating_sub(c.opened_ms) <= limits.lifetime_ms
        && now_ms.saturating_sub(c.last_ms) <= limits.idle_ms
}

/// Writes what the window takes of a connection's output; closes it once
/// accepted (it may send) and done, or once the client is done and nothing
/// is left to answer.
fn flush(s: &mut tcp::Socket, c: &mut Conn, now_ms: u64) {
    if !c.output.is_empty() && s.can_send() {
        let n = s.send_slice(&c.output).unwrap_or(0);
        c.output.drain(..n);
        if n > 0 {
            c.last_ms = now_ms;
        }
    }
    let drained = c.output.is_empty() && c.waiting == 0;
    if drained && s.may_send() && (c.closing || !s.may_recv()) {
        s.close();
    }
}
