//! Local network instances, part 1: real DHCP clients get leases with the
//! right options from niswitch's router, names resolve on the gateway (local,
//! static, wildcard, NXDOMAIN, forwarded to a dnsmasq upstream), leases
//! survive kill -9, and garbage DHCP/DNS is counted and survived.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

const P: &str = "nswloc";

/// A hundred addresses for one name: more than a UDP answer carries.
const MANY: u8 = 100;

fn many_records() -> String {
    (1..=MANY)
        .map(|i| format!("        - {{ name: many.example, ip: 10.50.1.{i} }}\n"))
        .collect()
}

fn config(p: &str) -> String {
    let app = |n: &str, u: u8, ni: &str, extra: &str| {
        format!(
            "  - {{ name: {n}, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430{u:02x}, interfaces: [{{ ni: {ni}, tap: {p}-{n}, netns: {p}-{n}{extra} }}] }}\n"
        )
    };
    format!(
        "version: 1
ports:
  - {{ name: up, device: {p}-nic }}
network_instances:
  - name: lan
    type: local
    subnet: 10.50.0.0/24
    dhcp_range: 10.50.0.100-10.50.0.199
    lease_time: 600
    dns:
      domain: lan
      records:
        - {{ name: api.cluster.example, ip: 10.50.0.10 }}
        - {{ name: \"*.apps.cluster.example\", ip: 10.50.0.11 }}
{}    uplinks: [up]
  - {{ name: gap, type: local, subnet: 10.60.0.0/24 }}
apps:
{}{}{}{}{}",
        many_records(),
        app("a", 1, "lan", ""),
        app("b", 2, "lan", ""),
        app("c", 3, "lan", ""),
        app("d", 4, "lan", ", ip: 10.50.0.20"),
        app("e", 5, "gap", ""),
    )
}

struct Lab {
    sb: Sandbox,
    d: Daemon,
    dev: String,
    ns: Vec<String>,
}

fn lab(suffix: &str) -> Lab {
    let p = format!("{P}{suffix}");
    let mut sb = Sandbox::new(&p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let up = sb.ns("up").unwrap();
    let ns: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| sb.ns(n).unwrap())
        .collect();
    sb.veth(&dev, &format!("{p}-nic"), &up, &format!("{p}-lan"))
        .unwrap();
    // The LAN's DHCP and DNS server: it leases the router's uplink address
    // and is the resolver the router learns there. It knows a name with
    // too many addresses for UDP.
    let hosts: String = (1..=MANY)
        .map(|i| format!("198.18.0.{i} big.example.net\n"))
        .collect();
    let hosts = write_file(&sb, "big.hosts", &hosts);
    lan_dnsmasq(
        &mut sb,
        &up,
        &format!("{p}-lan"),
        "192.0.2",
        "upstream",
        &[
            "--address=/upstream.example/192.0.2.99",
            &format!("--addn-hosts={}", hosts.display()),
            // It reads the file as this user: the sandbox is root's alone.
            "--user=root",
        ],
    );
    let d = start(&mut sb, &dev, &config(&p), "nsw");
    Lab { sb, d, dev, ns }
}

fn dig(sb: &Sandbox, ns: &str, args: &str) -> String {
    sb.out(ns, &format!("dig +time=2 +tries=2 @10.50.0.1 {args}"))
}

fn short(sb: &Sandbox, ns: &str, name: &str) -> String {
    dig(sb, ns, &format!("+short -q {name}"))
}

#[test]
fn clients_get_leases_options_and_names() {
    if !root_or_skip("clients_get_leases_options_and_names") {
        return;
    }
    need(&["dnsmasq", "dhcpcd", "udhcpc", "dhclient", "dig"]);
    let l = lab("o");
    let p = l.sb.prefix().to_string();
    let sb = &l.sb;
    assert!(
        sb.ok(
            &l.ns[0],
            &format!("dhcpcd -1 -4 -c /bin/true -t 20 {p}-a >/dev/null 2>&1")
        ),
        "dhcpcd"
    );
    assert!(
        sb.ok(
            &l.ns[1],
            &format!("udhcpc -i {p}-b -n -q -t 10 -T 1 >/dev/null 2>&1")
        ),
        "udhcpc"
    );
    let (pf, lf) = (sb.path("dhclient.pid"), sb.path("dhclient.leases"));
    assert!(
        sb.ok(
            &l.ns[2],
            &format!(
                "timeout 30 dhclient -1 -4 -pf {} -lf {} {p}-c >/dev/null 2>&1",
                pf.display(),
                lf.display()
            )
        ),
        "dhclient"
    );
    assert!(
        sb.ok(
            &l.ns[3],
            &format!("udhcpc -i {p}-d -n -q -t 10 -T 1 >/dev/null 2>&1")
        ),
        "fixed-IP app"
    );
    assert!(
        sb.ok(
            &l.ns[4],
            &format!("udhcpc -i {p}-e -n -q -t 10 -T 1 >/dev/null 2>&1")
        ),
        "air-gapped app"
    );
    // Stop dhclient without a RELEASE (dhclient -x would send one).
    sb.sh(&l.ns[2], &format!("kill -9 $(cat {})", pf.display()));
    sb.sh(
        &l.ns[0],
        &format!("dhcpcd -x {p}-a >/dev/null 2>&1; rm -f /var/lib/dhcpcd/{p}-a.lease*"),
    );

    let ips: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .zip(&l.ns)
        .map(|(n, ns)| ipv4_of(sb, ns, &format!("{p}-{n}")))
        .collect();
    for ip in &ips[..3] {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            ip.starts_with("10.50.0.") && (100..=199).contains(&last),
            "in range: {ips:?}"
        );
    }
    let mut uniq = ips[..3].to_vec();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 3, "distinct leases: {ips:?}");
    assert_eq!(ips[3], "10.50.0.20", "fixed IP");
    assert!(ips[4].starts_with("10.60.0."), "{ips:?}");
    // Real subnet mask, routes, DNS and domain as the clients applied them.
    assert!(
        sb.out(&l.ns[1], &format!("ip -o -4 addr show dev {p}-b"))
            .contains("/24")
    );
    assert!(
        sb.out(&l.ns[1], "ip route")
            .contains("default via 10.50.0.1"),
        "{}",
        sb.out(&l.ns[1], "ip route")
    );
    assert!(
        sb.out(&l.ns[2], "ip route")
            .contains("default via 10.50.0.1"),
        "dhclient: {}",
        sb.out(&l.ns[2], "ip route")
    );
    let resolv =
        std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", l.ns[1])).unwrap_or_default();
    assert!(
        resolv.contains("nameserver 10.50.0.1") && resolv.contains("lan"),
        "{resolv}"
    );
    let leases = std::fs::read_to_string(&lf).unwrap_or_default();
    assert!(
        leases.contains("classless-static-routes") || leases.contains("rfc3442"),
        "option 121 seen by dhclient:\n{leases}"
    );
    assert!(leases.contains("interface-mtu 1500"), "{leases}");
    // The air-gapped NI gives no router and no DNS server.
    assert!(
        !sb.out(&l.ns[4], "ip route").contains("default"),
        "{}",
        sb.out(&l.ns[4], "ip route")
    );
    let resolv =
        std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", l.ns[4])).unwrap_or_default();
    assert!(!resolv.contains("nameserver"), "{resolv}");

    // The router answers ARP and ping; apps reach each other.
    assert!(ping(sb, &l.ns[0], "10.50.0.1"));
    assert!(ping(sb, &l.ns[0], &ips[3]));

    // Names.
    let b = &l.ns[1];
    assert_eq!(
        short(sb, b, "a"),
        ips[0],
        "{}",
        l.d.status()["network_instances"][0]
    );
    assert_eq!(short(sb, b, "c.lan"), ips[2]);
    assert_eq!(short(sb, b, "d"), "10.50.0.20");
    assert_eq!(short(sb, b, "router"), "10.50.0.1");
    assert_eq!(short(sb, b, "api.cluster.example"), "10.50.0.10");
    assert_eq!(short(sb, b, "x.y.apps.cluster.example"), "10.50.0.11");
    assert!(dig(sb, b, "-q nothere").contains("status: NXDOMAIN"));
    assert!(dig(sb, b, "-q nothere.lan").contains("status: NXDOMAIN"));
    let aaaa = dig(sb, b, "-q a -t AAAA");
    assert!(
        aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0"),
        "{aaaa}"
    );
    // The router's uplink got its address from the LAN and is active; names
    // it does not know go to the resolver it learned there.
    let uplink = |d: &Daemon| d.status()["network_instances"][0]["uplinks"][0].clone();
    assert!(
        wait_until(Duration::from_secs(15), || uplink(&l.d)["active"] == true),
        "uplink active: {}",
        uplink(&l.d)
    );
    let up = uplink(&l.d);
    assert!(
        up["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("192.0.2.1")),
        "{up}"
    );
    assert_eq!(up["gateway"], "192.0.2.1");
    assert_eq!(up["healthy"], true);
    assert_eq!(
        short(sb, b, "www.upstream.example"),
        "192.0.2.99",
        "forwarded upstream"
    );
    let e = dig(sb, b, "-q e");
    assert!(
        e.contains("ANSWER: 0,") && !e.contains(&ips[4]),
        "an app of another NI is not known here: {e}"
    );

    // status shows the leases with their apps.
    let st = l.d.status();
    let leases = st["network_instances"][0]["leases"].to_string();
    for ip in &ips[..4] {
        assert!(leases.contains(ip.as_str()), "{leases}");
    }
    assert!(leases.contains("\"app\":\"a\""), "{leases}");
    assert_eq!(st["apps"][0]["interfaces"][0]["ips"][0], ips[0].as_str());
    let _ = &l.dev;
}

#[test]
fn leases_survive_kill_9() {
    if !root_or_skip("leases_survive_kill_9") {
        return;
    }
    need(&["dnsmasq", "dhclient", "udhcpc"]);
    let mut l = lab("k");
    let p = l.sb.prefix().to_string();
    let (pf, lf) = (l.sb.path("c.pid"), l.sb.path("c.leases"));
    let dhclient = format!(
        "timeout 30 dhclient -1 -4 -pf {} -lf {} {p}-c >/dev/null 2>&1",
        pf.display(),
        lf.display()
    );
    assert!(l.sb.ok(&l.ns[2], &dhclient));
    let first = ipv4_of(&l.sb, &l.ns[2], &format!("{p}-c"));
    // The app loses its address without releasing it.
    l.sb.sh(
        &l.ns[2],
        &format!("kill -9 $(cat {}); ip addr flush dev {p}-c", pf.display()),
    );

    l.sb.signal(l.d.pid, libc::SIGKILL);
    l.sb.wait(l.d.pid, Duration::from_secs(5));
    let state = l.sb.path("nsw-state");
    l.sb.spawn(
        &l.dev,
        Path::new(BIN),
        &[
            "run",
            "--config",
            &l.d.config.to_string_lossy(),
            "--control",
            &l.d.ctl.to_string_lossy(),
            "--state-dir",
            &state.to_string_lossy(),
        ],
        "nsw2.log",
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || l.d.status()
        != serde_json::Value::Null));
    // A new client does not get the address held by the lease from before the crash.
    assert!(l.sb.ok(
        &l.ns[1],
        &format!("udhcpc -i {p}-b -n -q -t 10 -T 1 >/dev/null 2>&1")
    ));
    assert_ne!(ipv4_of(&l.sb, &l.ns[1], &format!("{p}-b")), first);
    // The renewing client (INIT-REBOOT from its lease file) keeps its address.
    assert!(l.sb.ok(&l.ns[2], &dhclient));
    assert_eq!(ipv4_of(&l.sb, &l.ns[2], &format!("{p}-c")), first);
    l.sb.sh(&l.ns[2], &format!("kill -9 $(cat {})", pf.display()));
}

