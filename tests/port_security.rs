//! Port security on app interfaces (SPEC §3.2), each rule attacked with
//! frames crafted by scapy inside an app's namespace and judged by a real
//! victim in another namespace (its neighbour table, its DHCP client, its
//! SLAAC, its pings, a tcpdump on its interface). Every test first shows
//! with a control case that the legitimate variant of the same traffic does
//! get through, so a pass cannot come from a broken setup. It proves:
//!
//! 1. ARP inspection on a switch NI: gratuitous ARPs and ARP replies that
//!    claim another app's IP, or carry a forged sender MAC, never change the
//!    victim's neighbour entries and are counted (`arp_spoofed_ip`,
//!    `arp_spoofed_mac`, `arp_malformed`), while the app's ARP for its own
//!    address does update them.
//! 2. The IPv4 source guard of a local NI: packets from another app's or an
//!    invented address reach neither the victim app nor the gateway
//!    (`ip_spoofed`), packets from the app's lease do; DHCP from 0.0.0.0
//!    still gets a fresh app its lease; an ARP naming an address that is not
//!    the app's lease (the gateway's, another app's) is dropped.
//! 3. The DHCP server guard: with a rogue dnsmasq in an app on a switch NI,
//!    the victims' udhcpc gets its lease from the LAN's dnsmasq behind the
//!    NIC and never sees a rogue answer (`dhcp_server`, DHCPv6 too); the
//!    victims then use their leases. A rogue that answers from another
//!    source port than 67 (udhcpc takes an OFFER/ACK from any port) must
//!    not be heard either.
//! 4. The RA guard: router advertisements from an app (plain and behind a
//!    hop-by-hop header) and redirects give the victim (accept_ra=2) no
//!    prefix and no default route (`ra_guard`), while the LAN's RA through
//!    the NIC does and ordinary IPv6 between apps passes.
//! 5. Storm control: an app flooding broadcasts from a raw socket (at least
//!    100k frames, for at least 3 s) and a MAC flood from the LAN (200k
//!    random unicast sources and destinations, sent for at least 3 s)
//!    disturb the 20/s ping between two other apps by at most one packet;
//!    the excess is counted as `storm` on the flooding port, and what passes
//!    stays within the default limit (2000/s) and within a `flood_limit:
//!    100` pushed by `niswitch apply`; the MAC table stays bounded and keeps
//!    the apps' entries.
//! 6. A bound DHCP client keeps its binding: a DISCOVER is offered the
//!    bound address, a REQUEST for another address (free or another app's)
//!    and a malformed message are NAKed or ignored, and the lease, the app's
//!    DNS name and its source-guard address all stay.
//! 7. `allowed_ips`: a VIP listed for a switch-NI app may be claimed by its
//!    gratuitous ARP and answered for (the victim learns it and pings it),
//!    a VIP not listed may not.
//! 8. The DNS relay of a local NI (SPEC §5.1): each upstream query leaves
//!    from its own random port in 49152-65535 with its own random id, and
//!    forged answers (wrong id, wrong port, another question, another
//!    source) sent ahead of the true one are never relayed to the app.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const P: &str = "nswps";
const PY: &str = "/usr/bin/python3";
const APP_UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430";
const NI_UUID: &str = "2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b";

/// A switch NI on the LAN port, no flood_limit given.
const SWITCH: &str = "type: switch, port: lan";
/// A local NI with DHCP and DNS and no uplink.
const LOCAL: &str = "type: local, subnet: 10.50.0.0/24, dhcp_range: 10.50.0.100-10.50.0.199, lease_time: 600, dns: { domain: lan }";
const GW: &str = "10.50.0.1";

/// The config: one NIC port `lan`, one NI `net` (`ni` gives its type and
/// the rest), and apps a, b, c, ... on it, each with `extra` VIF fields.
fn config(p: &str, ni: &str, apps: &[(&str, &str)]) -> String {
    let mut s = format!(
        "version: 1\nports:\n  - {{ name: lan, device: {p}-nic }}\nnetwork_instances:\n  - {{ name: net, uuid: {NI_UUID}, {ni} }}\napps:\n"
    );
    for (i, (n, extra)) in apps.iter().enumerate() {
        s += &format!(
            "  - {{ name: {n}, uuid: {APP_UUID}{:02x}, interfaces: [{{ ni: net, tap: {p}-{n}, netns: {p}-{n}{extra} }}] }}\n",
            i + 1
        );
    }
    s
}

struct Lab {
    sb: Sandbox,
    d: Daemon,
    p: String,
    /// The LAN behind the NIC: its end of the veth is `{p}-lan`.
    up: String,
    /// The apps' namespaces, in the order given.
    ns: Vec<String>,
}

