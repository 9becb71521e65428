//! IPv6 on a local NI (SPEC §5.1) with the kernel's own SLAAC in app
//! namespaces: the router's advertisement gives each app an address in
//! `subnet6` and a default route, the router answers neighbour discovery
//! and ping on its addresses, apps reach each other, names resolve to
//! AAAA records (over IPv6 too), stateless DHCPv6 (dhclient -S) gives the
//! DNS server and domain, status shows the apps' addresses, and garbage
//! DHCPv6 is counted and survived.

mod common;
use common::*;
use std::time::Duration;

const P: &str = "nswv6";
const GW6: &str = "fd00:50::1";

fn config(p: &str) -> String {
    let app = |n: &str, u: u8, extra: &str| {
        format!(
            "  - {{ name: {n}, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd436{u:02x}, interfaces: [{{ ni: lan, tap: {p}-{n}, netns: {p}-{n}{extra} }}] }}\n"
        )
    };
    format!(
        "version: 1
ports:
  - {{ name: up, device: {p}-nic }}
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, subnet6: 'fd00:50::/64', dns: {{ domain: lan }}, uplinks: [up] }}
apps:
{}{}{}",
        app("a", 1, ""),
        app("b", 2, ""),
        app("c", 3, ", acls: [{ match: { ip: 'fd00:50::/64' }, action: allow }]"),
    )
}

/// The global IPv6 address SLAAC gave `ifname` in `ns` (empty: none yet).
fn slaac(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    sb.out(
        ns,
        &format!(
            "ip -6 -o addr show dev {ifname} scope global | grep -v tentative | awk '{{print $4}}' | cut -d/ -f1 | head -1"
        ),
    )
}

fn router(d: &Daemon) -> serde_json::Value {
    d.status()["network_instances"][0]["router"].clone()
}