#[test]
fn garbage_dhcp_and_dns_are_counted_and_survived() {
    if !root_or_skip("garbage_dhcp_and_dns_are_counted_and_survived") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "dig"]);
    let l = lab("g");
    let p = l.sb.prefix().to_string();
    assert!(l.sb.ok(
        &l.ns[0],
        &format!("udhcpc -i {p}-a -n -q -t 10 -T 1 >/dev/null 2>&1")
    ));
    let mac =
        l.sb.out(&l.ns[0], &format!("cat /sys/class/net/{p}-a/address"));
    let ip = ipv4_of(&l.sb, &l.ns[0], &format!("{p}-a"));
    let script = format!(
        "import os, random\nfrom scapy.all import *\nrandom.seed(7)\niface='{p}-a'\n\
         e = Ether(src='{mac}', dst='ff:ff:ff:ff:ff:ff')/IP(src='0.0.0.0', dst='255.255.255.255')/UDP(sport=68, dport=67)\n\
         for n in range(0, 400, 7):\n    sendp(e/Raw(os.urandom(n)), iface=iface, verbose=0)\n\
         b = BOOTP(op=1, chaddr=bytes.fromhex('{hex}')+b'\\x00'*10, xid=1)\n\
         sendp(e/b/DHCP(options=[('message-type','discover'), (121, b'\\x40\\x01\\x02'), 'end']), iface=iface, verbose=0)\n\
         sendp(e/b/DHCP(options=[(53, b''), 'end']), iface=iface, verbose=0)\n\
         sendp(e/BOOTP(op=1, chaddr=b'\\x02\\x99\\x99\\x99\\x99\\x99', xid=2)/DHCP(options=[('message-type','discover'),'end']), iface=iface, verbose=0)\n\
         d = Ether(src='{mac}', dst=getmacbyip('10.50.0.1'))/IP(src='{ip}', dst='10.50.0.1')/UDP(sport=5555, dport=53)\n\
         for n in range(0, 300, 5):\n    sendp(d/Raw(os.urandom(n)), iface=iface, verbose=0)\n\
         sendp(d/DNS(id=9, qd=DNSQR(qname='a'*200)), iface=iface, verbose=0)\n",
        hex = mac.replace(':', "")
    );
    let file = l.sb.path("garbage.py");
    std::fs::write(&file, script).unwrap();
    let out =
        l.sb.sh(&l.ns[0], &format!("/usr/bin/python3 {}", file.display()));
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counters = || l.d.status()["network_instances"][0]["router"]["counters"].clone();
    let n = |c: &serde_json::Value, k: &str| c[k].as_u64().unwrap_or(0);
    let counted = |c: &serde_json::Value| {
        n(c, "dhcp_malformed") + n(c, "dhcp_ignored") >= 40 && n(c, "dns_malformed") >= 30
    };
    wait_until(Duration::from_secs(5), || counted(&counters()));
    let c = counters();
    let bad = n(&c, "dhcp_malformed") + n(&c, "dhcp_ignored");
    assert!(bad >= 40, "garbage DHCP counted: {c}");
    assert!(n(&c, "dns_malformed") >= 30, "garbage DNS counted: {c}");
    // Service goes on.
    assert_eq!(short(&l.sb, &l.ns[0], "router"), "10.50.0.1");
    assert!(l.sb.ok(
        &l.ns[1],
        &format!("udhcpc -i {p}-b -n -q -t 10 -T 1 >/dev/null 2>&1")
    ));
    assert!(ping(&l.sb, &l.ns[0], "10.50.0.1"));
}