impl Lab {
    fn tap(&self, i: usize) -> String {
        format!("{}-{}", self.p, ["a", "b", "c", "d"][i])
    }
    fn mac(&self, i: usize) -> String {
        self.sb.out(
            &self.ns[i],
            &format!("cat /sys/class/net/{}/address", self.tap(i)),
        )
    }
    fn log(&self) -> String {
        self.sb.log(&self.d.log)
    }
    /// One VIF's status (counters and drops), for assertion messages.
    fn vif(&self, i: usize) -> Value {
        let tap = self.tap(i);
        self.d.status()["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["interfaces"].as_array().cloned().unwrap_or_default())
            .find(|v| v["tap"] == tap.as_str())
            .unwrap_or(Value::Null)
    }
    fn drops(&self, i: usize, reason: &str) -> u64 {
        self.d.drops(&self.tap(i), reason)
    }
    /// Runs a scapy script in app `i`'s namespace; returns its stdout.
    fn scapy(&self, i: usize, name: &str, body: &str) -> String {
        scapy(&self.sb, &self.ns[i], name, body)
    }
    /// The LAN's end of the NIC's veth, in `up`.
    fn lan_if(&self) -> String {
        format!("{}-lan", self.p)
    }
    /// Starts the LAN's DHCP server (192.0.2.0/24, log `lan-dnsmasq.log`) behind the NIC.
    fn lan_dhcp(&mut self) {
        let lan_if = self.lan_if();
        upstream_dhcp(&mut self.sb, &self.up, &lan_if, "lan-dnsmasq");
    }
    /// Starts tcpdump on app `i`'s interface (see `common::capture`).
    fn capture(&mut self, i: usize, filter: &str, file: &str) -> u32 {
        let (ns, tap) = (self.ns[i].clone(), self.tap(i));
        capture(&mut self.sb, &ns, &tap, filter, file)
    }
    /// True when app `i`'s udhcpc got a lease.
    fn dhcp(&self, i: usize) -> bool {
        udhcpc(&self.sb, &self.ns[i], &self.tap(i))
    }
    /// App `i`'s IPv4 address.
    fn ip(&self, i: usize) -> String {
        ipv4_of(&self.sb, &self.ns[i], &self.tap(i))
    }
    /// App `i`'s lease by udhcpc (the test fails without one); its address.
    fn lease(&self, i: usize) -> String {
        assert!(self.dhcp(i), "no lease for {}\n{}", self.tap(i), self.log());
        self.ip(i)
    }
    /// True when app `i` pings `ip` (see `common::ping`).
    fn ping(&self, i: usize, ip: &str) -> bool {
        ping(&self.sb, &self.ns[i], ip)
    }
    /// App `i`'s neighbour entry for `ip` (see `neigh`).
    fn neigh(&self, i: usize, ip: &str) -> String {
        neigh(&self.sb, &self.ns[i], &self.tap(i), ip)
    }
    /// Waits (3 s at most) until app `i` holds `mac` for `ip`; fails with `what` otherwise.
    fn wait_neigh(&self, i: usize, ip: &str, mac: &str, what: &str) {
        assert!(
            wait_until(Duration::from_secs(3), || self.neigh(i, ip) == mac),
            "{what}: {} ({})\n{}",
            self.sb.out(&self.ns[i], "ip neigh"),
            self.vif(0),
            self.log()
        );
    }
    /// App `i`'s interface counted at least `min` drops for `reason` (`why`: what they are).
    fn assert_drops(&self, i: usize, reason: &str, min: u64, why: &str) {
        let n = self.drops(i, reason);
        assert!(
            n >= min,
            "{reason} {n} (want >= {min}{why}): {}\n{}",
            self.vif(i),
            self.log()
        );
    }
}

/// Apps named a, b, c, ... (with `extra` VIF fields each) on one NI of
/// `ni`'s kind; the NIC's veth peer sits in namespace `up`.
fn lab(suffix: &str, ni: &str, extras: &[&str]) -> Lab {
    let p = format!("{P}{suffix}");
    let mut sb = Sandbox::new(&p).unwrap();
    let (dev, up) = dev_and_up(&mut sb, &format!("{p}-nic"), &format!("{p}-lan"));
    let names = ["a", "b", "c", "d"];
    let ns: Vec<String> = names[..extras.len()]
        .iter()
        .map(|n| sb.ns(n).unwrap())
        .collect();
    let apps: Vec<(&str, &str)> = names.iter().copied().zip(extras.iter().copied()).collect();
    let d = start(&mut sb, &dev, &config(&p, ni, &apps), "nsw");
    let l = Lab { sb, d, p, up, ns };
    for i in 0..l.ns.len() {
        let tap = l.tap(i);
        assert!(
            wait_until(Duration::from_secs(10), || l
                .sb
                .ok(&l.ns[i], &format!("ip link show {tap} up"))),
            "{tap} in its namespace:\n{}",
            l.log()
        );
    }
    l
}

/// Gives app `i` the address `10.9.0.{i+1}/24` (switch-NI labs).
fn static_ips(l: &Lab) {
    for i in 0..l.ns.len() {
        assert!(l.sb.ok(
            &l.ns[i],
            &format!("ip addr add 10.9.0.{}/24 dev {}", i + 1, l.tap(i))
        ));
    }
}

/// Runs a scapy script (`body`, written to `{name}.py`) in `ns`; returns its stdout.
fn scapy(sb: &Sandbox, ns: &str, name: &str, body: &str) -> String {
    let script = format!("import threading, time\nfrom scapy.all import *\n{body}");
    let file = write_file(sb, &format!("{name}.py"), &script);
    let out = sb.sh(ns, &format!("{PY} {}", file.display()));
    assert!(
        out.status.success(),
        "scapy {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The link-layer address `ns` holds for `ip` on `ifname` ("" when none).
fn neigh(sb: &Sandbox, ns: &str, ifname: &str, ip: &str) -> String {
    let line = sb.out(ns, &format!("ip neigh show {ip} dev {ifname}"));
    let mut words = line.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == "lladdr")
        .and_then(|_| words.next())
        .unwrap_or_default()
        .to_string()
}

/// Puts a wrong (stale) entry for `ip` into the neighbour table of `ns`, so
/// that an ARP that does arrive visibly updates it.
fn fake_neigh(sb: &Sandbox, ns: &str, ifname: &str, ip: &str) {
    assert!(sb.ok(
        ns,
        &format!("ip neigh replace {ip} lladdr {FAKE} dev {ifname} nud stale")
    ));
}
const FAKE: &str = "02:00:00:00:00:99";

/// Runs the python script `text` (written to `name`) in `ns` with `args`; waits until it prints `ready`.
fn python_until(l: &mut Lab, ns: &str, name: &str, text: &str, args: &[&str], within: Duration) {
    let file = write_file(&l.sb, name, text).to_string_lossy().into_owned();
    let mut all = vec!["-u", file.as_str()];
    all.extend(args);
    let log = name.replace(".py", ".log");
    spawn_until(&mut l.sb, ns, PY, &all, &log, "ready", within);
}

#[test]
fn arp_spoofing_on_a_switch_ni_is_dropped() {
    if !root_or_skip("arp_spoofing_on_a_switch_ni_is_dropped") {
        return;
    }
    need(&["ping", PY]);
    // a attacks, b is the victim, c is impersonated.
    let l = lab("1", SWITCH, &["", "", ""]);
    static_ips(&l);
    let (sb, b_if) = (&l.sb, l.tap(1));
    let (amac, bmac, cmac) = (l.mac(0), l.mac(1), l.mac(2));
    // a's first ARP names its address (10.9.0.1): now known as its own.
    assert!(l.ping(0, "10.9.0.2"), "a -> b\n{}", l.log());
    assert!(l.ping(1, "10.9.0.3"), "b -> c\n{}", l.log());
    assert_eq!(l.neigh(1, "10.9.0.3"), cmac);

    // Control: a's gratuitous ARP for its own address updates b's entry.
    fake_neigh(sb, &l.ns[1], &b_if, "10.9.0.1");
    let iface = l.tap(0);
    l.scapy(
        0,
        "garp-own",
        &format!(
            "sendp(Ether(src='{amac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{amac}', psrc='10.9.0.1', pdst='10.9.0.1'), iface='{iface}', count=3, inter=0.2, verbose=0)\n"
        ),
    );
    l.wait_neigh(1, "10.9.0.1", &amac, "a's own gratuitous ARP must update b");

    // The attack, spread over more than the victim's ARP lock time (1 s)
    // so that, delivered, each kind would override b's entries.
    let forged = "02:66:66:66:66:66";
    l.scapy(
        0,
        "attack",
        &format!(
            "bc = 'ff:ff:ff:ff:ff:ff'
fs = [
  # a gratuitous ARP claiming c's address, and a reply telling b so
  Ether(src='{amac}', dst=bc)/ARP(op=1, hwsrc='{amac}', psrc='10.9.0.3', pdst='10.9.0.3'),
  Ether(src='{amac}', dst='{bmac}')/ARP(op=2, hwsrc='{amac}', psrc='10.9.0.3', hwdst='{bmac}', pdst='10.9.0.2'),
  # a forged sender MAC, for c's address and for a's own
  Ether(src='{amac}', dst=bc)/ARP(op=1, hwsrc='{forged}', psrc='10.9.0.3', pdst='10.9.0.3'),
  Ether(src='{amac}', dst='{bmac}')/ARP(op=2, hwsrc='{forged}', psrc='10.9.0.1', hwdst='{bmac}', pdst='10.9.0.2'),
  # too short to be an ARP
  Ether(src='{amac}', dst=bc, type=0x0806)/Raw(b'\\x00\\x01\\x08\\x00\\x06'),
]
for _ in range(6):
    sendp(fs, iface='{iface}', verbose=0)
    time.sleep(0.3)
"
        ),
    );
    let counts = || {
        (
            l.drops(0, "arp_spoofed_ip"),
            l.drops(0, "arp_spoofed_mac"),
            l.drops(0, "arp_malformed"),
        )
    };
    wait_until(Duration::from_secs(3), || {
        let (ip, mac, bad) = counts();
        ip >= 12 && mac >= 12 && bad >= 6
    });
    let (sip, smac, bad) = counts();
    assert_eq!(
        l.neigh(1, "10.9.0.3"),
        cmac,
        "b's entry for c must keep c's MAC: {}\n{}\n{}",
        sb.out(&l.ns[1], "ip neigh"),
        l.vif(0),
        l.log()
    );
    assert_eq!(
        l.neigh(1, "10.9.0.1"),
        amac,
        "b's entry for a must not take the forged MAC: {}",
        sb.out(&l.ns[1], "ip neigh")
    );
    assert!(
        sip >= 12 && smac >= 12 && bad >= 6,
        "arp_spoofed_ip {sip} (want >= 12), arp_spoofed_mac {smac} (want >= 12), arp_malformed {bad} (want >= 6): {}\n{}",
        l.vif(0),
        l.log()
    );
    // The victim still reaches c, and a keeps working with its own address.
    assert!(l.ping(1, "10.9.0.3"), "b -> c after the attack");
    assert!(l.ping(0, "10.9.0.3"), "a -> c after the attack");
    let ips = l.vif(0)["ips"].to_string();
    assert!(
        ips.contains("10.9.0.1") && !ips.contains("10.9.0.3"),
        "a's status ips: {ips}"
    );
}

#[test]
fn local_ni_source_guard_drops_spoofed_ipv4_and_arp() {
    if !root_or_skip("local_ni_source_guard_drops_spoofed_ipv4_and_arp") {
        return;
    }
    need(&["udhcpc", "tcpdump", "ping", PY]);
    let mut l = lab("2", LOCAL, &["", "", ""]);
    let (a_if, b_if) = (l.tap(0), l.tap(1));
    let (ip_a, ip_b) = (l.lease(0), l.lease(1));
    assert!(ip_a.starts_with("10.50.0.1") && ip_b.starts_with("10.50.0.1"));
    let (amac, bmac) = (l.mac(0), l.mac(1));
    // Both know the router; b has an entry for a.
    assert!(l.ping(0, GW) && l.ping(1, GW));
    assert!(l.ping(1, &ip_a), "b -> a\n{}", l.log());
    let gwmac = l.neigh(0, GW);
    assert_eq!(l.neigh(1, GW), gwmac);

    let cap = l.capture(1, "udp port 9999 or icmp or arp", "b.txt");
    fake_neigh(&l.sb, &l.ns[1], &b_if, &ip_a);
    let out = l.scapy(
        0,
        "spoof",
        &format!(
            "i = '{a_if}'
# Control: from the lease, to b and to the gateway (which answers).
sendp(Ether(src='{amac}', dst='{bmac}')/IP(src='{ip_a}', dst='{ip_b}')/UDP(sport=9999, dport=9999)/'genuine', iface=i, count=3, verbose=0)
r = srp1(Ether(src='{amac}', dst='{gwmac}')/IP(src='{ip_a}', dst='{GW}')/ICMP(id=0x4343), iface=i, timeout=3, verbose=0)
print('control-reply' if r is not None and ICMP in r and r[ICMP].type == 0 else 'control-none')
sendp(Ether(src='{amac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{amac}', psrc='{ip_a}', pdst='{ip_a}'), iface=i, count=2, verbose=0)
# Spoofed: an invented address, one outside the subnet, b's own towards the gateway.
for src in ['10.50.0.77', '192.0.2.9']:
    sendp(Ether(src='{amac}', dst='{bmac}')/IP(src=src, dst='{ip_b}')/UDP(sport=9999, dport=9999)/'spoofed', iface=i, count=3, verbose=0)
sendp(Ether(src='{amac}', dst='{gwmac}')/IP(src='{ip_b}', dst='{GW}')/ICMP(id=0x4242), iface=i, count=3, verbose=0)
# ARP naming the gateway's and b's address.
for ip in ['{GW}', '{ip_b}']:
    sendp(Ether(src='{amac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{amac}', psrc=ip, pdst=ip), iface=i, count=3, verbose=0)
    sendp(Ether(src='{amac}', dst='{bmac}')/ARP(op=2, hwsrc='{amac}', psrc=ip, hwdst='{bmac}', pdst='{ip_b}'), iface=i, count=3, verbose=0)
"
        ),
    );
    let seen = captured(&mut l.sb, cap, "b.txt");
    let st = l.vif(0);
    assert!(
        out.contains("control-reply"),
        "the gateway answers a from its lease: {out}\n{st}\n{}",
        l.log()
    );
    assert!(
        seen.matches(&format!("{ip_a}.9999 > {ip_b}.9999")).count() >= 3,
        "b receives a's genuine packets:\n{seen}\n{st}"
    );
    assert_eq!(l.neigh(1, &ip_a), amac, "a's ARP for its lease updates b");
    assert!(
        !seen.contains("10.50.0.77") && !seen.contains("192.0.2.9"),
        "spoofed sources must not reach b:\n{seen}"
    );
    assert!(
        !seen.contains("echo reply"),
        "the gateway must not answer a ping spoofed from b's address:\n{seen}"
    );
    assert!(
        !seen.contains(&format!("tell {GW},")) && !seen.contains(&format!("{GW} is-at")),
        "a's ARP claiming the gateway must not reach b:\n{seen}"
    );
    assert_eq!(
        l.neigh(1, GW),
        gwmac,
        "b's entry for the gateway: {}",
        l.sb.out(&l.ns[1], "ip neigh")
    );
    l.assert_drops(0, "ip_spoofed", 9, "");
    l.assert_drops(0, "arp_spoofed_ip", 12, "");
    // DHCP from 0.0.0.0 passes: a fresh app gets a lease, a renews its own.
    let ip_c = l.lease(2);
    assert!(ip_c.starts_with("10.50.0.1") && ip_c != ip_a && ip_c != ip_b);
    assert!(l.ping(2, GW), "c from its new lease");
    assert_eq!(l.lease(0), ip_a, "a asks again");
    assert!(l.ping(0, &ip_b), "a -> b from its lease");
}

#[test]
fn rogue_dhcp_server_in_an_app_is_never_heard() {
    if !root_or_skip("rogue_dhcp_server_in_an_app_is_never_heard") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "tcpdump", PY]);
    // a runs the rogue server; b and c are victims.
    let mut l = lab("3", SWITCH, &["", "", ""]);
    l.lan_dhcp();
    let a_if = l.tap(0);
    let a_ns = l.ns[0].clone();
    let rogue = [
        "--port=0",
        "--log-facility=-",
        "--log-dhcp",
        "--dhcp-authoritative",
        "--no-ping",
        "--dhcp-option=3,10.66.0.1",
    ];
    lan_dnsmasq(&mut l.sb, &a_ns, &a_if, "10.66.0", "rogue", &rogue);
    wait_log(&l.sb, "rogue.log", "DHCP, IP range", Duration::from_secs(5));
    let dhcp_ports = "udp port 67 or udp port 68 or udp port 546 or udp port 547";
    let cap = l.capture(1, dhcp_ports, "b.txt");
    // Three DHCP exchanges of the victims: every time both servers answer.
    let mut got = Vec::new();
    for i in [1, 2, 1] {
        assert!(
            l.dhcp(i),
            "{} got no lease; LAN dnsmasq:\n{}\nrogue:\n{}\n{}",
            l.tap(i),
            l.sb.log("lan-dnsmasq.log"),
            l.sb.log("rogue.log"),
            l.log()
        );
        got.push(l.ip(i));
    }
    // A DHCPv6 server answer from the app is dropped as well.
    let amac = l.mac(0);
    l.scapy(
        0,
        "dhcp6",
        &format!(
            "sendp(Ether(src='{amac}', dst='33:33:00:01:00:02')/IPv6(src='fe80::66', dst='ff02::1:2')/UDP(sport=547, dport=546)/DHCP6_Advertise(trid=7), iface='{a_if}', count=3, verbose=0)\n"
        ),
    );
    let seen = captured(&mut l.sb, cap, "b.txt");
    let rogue = l.sb.log("rogue.log");
    let st = l.vif(0);
    assert!(
        rogue.contains("DHCPOFFER"),
        "the rogue did answer (else the test proves nothing):\n{rogue}"
    );
    for ip in &got {
        assert!(
            ip.starts_with("192.0.2.1"),
            "leases from the LAN's server only: {got:?}\n{seen}\n{st}"
        );
    }
    assert!(
        seen.contains("192.0.2.1.67 >"),
        "b sees the LAN server's answers:\n{seen}"
    );
    assert!(
        !seen.contains("10.66.0.1.67") && !seen.contains(".547 >"),
        "b must never see the rogue's answers:\n{seen}"
    );
    for (i, ip) in [(1, &got[2]), (2, &got[1])] {
        let ips = l.vif(i)["ips"].to_string();
        assert!(ips.contains(ip.as_str()), "status ips of app {i}: {ips}");
    }
    l.assert_drops(0, "dhcp_server", 6, ": 3 offers/acks + 3 DHCPv6");
    // The victims use their leases: their ARPs name the address the LAN's
    // server gave them, which their VIFs now hold.
    for (i, ip) in [(1, &got[2]), (2, &got[1])] {
        assert!(
            l.ping(i, "192.0.2.1"),
            "app {i} ({ip}) -> the LAN: {}\n{}",
            l.vif(i),
            l.log()
        );
    }
}

