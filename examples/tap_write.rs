//! What one frame's write into a TAP costs, by write(2) one at a time and by
//! io_uring in batches (one io_uring_enter for BATCH writes). The frame is
//! what `scripts/bench`'s floods carry: 64 bytes of UDP to a port nothing
//! listens on, so the TAP's namespace runs its stack (and answers with a
//! rate-limited port unreachable) inside each write, as it does inside a
//! worker's. With `stranger` the frame is addressed to another MAC, so the
//! stack drops it at once: what the write alone costs. Run it in a
//! namespace of its own; it makes TAP `tapw0`.
//!
//! Usage: ip netns exec NS tap_write write|uring FRAMES [BATCH [stranger]]

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, types};
use niswitch::config::Mac;
use niswitch::ipstack::wire::udp_packet;
use niswitch::ports::PortIo;
use niswitch::ports::tap::{Tap, TapOptions};

const TAP_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
const PEER_MAC: Mac = Mac([2, 0, 0, 0, 0, 2]);
const STRANGER_MAC: Mac = Mac([2, 0, 0, 0, 0, 3]);

fn ip(args: &str) -> io::Result<()> {
    let ok = Command::new("ip").args(args.split(' ')).status()?.success();
    ok.then_some(())
        .ok_or_else(|| io::Error::other(format!("ip {args} failed")))
}

/// Opens the TAP, waiting a moment for the kernel to remove the one of a
/// run that just ended.
fn open(opts: &TapOptions) -> io::Result<Tap> {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match Tap::open(opts) {
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50))
            }
            r => return r,
        }
    }
}

/// Writes `frames` copies of `pkt`, BATCH per io_uring_enter.
fn by_uring(fd: i32, pkt: &[u8], frames: usize, batch: usize) -> io::Result<()> {
    let mut ring = IoUring::new(batch.next_power_of_two() as u32)?;
    ring.submitter().register_files(&[fd])?;
    let mut done = 0;
    while done < frames {
        let k = batch.min(frames - done);
        for _ in 0..k {
            let write = opcode::Write::new(types::Fixed(0), pkt.as_ptr(), pkt.len() as u32);
            // SAFETY: `pkt` outlives the ring's use of it: every write is
            // waited for below before the next batch.
            unsafe { ring.submission().push(&write.build()) }.map_err(io::Error::other)?;
        }
        ring.submit_and_wait(k)?;
        if let Some(bad) = ring.completion().find(|c| c.result() < 0) {
            return Err(io::Error::from_raw_os_error(-bad.result()));
        }
        done += k;
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || io::Error::other("usage: tap_write write|uring FRAMES [BATCH [stranger]]");
    let mode = args.get(1).ok_or_else(usage)?.clone();
    let frames: usize = args.get(2).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let batch: usize = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(32)
        .max(1);
    let opts = TapOptions {
        name: "tapw0".into(),
        mac: Some(TAP_MAC),
        ..Default::default()
    };
    let tap = open(&opts)?;
    ip("addr add 10.77.0.1/24 dev tapw0")?;
    ip("neigh replace 10.77.0.2 lladdr 02:00:00:00:00:02 dev tapw0")?;
    let (src, dst) = (Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 1));
    let to = match args.get(4).map(String::as_str) {
        Some("stranger") => STRANGER_MAC,
        _ => TAP_MAC,
    };
    let pkt = udp_packet(PEER_MAC, to, (src, 40000), (dst, 9), &[0x61; 64]);
    let fd = tap
        .fd()
        .ok_or_else(|| io::Error::other("the TAP has no descriptor"))?;
    let start = Instant::now();
    match mode.as_str() {
        "write" => (0..frames).try_for_each(|_| tap.send(&pkt))?,
        "uring" => by_uring(fd, &pkt, frames, batch)?,
        _ => return Err(usage()),
    }
    let took = start.elapsed();
    let delivered = std::fs::read_to_string("/sys/class/net/tapw0/statistics/rx_packets")?;
    let how = match mode.as_str() {
        "uring" => format!("io_uring, {batch} writes a submission"),
        _ => "write(2)".to_string(),
    };
    println!(
        "{how}: {:.0} ns a frame, {:.0} kpps; the TAP counted {} received",
        took.as_nanos() as f64 / frames as f64,
        frames as f64 / took.as_secs_f64() / 1e3,
        delivered.trim()
    );
    Ok(())
}