#[test]
fn apps_get_ipv6_by_slaac_and_reach_the_router_and_each_other() {
    if !root_or_skip("apps_get_ipv6_by_slaac_and_reach_the_router_and_each_other") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "dig", "ping", "dhclient", "python3"]);
    let mut sb = Sandbox::new(P).unwrap();
    let (dev, up) = dev_and_up(&mut sb, &format!("{P}-nic"), &format!("{P}-lan"));
    upstream_dhcp(&mut sb, &up, &format!("{P}-lan"), "up");
    let (a, b, c) = (
        sb.ns("a").unwrap(),
        sb.ns("b").unwrap(),
        sb.ns("c").unwrap(),
    );
    let d = start(&mut sb, &dev, &config(P), "nsw");
    let (ta, tb) = (format!("{P}-a"), format!("{P}-b"));
    lease(&sb, &a, &ta);
    lease(&sb, &b, &tb);

    // SLAAC from the router's advertisement, with a default route.
    for (ns, tap) in [(&a, &ta), (&b, &tb)] {
        assert!(
            wait_until(Duration::from_secs(20), || slaac(&sb, ns, tap)
                .starts_with("fd00:50::")),
            "no SLAAC address on {tap}: {}\n{}",
            sb.out(ns, "ip -6 addr; ip -6 route"),
            router(&d)
        );
    }
    let (a6, b6) = (slaac(&sb, &a, &ta), slaac(&sb, &b, &tb));
    let route = sb.out(&a, "ip -6 route show default");
    assert!(route.contains("via fe80::"), "{route}");
    let mtu = sb.out(&a, &format!("cat /proc/sys/net/ipv6/conf/{ta}/mtu"));
    assert_eq!(mtu, "1500", "the advertised MTU");

    // Neighbour discovery and echo on the router's addresses; app to app.
    assert!(
        sb.ok(&a, &format!("ping -6 -c 2 -i 0.2 -W 2 {GW6}")),
        "ping the gateway"
    );
    let ll = sb.out(&a, "ip -6 route show default | awk '{print $3}'");
    assert!(
        sb.ok(&a, &format!("ping -6 -c 3 -i 0.3 -W 2 {ll}%{ta}")),
        "ping the router's link-local {ll}"
    );
    assert!(
        sb.ok(&a, &format!("ping -6 -c 2 -i 0.2 -W 2 {b6}")),
        "a pings b"
    );
    assert!(
        sb.ok(&b, &format!("ping -6 -c 2 -i 0.2 -W 2 {a6}")),
        "b pings a"
    );

    // AAAA records for the apps, asked over IPv4 and over IPv6.
    let aaaa = |server: &str, name: &str| {
        sb.out(
            &a,
            &format!("dig +time=2 +tries=2 +short @{server} -q {name} -t AAAA"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(5), || aaaa("10.50.0.1", "b")
            .lines()
            .any(|l| l == b6)),
        "AAAA of b: {}",
        aaaa("10.50.0.1", "b")
    );
    assert!(aaaa(GW6, "b.lan").lines().any(|l| l == b6), "over IPv6");
    assert!(aaaa(GW6, "router").lines().any(|l| l == GW6));
    assert!(
        sb.out(&a, &format!("dig +tcp +short @{GW6} -q a"))
            .contains("10.50.0."),
        "A over IPv6 and TCP"
    );

    // Stateless DHCPv6 gives the DNS server and the domain: dhclient
    // hands what it got to its script, which notes it.
    let (pf, lf, env) = (sb.path("a6.pid"), sb.path("a6.leases"), sb.path("a6.env"));
    let script = write_file(
        &sb,
        "a6.sh",
        &format!("#!/bin/sh\nenv >> {}\n", env.display()),
    );
    assert!(sb.ok(&a, &format!("chmod +x {}", script.display())));
    let dhc = format!(
        "timeout 20 dhclient -6 -S -1 -sf {} -pf {} -lf {} {ta} >/dev/null 2>&1",
        script.display(),
        pf.display(),
        lf.display()
    );
    assert!(sb.ok(&a, &dhc), "dhclient -6 -S");
    sb.sh(&a, &format!("kill $(cat {}) 2>/dev/null", pf.display()));
    let got = std::fs::read_to_string(&env).unwrap_or_default();
    assert!(
        got.contains(&format!("new_dhcp6_name_servers={GW6}")),
        "{got}"
    );
    assert!(got.contains("new_dhcp6_domain_search=lan."), "{got}");
    assert!(
        router(&d)["counters"]["dhcpv6_replies"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );

    // status shows the apps' IPv6 addresses.
    let st = d.status();
    let ips6 = st["apps"][0]["interfaces"][0]["ips6"].to_string();
    assert!(ips6.contains(&a6), "{ips6}");

    // An app with ACLs: neighbour and router discovery pass whatever the
    // rules say, an IPv6 `ip` rule lets its network through, IPv4 (no
    // rule) is dropped, DNS with the router passes.
    let tc = format!("{P}-c");
    lease(&sb, &c, &tc);
    assert!(
        wait_until(Duration::from_secs(20), || slaac(&sb, &c, &tc)
            .starts_with("fd00:50::")),
        "no SLAAC address behind ACLs: {}",
        sb.out(&c, "ip -6 addr")
    );
    assert!(
        sb.ok(&c, &format!("ping -6 -c 2 -i 0.2 -W 2 {a6}")),
        "allowed by the IPv6 rule"
    );
    let a4 = ipv4_of(&sb, &a, &ta);
    assert!(
        sb.ok(&b, &format!("ping -c 2 -i 0.2 -W 2 {a4}")),
        "IPv4 between apps without rules"
    );
    let denied = || -> u64 {
        let v = &d.status()["apps"][2]["interfaces"][0];
        assert_eq!(v["tap"], tc.as_str(), "{v}");
        v["drops"]["acl_denied"].as_u64().unwrap_or(0)
    };
    let before = denied();
    assert!(
        !sb.ok(&c, &format!("ping -c 2 -i 0.2 -W 1 {a4}")),
        "IPv4: no rule"
    );
    assert!(denied() > before, "the rules dropped c's IPv4 ping");
    assert!(
        sb.out(
            &c,
            &format!("dig +time=2 +tries=2 +short @{GW6} -q a -t AAAA")
        )
        .contains(&a6),
        "DNS with the router over IPv6"
    );
    let hits = &d.status()["apps"][2]["interfaces"][0]["acl_hits"];
    assert!(hits[0].as_u64().unwrap_or(0) >= 1, "{hits}");

    // Garbage DHCPv6 is counted; the router goes on answering.
    let junk = format!(
        "python3 -c \"import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); \
         s.bind(('::', 546)); s.sendto(b'\\x0b\\x00', ('ff02::1:2%{ta}', 547))\""
    );
    assert!(sb.ok(&a, &junk), "send junk");
    assert!(
        wait_until(
            Duration::from_secs(3),
            || router(&d)["counters"]["ipv6_malformed"]
                .as_u64()
                .unwrap_or(0)
                >= 1
        ),
        "{}",
        router(&d)
    );
    assert!(
        sb.ok(&a, &format!("ping -6 -c 1 -W 2 {GW6}")),
        "still answering"
    );
    assert!(
        router(&d)["counters"]["router_adverts"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    );
}

/// Sends router advertisements from `ifname` every half second (the
/// upstream router of the test; this machine has no radvd).
const RA_SENDER: &str = "import socket, struct, sys, time
ifname, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', ''))
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
ra = bytes([134, 0, 0, 0, 64, 0]) + struct.pack('!HII', 600, 0, 0) + bytes([1, 1]) + mac
print('sending', flush=True)
for _ in range(240):
    s.sendto(ra, ('ff02::1', 0, 0, socket.if_nametoindex(ifname)))
    time.sleep(0.5)
";

#[test]
fn ipv6_is_routed_through_the_uplink_without_translation() {
    if !root_or_skip("ipv6_is_routed_through_the_uplink_without_translation") {
        return;
    }
    need(&["dnsmasq", "curl", "ping", "python3"]);
    let p = "nswr6";
    let mut sb = Sandbox::new(p).unwrap();
    let lan = format!("{p}-lan");
    let (dev, up) = dev_and_up(&mut sb, &format!("{p}-nic"), &lan);
    upstream_dhcp(&mut sb, &up, &lan, "up");
    let a = sb.ns("a").unwrap();
    let ta = format!("{p}-a");
    assert!(sb.ok(
        &up,
        &format!("ip -6 addr add 2001:db8:1::1/64 dev {lan} nodad")
    ));
    let up_ll = sb.out(
        &up,
        &format!("ip -6 -o addr show dev {lan} scope link | awk '{{print $4}}' | cut -d/ -f1"),
    );
    let config = |gateway6: &str| {
        format!(
            "version: 1
ports:
  - {{ name: up, device: {p}-nic }}
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, subnet6: 'fd00:50::/64', uplink_prefix6: true{gateway6}, uplinks: [up] }}
apps:
  - {{ name: a, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43701, interfaces: [{{ ni: lan, tap: {ta}, netns: {a} }}] }}
"
        )
    };
    let d = start(
        &mut sb,
        &dev,
        &config(&format!(", uplink_gateway6: '{up_ll}'")),
        "nsw",
    );
    let uplink = |d: &Daemon| d.status()["network_instances"][0]["uplinks"][0].clone();
    assert!(
        wait_until(Duration::from_secs(15), || uplink(&d)["active"] == true),
        "{}",
        uplink(&d)
    );
    // The upstream routes the NI's prefix to the uplink's link-local address.
    let ll = uplink(&d)["link_local6"].as_str().unwrap_or("").to_string();
    assert!(ll.starts_with("fe80::"), "{}", uplink(&d));
    assert!(sb.ok(
        &up,
        &format!("ip -6 route add fd00:50::/64 via {ll} dev {lan}")
    ));
    assert!(
        wait_until(Duration::from_secs(20), || slaac(&sb, &a, &ta)
            .starts_with("fd00:50::")),
        "no SLAAC address"
    );
    let a6 = slaac(&sb, &a, &ta);
    sb.spawn(
        &up,
        std::path::Path::new("/usr/bin/python3"),
        &["-m", "http.server", "8080", "--bind", "2001:db8:1::1"],
        "http6.log",
    )
    .unwrap();

    // Ping and HTTP reach the upstream, which sees the app's own address.
    let reach = |sb: &Sandbox| {
        wait_until(Duration::from_secs(10), || {
            sb.ok(&a, "ping -6 -c 1 -W 1 2001:db8:1::1")
        })
    };
    assert!(
        reach(&sb),
        "ping through the configured router\n{}",
        router(&d)
    );
    assert!(
        wait_until(Duration::from_secs(10), || sb.ok(
            &a,
            "curl -sf -m 3 -o /dev/null 'http://[2001:db8:1::1]:8080/'"
        )),
        "HTTP over IPv6"
    );
    let log = sb.log("http6.log");
    assert!(
        log.contains(&a6),
        "the server saw {a6}, untranslated:\n{log}"
    );
    assert_eq!(uplink(&d)["gateway6"], up_ll.as_str());
    let c = router(&d)["counters"].clone();
    assert!(c["ipv6_routed_out"].as_u64().unwrap_or(0) >= 2, "{c}");
    assert!(c["ipv6_routed_in"].as_u64().unwrap_or(0) >= 2, "{c}");

    // Without a configured router, the one advertising itself upstream is used.
    let f = write_file(&sb, "ra.yaml", &config(""));
    let out = apply(&sb, &d, &f, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No router is known until one advertises itself.
    assert!(
        wait_until(Duration::from_secs(5), || uplink(&d)["gateway6"].is_null()),
        "the configured router is forgotten: {}",
        uplink(&d)
    );
    let mac = sb.out(&up, &format!("cat /sys/class/net/{lan}/address"));
    sb.spawn(
        &up,
        std::path::Path::new("/usr/bin/python3"),
        &["-c", RA_SENDER, &lan, &mac],
        "ra.log",
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || uplink(&d)["gateway6"]
            == up_ll.as_str()),
        "the advertised router is used: {}",
        uplink(&d)
    );
    assert!(
        reach(&sb),
        "ping through the advertised router\n{}",
        router(&d)
    );
}
