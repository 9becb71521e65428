//! NAT of a local NI against real clients and servers: apps reach an
//! upstream web server, resolver and host under the router's uplink address
//! (TCP, UDP, ICMP), many short connections all succeed and their sessions
//! drain, a port map reaches an app from the LAN and from another app
//! (hairpin), and sessions move to the other uplink on failover.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The NI of every lab: apps `a` (HTTP server on port 80, mapped from
/// uplink port 8081) and `b`.
fn config(p: &str, ports: &str, uplinks: &str, extra: &str) -> String {
    format!(
        "version: 1
ports:
{ports}network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, dhcp_range: 10.50.0.100-10.50.0.199, uplinks: [{uplinks}], probe: {{ target: gateway, interval: 1, failures: 2 }}{extra} }}
apps:
  - name: a
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43101
    interfaces:
      - {{ ni: lan, tap: {p}-a, netns: {p}-a, port_maps: [{{ protocol: tcp, uplink_port: 8081, app_port: 80 }}] }}
  - name: b
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43102
    interfaces: [{{ ni: lan, tap: {p}-b, netns: {p}-b }}]
"
    )
}

struct Lab {
    sb: Sandbox,
    d: Daemon,
    a: String,
    b: String,
}

/// Upstream namespace `up{i}` on LAN `net`.1 with dnsmasq (DHCP for the
/// router's uplink address, DNS) and an HTTP server on port 8080 whose log
/// shows each client's address.
fn upstream(sb: &mut Sandbox, dev: &str, i: u8, net: &str) -> String {
    let p = sb.prefix().to_string();
    let up = sb.ns(&format!("up{i}")).unwrap();
    sb.veth(dev, &format!("{p}-n{i}"), &up, &format!("{p}-l{i}"))
        .unwrap();
    let name = format!("--address=/upstream.example/{net}.1");
    lan_dnsmasq(
        sb,
        &up,
        &format!("{p}-l{i}"),
        net,
        &format!("up{i}"),
        &[&name],
    );
    sb.spawn(
        &up,
        Path::new("/usr/bin/python3"),
        &["-m", "http.server", "8080", "--bind", &format!("{net}.1")],
        &format!("http{i}.log"),
    )
    .unwrap();
    up
}

fn lab(p: &str, two_uplinks: bool) -> (Lab, Vec<String>) {
    lab_with(p, two_uplinks, "")
}

