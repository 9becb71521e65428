//! One TCP connection of an app carried over a host TCP socket: a
//! translator, not a stack. The app's segments are acknowledged as their
//! payload is written to the socket; the socket's data goes to the app by
//! peeking, so it stays in the kernel until the app acknowledges it, and a
//! retransmission peeks again. No user-space buffer per connection but a
//! write the socket could not take at once. Window scaling yes; SACK and
//! timestamps no (the app falls back, as with passt).

use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::frames::{self, ACK, Ends, FIN, PSH, RST, SYN, TCP_PAYLOAD, TcpHead};
use super::sock::Sock;
use crate::clock::mono_ms;

/// The window shift we announce: windows up to 8 MiB.
const OUR_SHIFT: u8 = 7;
/// The most the app may send before we acknowledge (bytes).
const WINDOW_MAX: usize = 1 << 20;
/// The most of the app's data held because the socket was full, per
/// connection and per NI.
const HELD_MAX: usize = WINDOW_MAX + 65536;
pub const HELD_BUDGET: usize = 64 << 20;
/// The largest read per frame: a GSO frame's payload.
const READ_MAX: usize = 65535 - 40;
/// In flight at most, where the kernel keeps no peek offset for TCP (before
/// Linux 6.9): each read then peeks from the first unacknowledged byte.
const FALLBACK_FLIGHT: usize = 256 << 10;
/// Retransmission after this long without the app acknowledging.
const RTO_MS: u64 = 1000;
/// Retransmissions without progress before the connection is given up.
const RTO_MAX: u32 = 8;

/// A parsed segment from the app.
pub struct Segment<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub opts: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Segment<'a> {
    /// The TCP segment of an app's packet (virtio-net header + Ethernet +
    /// IPv4), whose L4 header starts at `l4` and which ends at `end` (as the
    /// NAT's parser found them); None when malformed.
    pub fn parse(pkt: &'a [u8], (l4, end): (usize, usize)) -> Option<Segment<'a>> {
        let end = end.min(pkt.len());
        let h = pkt.get(l4..l4 + 20)?;
        let doff = ((h[12] >> 4) as usize) * 4;
        if doff < 20 || l4 + doff > end {
            return None;
        }
        let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        Some(Segment {
            seq: be32(4),
            ack: be32(8),
            flags: h[13],
            window: u16::from_be_bytes([h[14], h[15]]),
            opts: &pkt[l4 + 20..l4 + doff],
            payload: &pkt[l4 + doff..end],
        })
    }

    /// The MSS and window shift options of a SYN.
    fn syn_options(&self) -> (Option<u16>, Option<u8>) {
        let (mut mss, mut shift) = (None, None);
        let mut o = self.opts;
        while let Some(&kind) = o.first() {
            match kind {
                0 => break,
                1 => o = &o[1..],
                _ => {
                    let len = o.get(1).copied().unwrap_or(0) as usize;
                    if len < 2 || len > o.len() {
                        break;
                    }
                    match (kind, len) {
                        (2, 4) => mss = Some(u16::from_be_bytes([o[2], o[3]])),
                        (3, 3) => shift = Some(o[2].min(14)),
                        _ => {}
                    }
                    o = &o[len..];
                }
            }
        }
        (mss, shift)
    }
}

fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The host connect is under way; the app waits for our SYN-ACK.
    Connecting,
    /// Our SYN-ACK is out.
    Opening,
    /// A port map's connection: our SYN to the app is out.
    SynSent,
    Open,
    /// Both ends closed, or one reset: the flow can go.
    Done,
}

pub struct TcpFlow {
    pub sock: Sock,
    pub ends: Ends,
    pub phase: Phase,
    /// Towards the app: oldest unacknowledged, next to send.
    snd_una: u32,
    snd_nxt: u32,
    /// The highest we ever sent (a rewind moves `snd_nxt` back, not this).
    snd_max: u32,
    /// The app's window in bytes, and its shift.
    app_wnd: u32,
    app_shift: u8,
    /// Our shift, when the app offered window scaling.
    our_shift: u8,
    /// The size of the segments we send the app.
    mss: u16,
    /// From the app: the next byte expected.
    rcv_nxt: u32,
    /// The app's data the socket has not taken yet, counted in the NI's
    /// `budget`.
    held: Vec<u8>,
    budget: Arc<AtomicUsize>,
    app_fin: bool,
    host_eof: bool,
    /// Our FIN's sequence number, once sent.
    fin_seq: Option<u32>,
    peek_off: bool,
    /// Where the socket's peek offset stands, from the first unacknowledged byte.
    peek_pos: usize,
    dup_acks: u8,
    /// After a retransmission: duplicate ACKs are not news until the app
    /// acknowledges everything sent before it (NewReno's recovery point).
    recover: Option<u32>,
    rto_at: Option<u64>,
    retries: u32,
    /// The app's first SYN's start, for an ICMP error quoting it.
    syn_seq: u32,
    pub last_seen: u64,
    /// When the flow began (a connect's deadline counts from here).
    pub opened: u64,
}

