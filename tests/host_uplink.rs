//! The `host` uplink (SPEC §5.2) against real clients and servers: the
//! device namespace reaches the upstream only at L3, through a TUN link
//! such as a VPN or an LTE modem gives (no Ethernet, no second MAC), so
//! the apps' traffic can only leave through the host's own sockets. curl
//! (a large download, checked), dig through the relay, ping, iperf3 TCP
//! and UDP; the host itself refused; failover between a NIC uplink and
//! the host uplink; a flood of flows held by the app's quota.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

const TUN_LINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tun_link.py");
/// The upstream's servers, behind the tunnel's far end 100.64.0.1.
const SERVER: &str = "203.0.113.10";

struct Lab {
    sb: Sandbox,
    d: Daemon,
    dev: String,
    up: String,
    a: String,
    b: String,
}

/// App a's port maps on the host: its HTTP server (80) from every host
/// address and from loopback only, its UDP echo server (7).
const MAPS: &str = "{ protocol: tcp, uplink_port: 8081, app_port: 80 }, { protocol: tcp, uplink_port: 8082, app_port: 80, listen: 127.0.0.1 }, { protocol: udp, uplink_port: 7007, app_port: 7 }";

/// App b's rules: everything, and by name the host's own listener on
/// 100.64.0.2:9999, which the host uplink refuses to apps without such a rule.
const ACLS_B: &str = "{ match: { ip: 100.64.0.2/32, protocol: tcp, fport: 9999 }, action: allow }, { match: { ip: 0.0.0.0/0 }, action: allow }";

fn config(p: &str, ports: &str, uplinks: &str, extra: &str) -> String {
    format!(
        "version: 1
ports:
{ports}network_instances:
  - {{ name: lan, type: local, subnet: 10.60.0.0/24, dhcp_range: 10.60.0.100-10.60.0.199, uplinks: [{uplinks}], probe: {{ target: gateway, interval: 1, failures: 2 }}{extra} }}
apps:
  - name: a
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43201
    interfaces: [{{ ni: lan, tap: {p}-a, netns: {p}-a, port_maps: [{MAPS}] }}]
  - name: b
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43202
    interfaces: [{{ ni: lan, tap: {p}-b, netns: {p}-b, acls: [{ACLS_B}] }}]
"
    )
}

/// The iperf3 servers' ports, one per run of `apps_reach_…`.
const IPERF_PORTS: [u16; 3] = [5201, 5202, 5203];

/// The L3-only upstream: a TUN link from `dev` (100.64.0.2, its default
/// route, no gateway) to `up` (100.64.0.1), where an HTTP server, an
/// iperf3 server and dnsmasq answer on 203.0.113.10 and 100.64.0.1.
fn tunnel(sb: &mut Sandbox, dev: &str) -> String {
    need(&["iperf3", "ss"]);
    let p = sb.prefix().to_string();
    let up = sb.ns("up").unwrap();
    let (near, far) = (format!("{p}-t0"), format!("{p}-t1"));
    sb.spawn(
        dev,
        Path::new("/usr/bin/python3"),
        &[TUN_LINK, &near, &far, &up],
        "tun.log",
    )
    .unwrap();
    wait_log(sb, "tun.log", "ready", Duration::from_secs(10));
    assert!(sb.ok(dev, &format!("ip addr add 100.64.0.2/30 dev {near} && ip link set {near} up && ip route add default dev {near}")));
    assert!(sb.ok(&up, &format!("ip addr add 100.64.0.1/30 dev {far} && ip link set {far} up && ip addr add {SERVER}/32 dev lo")));
    let www = sb.path("www");
    std::fs::create_dir_all(&www).unwrap();
    assert!(sb.ok(
        &up,
        &format!("head -c 20000000 /dev/urandom > {}/big", www.display())
    ));
    let dir = www.to_string_lossy().into_owned();
    sb.spawn(
        &up,
        Path::new("/usr/bin/python3"),
        &["-m", "http.server", "8080", "--directory", &dir],
        "http.log",
    )
    .unwrap();
    // One iperf3 server per run below (a server just done with a run may
    // still call itself busy), bound to the server's address: its UDP
    // answers must come from the address the host's connected socket
    // sent to.
    for port in IPERF_PORTS {
        sb.spawn(
            &up,
            Path::new("/usr/bin/iperf3"),
            &["-s", "-B", SERVER, "-p", &port.to_string()],
            &format!("iperf-{port}.log"),
        )
        .unwrap();
        wait_listening(sb, &up, port);
    }
    let leases = sb.path("up.leases");
    sb.spawn(
        &up,
        Path::new("/usr/sbin/dnsmasq"),
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=100.64.0.1",
            "--bind-interfaces",
            &format!("--dhcp-leasefile={}", leases.display()),
            "--pid-file",
            &format!("--address=/upstream.example/{SERVER}"),
        ],
        "dns.log",
    )
    .unwrap();
    // The daemon's namespace's resolver is the tunnel's far end.
    std::fs::write(
        format!("/etc/netns/{dev}/resolv.conf"),
        "nameserver 100.64.0.1\n",
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || sb.ok(
            dev,
            &format!("curl -sf -m 2 -o /dev/null http://{SERVER}:8080/")
        )),
        "the upstream answers the device"
    );
    up
}