/// A lab whose NI has `extra` fields (", mtu: 1400").
fn lab_with(p: &str, two_uplinks: bool, extra: &str) -> (Lab, Vec<String>) {
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let a = sb.ns("a").unwrap();
    let b = sb.ns("b").unwrap();
    let mut ups = vec![upstream(&mut sb, &dev, 1, "192.0.2")];
    let (ports, uplinks) = if two_uplinks {
        ups.push(upstream(&mut sb, &dev, 2, "198.51.100"));
        (
            format!(
                "  - {{ name: wan1, device: {p}-n1, cost: 0 }}\n  - {{ name: wan2, device: {p}-n2, cost: 10 }}\n"
            ),
            "wan1, wan2",
        )
    } else {
        (format!("  - {{ name: wan1, device: {p}-n1 }}\n"), "wan1")
    };
    let d = start(&mut sb, &dev, &config(p, &ports, uplinks, extra), "nsw");
    for (ns, tap) in [(&a, "a"), (&b, "b")] {
        assert!(
            sb.ok(
                ns,
                &format!("udhcpc -i {p}-{tap} -n -q -t 10 -T 1 >/dev/null 2>&1")
            ),
            "lease for {tap}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(15), || active(&d).is_some()),
        "no active uplink: {}",
        d.status()["network_instances"][0]["uplinks"]
    );
    (Lab { sb, d, a, b }, ups)
}

fn ni(d: &Daemon) -> serde_json::Value {
    d.status()["network_instances"][0].clone()
}

fn active(d: &Daemon) -> Option<(String, String)> {
    let u = ni(d)["uplinks"].clone();
    u.as_array()?.iter().find(|u| u["active"] == true).map(|u| {
        let addr = u["address"].as_str().unwrap_or("").split('/').next();
        (
            u["port"].as_str().unwrap_or("").to_string(),
            addr.unwrap_or("").to_string(),
        )
    })
}

fn sessions(d: &Daemon) -> u64 {
    ni(d)["nat_sessions"].as_u64().unwrap_or(u64::MAX)
}

fn curl(sb: &Sandbox, ns: &str, url: &str) -> bool {
    sb.ok(ns, &format!("curl -sf -m 5 -o /dev/null {url}"))
}

#[test]
fn apps_reach_the_upstream_under_the_uplink_address() {
    if !root_or_skip("apps_reach_the_upstream_under_the_uplink_address") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "dig", "python3"]);
    let (l, _ups) = lab("nswnat", false);
    let (sb, d) = (&l.sb, &l.d);
    let (_, ext) = active(d).unwrap();

    // TCP: the server sees the router's uplink address.
    assert!(curl(sb, &l.a, "http://192.0.2.1:8080/"), "curl through NAT");
    let log = sb.log("http1.log");
    assert!(
        log.contains(&format!("{ext} - - ")),
        "the server saw {ext}:\n{log}"
    );
    assert!(!log.contains("10.50.0."), "no app address leaks:\n{log}");

    // UDP: a query to the upstream resolver itself, and ICMP echo.
    let ans = sb.out(
        &l.b,
        "dig +time=2 +tries=2 +short @192.0.2.1 -q upstream.example",
    );
    assert_eq!(ans, "192.0.2.1", "dig through NAT");
    assert!(ping(sb, &l.a, "192.0.2.1"), "ping through NAT");
    // ICMP errors find their way back: a closed UDP port is refused at once.
    let refused = sb.out(
        &l.a,
        "/usr/bin/python3 -c \"import socket; s = socket.socket(2, 2); s.settimeout(3); \
         s.connect(('192.0.2.1', 5999)); s.send(b'x'); s.recv(9)\" 2>&1 | tail -1",
    );
    assert!(
        refused.contains("ConnectionRefusedError"),
        "port unreachable reached the app: {refused}"
    );
    assert!(ping(sb, &l.b, "192.0.2.1"), "ping from a second app");

    // Many short connections at once: all succeed, and the sessions drain.
    let t0 = Instant::now();
    let ok = sb.out(
        &l.a,
        "seq 2000 | xargs -P 8 -I{} curl -s -m 10 -o /dev/null -w '%{http_code}\\n' \
         http://192.0.2.1:8080/ | grep -c '^200$'",
    );
    eprintln!("2000 curls in {:?}", t0.elapsed());
    assert_eq!(ok, "2000", "every connection succeeded");
    let c = &ni(d)["router"]["counters"];
    assert!(c["nat_out"].as_u64().unwrap_or(0) >= 2000 * 5, "{c}");
    assert_eq!(c["nat_table_full"], 0, "{c}");
    assert!(
        wait_until(Duration::from_secs(30), || sessions(d) <= 4),
        "closed sessions expire: {} left",
        sessions(d)
    );
}

#[test]
fn a_port_map_reaches_the_app_from_the_lan_and_from_another_app() {
    if !root_or_skip("a_port_map_reaches_the_app_from_the_lan_and_from_another_app") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "python3"]);
    let (mut l, ups) = lab("nswmap", false);
    let a = l.a.clone();
    l.sb.spawn(
        &a,
        Path::new("/usr/bin/python3"),
        &["-m", "http.server", "80"],
        "app-a.log",
    )
    .unwrap();
    let (_, ext) = active(&l.d).unwrap();
    let url = format!("http://{ext}:8081/");
    assert!(
        wait_until(Duration::from_secs(5), || curl(&l.sb, &ups[0], &url)),
        "the port map from the LAN"
    );
    assert!(
        l.sb.log("app-a.log").contains("192.0.2.1 - - "),
        "the app sees the LAN host's own address:\n{}",
        l.sb.log("app-a.log")
    );
    assert!(curl(&l.sb, &l.b, &url), "hairpin from app b");
    // The router itself is not reachable on other ports.
    assert!(!curl(&l.sb, &ups[0], &format!("http://{ext}:80/")));
}

