//! Any bytes as a frame (virtio-net header + Ethernet frame) through the
//! filter of an app interface (`services::vif_filter::VifFilter` with a few
//! compiled ACL rules: networks, protocols, ports, a DNS `host` rule, a rate
//! limit, a port map), both ways through `switch::PortHook`: sent by the app,
//! its reply coming back, the same frame arriving unsolicited, then again
//! after a live rules change; then `sweep` and `flush`, whose flow records
//! are rendered. Checked: a reply to a flow the app was allowed to start is
//! let in (unless a rate-limited rule decided), and `flush` forgets every
//! flow.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use niswitch::config::{Acl as AclConfig, AclAction, AclMatch, Limit};
use niswitch::frame::{ETH_HDR_LEN, ETHERTYPE_IPV4, Packet, VNET_HDR_LEN};
use niswitch::services::acl::{Acl, HostCache};
use niswitch::services::flowlog;
use niswitch::services::vif_filter::{FilterRules, VifFilter, VifIdent};
use niswitch::switch::PortHook;

fn rule(m: AclMatch, allow: bool, limit: Option<Limit>) -> AclConfig {
    AclConfig {
        matches: m,
        action: if allow {
            AclAction::Allow
        } else {
            AclAction::Drop
        },
        limit,
    }
}

/// Index of the only rule with a token bucket.
const LIMITED: usize = 3;

fn rules(second: bool) -> FilterRules {
    let mut acls = vec![
        rule(
            AclMatch {
                ip: Some("192.0.2.0/24".parse().expect("net")),
                protocol: Some(17),
                fport: Some(53),
                ..Default::default()
            },
            true,
            None,
        ),
        rule(
            AclMatch {
                protocol: Some(6),
                lport: Some(80),
                ..Default::default()
            },
            true,
            None,
        ),
        rule(
            AclMatch {
                ip: Some("203.0.113.0/24".parse().expect("net")),
                protocol: Some(1),
                ..Default::default()
            },
            false,
            None,
        ),
        rule(
            AclMatch {
                ip: Some("198.51.100.0/24".parse().expect("net")),
                ..Default::default()
            },
            true,
            Some(Limit {
                rate: 1,
                burst: 2,
                per_secs: 1,
            }),
        ),
        rule(
            AclMatch {
                host: Some("example.com.".into()),
                ..Default::default()
            },
            true,
            None,
        ),
        rule(
            AclMatch {
                ip: Some("2001:db8::/32".parse().expect("net")),
                ..Default::default()
            },
            true,
            None,
        ),
        rule(
            AclMatch {
                ip: Some("10.0.0.0/8".parse().expect("net")),
                protocol: Some(6),
                ..Default::default()
            },
            true,
            None,
        ),
    ];
    if second {
        // A live apply: one rule fewer, a catch-all drop, another port map.
        acls.truncate(LIMITED);
        acls.push(rule(AclMatch::default(), false, None));
    }
    FilterRules {
        ident: VifIdent {
            app: "web".into(),
            app_uuid: "u".into(),
            ni: "lan".into(),
            vif: "nbu1x1".into(),
        },
        acl: Acl::compile(&acls),
        enforce: true,
        gateway: Some(Ipv4Addr::new(10, 50, 0, 1)),
        router6: vec!["fd00:50::1".parse().expect("ip")],
        mapped: if second {
            vec![(17, 5353)]
        } else {
            vec![(6, 8080)]
        },
    }
}

/// The answer to an IPv4 frame: MACs, addresses and (TCP/UDP) ports swapped.
fn reply(b: &[u8]) -> Option<Vec<u8>> {
    let ip = VNET_HDR_LEN + ETH_HDR_LEN;
    if b.len() < ip + 20 || u16::from_be_bytes([b[ip - 2], b[ip - 1]]) != ETHERTYPE_IPV4 {
        return None;
    }
    let mut r = b.to_vec();
    let e = VNET_HDR_LEN;
    r[e..e + 6].copy_from_slice(&b[e + 6..e + 12]);
    r[e + 6..e + 12].copy_from_slice(&b[e..e + 6]);
    r[ip + 12..ip + 16].copy_from_slice(&b[ip + 16..ip + 20]);
    r[ip + 16..ip + 20].copy_from_slice(&b[ip + 12..ip + 16]);
    let l4 = ip + (b[ip] & 0x0f) as usize * 4;
    if matches!(b[ip + 9], 6 | 17) && b.len() >= l4 + 4 {
        r[l4..l4 + 2].copy_from_slice(&b[l4 + 2..l4 + 4]);
        r[l4 + 2..l4 + 4].copy_from_slice(&b[l4..l4 + 2]);
    }
    Some(r)
}

fuzz_target!(|data: &[u8]| {
    let Ok(pkt) = Packet::new_checked(data) else {
        return;
    };
    let hosts = Arc::new(HostCache::default());
    hosts.learn(
        "www.example.com",
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)),
        300,
        0,
    );
    let filter = Arc::new(VifFilter::new(rules(false), Some(hosts.clone())));
    let hook: Box<dyn PortHook> = Box::new(filter.clone());

    let sent = hook.egress(&pkt);
    if let Some(r) = reply(data)
        && let Ok(rp) = Packet::new_checked(&r)
    {
        let back = hook.ingress(&rp);
        if sent.is_ok() && filter.hits().get(LIMITED) == Some(&0) {
            assert_eq!(back, Ok(()), "the reply to an allowed flow was refused");
        }
    }
    let _ = hook.ingress(&pkt);
    let _ = hook.egress(&pkt);
    // A DNS answer arriving later has dropped flows judged again.
    hosts.learn("example.com", IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 60, 0);
    let _ = hook.ingress(&pkt);

    filter.set_rules(rules(true));
    let _ = hook.egress(&pkt);
    let _ = hook.ingress(&pkt);
    assert!(filter.hits().len() == LIMITED + 1);

    for r in filter.sweep().iter().chain(filter.flush().iter()) {
        assert!(r.action == "allow" || r.action == "drop");
        let _ = flowlog::render(r);
    }
    assert!(filter.flush().is_empty(), "flush left flows behind");
});
