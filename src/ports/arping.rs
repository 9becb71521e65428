//! Asking, as the host would, whether a neighbour answers on an interface:
//! an ARP request sent on the host's side of a TAP (so it crosses the switch
//! like the host's own traffic) and its reply awaited; and the default
//! gateway the host's routing table has on that interface.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{cvt, ifctl};
use crate::config::Mac;

const ETH_P_ARP: u16 = 0x0806;

/// The gateway of the IPv4 default route through `ifname`, from the kernel's
/// routing table of this namespace.
pub fn default_gateway(ifname: &str) -> Option<Ipv4Addr> {
    (super::route_table::default_routes().into_iter())
        .find(|r| r.ifname == ifname)
        .and_then(|r| r.gateway)
}

fn request(src_mac: Mac, src_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 28] {
    let mut a = [0u8; 28];
    a[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    a[8..14].copy_from_slice(&src_mac.0);
    a[14..18].copy_from_slice(&src_ip.octets());
    a[24..28].copy_from_slice(&target.octets());
    a
}

/// Whether `target` answers an ARP request sent from `ifname` within
/// `wait`. The sender address is the interface's own IPv4 address, or
/// 0.0.0.0 (a probe) when it has none.
pub fn arping(ifname: &str, target: Ipv4Addr, wait: Duration) -> io::Result<bool> {
    let index = ifctl::index(ifname)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")))?;
    let mac = ifctl::mac(ifname)?;
    let src_ip = ifctl::ipv4(ifname).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let proto = ETH_P_ARP.to_be();
    // SAFETY: plain socket(2) call; the fd is owned below.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            proto as i32,
        )
    })?;
    // SAFETY: fd was just returned by socket(2).
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: binding to a valid sockaddr_ll of the given length.
    cvt(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            len,
        )
    })?;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&Mac::BROADCAST.0);
    let req = request(mac, src_ip, target);
    // SAFETY: sending our buffer to a valid sockaddr_ll.
    cvt(unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            len,
        ) as i32
    })?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 64];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 28 && is_reply_from(&buf[..n as usize], target, mac) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An ARP reply from `target` to `us`.
fn is_reply_from(a: &[u8], target: Ipv4Addr, us: Mac) -> bool {
    a[6..8] == [0, 2] && a[14..18] == target.octets() && a[18..24] == us.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_counts_only_from_the_target_to_us() {
        let us = Mac([2, 0, 0, 0, 0, 1]);
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let mut r = request(Mac([2, 0, 0, 0, 0, 9]), gw, Ipv4Addr::new(192, 0, 2, 5));
        r[7] = 2;
        r[18..24].copy_from_slice(&us.0);
        assert!(is_reply_from(&r, gw, us));
        assert!(!is_reply_from(&r, Ipv4Addr::new(192, 0, 2, 2), us));
        assert!(
            !is_reply_from(&request(us, gw, gw), gw, us),
            "a request is no reply"
        );
    }
}