#[test]
fn sessions_leave_a_dead_uplink_and_new_ones_use_the_other() {
    if !root_or_skip("sessions_leave_a_dead_uplink_and_new_ones_use_the_other") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "python3"]);
    let (l, ups) = lab("nswnfo", true);
    let (sb, d) = (&l.sb, &l.d);
    assert!(
        wait_until(Duration::from_secs(10), || active(d)
            .is_some_and(|a| a.0 == "wan1")),
        "wan1 active"
    );
    assert!(curl(sb, &l.a, "http://192.0.2.1:8080/"), "via wan1");
    // A UDP session (a long-lived flow) exists on wan1.
    assert!(sb.ok(
        &l.a,
        "dig +time=2 +tries=1 +short @192.0.2.1 -q upstream.example >/dev/null"
    ));
    assert!(sessions(d) >= 1);

    sb.sh(&ups[0], &format!("ip link set {}-l1 down", sb.prefix()));
    assert!(
        wait_until(Duration::from_secs(5), || active(d)
            .is_some_and(|a| a.0 == "wan2")),
        "failover to wan2"
    );
    assert!(
        wait_until(Duration::from_secs(3), || sessions(d) == 0),
        "sessions of the dead uplink are dropped: {}",
        sessions(d)
    );
    let (_, ext2) = active(d).unwrap();
    assert!(curl(sb, &l.b, "http://198.51.100.1:8080/"), "via wan2");
    let log = sb.log("http2.log");
    assert!(log.contains(&format!("{ext2} - - ")), "{log}");

    sb.sh(&ups[0], &format!("ip link set {}-l1 up", sb.prefix()));
    assert!(
        wait_until(Duration::from_secs(8), || active(d)
            .is_some_and(|a| a.0 == "wan1")),
        "back to wan1"
    );
    assert!(curl(sb, &l.a, "http://192.0.2.1:8080/"), "via wan1 again");
}

#[test]
fn one_app_cannot_take_every_nat_port() {
    if !root_or_skip("one_app_cannot_take_every_nat_port") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "dig", "python3"]);
    let (l, _ups) = lab("nswnq", false);
    let (sb, d) = (&l.sb, &l.d);
    assert!(ping(sb, &l.a, "192.0.2.1"), "ping through NAT");
    // App a opens 10000 UDP flows, more than its quota of 8192 sessions
    // (paced, so that its TAP's queue never overflows).
    let sent = sb.out(
        &l.a,
        "/usr/bin/python3 -c \"
import socket, time
n = 0
for port in range(20000, 30000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('', port))
    n += s.sendto(b'x', ('192.0.2.1', 9)) > 0
    s.close()
    if port % 100 == 0:
        time.sleep(0.01)
print(n)\"",
    );
    assert_eq!(sent, "10000", "the app sent its flows");
    let quota = || {
        ni(d)["router"]["counters"]["nat_app_quota"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(5), || quota() >= 700),
        "flows over the quota are refused and counted: {}",
        ni(d)["router"]["counters"]
    );
    assert!(sessions(d) <= 8192 + 8, "{} sessions", sessions(d));
    // The other app still gets new sessions, TCP and UDP.
    let ans = sb.out(
        &l.b,
        "dig +time=2 +tries=2 +short @192.0.2.1 -q upstream.example",
    );
    assert_eq!(ans, "192.0.2.1", "dig from app b through NAT");
    assert!(curl(sb, &l.b, "http://192.0.2.1:8080/"), "curl from app b");
}