/// A rogue DHCP server that answers from `sport` (not 67) to the client
/// port 68 with an OFFER/ACK of 10.66.0.123. Stops after 25 s.
const ROGUE_PY: &str = r#"import sys
from scapy.all import *
iface, mac, sport = sys.argv[1], sys.argv[2], int(sys.argv[3])
def handle(p):
    if not (p.haslayer(DHCP) and p[BOOTP].op == 1):
        return
    kind = [o[1] for o in p[DHCP].options if isinstance(o, tuple) and o[0] == 'message-type'][0]
    t = 2 if kind == 1 else 5
    r = (Ether(src=mac, dst='ff:ff:ff:ff:ff:ff')/IP(src='10.66.0.1', dst='255.255.255.255')/UDP(sport=sport, dport=68)/
         BOOTP(op=2, xid=p[BOOTP].xid, yiaddr='10.66.0.123', siaddr='10.66.0.1', chaddr=p[BOOTP].chaddr, flags=p[BOOTP].flags)/
         DHCP(options=[('message-type', t), ('server_id', '10.66.0.1'), ('lease_time', 3600), ('subnet_mask', '255.255.255.0'), ('router', '10.66.0.1'), 'end']))
    sendp(r, iface=iface, verbose=0)
    print('answered', t, 'from port', sport, flush=True)