impl TcpFlow {
    /// A flow for the app's SYN `s`: the host connect starts now; the
    /// SYN-ACK waits for it (`connected`).
    pub fn open(
        ends: Ends,
        s: &Segment,
        mss_max: u16,
        now: u64,
        budget: Arc<AtomicUsize>,
    ) -> io::Result<TcpFlow> {
        let sock = Sock::tcp_connect(SocketAddrV4::new(ends.remote.0, ends.remote.1))?;
        let (mss, shift) = s.syn_options();
        let mut f = TcpFlow::new(ends, sock, Phase::Connecting, budget, now);
        f.app_wnd = s.window as u32;
        f.app_shift = shift.unwrap_or(0);
        f.our_shift = if shift.is_some() { OUR_SHIFT } else { 0 };
        f.mss = mss.unwrap_or(536).min(mss_max).max(64);
        f.rcv_nxt = s.seq.wrapping_add(1);
        f.syn_seq = s.seq;
        Ok(f)
    }

    /// A port map's connection, accepted on the host: a SYN to the app
    /// from the client's end (`ends.remote`).
    pub fn accepted(
        ends: Ends,
        sock: Sock,
        (mss_max, now): (u16, u64),
        budget: Arc<AtomicUsize>,
        out: &mut Vec<Vec<u8>>,
    ) -> TcpFlow {
        let mut f = TcpFlow::new(ends, sock, Phase::SynSent, budget, now);
        f.mss = mss_max;
        f.syn(out);
        f
    }

    /// A flow in `phase` with a fresh initial sequence number; the rest
    /// comes from the handshake.
    fn new(ends: Ends, sock: Sock, phase: Phase, budget: Arc<AtomicUsize>, now: u64) -> TcpFlow {
        let iss = crate::rand::u32();
        TcpFlow {
            sock,
            ends,
            phase,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            app_wnd: 0,
            app_shift: 0,
            our_shift: OUR_SHIFT,
            mss: 536,
            rcv_nxt: 0,
            held: Vec::new(),
            budget,
            app_fin: false,
            host_eof: false,
            fin_seq: None,
            peek_off: false,
            peek_pos: 0,
            dup_acks: 0,
            recover: None,
            rto_at: None,
            retries: 0,
            syn_seq: 0,
            last_seen: now,
            opened: now,
        }
    }

    fn syn(&mut self, out: &mut Vec<Vec<u8>>) {
        let mss = self.mss.to_be_bytes();
        let opts = [2, 4, mss[0], mss[1], 1, 3, 3, OUR_SHIFT];
        let mut h = self.head(SYN, self.snd_una, &opts);
        h.ack = 0;
        h.window = u16::MAX;
        out.push(frames::tcp_control(&self.ends, &h));
        self.sent_to(self.snd_una.wrapping_add(1));
        // Again from the timer: its backoff stands.
        self.rto_at.get_or_insert(mono_ms() + RTO_MS);
    }

    /// The app's SYN-ACK to our SYN: the connection is open.
    fn syn_acked(&mut self, s: &Segment, out: &mut Vec<Vec<u8>>) {
        if s.flags & (SYN | ACK) != SYN | ACK || s.ack != self.snd_una.wrapping_add(1) {
            return;
        }
        let (mss, shift) = s.syn_options();
        self.app_shift = shift.unwrap_or(0);
        if shift.is_none() {
            self.our_shift = 0;
        }
        self.mss = mss.unwrap_or(536).min(self.mss).max(64);
        self.app_wnd = s.window as u32;
        self.rcv_nxt = s.seq.wrapping_add(1);
        self.snd_una = s.ack;
        self.sent_to(s.ack);
        self.rto_at = None;
        self.peek_off = self.sock.set_peek_off(0);
        self.peek_pos = 0;
        self.phase = Phase::Open;
        self.ack(out);
        self.push(out);
    }