fn lab(p: &str, ports: &str, uplinks: &str, extra: &str) -> Lab {
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let a = sb.ns("a").unwrap();
    let b = sb.ns("b").unwrap();
    let up = tunnel(&mut sb, &dev);
    let ports = ports.replace("{p}", p);
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
    Lab {
        sb,
        d,
        dev,
        up,
        a,
        b,
    }
}

fn uplink(d: &Daemon, port: &str) -> serde_json::Value {
    let ups = d.status()["network_instances"][0]["uplinks"].clone();
    let found = ups
        .as_array()
        .and_then(|u| u.iter().find(|u| u["port"] == port).cloned());
    found.unwrap_or_default()
}

fn counter(d: &Daemon, name: &str) -> u64 {
    d.status()["network_instances"][0]["router"]["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

fn active(d: &Daemon, port: &str) -> bool {
    uplink(d, port)["active"] == true
}

#[test]
fn apps_reach_an_l3_only_upstream_through_the_host() {
    if !root_or_skip("apps_reach_an_l3_only_upstream_through_the_host") {
        return;
    }
    need(&[
        "dnsmasq", "udhcpc", "curl", "dig", "iperf3", "ping", "python3",
    ]);
    let mut l = lab("nswhu", "", "host", "");
    // A listener on the host itself, which the apps must not reach.
    let dev = l.dev.clone();
    l.sb.spawn(
        &dev,
        Path::new("/usr/bin/python3"),
        &["-m", "http.server", "9999"],
        "devhttp.log",
    )
    .unwrap();
    // An upstream server whose answers are larger than the MTU.
    let up = l.up.clone();
    l.sb.spawn(
        &up,
        Path::new("/usr/bin/python3"),
        &["-c", BIG_ANSWERS],
        "big.log",
    )
    .unwrap();
    let (sb, d) = (&l.sb, &l.d);
    assert!(
        wait_until(Duration::from_secs(10), || active(d, "host")),
        "host uplink active: {}",
        uplink(d, "host")
    );
    let u = uplink(d, "host");
    assert_eq!(u["address"], "100.64.0.2/32", "{u}");

    // TCP: a 20 MB download arrives whole, from the host's address.
    let want = sb.out(
        &l.up,
        &format!("sha256sum {}/big | cut -d' ' -f1", sb.path("www").display()),
    );
    let got = sb.out(
        &l.a,
        &format!("curl -sf -m 30 http://{SERVER}:8080/big | sha256sum | cut -d' ' -f1"),
    );
    assert_eq!(got, want, "the download is whole");
    assert_eq!(
        from_host(sb, "/big"),
        1,
        "the server sees the host:\n{}",
        sb.log("http.log")
    );

    // DNS through the relay to the namespace's resolver, over UDP and TCP.
    let a_rec = sb.out(
        &l.a,
        "dig +time=2 +tries=2 +short @10.60.0.1 upstream.example",
    );
    assert_eq!(a_rec, SERVER);
    let a_tcp = sb.out(
        &l.a,
        "dig +tcp +time=2 +tries=2 +short @10.60.0.1 upstream.example",
    );
    assert_eq!(a_tcp, SERVER);

    // ICMP echo: a raw socket here (ping sockets are off by default) ...
    assert!(
        sb.ok(&l.a, &format!("ping -c 3 -i 0.2 -W 2 {SERVER} >/dev/null")),
        "ping through a raw socket"
    );
    // ... and a ping socket where the group range allows one.
    assert!(sb.ok(
        &l.dev,
        "sysctl -qw net.ipv4.ping_group_range='0 2147483647'"
    ));
    assert!(
        sb.ok(&l.b, &format!("ping -c 3 -i 0.2 -W 2 {SERVER} >/dev/null")),
        "ping through a ping socket"
    );

    // iperf3 TCP both ways and UDP (its datagrams and the control connection).
    let runs = ["-t 2", "-t 2 -R", "-u -b 20M -l 1200 -t 2"];
    for (args, port) in runs.into_iter().zip(IPERF_PORTS) {
        iperf3_moves_data(sb, &l.a, &format!("-c {SERVER} -p {port} {args}"));
    }
    let st = d.status();
    let counters = &st["network_instances"][0]["router"]["counters"];
    assert!(counter(d, "host_udp_opened") >= 1, "{counters}");
    assert!(counter(d, "host_tcp_opened") >= 3, "{counters}");
    assert!(uplink(d, "host")["sessions"].as_u64().is_some());

    // The host itself is not reachable through it: its own addresses and
    // a listener there.
    assert!(wait_until(Duration::from_secs(5), || sb.ok(
        &l.dev,
        "curl -sf -m 1 -o /dev/null http://100.64.0.2:9999/"
    )));
    let before = counter(d, "host_local_refused");
    assert!(
        !sb.ok(&l.a, "curl -sf -m 2 -o /dev/null http://100.64.0.2:9999/"),
        "the host's listener is refused"
    );
    assert!(counter(d, "host_local_refused") > before);
    // Unless a rule of the app names it.
    assert!(
        sb.ok(&l.b, "curl -sf -m 2 -o /dev/null http://100.64.0.2:9999/"),
        "an allow rule for the host's address lets app b through"
    );
    // A whole prefix routed `local` is the host too.
    assert!(sb.ok(&l.dev, "ip route add local 10.9.0.0/24 dev lo"));
    assert!(wait_until(Duration::from_secs(5), || sb.ok(
        &l.dev,
        "curl -sf -m 1 -o /dev/null http://10.9.0.77:9999/"
    )));
    // (The host's prefixes are read again each second.)
    let before = counter(d, "host_local_refused");
    assert!(
        wait_until(Duration::from_secs(5), || {
            !sb.ok(&l.a, "curl -sf -m 1 -o /dev/null http://10.9.0.77:9999/")
                && counter(d, "host_local_refused") > before
        }),
        "a local prefix is refused"
    );

    // A 3000-byte answer reaches the app in fragments, whole.
    let got = sb.out(
        &l.a,
        &format!("python3 -c \"{UDP_ASK}\" {SERVER} 7008 | wc -c"),
    );
    assert_eq!(got, "3001", "the large answer (and a newline)");
}

/// How many requests for `path` the upstream HTTP server logged from the
/// host's address.
fn from_host(sb: &Sandbox, path: &str) -> usize {
    let log = sb.log("http.log");
    let get = format!("\"GET {path} HTTP");
    (log.lines())
        .filter(|l| l.starts_with("100.64.0.2 - - ") && l.contains(&get))
        .count()
}

/// Runs an iperf3 client in `ns` and asserts that its report has no error
/// and that the receiver got data (iperf3 3.12 exits 0 on an error with
/// `-J`, so the exit code alone proves nothing).
fn iperf3_moves_data(sb: &Sandbox, ns: &str, args: &str) {
    let out = sb.out(ns, &format!("iperf3 {args} -J"));
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("iperf3 {args}: not JSON ({e}): {out}"));
    assert!(report["error"].is_null(), "iperf3 {args}: {out}");
    let end = &report["end"];
    let received = if args.contains("-u") {
        (end["sum"]["packets"].as_u64().unwrap_or(0))
            .saturating_sub(end["sum"]["lost_packets"].as_u64().unwrap_or(0))
    } else {
        end["sum_received"]["bytes"].as_u64().unwrap_or(0)
    };
    assert!(received > 0, "iperf3 {args}: nothing arrived: {out}");
}

/// An upstream UDP server on 203.0.113.10:7008 that answers anything with
/// 3000 bytes (bound to its address, so that answers come from it).
const BIG_ANSWERS: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('203.0.113.10',7008))\nwhile True:\n    d,a=s.recvfrom(2048)\n    s.sendto(b'x'*3000,a)\n";

