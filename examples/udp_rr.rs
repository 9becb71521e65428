//! UDP request/response latency for `scripts/bench`, in the manner of
//! `sockperf ping-pong`: the server echoes every datagram; the client sends
//! one 64-byte message at a time, waits for its echo and prints the round
//! trip's percentiles.
//!
//! Usage: udp_rr server ADDR:PORT
//!        udp_rr client ADDR:PORT SECONDS

use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn server(addr: &str) -> std::io::Result<()> {
    let s = UdpSocket::bind(addr)?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = s.recv_from(&mut buf)?;
        s.send_to(&buf[..n], from)?;
    }
}

fn client(addr: &str, secs: f64) -> std::io::Result<String> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let msg = [0x5au8; 64];
    let mut buf = [0u8; 2048];
    let mut rtts = Vec::new();
    let mut lost = 0u64;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        let t0 = Instant::now();
        s.send(&msg)?;
        match s.recv(&mut buf) {
            Ok(_) => rtts.push(t0.elapsed().as_nanos() as u64),
            Err(_) => lost += 1,
        }
    }
    if rtts.is_empty() {
        return Err(std::io::Error::other("no answer"));
    }
    rtts.sort_unstable();
    let pct = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    Ok(format!(
        "round trips {} lost {lost} p50 {:.1} us p99 {:.1} us",
        rtts.len(),
        pct(0.50),
        pct(0.99)
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", addr] => server(addr).map(|_| String::new()),
        ["client", addr, secs] => match secs.parse() {
            Ok(s) => client(addr, s),
            Err(_) => Err(std::io::Error::other("bad SECONDS")),
        },
        _ => Err(std::io::Error::other(
            "usage: udp_rr server ADDR:PORT | udp_rr client ADDR:PORT SECONDS",
        )),
    };
    match r {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("udp_rr: {e}");
            std::process::exit(2);
        }
    }
}
