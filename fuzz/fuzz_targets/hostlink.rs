//! Any bytes as the TCP segments an app sends over the `host` uplink:
//! `Segment::parse` of the whole input as a packet, at the span the NAT's
//! parser finds (its payload must lie inside it), and a translator flow, connected to a loopback server, fed
//! the input cut into segments with any sequence numbers, flags, windows
//! and options, while the server writes and its clock runs. Nothing may
//! panic, and every frame the flow makes is a well-formed segment to the app.
#![no_main]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use niswitch::config::Mac;
use niswitch::ipstack::hostlink::frames::{self, Ends, TcpHead};
use niswitch::ipstack::hostlink::tcp::{Phase, Segment, TcpFlow};

fn server() -> &'static TcpListener {
    static S: OnceLock<TcpListener> = OnceLock::new();
    S.get_or_init(|| TcpListener::bind("127.0.0.1:0").expect("a loopback listener"))
}

/// A segment from the app built from 12 bytes of input and a payload.
fn segment(remote: (Ipv4Addr, u16), h: &[u8], payload: &[u8]) -> Vec<u8> {
    let e = Ends {
        router_mac: Mac([2, 0, 0, 0, 0, 2]),
        app_mac: Mac([2, 0, 0, 0, 0, 1]),
        remote: (Ipv4Addr::new(10, 0, 0, 5), 40000),
        app: remote,
    };
    let opts = [2, 4, h[10], h[11], 1, 3, 3, h[9] & 0x0f];
    let head = TcpHead {
        seq: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
        ack: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        flags: h[8],
        window: u16::from_be_bytes([h[9], h[10]]),
        opts: if h[8] & frames::SYN != 0 { &opts } else { &[] },
    };
    let mut f = Vec::new();
    frames::tcp_head(&mut f, &e, &head);
    f.extend_from_slice(payload);
    frames::tcp_finish(&mut f, &e, u16::MAX);
    f
}

/// The segment of a packet, at the span the NAT's parser finds in it.
fn parse(f: &[u8]) -> Option<Segment<'_>> {
    let span = niswitch::ipstack::translate::parse(f)?.l4_span();
    Segment::parse(f, span)
}

fn check_out(out: &[Vec<u8>]) {
    for f in out {
        let s = parse(f).expect("our own frames parse");
        assert!(s.payload.len() <= 65535);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(s) = parse(data) {
        let start = s.payload.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + s.payload.len() <= data.len());
    }
    let l = server();
    let remote = (Ipv4Addr::LOCALHOST, l.local_addr().expect("bound").port());
    let ends = Ends {
        router_mac: Mac([2, 0, 0, 0, 0, 2]),
        app_mac: Mac([2, 0, 0, 0, 0, 1]),
        remote,
        app: (Ipv4Addr::new(10, 0, 0, 5), 40000),
    };
    let syn = segment(
        remote,
        &[0, 0, 0, 100, 0, 0, 0, 0, frames::SYN, 7, 5, 180],
        &[],
    );
    let Some(s) = parse(&syn) else {
        return;
    };
    let Ok(mut flow) = TcpFlow::open(ends, &s, 1460, 0, Arc::default()) else {
        return;
    };
    let Ok((mut conn, _)) = l.accept() else {
        return;
    };
    let mut out = Vec::new();
    for _ in 0..100 {
        flow.writable(&mut out);
        if flow.phase != Phase::Connecting {
            break;
        }
    }
    let _ = conn.write_all(&data[..data.len().min(4096)]);
    let mut clock = niswitch::clock::mono_ms();
    for (i, chunk) in data.chunks(40).enumerate() {
        if chunk.len() < 12 {
            break;
        }
        let f = segment(remote, &chunk[..12], &chunk[12..]);
        let Some(s) = parse(&f) else {
            continue;
        };
        flow.segment(&s, i as u64, &mut out);
        flow.push(&mut out);
        clock += u64::from(chunk[0]) * 50;
        flow.timer(clock, &mut out);
        check_out(&out);
        out.clear();
        if flow.phase == Phase::Done {
            break;
        }
    }
});