/// A UDP echo server on port 7 of the namespace it runs in.
const UDP_ECHO: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',7))\nwhile True:\n    d,a=s.recvfrom(2048)\n    s.sendto(d,a)\n";
/// Sends one datagram and prints the answer.
const UDP_ASK: &str = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'marco',(sys.argv[1],int(sys.argv[2])))\nprint(s.recvfrom(65536)[0].decode())\n";

#[test]
fn port_maps_listen_on_the_host() {
    if !root_or_skip("port_maps_listen_on_the_host") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "python3"]);
    let mut l = lab("nswhm", "", "host", "");
    let a = l.a.clone();
    l.sb.spawn(
        &a,
        Path::new("/usr/bin/python3"),
        &["-m", "http.server", "80"],
        "app-a.log",
    )
    .unwrap();
    l.sb.spawn(
        &a,
        Path::new("/usr/bin/python3"),
        &["-c", UDP_ECHO],
        "echo.log",
    )
    .unwrap();
    let (sb, d) = (&l.sb, &l.d);
    assert!(wait_until(Duration::from_secs(10), || active(d, "host")));
    assert!(wait_until(Duration::from_secs(5), || sb
        .ok(&a, "curl -sf -m 1 -o /dev/null http://127.0.0.1:80/")));

    // From the upstream: the app sees the client's own address.
    assert!(
        wait_until(Duration::from_secs(5), || sb
            .ok(&l.up, "curl -sf -m 2 -o /dev/null http://100.64.0.2:8081/")),
        "the port map from the upstream"
    );
    let log = sb.log("app-a.log");
    assert!(
        log.contains("100.64.0.1 - - "),
        "the app sees the client:\n{log}"
    );
    // From the host itself: the app sees the gateway.
    assert!(
        sb.ok(&l.dev, "curl -sf -m 2 -o /dev/null http://127.0.0.1:8081/"),
        "from the host"
    );
    let log = sb.log("app-a.log");
    assert!(
        log.contains("10.60.0.1 - - "),
        "a host client is the gateway:\n{log}"
    );
    // `listen: 127.0.0.1`: the host only.
    assert!(
        sb.ok(&l.dev, "curl -sf -m 2 -o /dev/null http://127.0.0.1:8082/"),
        "loopback map from the host"
    );
    assert!(
        !sb.ok(&l.up, "curl -sf -m 2 -o /dev/null http://100.64.0.2:8082/"),
        "loopback map not from outside"
    );

    // UDP: the echo comes back to the client through the listener.
    let ask = |ns: &str, ip: &str| sb.out(ns, &format!("python3 -c \"{UDP_ASK}\" {ip} 7007"));
    assert_eq!(
        ask(&l.up, "100.64.0.2"),
        "marco",
        "UDP port map from the upstream"
    );
    assert_eq!(
        ask(&l.dev, "127.0.0.1"),
        "marco",
        "UDP port map from the host"
    );
}

