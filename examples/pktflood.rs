//! A 64-byte UDP flood for `scripts/bench`, in the manner of trafgen: sends
//! one prepared frame (source port varied per frame, over FLOWS ports) out
//! of an interface with an AF_PACKET socket and `sendmmsg`, as fast as it
//! can (or at RATE frames a second) for a given time, and prints how many
//! frames the kernel took.
//!
//! Usage: pktflood IFACE DST_MAC SRC_IP DST_IP SECONDS [FLOWS [RATE]]

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const FRAME: usize = 60;

fn mac(text: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

fn own_mac(iface: &str) -> io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))?;
    mac(text.trim()).ok_or_else(|| io::Error::other("bad MAC in sysfs"))
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 + UDP (no UDP checksum) with 18 bytes of payload.
fn frame(dst: [u8; 6], src: [u8; 6], sip: Ipv4Addr, dip: Ipv4Addr) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&sip.octets());
    ip[16..20].copy_from_slice(&dip.octets());
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&9000u16.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn open(iface: &str) -> io::Result<i32> {
    let name = std::ffi::CString::new(iface).map_err(|_| io::Error::other("bad name"))?;
    // SAFETY: if_nametoindex with a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain socket(2); protocol 0 receives nothing.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = index as i32;
    // SAFETY: bind with a sockaddr_ll of the right size.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn run(args: &[String]) -> Result<u64, String> {
    let (fixed, extra) = args.split_at(args.len().min(5));
    let [iface, dst, sip, dip, secs] = fixed else {
        return Err("usage: pktflood IFACE DST_MAC SRC_IP DST_IP SECONDS [FLOWS [RATE]]".into());
    };
    let flows: u16 = match extra.first() {
        Some(f) => f
            .parse()
            .ok()
            .filter(|f| (1..=50000).contains(f))
            .ok_or("FLOWS: 1 to 50000")?,
        None => 1000,
    };
    let rate: f64 = match extra.get(1) {
        Some(r) => r.parse().map_err(|_| "bad RATE")?,
        None => 0.0,
    };
    let dst = mac(dst).ok_or("bad DST_MAC")?;
    let sip: Ipv4Addr = sip.parse().map_err(|_| "bad SRC_IP")?;
    let dip: Ipv4Addr = dip.parse().map_err(|_| "bad DST_IP")?;
    let secs: f64 = secs.parse().map_err(|_| "bad SECONDS")?;
    let src = own_mac(iface).map_err(|e| format!("{iface}: {e}"))?;
    let fd = open(iface).map_err(|e| format!("AF_PACKET on {iface}: {e}"))?;
    let mut frames = [frame(dst, src, sip, dip); BATCH];
    let mut sent = 0u64;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut port = 0u16;
    while Instant::now() < end {
        if rate > 0.0 && sent as f64 > rate * start.elapsed().as_secs_f64() {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        for f in frames.iter_mut() {
            port = (port + 1) % flows;
            f[34..36].copy_from_slice(&(10000 + port).to_be_bytes());
        }
        let mut iov: Vec<libc::iovec> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: FRAME,
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; each points at one iovec above.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: sendmmsg over the messages built above.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        } else {
            std::thread::yield_now();
        }
    }
    Ok(sent)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(sent) => println!("sent {sent}"),
        Err(e) => {
            eprintln!("pktflood: {e}");
            std::process::exit(2);
        }
    }
}