sniff(iface=iface, lfilter=lambda p: p.haslayer(UDP) and p[UDP].dport == 67, prn=handle, timeout=25,
      started_callback=lambda: print('ready', flush=True))
"#;

/// The DHCP server guard judges what a message is, not the port it says
/// it comes from: DHCP clients (udhcpc here, which takes an OFFER/ACK from
/// any source port on port 68) must not hear a rogue that answers from
/// another source port either.
#[test]
fn rogue_dhcp_answers_from_another_source_port_are_dropped_too() {
    if !root_or_skip("rogue_dhcp_answers_from_another_source_port_are_dropped_too") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "tcpdump", PY]);
    let mut l = lab("9", SWITCH, &["", ""]);
    l.lan_dhcp();
    let (a_if, amac, a_ns) = (l.tap(0), l.mac(0), l.ns[0].clone());
    let args = [a_if.as_str(), &amac, "4242"];
    python_until(
        &mut l,
        &a_ns,
        "rogue.py",
        ROGUE_PY,
        &args,
        Duration::from_secs(30),
    );
    let cap = l.capture(1, "udp port 68", "b.txt");
    let (leased, ip) = (l.dhcp(1), l.ip(1));
    let seen = captured(&mut l.sb, cap, "b.txt");
    let rogue = l.sb.log("rogue.log");
    assert!(
        rogue.contains("answered"),
        "the rogue did answer (else the test proves nothing):\n{rogue}"
    );
    let drops = l.vif(0)["drops"].clone();
    assert!(
        leased && ip.starts_with("192.0.2.1"),
        "b's lease must come from the LAN's server, got `{ip}`; the rogue's answers from port 4242 reached b:\n{seen}\nrogue's VIF drops: {drops}\nrogue: {rogue}"
    );
    assert!(
        !seen.contains("10.66.0.1.4242"),
        "b must never see the rogue's answers:\n{seen}\n{drops}"
    );
    l.assert_drops(0, "dhcp_server", 1, "");
}