#[test]
fn a_nic_uplink_fails_over_to_the_host_and_back() {
    if !root_or_skip("a_nic_uplink_fails_over_to_the_host_and_back") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "python3"]);
    let p = "nswhf";
    // The NIC's LAN: a second upstream with DHCP, reached over a veth.
    let mut l = {
        let mut sb = Sandbox::new(p).unwrap();
        let dev = sb.ns("dev").unwrap();
        let a = sb.ns("a").unwrap();
        let b = sb.ns("b").unwrap();
        let lan = sb.ns("lan").unwrap();
        sb.veth(&dev, &format!("{p}-n1"), &lan, &format!("{p}-l1"))
            .unwrap();
        lan_dnsmasq(&mut sb, &lan, &format!("{p}-l1"), "192.0.2", "lan", &[]);
        sb.spawn(
            &lan,
            Path::new("/usr/bin/python3"),
            &["-m", "http.server", "8080", "--bind", "192.0.2.1"],
            "lanhttp.log",
        )
        .unwrap();
        let up = tunnel(&mut sb, &dev);
        let ports = format!("  - {{ name: wan1, device: {p}-n1, cost: 0 }}\n");
        let d = start(
            &mut sb,
            &dev,
            &config(p, &ports, "wan1, host", ", host_cost: 100"),
            "nsw",
        );
        for (ns, tap) in [(&a, "a"), (&b, "b")] {
            assert!(sb.ok(
                ns,
                &format!("udhcpc -i {p}-{tap} -n -q -t 10 -T 1 >/dev/null 2>&1")
            ));
        }
        Lab {
            sb,
            d,
            dev,
            up,
            a,
            b,
        }
    };
    let lan = format!("{p}-lan");
    assert!(
        wait_until(Duration::from_secs(15), || active(&l.d, "wan1")),
        "wan1 active: {}",
        l.d.status()["network_instances"][0]["uplinks"]
    );
    assert!(
        uplink(&l.d, "host")["healthy"] == true,
        "host healthy as standby"
    );
    // Through wan1 the server sees the NIC uplink's own address.
    assert!(l.sb.ok(&l.a, "curl -sf -m 5 -o /dev/null http://192.0.2.1:8080/"));

    l.sb.sh(&lan, &format!("ip link set {p}-l1 down"));
    assert!(
        wait_until(Duration::from_secs(6), || active(&l.d, "host")),
        "failover to host"
    );
    let before = from_host(&l.sb, "/");
    assert!(
        l.sb.ok(
            &l.a,
            &format!("curl -sf -m 5 -o /dev/null http://{SERVER}:8080/")
        ),
        "via the host"
    );
    assert_eq!(
        from_host(&l.sb, "/"),
        before + 1,
        "{}",
        l.sb.log("http.log")
    );

    l.sb.sh(&lan, &format!("ip link set {p}-l1 up"));
    assert!(
        wait_until(Duration::from_secs(10), || active(&l.d, "wan1")),
        "back to wan1"
    );
    assert!(
        l.sb.ok(&l.b, "curl -sf -m 5 -o /dev/null http://192.0.2.1:8080/"),
        "via wan1 again"
    );
    let _ = (&mut l.up, &l.dev);
}

