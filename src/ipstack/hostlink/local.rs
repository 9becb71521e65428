//! Which destinations an app may not reach through the host's stack: the
//! host itself (loopback, and every address of the daemon's namespace,
//! which covers the metrics listener and the Wi-Fi or LTE address) and
//! what is not one host (unspecified, multicast, broadcast).

use std::net::Ipv4Addr;

/// The IPv4 addresses of the daemon's namespace's interfaces.
pub fn host_addresses() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of its family.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int;
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Whether an app's flow to `dst` must be refused; `host` holds the
/// addresses of the daemon's namespace.
pub fn refused(dst: Ipv4Addr, host: &[Ipv4Addr]) -> bool {
    dst.is_unspecified()
        || dst.octets()[0] == 0
        || dst.is_loopback()
        || dst.is_multicast()
        || dst.is_broadcast()
        || host.contains(&dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_and_non_hosts_are_refused() {
        let host = [Ipv4Addr::new(192, 168, 1, 20)];
        for d in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "192.168.1.20",
        ] {
            assert!(refused(d.parse().unwrap(), &host), "{d}");
        }
        for d in ["192.168.1.21", "8.8.8.8", "10.0.0.1"] {
            assert!(!refused(d.parse().unwrap(), &host), "{d}");
        }
    }

    #[test]
    fn loopback_is_among_the_host_addresses() {
        assert!(host_addresses().contains(&Ipv4Addr::LOCALHOST));
    }
}