#[test]
fn dhcp_gives_ntp_routes_and_mtu_and_the_nat_clamps_the_mss() {
    if !root_or_skip("dhcp_gives_ntp_routes_and_mtu_and_the_nat_clamps_the_mss") {
        return;
    }
    need(&[
        "dnsmasq", "udhcpc", "dhclient", "curl", "tcpdump", "python3",
    ]);
    let extra = ", ntp: [192.0.2.123], mtu: 1400, static_routes: [{ dst: 10.99.0.0/16, gateway: 10.50.0.5 }, { dst: 198.18.0.0/15, gateway: 192.0.2.254 }]";
    let (mut l, ups) = lab_with("nswopt", false, extra);
    let p = l.sb.prefix().to_string();
    // dhclient (Debian's script) applies the options it is given.
    let lf = l.sb.path("dhclient.leases");
    let pf = l.sb.path("dhclient.pid");
    let b = l.b.clone();
    l.sb.sh(&b, &format!("ip addr flush dev {p}-b"));
    assert!(
        l.sb.ok(
            &b,
            &format!(
                "timeout 30 dhclient -1 -4 -pf {} -lf {} {p}-b >/dev/null 2>&1",
                pf.display(),
                lf.display()
            )
        ),
        "dhclient"
    );
    let leases = std::fs::read_to_string(&lf).unwrap_or_default();
    assert!(leases.contains("ntp-servers 192.0.2.123"), "{leases}");
    assert!(leases.contains("interface-mtu 1400"), "{leases}");
    let routes = l.sb.out(&b, "ip route");
    assert!(
        routes.contains("10.99.0.0/16 via 10.50.0.5"),
        "{routes}\n{leases}"
    );
    assert!(routes.contains("198.18.0.0/15 via 10.50.0.1"), "{routes}");
    assert!(routes.contains("default via 10.50.0.1"), "{routes}");
    assert!(
        l.sb.out(&b, &format!("cat /sys/class/net/{p}-b/mtu")) == "1400",
        "the MTU was applied"
    );
    l.sb.sh(
        &b,
        &format!("dhclient -x -pf {} >/dev/null 2>&1", pf.display()),
    );

    // The NAT clamps a SYN that announces more than the NI's MTU allows.
    let up = ups[0].clone();
    let a = l.a.clone();
    assert!(l.sb.ok(&a, &format!("ip link set {p}-a mtu 1500")));
    let cap = capture(
        &mut l.sb,
        &up,
        &format!("{p}-l1"),
        "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn or arp",
        "syn.txt",
    );
    assert!(
        curl(&l.sb, &a, "http://192.0.2.1:8080/"),
        "curl through NAT"
    );
    // A route beyond the uplink: the router asks for its gateway there.
    l.sb.sh(&a, "ping -c 1 -W 1 198.18.0.1 >/dev/null 2>&1");
    let seen = captured(&mut l.sb, cap, "syn.txt");
    assert!(seen.contains("mss 1360"), "clamped SYN:\n{seen}");
    assert!(!seen.contains("mss 1460"), "no SYN unclamped:\n{seen}");
    assert!(
        seen.contains("who-has 192.0.2.254"),
        "the static route's gateway:\n{seen}"
    );
}

#[test]
fn flows_are_recorded_for_apps_without_acls_unless_turned_off() {
    if !root_or_skip("flows_are_recorded_for_apps_without_acls_unless_turned_off") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "python3"]);
    let p = "nswflo";
    let (l, _ups) = lab(p, false);
    let (sb, d) = (&l.sb, &l.d);
    let get = |port: u16| {
        wait_until(Duration::from_secs(15), || {
            curl(
                sb,
                &l.a,
                &format!("--local-port {port} http://192.0.2.1:8080/"),
            )
        })
    };
    let recorded = |port: u16| {
        flow_records(&d.state)
            .iter()
            .any(|r| r["sport"] == port && r["app"] == "a" && r["dport"] == 8080)
    };
    assert!(get(41000), "curl through NAT");
    assert!(
        wait_until(Duration::from_secs(10), || recorded(41000)),
        "a record for an interface without ACLs: {:?}",
        flow_records(&d.state)
    );
    let r = flow_records(&d.state)
        .into_iter()
        .find(|r| r["sport"] == 41000)
        .unwrap_or_default();
    assert_eq!(r["action"], "allow", "{r}");
    assert!(r["tx_pkts"].as_u64().unwrap_or(0) >= 3, "{r}");

    // flow_log: false turns them off; back on, they come again.
    let ports = format!("  - {{ name: wan1, device: {p}-n1 }}\n");
    for (extra, port) in [(", flow_log: false", 42000), ("", 43000)] {
        let f = write_file(sb, "next.yaml", &config(p, &ports, "wan1", extra));
        let out = apply(sb, d, &f, "");
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(get(port), "curl after the apply");
    }
    assert!(
        wait_until(Duration::from_secs(10), || recorded(43000)),
        "records again"
    );
    assert!(!recorded(42000), "no record while flow_log was false");
}