#[test]
fn a_flood_of_flows_hits_the_apps_quota_and_spares_the_others() {
    if !root_or_skip("a_flood_of_flows_hits_the_apps_quota_and_spares_the_others") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "python3"]);
    let l = lab("nswhq", "", "host", "");
    let (sb, d) = (&l.sb, &l.d);
    assert!(wait_until(Duration::from_secs(10), || active(d, "host")));
    // App a sends UDP to 3000 ports: more than its quota of flows.
    let flood = format!(
        "python3 -c \"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor p in range(20000,23000): s.sendto(b'x',('{SERVER}',p))\""
    );
    assert!(sb.ok(&l.a, &flood));
    assert!(
        wait_until(Duration::from_secs(5), || counter(d, "host_quota") > 0),
        "quota hit"
    );
    let sessions = uplink(d, "host")["sessions"].as_u64().unwrap_or(u64::MAX);
    assert!(sessions <= 1024 + 8, "flows bounded per app: {sessions}");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid))
        .map(|r| r.count())
        .unwrap_or(usize::MAX);
    assert!(fds < 1400, "descriptors bounded: {fds}");
    // App b still gets through.
    assert!(
        sb.ok(
            &l.b,
            &format!("curl -sf -m 5 -o /dev/null http://{SERVER}:8080/")
        ),
        "the other app"
    );

    // A connect that never completes (nothing answers 203.0.113.99) is
    // given up after 10 s: the app hears a reset, not its own timeout.
    let start = std::time::Instant::now();
    let code = sb.out(
        &l.b,
        "curl -s -o /dev/null -m 25 http://203.0.113.99/; echo $?",
    );
    let took = start.elapsed();
    assert_eq!(code, "7", "curl's connect is refused, not timed out (28)");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(14),
        "given up after {took:?}"
    );
}
