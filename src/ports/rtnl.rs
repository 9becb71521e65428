//! A minimal rtnetlink client for what ioctls cannot do: removing every IPv4
//! address from an interface (a management NIC that the host TAP replaces).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{cvt, last_err};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const HDR: usize = 16;

/// A NETLINK_ROUTE socket.
pub(crate) fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: fd was just returned by socket(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> io::Result<Rtnl> {
        Ok(Rtnl {
            fd: route_socket()?,
            seq: 0,
        })
    }

    fn send(&mut self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<u32> {
        self.seq += 1;
        let mut m = Vec::with_capacity(HDR + payload.len());
        m.extend(((HDR + payload.len()) as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend(flags.to_ne_bytes());
        m.extend(self.seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(payload);
        // SAFETY: sending a buffer we own to the kernel (pid 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
        if n < 0 { Err(last_err()) } else { Ok(self.seq) }
    }

    /// Reads replies to `seq` until DONE (dump) or an ACK/error; returns the
    /// payloads of messages of `kind`.
    fn collect(&self, seq: u32, kind: u16) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receiving into a buffer we own.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(last_err());
            }
            let mut b = &buf[..n as usize];
            while b.len() >= HDR {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let t = u16::from_ne_bytes([b[4], b[5]]);
                let s = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < HDR || len > b.len() {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                if s == seq {
                    match t {
                        NLMSG_DONE => return Ok(out),
                        NLMSG_ERROR => {
                            let code = b
                                .get(HDR..HDR + 4)
                                .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                            return if code == 0 {
                                Ok(out)
                            } else {
                                Err(io::Error::from_raw_os_error(-code))
                            };
                        }
                        t if t == kind => out.push(b[HDR..len].to_vec()),
                        _ => {}
                    }
                }
                b = b.get((len + 3) & !3..).unwrap_or(&[]);
            }
        }
    }
}

/// Removes every IPv4 address from interface `ifindex` (in this namespace).
pub fn flush_ipv4(ifindex: u32) -> io::Result<usize> {
    let mut nl = Rtnl::open()?;
    let req = [libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0];
    let seq = nl.send(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, &req)?;
    let addrs = nl.collect(seq, RTM_NEWADDR)?;
    let mut removed = 0;
    for a in addrs {
        if a.len() < 8 || u32::from_ne_bytes([a[4], a[5], a[6], a[7]]) != ifindex {
            continue;
        }
        let seq = nl.send(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, &a)?;
        nl.collect(seq, 0)?;
        removed += 1;
    }
    Ok(removed)
}