#[test]
fn router_advertisements_from_an_app_are_dropped() {
    if !root_or_skip("router_advertisements_from_an_app_are_dropped") {
        return;
    }
    need(&["ping", PY]);
    // a sends the RAs, b is the victim; the LAN sends the genuine one.
    let l = lab("4", SWITCH, &["", ""]);
    let (a_if, b_if) = (l.tap(0), l.tap(1));
    let lan_if = l.lan_if();
    assert!(l.sb.ok(
        &l.ns[1],
        &format!("sysctl -qw net.ipv6.conf.{b_if}.accept_ra=2")
    ));
    let ll = |ns: &str, ifname: &str| {
        l.sb.out(
            ns,
            &format!("ip -6 -o addr show dev {ifname} scope link | grep -v tentative | awk '{{print $4}}' | cut -d/ -f1"),
        )
    };
    let mut lls = (String::new(), String::new(), String::new());
    assert!(
        wait_until(Duration::from_secs(10), || {
            lls = (ll(&l.ns[0], &a_if), ll(&l.ns[1], &b_if), ll(&l.up, &lan_if));
            !lls.0.is_empty() && !lls.1.is_empty() && !lls.2.is_empty()
        }),
        "link-local addresses: {lls:?}"
    );
    let (a_ll, b_ll, up_ll) = lls;
    // Control: ordinary IPv6 between the apps passes.
    assert!(
        l.sb.ok(&l.ns[0], &format!("ping -6 -c 2 -i 0.2 -W 1 {b_ll}%{a_if}")),
        "a -> b over IPv6 link-local\n{}",
        l.log()
    );
    let amac = l.mac(0);
    let bmac = l.mac(1);
    l.scapy(
        0,
        "rogue-ra",
        &format!(
            "i = '{a_if}'
e = Ether(src='{amac}', dst='33:33:00:00:00:01')
def ra(prefix):
    return ICMPv6ND_RA(routerlifetime=1800)/ICMPv6NDOptPrefixInfo(prefix=prefix, prefixlen=64, L=1, A=1, validlifetime=3600, preferredlifetime=1800)/ICMPv6NDOptSrcLLAddr(lladdr='{amac}')
for _ in range(3):
    sendp(e/IPv6(src='{a_ll}', dst='ff02::1', hlim=255)/ra('2001:db8:bad::'), iface=i, verbose=0)
    sendp(e/IPv6(src='{a_ll}', dst='ff02::1', hlim=255)/IPv6ExtHdrHopByHop()/ra('2001:db8:bad:2::'), iface=i, verbose=0)
    sendp(Ether(src='{amac}', dst='{bmac}')/IPv6(src='{a_ll}', dst='{b_ll}', hlim=255)/ICMPv6ND_Redirect(tgt='{a_ll}', dst='2001:db8:600d::1'), iface=i, verbose=0)
    time.sleep(0.2)
"
        ),
    );
    // Control: the LAN's RA, through the NIC, is taken by b.
    let upmac = mac_of(&l.sb, &l.up, &lan_if);
    scapy(
        &l.sb,
        &l.up,
        "lan-ra",
        &format!(
            "sendp(Ether(src='{upmac}', dst='33:33:00:00:00:01')/IPv6(src='{up_ll}', dst='ff02::1', hlim=255)/ICMPv6ND_RA(routerlifetime=1800)/ICMPv6NDOptPrefixInfo(prefix='2001:db8:600d::', prefixlen=64, L=1, A=1, validlifetime=3600, preferredlifetime=1800)/ICMPv6NDOptSrcLLAddr(lladdr='{upmac}'), iface='{lan_if}', count=2, inter=0.2, verbose=0)\n"
        ),
    );
    let addrs = || l.sb.out(&l.ns[1], &format!("ip -6 addr show dev {b_if}"));
    let routes = || l.sb.out(&l.ns[1], "ip -6 route show");
    assert!(
        wait_until(Duration::from_secs(5), || addrs()
            .contains("2001:db8:600d:")
            && routes().contains(&format!("default via {up_ll}"))),
        "b takes the LAN's RA (else it would take none):\n{}\n{}\n{}",
        addrs(),
        routes(),
        l.log()
    );
    let (addr, route) = (addrs(), routes());
    assert!(
        !addr.contains("2001:db8:bad") && !route.contains("2001:db8:bad"),
        "no prefix from the app's RA:\n{addr}\n{route}"
    );
    assert!(
        !route.contains(&format!("via {a_ll}")),
        "no route through the app:\n{route}"
    );
    l.assert_drops(0, "ra_guard", 9, ": 6 RAs, 3 redirects");
    assert!(
        l.sb.ok(&l.ns[0], &format!("ping -6 -c 2 -i 0.2 -W 1 {b_ll}%{a_if}")),
        "ordinary IPv6 still passes"
    );
}

