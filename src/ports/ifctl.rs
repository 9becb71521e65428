//! Interface control through ioctls on the calling thread's network
//! namespace: index, flags (up, running), MAC, MTU, rename, and a few sysctls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::cvt;
use crate::config::Mac;

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name `{name}`"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the fd is owned below.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(req: libc::c_ulong, r: &mut libc::ifreq) -> io::Result<()> {
    let s = ctl_socket()?;
    // SAFETY: r is a valid ifreq for the SIOC* request given.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), req as _, r as *mut libc::ifreq) })?;
    Ok(())
}

/// The interface index, if the interface exists here.
pub fn index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The name of interface `ifindex`, if it exists here.
pub fn name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has the IF_NAMESIZE bytes if_indextoname writes at most.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let c = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(c.to_string_lossy().into_owned())
}

pub fn exists(name: &str) -> bool {
    index(name).is_some()
}

pub fn flags(name: &str) -> io::Result<i32> {
    let mut r = ifreq(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut r)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    Ok(unsafe { r.ifr_ifru.ifru_flags } as i32)
}

/// Sets IFF_UP (or clears it).
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    let f = flags(name)?;
    let nf = if up {
        f | libc::IFF_UP
    } else {
        f & !libc::IFF_UP
    };
    if nf == f {
        return Ok(());
    }
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_flags = nf as libc::c_short;
    ioctl(libc::SIOCSIFFLAGS, &mut r)
}

/// Whether the link is operationally up (carrier present and admin up).
pub fn is_running(name: &str) -> bool {
    flags(name).is_ok_and(|f| f & libc::IFF_UP != 0 && f & libc::IFF_RUNNING != 0)
}

pub fn mac(name: &str) -> io::Result<Mac> {
    let mut r = ifreq(name)?;
    ioctl(libc::SIOCGIFHWADDR, &mut r)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let d = unsafe { r.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(Mac([
        d[0] as u8, d[1] as u8, d[2] as u8, d[3] as u8, d[4] as u8, d[5] as u8,
    ]))
}

/// The interface's (first) IPv4 address, if it has one.
pub fn ipv4(name: &str) -> Option<std::net::Ipv4Addr> {
    let mut r = ifreq(name).ok()?;
    ioctl(libc::SIOCGIFADDR, &mut r).ok()?;
    // SAFETY: SIOCGIFADDR filled the addr member with a sockaddr_in.
    let sa = unsafe { r.ifr_ifru.ifru_addr };
    let d = sa.sa_data;
    Some(std::net::Ipv4Addr::new(
        d[2] as u8, d[3] as u8, d[4] as u8, d[5] as u8,
    ))
}

pub fn set_mac(name: &str, mac: Mac) -> io::Result<()> {
    let mut r = ifreq(name)?;
    // SAFETY: writing the hwaddr member of the union we own.
    unsafe {
        r.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (d, s) in r.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac.0) {
            *d = s as libc::c_char;
        }
    }
    ioctl(libc::SIOCSIFHWADDR, &mut r)
}

pub fn mtu(name: &str) -> io::Result<u32> {
    let mut r = ifreq(name)?;
    ioctl(libc::SIOCGIFMTU, &mut r)?;
    // SAFETY: SIOCGIFMTU filled the mtu member.
    Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
}

pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ioctl(libc::SIOCSIFMTU, &mut r)
}

/// Sets how many frames an interface's transmit queue holds (for a TAP:
/// what the app may send before the reader takes it).
pub fn set_txqueuelen(name: &str, len: u32) -> io::Result<()> {
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_ifindex = len as libc::c_int;
    ioctl(libc::SIOCSIFTXQLEN, &mut r)
}

/// The kernel driver of an interface (ethtool GDRVINFO), e.g. "tun", "veth".
pub fn driver(name: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 3;
    // struct ethtool_drvinfo: cmd u32, driver[32], version[32], fw_version[32], bus_info[32], ...
    let mut info = [0u8; 196];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    let mut r = ifreq(name).ok()?;
    r.ifr_ifru.ifru_data = info.as_mut_ptr().cast();
    ioctl(libc::SIOCETHTOOL, &mut r).ok()?;
    let d = &info[4..36];
    let end = d.iter().position(|b| *b == 0).unwrap_or(d.len());
    Some(String::from_utf8_lossy(&d[..end]).into_owned())
}

/// Whether `name` exists here and is a TAP/TUN device.
pub fn is_tap(name: &str) -> bool {
    driver(name).as_deref() == Some("tun")
}

/// Renames an interface (it must be down).
pub fn rename(from: &str, to: &str) -> io::Result<()> {
    let mut r = ifreq(from)?;
    let to_req = ifreq(to)?;
    // SAFETY: writing the newname member of the union we own.
    r.ifr_ifru.ifru_newname = to_req.ifr_name;
    ioctl(libc::SIOCSIFNAME, &mut r)
}

/// Writes a per-interface sysctl such as `net/ipv6/conf/IF/disable_ipv6`.
pub fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), value)
}
