//! Which destinations an app may not reach through the host's stack: the
//! host itself (every prefix the daemon's namespace routes as local: its
//! addresses, loopback, and whole prefixes routed `local`, which covers the
//! metrics listener and the Wi-Fi or LTE address) and what is not one host
//! (unspecified, multicast, broadcast).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The prefixes of the daemon's namespace that are the host itself; None
/// when they cannot be read.
pub fn host_prefixes() -> Option<Vec<Ipv4Net>> {
    let v = crate::ports::rtnl::local_prefixes_v4().ok()?;
    (!v.is_empty()).then_some(v)
}

/// Loopback's prefix: the host, at the least.
pub fn loopback() -> Vec<Ipv4Net> {
    Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8)
        .into_iter()
        .collect()
}

/// Whether an app's flow to `dst` must be refused; `host` holds the
/// prefixes of the daemon's namespace that are the host itself.
pub fn refused(dst: Ipv4Addr, host: &[Ipv4Net]) -> bool {
    dst.is_unspecified()
        || dst.octets()[0] == 0
        || dst.is_loopback()
        || dst.is_multicast()
        || dst.is_broadcast()
        || host.iter().any(|n| n.contains(&dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_and_non_hosts_are_refused() {
        let host: Vec<Ipv4Net> = vec![
            "192.168.1.20/32".parse().unwrap(),
            "10.9.0.0/24".parse().unwrap(),
        ];
        for d in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "192.168.1.20",
            "10.9.0.77",
        ] {
            assert!(refused(d.parse().unwrap(), &host), "{d}");
        }
        for d in ["192.168.1.21", "8.8.8.8", "10.0.0.1"] {
            assert!(!refused(d.parse().unwrap(), &host), "{d}");
        }
    }

    #[test]
    fn loopback_is_the_host() {
        let p = host_prefixes().unwrap_or_else(loopback);
        assert!(p.iter().any(|n| n.contains(&Ipv4Addr::LOCALHOST)), "{p:?}");
    }
}