/// Runs the flood script in `ns`: `kind` is `bcast` (broadcasts from
/// `mac`) or `macs` (`n` distinct random unicast sources and destinations).
/// It sends as fast as it can, at least `n` frames and for at least
/// `secs` seconds (so that the pings measure the flood), at most 3 × `secs`.
/// Returns (frames sent, seconds it took).
fn flood(
    sb: &Sandbox,
    ns: &str,
    ifname: &str,
    kind: &str,
    n: u32,
    secs: u32,
    mac: &str,
) -> (u64, f64) {
    let file = write_file(sb, "flood.py", FLOOD_PY);
    let out = sb.sh(
        ns,
        &format!("{PY} {} {ifname} {kind} {n} {secs} {mac}", file.display()),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "flood: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w: Vec<&str> = text.split_whitespace().collect();
    (
        w.first().and_then(|s| s.parse().ok()).unwrap_or(0),
        w.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.0),
    )
}

/// A raw AF_PACKET socket in a tight loop: the fastest sender python has.
const FLOOD_PY: &str = r#"import os, socket, sys, time
iface, kind, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
pad = bytes(46)
if kind == 'bcast':
    frames = [b'\xff' * 6 + bytes.fromhex(sys.argv[5].replace(':', '')) + b'\x88\xb5' + pad]
else:
    r = bytearray(os.urandom(12 * n))
    frames = []
    for i in range(n):
        m = r[12 * i:12 * i + 12]
        m[0] = (m[0] & 0xfc) | 0x02
        m[6] = (m[6] & 0xfc) | 0x02
        frames.append(bytes(m) + b'\x88\xb5' + pad)
k = len(frames)
send = s.send
sent = full = i = 0
t0 = time.monotonic()
while True:
    try:
        send(frames[i % k])
        sent += 1
    except OSError:
        full += 1
        time.sleep(0.0002)
    i += 1
    if i & 1023 == 0:
        t = time.monotonic() - t0
        if (sent >= n and t >= secs) or t >= 3 * secs:
            break
print(sent, full, '%.3f' % (time.monotonic() - t0))
"#;

/// Pings `ip` from `ns` at 20 per second in the background.
fn start_ping(sb: &mut Sandbox, ns: &str, ip: &str, log: &str) -> u32 {
    let args = ["-i", "0.05", "-W", "1", "-c", "2000", ip];
    let (ping, five) = ("/usr/bin/ping", Duration::from_secs(5));
    spawn_until(sb, ns, ping, &args, log, "bytes from", five)
}

/// Stops a background ping; returns (sent, lost), leaving out the last
/// request, whose answer may still have been on its way.
fn stop_ping(sb: &mut Sandbox, pid: u32, log: &str) -> (usize, usize) {
    sb.signal(pid, libc::SIGINT);
    sb.wait(pid, Duration::from_secs(3));
    let text = sb.log(log);
    let answered: HashSet<usize> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    let sent = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0usize);
    let lost = (1..sent).filter(|s| !answered.contains(s)).count();
    (sent, lost)
}

fn rx_packets(sb: &Sandbox, ns: &str, ifname: &str) -> u64 {
    sb.out(
        ns,
        &format!("cat /sys/class/net/{ifname}/statistics/rx_packets"),
    )
    .parse()
    .unwrap_or(0)
}

/// Waits until `count` stops moving: the flood queued in the kernel is drained.
fn settle(count: impl Fn() -> u64) {
    let mut last = u64::MAX;
    wait_until(Duration::from_secs(5), || {
        let now = count();
        std::mem::replace(&mut last, now) == now
    });
}

