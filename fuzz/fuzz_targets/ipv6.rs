//! Any bytes as what an app or the upstream sends the router over IPv6:
//! a neighbour or router discovery message, a DHCPv6 message, a frame
//! read for its addresses; nothing panics, and whatever is read back is
//! what a well-formed message would say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::config::Mac;
use niswitch::ipstack::wire;
use niswitch::services::ipv6;

fuzz_target!(|data: &[u8]| {
    let mac = Mac([2, 0, 0, 0, 0, 1]);
    if let Some(nd) = ipv6::read_nd(data) {
        assert_eq!(nd.kind, data[0]);
        assert!(nd.target.is_none() || data.len() >= 24);
    }
    let dns = ["fd00:50::1".parse().expect("ip")];
    if let Ok(Some(reply)) = ipv6::dhcpv6_reply(data, &ipv6::duid(mac), &dns, Some("lan")) {
        assert_eq!(reply[0], 7, "a Reply");
        assert_eq!(reply[1..4], data[1..4], "the transaction id");
    }
    let _ = ipv6::claimed(std::net::Ipv6Addr::UNSPECIFIED, Some(data));
    if let Some(ip) = wire::parse_ipv6(data) {
        let _ = wire::udp_parts(ip.payload);
        let _ = wire::reroute6(data, mac, mac);
    }
});