#[test]
fn dns_over_tcp_answers_whole_what_udp_cannot_carry() {
    if !root_or_skip("dns_over_tcp_answers_whole_what_udp_cannot_carry") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "dig"]);
    let l = lab("t");
    let (sb, b) = (&l.sb, &l.ns[1]);
    lease(sb, b, &format!("{P}t-b"));
    let active = || l.d.status()["network_instances"][0]["uplinks"][0]["active"] == true;
    assert!(
        wait_until(Duration::from_secs(30), active),
        "no active uplink: {}",
        l.d.status()["network_instances"][0]["uplinks"]
    );
    let count = |args: &str| {
        sb.out(
            b,
            &format!("dig +time=2 +tries=2 +short @10.50.0.1 {args} | wc -l"),
        )
    };

    // A local name over TCP, and several queries on one connection.
    assert_eq!(
        sb.out(b, "dig +tcp +short @10.50.0.1 -q router"),
        "10.50.0.1"
    );
    let two = sb.out(
        b,
        "dig +tcp +keepopen +short @10.50.0.1 router api.cluster.example",
    );
    assert_eq!(
        two, "10.50.0.1\n10.50.0.10",
        "two answers on one connection"
    );

    // A local answer too large for UDP comes cut with TC over UDP (control),
    // whole over TCP, and whole when dig retries over TCP by itself.
    let cut = dig(sb, b, "+ignore +noedns -q many.example");
    assert!(cut.contains(" tc") && cut.contains("ANSWER: 0"), "{cut}");
    assert_eq!(count("+tcp -q many.example"), MANY.to_string());
    assert_eq!(count("-q many.example"), MANY.to_string());

    // An upstream answer cut over UDP comes whole through a TCP relay.
    let cut = dig(sb, b, "+ignore -q big.example.net");
    assert!(cut.contains(" tc"), "the upstream cut it over UDP: {cut}");
    assert_eq!(count("+tcp -q big.example.net"), MANY.to_string());
    assert_eq!(count("-q big.example.net"), MANY.to_string());

    let c = &l.d.status()["network_instances"][0]["router"]["counters"];
    assert_eq!(c["tcp_refused"], 0, "{c}");
    assert_eq!(c["dns_upstream_failures"], 0, "{c}");
}