    fn head<'o>(&self, flags: u8, seq: u32, opts: &'o [u8]) -> TcpHead<'o> {
        TcpHead {
            seq,
            ack: self.rcv_nxt,
            flags,
            window: self.window(),
            opts,
        }
    }

    /// The window we offer the app: nothing while we hold data the socket
    /// refused (it reopens when the socket takes data again).
    fn window(&self) -> u16 {
        if !self.held.is_empty() || self.app_fin || self.budget.load(Relaxed) >= HELD_BUDGET {
            return 0;
        }
        (WINDOW_MAX >> self.our_shift).min(u16::MAX as usize) as u16
    }

    fn ack(&self, out: &mut Vec<Vec<u8>>) {
        out.push(frames::tcp_control(
            &self.ends,
            &self.head(ACK, self.snd_nxt, &[]),
        ));
    }

    /// A reset to the app; the flow is done. The app takes a reset only at
    /// the byte it expects next, which lies between what it acknowledged and
    /// what we sent: both ends are tried.
    pub fn reset_app(&mut self, out: &mut Vec<Vec<u8>>) {
        for seq in [self.snd_una, self.snd_max] {
            let h = self.head(RST | ACK, seq, &[]);
            out.push(frames::tcp_control(&self.ends, &h));
            if self.snd_max == self.snd_una {
                break;
            }
        }
        self.phase = Phase::Done;
    }

    /// Notes what was sent up to `seq`.
    fn sent_to(&mut self, seq: u32) {
        self.snd_nxt = seq;
        if after(seq, self.snd_max) {
            self.snd_max = seq;
        }
    }

    /// The host connect finished: a SYN-ACK to the app, or, when it
    /// failed, a reset (refused) or an ICMP error (unreachable).
    pub fn connected(&mut self, out: &mut Vec<Vec<u8>>) -> bool {
        if self.phase != Phase::Connecting {
            return true;
        }
        if let Some(e) = self.sock.take_error() {
            self.refused(&e, out);
            return false;
        }
        self.peek_off = self.sock.set_peek_off(0);
        self.peek_pos = 0;
        self.phase = Phase::Opening;
        self.syn_ack(out);
        true
    }

    fn syn_ack(&mut self, out: &mut Vec<Vec<u8>>) {
        let mss = self.mss.to_be_bytes();
        let mut opts = vec![2, 4, mss[0], mss[1]];
        if self.our_shift > 0 {
            opts.extend([1, 3, 3, self.our_shift]);
        }
        let mut h = self.head(SYN | ACK, self.snd_una, &opts);
        // A SYN's window is never scaled.
        h.window = (WINDOW_MAX.min(u16::MAX as usize)) as u16;
        out.push(frames::tcp_control(&self.ends, &h));
        self.sent_to(self.snd_una.wrapping_add(1));
        self.rto_at.get_or_insert(mono_ms() + RTO_MS);
    }

    fn refused(&mut self, e: &io::Error, out: &mut Vec<Vec<u8>>) {
        let code = match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => {
                // The app's SYN is acknowledged by the reset.
                let h = TcpHead {
                    seq: 0,
                    ack: self.rcv_nxt,
                    flags: RST | ACK,
                    window: 0,
                    opts: &[],
                };
                out.push(frames::tcp_control(&self.ends, &h));
                self.phase = Phase::Done;
                return;
            }
            Some(libc::ENETUNREACH) => 0,
            Some(libc::EACCES) | Some(libc::EPERM) => 13,
            _ => 1,
        };
        let mut first8 = [0u8; 8];
        first8[..2].copy_from_slice(&self.ends.app.1.to_be_bytes());
        first8[2..4].copy_from_slice(&self.ends.remote.1.to_be_bytes());
        first8[4..].copy_from_slice(&self.syn_seq.to_be_bytes());
        let q = frames::quote(&self.ends, 6, first8);
        out.push(frames::icmp(&self.ends, 3, code, [0; 4], &q));
        self.phase = Phase::Done;
    }

    /// A segment from the app.
    pub fn segment(&mut self, s: &Segment, now: u64, out: &mut Vec<Vec<u8>>) {
        self.last_seen = now;
        if s.flags & RST != 0 {
            self.sock.reset_on_close();
            self.phase = Phase::Done;
            return;
        }
        if self.phase == Phase::SynSent {
            self.syn_acked(s, out);
            return;
        }
        if s.flags & SYN != 0 {
            // The app did not hear our SYN-ACK: again, once connected. A
            // port map's app that did not hear our ACK of its SYN-ACK hears
            // it again.
            match self.phase {
                Phase::Opening => {
                    self.snd_nxt = self.snd_una;
                    self.syn_ack(out);
                }
                Phase::Open if s.seq.wrapping_add(1) == self.rcv_nxt => self.ack(out),
                _ => {}
            }
            return;
        }
        if self.phase == Phase::Connecting {
            return;
        }
        if s.flags & ACK != 0 {
            self.acked(s, out);
        }
        self.take_data(s, out);
        if self.phase != Phase::Done {
            self.push(out);
        }
    }

    /// The app acknowledged up to `s.ack`: drop that much from the socket.
    fn acked(&mut self, s: &Segment, out: &mut Vec<Vec<u8>>) {
        let wnd = (s.window as u32) << self.app_shift;
        if after(s.ack, self.snd_max) {
            // Acknowledges what we never sent.
            self.ack(out);
            return;
        }
        if after(self.snd_una, s.ack) {
            // An old ACK, overtaken by a newer one.
            return;
        }
        if self.phase == Phase::Opening && after(s.ack, self.snd_una) {
            // Our SYN-ACK is acknowledged.
            self.phase = Phase::Open;
            self.snd_una = self.snd_una.wrapping_add(1);
            self.rto_at = None;
            self.retries = 0;
        }
        if after(s.ack, self.snd_nxt) {
            // Acknowledges what went before a rewind: no need to send it again.
            self.snd_nxt = s.ack;
        }
        let mut n = s.ack.wrapping_sub(self.snd_una) as usize;
        if n == 0 {
            let idle = s.payload.is_empty() && s.flags & FIN == 0 && wnd == self.app_wnd;
            if idle && self.snd_nxt != self.snd_una && self.recover.is_none() {
                self.dup_acks += 1;
                if self.dup_acks == 3 {
                    self.recover = Some(self.snd_nxt);
                    self.resend_head(out);
                }
            }
            self.app_wnd = wnd;
            return;
        }
        self.dup_acks = 0;
        self.retries = 0;
        self.app_wnd = wnd;
        if self.fin_seq.is_some_and(|f| s.ack == f.wrapping_add(1)) {
            n -= 1;
        }
        if n > 0 && self.sock.discard(n).is_err() {
            self.reset_app(out);
            return;
        }
        // The kernel moves the peek offset back with what it dropped.
        self.peek_pos = self.peek_pos.saturating_sub(n);
        self.snd_una = s.ack;
        if let Some(r) = self.recover {
            match after(r, self.snd_una) {
                // A partial ACK: the next hole goes at once.
                true => self.resend_head(out),
                false => self.recover = None,
            }
        }
        self.rto_at = (self.snd_una != self.snd_nxt).then(|| mono_ms() + RTO_MS);
        self.maybe_done();
    }

    /// Both ends closed, all of it delivered both ways: the flow can go.
    fn maybe_done(&mut self) {
        if self.app_fin && self.held.is_empty() && self.fin_acked() {
            self.phase = Phase::Done;
        }
    }

    /// Sends everything again from the oldest byte the app has not
    /// acknowledged (the retransmission timer went off).
    fn rewind(&mut self) {
        self.recover = Some(self.snd_max);
        // Our FIN, if sent, goes again after the data, at its place.
        self.snd_nxt = self.snd_una;
    }

    /// Sends the oldest unacknowledged data again, one frame, without
    /// going back (a fast retransmission, or the next hole after a partial
    /// ACK).
    fn resend_head(&mut self, out: &mut Vec<Vec<u8>>) {
        let data = match self.fin_seq {
            Some(f) => f.wrapping_sub(self.snd_una) as usize,
            None => self.snd_nxt.wrapping_sub(self.snd_una) as usize,
        };
        if data == 0 {
            if let Some(f) = self.fin_seq {
                out.push(frames::tcp_control(
                    &self.ends,
                    &self.head(FIN | ACK, f, &[]),
                ));
            }
            return;
        }
        let want = data.min(READ_MAX);
        let mut f = Vec::with_capacity(TCP_PAYLOAD + want);
        let h = self.head(ACK | PSH, self.snd_una, &[]);
        frames::tcp_head(&mut f, &self.ends, &h);
        if matches!(self.read(&mut f, 0, want), Ok(n) if n > 0) {
            frames::tcp_finish(&mut f, &self.ends, self.mss);
            out.push(f);
        }
    }

    /// The app's payload (and FIN) into the socket, and our ACK.
    fn take_data(&mut self, s: &Segment, out: &mut Vec<Vec<u8>>) {
        let mut data = s.payload;
        let mut seq = s.seq;
        // Retransmitted bytes we already took are skipped.
        if after(self.rcv_nxt, seq) {
            let skip = self.rcv_nxt.wrapping_sub(seq) as usize;
            if skip > data.len() || (skip == data.len() && s.flags & FIN == 0) {
                // Old data, a window probe or a keepalive: it gets an ACK
                // (with the window as it is now).
                self.ack(out);
                return;
            }
            data = &data[skip..];
            seq = self.rcv_nxt;
        }
        if seq != self.rcv_nxt {
            // Out of order: a duplicate ACK asks for the missing part.
            self.ack(out);
            return;
        }
        let mut took = data.len();
        if !data.is_empty() {
            if self.app_fin {
                return;
            }
            took = self.write(data, out);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(took as u32);
            if self.phase == Phase::Done {
                return;
            }
        }
        // A FIN counts only once every byte before it was taken.
        if s.flags & FIN != 0 && !self.app_fin && took == data.len() {
            self.app_fin = true;
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            if self.held.is_empty() {
                self.sock.shutdown_write();
            }
        }
        if !data.is_empty() || s.flags & FIN != 0 {
            self.ack(out);
        }
        self.maybe_done();
    }

    fn fin_acked(&self) -> bool {
        self.fin_seq
            .is_some_and(|f| self.snd_una == f.wrapping_add(1))
    }

    /// Writes the app's data, holding what the socket does not take, as far
    /// as the NI's budget for held data allows; how much it took. It writes
    /// until the socket says it is full, so that the socket tells (EPOLLOUT)
    /// when it takes data again. A socket that failed resets the app.
    fn write(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> usize {
        let mut done = 0;
        while done < data.len() && self.held.is_empty() {
            match self.sock.send(&data[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.reset_app(out);
                    return 0;
                }
            }
        }
        let rest = &data[done..];
        let budget = self.budget.load(Relaxed);
        if rest.is_empty()
            || self.held.len() + rest.len() > HELD_MAX
            || budget + rest.len() > HELD_BUDGET
        {
            // What is not held is not acknowledged: the app sends it again.
            return done;
        }
        self.budget.fetch_add(rest.len(), Relaxed);
        self.held.extend_from_slice(rest);
        data.len()
    }

    /// The socket takes data again: what we held goes, and the app hears
    /// the window open. A finished connect goes on to the SYN-ACK.
    pub fn writable(&mut self, out: &mut Vec<Vec<u8>>) {
        if self.phase == Phase::Connecting {
            self.connected(out);
            return;
        }
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.budget.fetch_sub(held.len(), Relaxed);
        let took = self.write(&held, out);
        if took < held.len() && self.phase != Phase::Done {
            // Over the budget now: held again as it was (it was ours before).
            self.budget.fetch_add(held.len() - took, Relaxed);
            self.held = held[took..].to_vec();
        }
        if self.held.is_empty() && self.phase != Phase::Done {
            if self.app_fin {
                self.sock.shutdown_write();
            }
            self.ack(out);
        }
        self.maybe_done();
    }

    /// Sends the app what the socket has and its window allows: peeked
    /// straight into frames, one GSO frame per read.
    pub fn push(&mut self, out: &mut Vec<Vec<u8>>) {
        if self.phase != Phase::Open {
            return;
        }
        loop {
            // The data ends at our FIN, once the host's end is known.
            let left = self.fin_seq.map(|f| f.wrapping_sub(self.snd_nxt) as i32);
            match left {
                Some(0) => return self.send_fin(out),
                Some(n) if n < 0 => return,
                _ => {}
            }
            let in_flight = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
            let mut room = (self.app_wnd as usize).saturating_sub(in_flight);
            if !self.peek_off {
                room = room.min(FALLBACK_FLIGHT.saturating_sub(in_flight));
            }
            if room == 0 {
                if in_flight == 0 && self.rto_at.is_none() {
                    // A zero window: probe it on the retransmission timer.
                    self.rto_at = Some(mono_ms() + RTO_MS);
                }
                return;
            }
            let want = room
                .min(READ_MAX)
                .min(left.map_or(usize::MAX, |n| n as usize));
            let mut f = Vec::with_capacity(TCP_PAYLOAD + want.max(in_flight.min(READ_MAX)));
            let h = self.head(ACK | PSH, self.snd_nxt, &[]);
            frames::tcp_head(&mut f, &self.ends, &h);
            let n = match self.read(&mut f, in_flight, want) {
                Ok(0) => {
                    self.host_eof = true;
                    self.send_fin(out);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.reset_app(out);
                    return;
                }
            };
            frames::tcp_finish(&mut f, &self.ends, self.mss);
            out.push(f);
            self.sent_to(self.snd_nxt.wrapping_add(n as u32));
            if self.rto_at.is_none() {
                self.rto_at = Some(mono_ms() + RTO_MS);
            }
        }
    }

    /// Peeks up to `want` bytes into `f`, starting `at` bytes past the
    /// oldest unacknowledged one.
    fn read(&mut self, f: &mut Vec<u8>, at: usize, want: usize) -> io::Result<usize> {
        let start = f.len();
        if self.peek_off {
            if self.peek_pos != at {
                self.sock.set_peek_off(at);
                self.peek_pos = at;
            }
            let r = self.sock.peek_append(f, want);
            self.peek_pos += *r.as_ref().unwrap_or(&0);
            return r;
        }
        // Without a peek offset: read from the first unacknowledged byte.
        let r = self.sock.peek_append(f, at + want);
        let got = *r.as_ref().unwrap_or(&0);
        if r.is_ok() && got <= at {
            f.truncate(start);
            return match got {
                0 => Ok(0),
                _ => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        f.drain(start..start + at.min(got));
        r.map(|n| n - at)
    }

    /// Our FIN, at the end of the data (its place is kept through a
    /// rewind, so that it goes again at the same sequence number).
    fn send_fin(&mut self, out: &mut Vec<Vec<u8>>) {
        let f = *self.fin_seq.get_or_insert(self.snd_nxt);
        let h = self.head(FIN | ACK, f, &[]);
        out.push(frames::tcp_control(&self.ends, &h));
        self.sent_to(f.wrapping_add(1));
        self.rto_at.get_or_insert(mono_ms() + RTO_MS);
    }

    /// The host end hung up or failed: data still queued goes first; a
    /// reset reaches the app as one.
    pub fn host_closed(&mut self, error: bool, out: &mut Vec<Vec<u8>>) {
        if error {
            self.reset_app(out);
            return;
        }
        self.push(out);
    }

    /// Retransmission timer; false when the connection is given up.
    pub fn timer(&mut self, now_ms: u64, out: &mut Vec<Vec<u8>>) -> bool {
        let Some(at) = self.rto_at.filter(|at| now_ms >= *at) else {
            return true;
        };
        if self.phase == Phase::Open && self.snd_nxt == self.snd_una {
            // Nothing in flight: a zero window is probed below the window,
            // which the app answers with its window; no retry is counted.
            self.rto_at = None;
            if self.app_wnd == 0 {
                let h = self.head(ACK, self.snd_una.wrapping_sub(1), &[]);
                out.push(frames::tcp_control(&self.ends, &h));
                self.rto_at = Some(now_ms + 4 * RTO_MS);
            }
            return true;
        }
        self.retries += 1;
        if self.retries > RTO_MAX {
            self.reset_app(out);
            return false;
        }
        self.rto_at = Some(at.max(now_ms) + (RTO_MS << self.retries.min(5)));
        match self.phase {
            Phase::SynSent => self.syn(out),
            Phase::Opening if self.snd_nxt == self.snd_una.wrapping_add(1) => {
                self.snd_nxt = self.snd_una;
                self.syn_ack(out);
            }
            Phase::Open if self.snd_nxt != self.snd_una => {
                // Peeking again also finds the end again, and the FIN with it.
                self.rewind();
                self.push(out);
            }
            _ => {}
        }
        true
    }

    /// One end has closed, the other not yet.
    pub fn half_closed(&self) -> bool {
        self.app_fin || self.host_eof
    }

    /// Whether it waits for the host connect.
    pub fn connecting(&self) -> bool {
        self.phase == Phase::Connecting
    }
}

impl Drop for TcpFlow {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.held.len(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mac;
    use crate::frame::{GSO_TCPV4, VNET_HDR_LEN};
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::{Duration, Instant};

    const APP: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 5), 40000);

    /// A segment from the app as it would arrive: vnet header, Ethernet, IPv4, TCP.
    fn from_app(
        remote: (Ipv4Addr, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        opts: &[u8],
        data: &[u8],
    ) -> Vec<u8> {
        let e = Ends {
            router_mac: Mac([2, 0, 0, 0, 0, 2]),
            app_mac: Mac([2, 0, 0, 0, 0, 1]),
            remote: APP,
            app: remote,
        };
        let h = TcpHead {
            seq,
            ack,
            flags,
            window: 65535,
            opts,
        };
        let mut f = Vec::new();
        frames::tcp_head(&mut f, &e, &h);
        f.extend_from_slice(data);
        frames::tcp_finish(&mut f, &e, u16::MAX);
        f
    }

    /// The ends of a flow from the app to `remote`.
    fn ends_to(remote: (Ipv4Addr, u16)) -> Ends {
        Ends {
            router_mac: Mac([2, 0, 0, 0, 0, 2]),
            app_mac: Mac([2, 0, 0, 0, 0, 1]),
            remote,
            app: APP,
        }
    }

    fn parsed(f: &[u8]) -> Segment<'_> {
        let span = crate::ipstack::translate::parse(f).expect("IPv4").l4_span();
        Segment::parse(f, span).expect("a segment")
    }

    fn until(mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < end, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_connection_is_carried_both_ways_and_closed() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let remote = (Ipv4Addr::LOCALHOST, port);
        let ends = ends_to(remote);
        // SYN with MSS 1000 and window scaling.
        let syn = from_app(remote, 100, 0, SYN, &[2, 4, 3, 232, 1, 3, 3, 7], &[]);
        let mut f = TcpFlow::open(ends, &parsed(&syn), 1460, 0, Arc::default()).unwrap();
        let (mut conn, _) = server.accept().unwrap();
        let mut out = Vec::new();
        until(|| {
            f.writable(&mut out);
            f.phase != Phase::Connecting
        });
        let synack = parsed(&out[0]);
        assert_eq!(synack.flags, SYN | ACK);
        assert_eq!(synack.ack, 101);
        let iss = synack.seq;
        out.clear();

        // The handshake's ACK with data: the server gets it, the app an ACK.
        let data = from_app(remote, 101, iss + 1, ACK | PSH, &[], b"hello");
        f.segment(&parsed(&data), 1, &mut out);
        assert_eq!(f.phase, Phase::Open);
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(parsed(&out[0]).ack, 106);
        out.clear();

        // 5000 bytes from the server leave as GSO frames of MSS 1000.
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        conn.write_all(&big).unwrap();
        let mut got = Vec::new();
        until(|| {
            f.push(&mut out);
            for fr in out.drain(..) {
                let s = parsed(&fr);
                if s.payload.len() > 1000 {
                    assert_eq!(fr[1], GSO_TCPV4);
                    assert_eq!(u16::from_le_bytes([fr[4], fr[5]]), 1000);
                }
                got.extend_from_slice(s.payload);
            }
            got.len() >= 5000
        });
        assert_eq!(got, big);
        let _ = VNET_HDR_LEN;

        // Nothing acknowledged: after a duplicate-ACK triple, the same bytes again.
        let dup = from_app(remote, 106, iss + 1, ACK, &[], &[]);
        for _ in 0..3 {
            f.segment(&parsed(&dup), 2, &mut out);
        }
        let again: usize = out.iter().map(|fr| parsed(fr).payload.len()).sum();
        assert_eq!(again, 5000);
        assert_eq!(parsed(&out[0]).seq, iss + 1);
        out.clear();

        // All acknowledged; the server closes: a FIN; the app closes too.
        let ack = from_app(remote, 106, iss + 5001, ACK, &[], &[]);
        f.segment(&parsed(&ack), 3, &mut out);
        drop(conn);
        until(|| {
            f.push(&mut out);
            out.iter().any(|fr| parsed(fr).flags & FIN != 0)
        });
        let fin = from_app(remote, 106, iss + 5002, ACK | FIN, &[], &[]);
        f.segment(&parsed(&fin), 4, &mut out);
        assert_eq!(f.phase, Phase::Done);
    }

    /// A flow open to a loopback server, the handshake done: (flow, the
    /// server's end, the remote, our ISS).
    fn open_flow() -> (TcpFlow, std::net::TcpStream, (Ipv4Addr, u16), u32) {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let remote = (Ipv4Addr::LOCALHOST, server.local_addr().unwrap().port());
        let ends = ends_to(remote);
        let syn = from_app(remote, 100, 0, SYN, &[], &[]);
        let mut f = TcpFlow::open(ends, &parsed(&syn), 1460, 0, Arc::default()).unwrap();
        let (conn, _) = server.accept().unwrap();
        let mut out = Vec::new();
        until(|| {
            f.writable(&mut out);
            f.phase != Phase::Connecting
        });
        let iss = parsed(&out[0]).seq;
        out.clear();
        f.segment(
            &parsed(&from_app(remote, 101, iss + 1, ACK, &[], &[])),
            1,
            &mut out,
        );
        assert_eq!(f.phase, Phase::Open);
        (f, conn, remote, iss)
    }

    #[test]
    fn a_quiet_open_connection_is_never_timed_out() {
        let (mut f, _conn, _, _) = open_flow();
        let mut out = Vec::new();
        let later = mono_ms() + 3_600_000;
        for i in 0..20 {
            assert!(f.timer(later + i * 100_000, &mut out));
        }
        assert!(out.is_empty(), "nothing to resend or reset");
        assert_eq!(f.phase, Phase::Open);
    }

    #[test]
    fn a_fin_sent_again_keeps_its_place() {
        let (mut f, mut conn, remote, iss) = open_flow();
        conn.write_all(&[1u8; 1000]).unwrap();
        drop(conn);
        let mut out = Vec::new();
        until(|| {
            f.push(&mut out);
            out.iter().any(|fr| parsed(fr).flags & FIN != 0)
        });
        let fin_at = |out: &[Vec<u8>]| {
            let fin = out.iter().find(|fr| parsed(fr).flags & FIN != 0);
            fin.map(|fr| parsed(fr).seq)
        };
        assert_eq!(fin_at(&out), Some(iss + 1001));
        out.clear();
        // Nothing acknowledged: the timer sends the data and the FIN again.
        assert!(f.timer(mono_ms() + 5_000, &mut out));
        assert_eq!(fin_at(&out), Some(iss + 1001));
        let again: usize = out.iter().map(|fr| parsed(fr).payload.len()).sum();
        assert_eq!(again, 1000);
        out.clear();
        // The app takes it all and closes too: the flow is done.
        f.segment(
            &parsed(&from_app(remote, 101, iss + 1002, ACK, &[], &[])),
            2,
            &mut out,
        );
        f.segment(
            &parsed(&from_app(remote, 101, iss + 1002, ACK | FIN, &[], &[])),
            2,
            &mut out,
        );
        assert_eq!(f.phase, Phase::Done);
    }

    #[test]
    fn an_old_ack_drops_nothing() {
        let (mut f, mut conn, remote, iss) = open_flow();
        conn.write_all(&[7u8; 3000]).unwrap();
        let mut out = Vec::new();
        until(|| {
            f.push(&mut out);
            !out.is_empty()
        });
        out.clear();
        // The app acknowledges 1000 bytes, then an older ACK arrives late.
        f.segment(
            &parsed(&from_app(remote, 101, iss + 1001, ACK, &[], &[])),
            2,
            &mut out,
        );
        f.segment(
            &parsed(&from_app(remote, 101, iss + 1, ACK, &[], &[])),
            2,
            &mut out,
        );
        assert_eq!(f.snd_una, iss + 1001);
        // What was not acknowledged is still there to be sent again.
        f.rewind();
        out.clear();
        f.push(&mut out);
        let again: usize = out.iter().map(|fr| parsed(fr).payload.len()).sum();
        assert_eq!(again, 2000);
    }

    #[test]
    fn a_port_map_connection_opens_from_our_syn() {
        // The accepted end of a loopback connection stands for the client's.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let sock = Sock::from(std::os::fd::OwnedFd::from(accepted));
        let ends = Ends {
            router_mac: Mac([2, 0, 0, 0, 0, 2]),
            app_mac: Mac([2, 0, 0, 0, 0, 1]),
            remote: (Ipv4Addr::new(192, 0, 2, 9), peer.port()),
            app: APP,
        };
        let mut out = Vec::new();
        let mut f = TcpFlow::accepted(ends, sock, (1460, 0), Arc::default(), &mut out);
        let syn = parsed(&out[0]);
        assert_eq!(syn.flags, SYN);
        let iss = syn.seq;
        out.clear();
        let remote = ends.remote;
        let synack = from_app(remote, 5000, iss + 1, SYN | ACK, &[2, 4, 5, 180], &[]);
        f.segment(&parsed(&synack), 1, &mut out);
        assert_eq!(f.phase, Phase::Open);
        assert_eq!(parsed(&out[0]).ack, 5001);
        out.clear();
        // Our ACK was lost: the app's SYN-ACK again gets it again.
        f.segment(&parsed(&synack), 2, &mut out);
        assert_eq!(parsed(&out[0]).flags, ACK);
        // The app speaks first; the client reads it.
        let hello = from_app(remote, 5001, iss + 1, ACK | PSH, &[], b"220 hi");
        f.segment(&parsed(&hello), 3, &mut out);
        let mut buf = [0u8; 6];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"220 hi");
    }

    #[test]
    fn a_refused_connect_resets_the_app() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let remote = (Ipv4Addr::LOCALHOST, port);
        let ends = ends_to(remote);
        let syn = from_app(remote, 7, 0, SYN, &[], &[]);
        let mut f = TcpFlow::open(ends, &parsed(&syn), 1460, 0, Arc::default()).unwrap();
        let mut out = Vec::new();
        until(|| {
            f.writable(&mut out);
            f.phase != Phase::Connecting
        });
        assert_eq!(f.phase, Phase::Done);
        let rst = parsed(&out[0]);
        assert_eq!(rst.flags, RST | ACK);
        assert_eq!(rst.ack, 8);
    }

    #[test]
    fn syn_options_are_read_and_bounded() {
        let remote = (Ipv4Addr::new(192, 0, 2, 1), 80);
        let syn = from_app(
            remote,
            1,
            0,
            SYN,
            &[1, 3, 3, 20, 2, 4, 5, 180, 0, 0, 0, 0],
            &[],
        );
        assert_eq!(parsed(&syn).syn_options(), (Some(1460), Some(14)));
        let bad = from_app(remote, 1, 0, SYN, &[2, 9, 5, 180], &[]);
        assert_eq!(parsed(&bad).syn_options(), (None, None));
    }
}
