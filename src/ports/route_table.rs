//! The default routes of this namespace's IPv4 routing table, as the kernel
//! lists them in /proc/net/route: for each, its interface and its gateway
//! (none for a point-to-point route, such as a VPN's or an LTE modem's).

use std::net::Ipv4Addr;

/// A default route: its interface and its gateway, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub ifname: String,
    pub gateway: Option<Ipv4Addr>,
}

/// The default routes that are up, in the kernel's order.
pub fn default_routes() -> Vec<DefaultRoute> {
    let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    parse(&table)
}

/// Reads `/proc/net/route` text (hex fields: the address's bytes printed
/// as a native integer).
pub fn parse(table: &str) -> Vec<DefaultRoute> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let row = |l: &str| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
        let (dst, gw, flags, mask) = (hex(1)?, hex(2)?, hex(3)?, hex(7)?);
        let default = dst == 0 && mask == 0 && flags & RTF_UP != 0;
        default.then(|| DefaultRoute {
            ifname: f[0].to_string(),
            gateway: (flags & RTF_GATEWAY != 0).then(|| Ipv4Addr::from(gw.to_ne_bytes())),
        })
    };
    table.lines().skip(1).filter_map(row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_with_and_without_a_gateway() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 wg0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        let want = |i: &str, g: Option<Ipv4Addr>| DefaultRoute {
            ifname: i.into(),
            gateway: g,
        };
        assert_eq!(
            parse(t),
            vec![
                want("eth0", Some(Ipv4Addr::new(10, 0, 2, 1))),
                want("wg0", None)
            ]
        );
        assert!(parse("garbage").is_empty());
        assert!(parse("Iface\n").is_empty());
    }
}
