//! The host sockets the `host` uplink carries flows over: non-blocking TCP,
//! UDP and ICMP echo sockets, listeners for port maps, and
//! the few socket options the TCP translator needs (peek offsets, queue
//! sizes, linger). Thin wrappers over libc; every call reports its errno.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::ports::cvt;

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

fn from_sockaddr(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
        u16::from_be(s.sin_port),
    )
}

const SIN_LEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// One host socket, closed when dropped.
pub struct Sock(OwnedFd);

impl From<OwnedFd> for Sock {
    /// A socket opened elsewhere (non-blocking).
    fn from(fd: OwnedFd) -> Sock {
        Sock(fd)
    }
}

impl Sock {
    fn new(ty: libc::c_int, proto: libc::c_int) -> io::Result<Sock> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = cvt(unsafe { libc::socket(libc::AF_INET, ty | flags, proto) })?;
        // SAFETY: fd was just returned by socket(2).
        Ok(Sock(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn connect(&self, to: SocketAddrV4) -> io::Result<()> {
        let sa = sockaddr(to);
        // SAFETY: sa is a valid sockaddr_in of SIN_LEN bytes.
        let r =
            unsafe { libc::connect(self.fd(), (&sa as *const libc::sockaddr_in).cast(), SIN_LEN) };
        match cvt(r) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
            other => other.map(drop),
        }
    }

    fn bind(&self, at: SocketAddrV4) -> io::Result<()> {
        let sa = sockaddr(at);
        // SAFETY: sa is a valid sockaddr_in of SIN_LEN bytes.
        cvt(unsafe { libc::bind(self.fd(), (&sa as *const libc::sockaddr_in).cast(), SIN_LEN) })
            .map(drop)
    }

    fn set_int(&self, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
        // SAFETY: the option value is a c_int we own.
        cvt(unsafe {
            libc::setsockopt(
                self.fd(),
                level,
                opt,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// A TCP connection to `to`, under way (`EPOLLOUT` says when it is done).
    pub fn tcp_connect(to: SocketAddrV4) -> io::Result<Sock> {
        let s = Sock::new(libc::SOCK_STREAM, 0)?;
        s.set_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
        s.connect(to)?;
        Ok(s)
    }

    /// A UDP socket connected to `to`; ICMP errors come back on its error queue.
    pub fn udp_connect(to: SocketAddrV4) -> io::Result<Sock> {
        let s = Sock::new(libc::SOCK_DGRAM, 0)?;
        s.connect(to)?;
        Ok(s)
    }

    /// A UDP socket bound to `at` (a relay's or a port map's).
    pub fn udp_bound(at: SocketAddrV4) -> io::Result<Sock> {
        let s = Sock::new(libc::SOCK_DGRAM, 0)?;
        s.set_int(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        s.bind(at)?;
        Ok(s)
    }

    /// A listening TCP socket on `at`, for a port map.
    pub fn tcp_listen(at: SocketAddrV4) -> io::Result<Sock> {
        let s = Sock::new(libc::SOCK_STREAM, 0)?;
        s.set_int(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        s.bind(at)?;
        // SAFETY: listen(2) on our socket.
        cvt(unsafe { libc::listen(s.fd(), 128) })?;
        Ok(s)
    }

    /// The next connection a listener has waiting, and its peer.
    pub fn accept(&self) -> io::Result<(Sock, SocketAddrV4)> {
        // SAFETY: sockaddr_in is plain data.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        let mut len = SIN_LEN;
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let addr = (&mut sa as *mut libc::sockaddr_in).cast();
        // SAFETY: sa and len describe a buffer we own.
        let fd = cvt(unsafe { libc::accept4(self.fd(), addr, &mut len, flags) })?;
        // SAFETY: fd was just returned by accept4(2).
        let s = Sock(unsafe { OwnedFd::from_raw_fd(fd) });
        s.set_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
        Ok((s, from_sockaddr(&sa)))
    }

    /// An ICMP echo socket towards `to`: a ping socket where
    /// `net.ipv4.ping_group_range` allows it (true), else a raw ICMP
    /// socket (false), which needs CAP_NET_RAW.
    pub fn echo(to: Ipv4Addr) -> io::Result<(Sock, bool)> {
        let (s, ping) = match Sock::new(libc::SOCK_DGRAM, libc::IPPROTO_ICMP) {
            Ok(s) => (s, true),
            Err(_) => (Sock::new(libc::SOCK_RAW, libc::IPPROTO_ICMP)?, false),
        };
        s.connect(SocketAddrV4::new(to, 0))?;
        Ok((s, ping))
    }

    /// The ICMP message of a datagram read from an echo socket: a ping
    /// socket (`ping`) hands over the message, a raw one the IPv4 packet.
    pub fn icmp_of(datagram: &[u8], ping: bool) -> &[u8] {
        if ping {
            return datagram;
        }
        let ihl = datagram.first().map_or(0, |v| ((v & 0x0f) as usize) * 4);
        datagram.get(ihl..).unwrap_or(&[])
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Writes what the socket takes now, without blocking.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: data is a valid buffer of data.len() bytes.
        let n = unsafe { libc::send(self.fd(), data.as_ptr().cast(), data.len(), flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends a datagram to `to` (a port map's reply through its listener).
    pub fn send_to(&self, data: &[u8], to: SocketAddrV4) -> io::Result<usize> {
        let sa = sockaddr(to);
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: data and sa are valid for their lengths.
        let n = unsafe {
            libc::sendto(
                self.fd(),
                data.as_ptr().cast(),
                data.len(),
                flags,
                (&sa as *const libc::sockaddr_in).cast(),
                SIN_LEN,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn recv_flags(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: buf is a valid buffer of buf.len() bytes.
        let n = unsafe {
            libc::recv(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Reads what is there, without blocking.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_flags(buf, 0)
    }

    /// Reads a datagram and who sent it.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        // SAFETY: sockaddr_in is plain data.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        let mut len = SIN_LEN;
        // SAFETY: buf, sa and len describe buffers we own.
        let n = unsafe {
            libc::recvfrom(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut sa as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize, from_sockaddr(&sa)))
    }

    /// Appends up to `n` bytes of received data to `v` without taking them
    /// (from the peek offset, when set); nothing is zeroed first.
    pub fn peek_append(&self, v: &mut Vec<u8>, n: usize) -> io::Result<usize> {
        v.reserve(n);
        let spare = &mut v.spare_capacity_mut()[..n];
        // SAFETY: the kernel writes at most `n` bytes into the reserved,
        // unused capacity of `v`.
        let got = unsafe {
            libc::recv(
                self.fd(),
                spare.as_mut_ptr().cast(),
                n,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `got` bytes past the length were written by recv(2).
        unsafe { v.set_len(v.len() + got as usize) };
        Ok(got as usize)
    }

    /// Drops `n` received bytes (the app acknowledged them).
    pub fn discard(&self, n: usize) -> io::Result<usize> {
        // SAFETY: with MSG_TRUNC a TCP socket discards; no buffer is written.
        let r = unsafe {
            libc::recv(
                self.fd(),
                std::ptr::null_mut(),
                n,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// Where the next peek starts, counted from the first unread byte;
    /// false when the kernel cannot keep a peek offset for TCP.
    pub fn set_peek_off(&self, off: usize) -> bool {
        self.set_int(libc::SOL_SOCKET, libc::SO_PEEK_OFF, off as libc::c_int)
            .is_ok()
    }

    fn get_int(&self, level: libc::c_int, opt: libc::c_int) -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and len describe a c_int we own.
        cvt(unsafe {
            libc::getsockopt(
                self.fd(),
                level,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok(v)
    }

    /// The pending error of the socket (a connect that failed), if any.
    pub fn take_error(&self) -> Option<io::Error> {
        match self.get_int(libc::SOL_SOCKET, libc::SO_ERROR) {
            Ok(0) => None,
            Ok(e) => Some(io::Error::from_raw_os_error(e)),
            Err(e) => Some(e),
        }
    }

    /// No more data from us (the app sent FIN).
    pub fn shutdown_write(&self) {
        // SAFETY: shutdown(2) on our socket.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
    }

    /// Makes the close send a reset instead of a FIN (the app reset its end).
    pub fn reset_on_close(&self) {
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the option value is a linger we own.
        unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }

    /// The host address and port the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        // SAFETY: sockaddr_in is plain data.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        let mut len = SIN_LEN;
        // SAFETY: sa and len describe a buffer we own.
        cvt(unsafe {
            libc::getsockname(
                self.fd(),
                (&mut sa as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        })?;
        Ok(from_sockaddr(&sa))
    }
}