/// A MAC flood from the LAN (random sources, unknown unicast destinations)
/// while b pings c, under the NI's flood limit `limit`; returns the numbers.
fn mac_flood(l: &mut Lab, b_ns: &str, limit: u64) -> String {
    let (up, lan_if) = (l.up.clone(), l.lan_if());
    let nic_rx = |l: &Lab| l.d.status()["ports"][0]["rx_packets"].as_u64().unwrap_or(0);
    let (nic0, rx0) = (l.d.drops("lan", "storm"), nic_rx(l));
    let pid = start_ping(&mut l.sb, b_ns, "10.9.0.3", "ping-mac.txt");
    let (sent, secs) = flood(&l.sb, &up, &lan_if, "macs", 200_000, 3, "-");
    settle(|| nic_rx(l));
    let (pings, lost) = stop_ping(&mut l.sb, pid, "ping-mac.txt");
    let storm = l.d.drops("lan", "storm") - nic0;
    let rx = nic_rx(l) - rx0;
    let passed = rx.saturating_sub(storm);
    let budget = limit * (secs.ceil() as u64 + 2);
    let st = l.d.status();
    let table = st["network_instances"][0]["mac_table"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let line = format!(
        "MAC flood (flood_limit {limit}): sent {sent} in {secs:.2}s, niswitch got {rx}, NIC storm {storm}, passed {passed}, MAC table {} entries, b's pings {pings} lost {lost}",
        table.len()
    );
    eprintln!("{line}");
    assert!(lost <= 1, "{line}\n{}", l.sb.log("ping-mac.txt"));
    assert!(sent >= 200_000, "the flood ran: {line}");
    assert!(
        storm > 0 && passed <= budget,
        "the NIC's excess floods counted: {line} (budget {budget})\n{}",
        st["ports"]
    );
    for i in 1..3 {
        let tap = l.tap(i);
        assert!(
            table.iter().any(|e| e["port"] == tap.as_str()),
            "{tap} still in the MAC table: {line}"
        );
    }
    line
}

#[test]
fn storm_control_keeps_other_traffic_undisturbed() {
    if !root_or_skip("storm_control_keeps_other_traffic_undisturbed") {
        return;
    }
    need(&["ping", PY]);
    let t0 = Instant::now();
    // a floods; b pings c.
    let mut l = lab("5", SWITCH, &["", "", ""]);
    static_ips(&l);
    let (b_ns, c_if) = (l.ns[1].clone(), l.tap(2));
    assert!(l.ping(1, "10.9.0.3"), "b -> c\n{}", l.log());
    let amac = l.mac(0);
    let a_tap = l.tap(0);
    let vif_rx = |l: &Lab| l.vif(0)["rx_packets"].as_u64().unwrap_or(0);
    let mut report = Vec::new();

    // The default limit (2000/s), with a MAC flood from the LAN as well,
    // then 100/s set by `niswitch apply`.
    for (round, limit) in [2000u64, 100].into_iter().enumerate() {
        if limit != 2000 {
            let text = config(
                &l.p,
                &format!("{SWITCH}, flood_limit: {limit}"),
                &[("a", ""), ("b", ""), ("c", "")],
            );
            let file = write_file(&l.sb, "limit.yaml", &text);
            let out = apply(&l.sb, &l.d, &file, "");
            assert!(
                out.status.success(),
                "apply flood_limit: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                l.log()
            );
        }
        let (rx0, storm0) = (vif_rx(&l), l.drops(0, "storm"));
        let c0 = rx_packets(&l.sb, &l.ns[2], &c_if);
        let log = format!("ping{round}.txt");
        let pid = start_ping(&mut l.sb, &b_ns, "10.9.0.3", &log);
        let (sent, secs) = flood(&l.sb, &l.ns[0], &a_tap, "bcast", 100_000, 3, &amac);
        settle(|| vif_rx(&l));
        let (pings, lost) = stop_ping(&mut l.sb, pid, &log);
        let rx = vif_rx(&l) - rx0;
        let storm = l.drops(0, "storm") - storm0;
        let passed = rx.saturating_sub(storm);
        let at_c = rx_packets(&l.sb, &l.ns[2], &c_if) - c0;
        let line = format!(
            "flood_limit {limit}: sent {sent} in {secs:.2}s, niswitch got {rx}, storm {storm}, passed {passed}, c received {at_c} (incl. pings), b's pings {pings} lost {lost}"
        );
        eprintln!("{line}");
        report.push(line.clone());
        // Flooded frames pass at most `limit` in each second the flood touched.
        let budget = limit * (secs.ceil() as u64 + 2);
        assert!(lost <= 1, "{line}\n{}\n{}", l.sb.log(&log), l.log());
        // What the TAP queue drops before niswitch reads it never counts: on a
        // loaded machine that is a good part of the flood.
        assert!(sent >= 100_000 && rx >= 20_000, "the flood ran: {line}");
        assert!(
            storm > 0 && passed <= budget && at_c <= budget + pings as u64 * 2 + 50,
            "storm control: {line} (budget {budget})\n{}\n{}",
            l.vif(0),
            l.log()
        );
        assert!(
            passed >= limit.min(sent),
            "broadcasts within the limit still pass: {line}"
        );
        if limit == 2000 {
            report.push(mac_flood(&mut l, &b_ns, limit));
        }
    }

    assert!(l.ping(1, "10.9.0.3"), "b -> c after the floods");
    eprintln!("storm test took {:?}:\n{}", t0.elapsed(), report.join("\n"));
}

#[test]
fn a_bound_dhcp_client_keeps_its_lease() {
    if !root_or_skip("a_bound_dhcp_client_keeps_its_lease") {
        return;
    }
    need(&["udhcpc", "dig", "ping", PY]);
    let l = lab("6", LOCAL, &["", ""]);
    let a_if = l.tap(0);
    let (ip_a, ip_b) = (l.lease(0), l.lease(1));
    let name = |n: &str| {
        l.sb.out(
            &l.ns[1],
            &format!("dig +time=2 +tries=2 +short @{GW} -q {n}"),
        )
    };
    assert_eq!(name("a.lan"), ip_a, "a resolves\n{}", l.log());
    let amac = l.mac(0);
    let free = if ip_a == "10.50.0.180" {
        "10.50.0.181"
    } else {
        "10.50.0.180"
    };
    // Each message from a's namespace with a's chaddr, from 0.0.0.0; prints
    // what the router answered.
    let out = l.scapy(
        0,
        "dhcp",
        &format!(
            "i = '{a_if}'
ch = bytes.fromhex('{hex}') + bytes(10)
def ask(what, opts, xid):
    ready = threading.Event()
    s = AsyncSniffer(iface=i, timeout=3, count=1, started_callback=ready.set, lfilter=lambda p: BOOTP in p and p[BOOTP].op == 2 and p[BOOTP].xid == xid)
    s.start()
    ready.wait(3)
    sendp(Ether(src='{amac}', dst='ff:ff:ff:ff:ff:ff')/IP(src='0.0.0.0', dst='255.255.255.255')/UDP(sport=68, dport=67)/BOOTP(op=1, chaddr=ch, xid=xid, flags=0x8000)/DHCP(options=opts), iface=i, verbose=0)
    s.join()
    if not s.results:
        print(what, 'none')
        return
    r = s.results[0]
    t = [o[1] for o in r[DHCP].options if isinstance(o, tuple) and o[0] == 'message-type'][0]
    print(what, {{2: 'offer', 5: 'ack', 6: 'nak'}}.get(t, t), r[BOOTP].yiaddr)
ask('discover', [('message-type', 'discover'), 'end'], 11)
ask('discover-free', [('message-type', 'discover'), ('requested_addr', '{free}'), 'end'], 17)
ask('request-free', [('message-type', 'request'), ('requested_addr', '{free}'), ('server_id', '{GW}'), 'end'], 12)
ask('reboot-free', [('message-type', 'request'), ('requested_addr', '{free}'), 'end'], 13)
ask('request-b', [('message-type', 'request'), ('requested_addr', '{ip_b}'), 'end'], 14)
ask('malformed', ['end'], 15)
ask('request-own', [('message-type', 'request'), ('requested_addr', '{ip_a}'), 'end'], 16)
",
            hex = amac.replace(':', "")
        ),
    );
    let st = l.d.status();
    let leases = st["network_instances"][0]["leases"].to_string();
    let msg = format!("{out}\nleases {leases}\n{}", l.log());
    for want in [
        format!("discover offer {ip_a}"),
        format!("discover-free offer {ip_a}"),
        "request-free nak".to_string(),
        "reboot-free nak".to_string(),
        "request-b nak".to_string(),
        "malformed none".to_string(),
        format!("request-own ack {ip_a}"),
    ] {
        assert!(out.contains(&want), "want `{want}`:\n{msg}");
    }
    // The bindings, names and source guard are as before.
    for (ip, app) in [(&ip_a, "a"), (&ip_b, "b")] {
        assert!(
            leases.contains(&format!("\"ip\":\"{ip}\""))
                && leases.contains(&format!("\"app\":\"{app}\"")),
            "lease of {app}: {msg}"
        );
    }
    assert!(!leases.contains(free), "{msg}");
    assert_eq!(name("a"), ip_a, "a's name: {msg}");
    assert_eq!(name("b.lan"), ip_b, "b's name: {msg}");
    assert!(l.ping(0, &ip_b), "a still sends from {ip_a}");
    assert_eq!(l.drops(0, "ip_spoofed"), 0, "{}", l.vif(0));
    assert_eq!(l.lease(0), ip_a, "a asks again");
}

#[test]
fn allowed_ips_let_an_app_claim_its_vip_only() {
    if !root_or_skip("allowed_ips_let_an_app_claim_its_vip_only") {
        return;
    }
    need(&["ping", PY]);
    let l = lab("7", SWITCH, &[", allowed_ips: [10.9.0.100/32]", ""]);
    static_ips(&l);
    let (a_if, b_if) = (l.tap(0), l.tap(1));
    // a's own address first: known from its first ARP.
    assert!(l.ping(0, "10.9.0.2"), "a -> b\n{}", l.log());
    for vip in ["10.9.0.100", "10.9.0.101"] {
        assert!(l.sb.ok(&l.ns[0], &format!("ip addr add {vip}/32 dev {a_if}")));
        fake_neigh(&l.sb, &l.ns[1], &b_if, vip);
    }
    let amac = l.mac(0);
    // keepalived-style: a takes over both VIPs with gratuitous ARPs.
    l.scapy(
        0,
        "garp-vip",
        &format!(
            "for vip in ['10.9.0.100', '10.9.0.101']:
    sendp(Ether(src='{amac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{amac}', psrc=vip, pdst=vip), iface='{a_if}', count=3, inter=0.1, verbose=0)
"
        ),
    );
    l.wait_neigh(1, "10.9.0.100", &amac, "b learns the listed VIP from a");
    assert_eq!(
        l.neigh(1, "10.9.0.101"),
        FAKE,
        "the unlisted VIP must not be taken over: {}",
        l.sb.out(&l.ns[1], "ip neigh")
    );
    assert!(l.ping(1, "10.9.0.100"), "b -> the listed VIP");
    // a's ARP answers for the unlisted VIP are dropped too.
    l.sb.sh(&l.ns[1], &format!("ip neigh del 10.9.0.101 dev {b_if}"));
    assert!(
        !l.sb.ok(&l.ns[1], "ping -c 2 -i 0.2 -W 1 10.9.0.101"),
        "b must not reach the unlisted VIP: {}",
        l.sb.out(&l.ns[1], "ip neigh")
    );
    let why = ": 3 GARPs for 10.9.0.101 and the ARP replies for it";
    l.assert_drops(0, "arp_spoofed_ip", 4, why);
    assert!(l.ping(0, "10.9.0.2"), "a's own address still works");
}

/// An upstream resolver on 192.0.2.53 that, for every query the router
/// relays, first sends forged answers (wrong id, wrong port, another
/// question, another source address) and then the true one. It logs
/// each query as `query PORT ID NAME`.
const RESOLVER_PY: &str = r#"import socket, struct, sys, time
real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
real.bind(('192.0.2.53', 53))
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
other.bind(('192.0.2.54', 53))
print('ready', flush=True)

def question(m):
    i = 12
    labels = []
    while m[i]:
        labels.append(m[i + 1:i + 1 + m[i]].decode())
        i += 1 + m[i]
    return m[12:i + 5], '.'.join(labels)

def answer(qid, q, ip):
    head = struct.pack('>HHHHHH', qid, 0x8180, 1, 1, 0, 0)
    rr = b'\xc0\x0c' + struct.pack('>HHIH', 1, 1, 60, 4) + socket.inet_aton(ip)
    return head + q + rr

def wire(name):
    return b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\x00\x00\x01\x00\x01'

while True:
    m, (src, port) = real.recvfrom(4096)
    qid = struct.unpack('>H', m[:2])[0]
    q, name = question(m)
    print('query', port, qid, name, flush=True)
    real.sendto(answer(qid ^ 0x5a5a, q, '6.6.6.1'), (src, port))
    real.sendto(answer(qid, q, '6.6.6.2'), (src, port + 1 if port < 65535 else port - 1))
    real.sendto(answer(qid, wire('evil.example'), '6.6.6.3'), (src, port))
    other.sendto(answer(qid, q, '6.6.6.4'), (src, port))
    time.sleep(0.3)
    real.sendto(answer(qid, q, '192.0.2.99'), (src, port))
    print('answered', name, flush=True)
"#;

#[test]
fn dns_relay_refuses_forged_upstream_answers() {
    if !root_or_skip("dns_relay_refuses_forged_upstream_answers") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "dig", PY]);
    let ni = "type: local, subnet: 10.50.0.0/24, dhcp_range: 10.50.0.100-10.50.0.199, dns: { domain: lan, upstream: [192.0.2.53] }, uplinks: [lan]";
    let mut l = lab("8", ni, &[""]);
    l.lan_dhcp();
    let (up, lan_if) = (l.up.clone(), l.lan_if());
    for ip in ["192.0.2.53", "192.0.2.54"] {
        assert!(l.sb.ok(&up, &format!("ip addr add {ip}/24 dev {lan_if}")));
    }
    let ten = Duration::from_secs(10);
    python_until(&mut l, &up, "resolver.py", RESOLVER_PY, &[], ten);
    l.lease(0);
    let active = || l.d.status()["network_instances"][0]["uplinks"][0]["active"] == true;
    assert!(
        wait_until(Duration::from_secs(20), active),
        "uplink active: {}\n{}",
        l.d.status()["network_instances"][0]["uplinks"],
        l.log()
    );
    let names: Vec<String> = (1..=5).map(|i| format!("q{i}.upstream.example")).collect();
    for n in &names {
        let got = l.sb.out(
            &l.ns[0],
            &format!("dig +time=3 +tries=1 +short @{GW} -q {n}"),
        );
        assert_eq!(
            got,
            "192.0.2.99",
            "{n}: only the true answer may be relayed\nresolver:\n{}\n{}\n{}",
            l.sb.log("resolver.log"),
            l.d.status()["network_instances"][0]["router"],
            l.log()
        );
    }
    // Each query left from its own random port with its own random id.
    let log = l.sb.log("resolver.log");
    let queries: Vec<(u32, u32)> = log
        .lines()
        .filter_map(|x| x.strip_prefix("query "))
        .filter_map(|x| {
            let mut w = x.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect();
    assert!(queries.len() >= names.len(), "{log}");
    let ports: HashSet<u32> = queries.iter().map(|q| q.0).collect();
    let ids: HashSet<u32> = queries.iter().map(|q| q.1).collect();
    assert!(
        queries.iter().all(|q| (49152..=65535).contains(&q.0)),
        "relay ports in 49152-65535: {queries:?}"
    );
    assert!(
        ports.len() == queries.len() && ids.len() == queries.len(),
        "a fresh port and id per query: {queries:?}"
    );
    let consecutive = queries.windows(2).all(|w| w[1].0 == w[0].0 + 1);
    assert!(!consecutive, "ports must not be sequential: {queries:?}");
}
