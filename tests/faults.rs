//! Faults under traffic. A device with a management port whose NIC is renamed
//! (`host_interface` equal to the device: the NIC becomes `k<device>`, the
//! host gets a TAP `<device>`), a switch NI with one app on that port, and a
//! local NI whose uplink is the same port, towards an upstream LAN (dnsmasq),
//! with three apps that got their leases from niswitch (udhcpc). Apps ping
//! each other and the upstream (through the NAT) all along, while
//! - the daemon is killed with SIGKILL and started again 20 times: after
//!   each restart the traffic resumes within a bound, every lease is intact
//!   (status, lease file, the address works), every TAP is still there once
//!   with its ifindex, the NIC is still `k<device>` and the host TAP
//!   `<device>`, and no TAP the config does not name appears; a clean
//!   SIGTERM at the end gives the NIC its name back and removes the TAPs;
//! - the NIC's peer goes down and up 10 times: app-to-app traffic goes on
//!   (at most one ping lost per flap), the upstream is reached again within
//!   the uplink probe's bound (interval × failures + interval) after each
//!   flap, and the daemon never restarts.
//!
//! The ping losses and outages are printed (`--nocapture` shows them).

mod common;
use common::*;
use niswitch::control::{self, Request};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LAN_UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd43f02";
const FLAT_UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd43f01";
/// The local NI's gateway, and the upstream LAN's host (dnsmasq) beyond the NAT.
const GW: &str = "10.50.0.1";
const UPSTREAM: &str = "192.0.2.1";
/// Apps of the local NI; `s` is the switch NI's app.
const LOCAL: [&str; 3] = ["a", "b", "c"];
const ALL: [&str; 4] = ["a", "b", "c", "s"];
/// The uplink probe of the local NI: interval 1 s, 2 failures.
const PROBE_INTERVAL: f64 = 1.0;
const PROBE_FAILURES: f64 = 2.0;

fn config(p: &str) -> String {
    let app = |n: &str, i: u8, ni: &str| {
        format!(
            "  - {{ name: {n}, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43fa{i}, interfaces: [{{ ni: {ni}, tap: {p}-{n}, netns: {p}-{n} }}] }}\n"
        )
    };
    format!(
        "version: 1
ports:
  - {{ name: e0, device: {p}e0, management: true }}
network_instances:
  - {{ name: flat, uuid: {FLAT_UUID}, type: switch, port: e0 }}
  - {{ name: lan, uuid: {LAN_UUID}, type: local, subnet: 10.50.0.0/24, dhcp_range: 10.50.0.100-10.50.0.199,
      lease_time: 600, uplinks: [e0], probe: {{ target: gateway, interval: {PROBE_INTERVAL}, failures: {PROBE_FAILURES} }} }}
apps:
{}{}{}{}",
        app("a", 1, "lan"),
        app("b", 2, "lan"),
        app("c", 3, "lan"),
        app("s", 4, "flat"),
    )
}

struct Lab {
    sb: Sandbox,
    d: Daemon,
    p: String,
    dev: String,
    up: String,
    /// App name -> its namespace (also the name of its TAP).
    ns: BTreeMap<String, String>,
    /// App name -> the address it got by DHCP (`s` from the upstream LAN).
    ip: BTreeMap<String, String>,
    /// App name -> the MAC of its TAP.
    mac: BTreeMap<String, String>,
    /// The NIC's own MAC, and the host's address on its TAP.
    nic_mac: String,
    host_ip: String,
    /// The NIC's `disable_ipv6` before niswitch ran.
    nic_ipv6: String,
}

impl Lab {
    fn nic(&self) -> String {
        format!("{}e0", self.p)
    }
    fn knic(&self) -> String {
        format!("k{}e0", self.p)
    }
    fn tap(&self, app: &str) -> String {
        format!("{}-{app}", self.p)
    }
    /// Every namespace of the lab: the device's, the upstream's, the apps'.
    fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.dev.clone(), self.up.clone()];
        v.extend(self.ns.values().cloned());
        v
    }
}

fn lan(d: &Daemon) -> Value {
    let st = d.status();
    st["network_instances"]
        .as_array()
        .and_then(|v| v.iter().find(|n| n["name"] == "lan").cloned())
        .unwrap_or(Value::Null)
}

fn uplink(d: &Daemon) -> Value {
    lan(d)["uplinks"][0].clone()
}

/// The lab of both tests (see the module doc): every app has its lease, the uplink is active.
fn lab(p: &str) -> Lab {
    need(&["dnsmasq", "udhcpc", "ping"]);
    let mut sb = Sandbox::new(p).unwrap();
    let (nic, lan_if) = (format!("{p}e0"), format!("{p}-lan"));
    let (dev, up) = dev_and_up(&mut sb, &nic, &lan_if);
    let ns: BTreeMap<String, String> = ALL
        .iter()
        .map(|n| (n.to_string(), sb.ns(n).unwrap()))
        .collect();
    upstream_dhcp(&mut sb, &up, &lan_if, "upstream");
    let nic_mac = mac_of(&sb, &dev, &nic);
    let nic_ipv6 = sb.out(
        &dev,
        &format!("cat /proc/sys/net/ipv6/conf/{nic}/disable_ipv6"),
    );
    let d = start(&mut sb, &dev, &config(p), "nsw");
    let mut ip = BTreeMap::new();
    let mut mac = BTreeMap::new();
    for (n, app_ns) in &ns {
        let tap = format!("{p}-{n}");
        ip.insert(n.clone(), lease(&sb, app_ns, &tap));
        mac.insert(n.clone(), mac_of(&sb, app_ns, &tap));
    }
    for n in LOCAL {
        assert!(ip[n].starts_with("10.50.0."), "{n}: {ip:?}");
    }
    assert!(ip["s"].starts_with("192.0.2."), "s: {ip:?}");
    // The host keeps using the NIC through its TAP.
    let host_ip = lease(&sb, &dev, &nic);
    assert!(host_ip.starts_with("192.0.2."), "{host_ip}");
    assert!(
        wait_until(Duration::from_secs(15), || uplink(&d)["active"] == true),
        "the local NI's uplink is not active: {}",
        uplink(&d)
    );
    Lab {
        sb,
        d,
        p: p.to_string(),
        dev,
        up,
        ns,
        ip,
        mac,
        nic_mac,
        host_ip,
        nic_ipv6,
    }
}

// ------------------------------------------------------------------ pings

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A `ping -D -O -i 0.05` running in the background.
struct Ping {
    pid: u32,
    log: String,
    what: String,
}

fn start_ping(sb: &mut Sandbox, ns: &str, dst: &str, log: &str, what: &str) -> Ping {
    let pid = sb
        .spawn(
            ns,
            Path::new("/usr/bin/ping"),
            &["-n", "-D", "-O", "-i", "0.05", dst],
            log,
        )
        .expect("spawn ping");
    Ping {
        pid,
        log: log.to_string(),
        what: what.to_string(),
    }
}

/// What a ping printed so far.
#[derive(Default)]
struct PingLog {
    /// (time, icmp_seq) of every reply.
    replies: Vec<(f64, u64)>,
    /// icmp_seq -> the time ping said "no answer yet" for it.
    late: BTreeMap<u64, f64>,
    /// From the summary, once ping has stopped.
    transmitted: Option<u64>,
    received: Option<u64>,
}

fn num_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn parse_ping(text: &str) -> PingLog {
    let mut out = PingLog::default();
    for line in text.lines() {
        let ts = line
            .strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .and_then(|t| t.parse::<f64>().ok());
        if let (Some(ts), Some(seq)) = (ts, num_after(line, "icmp_seq=")) {
            if line.contains("bytes from") {
                out.replies.push((ts, seq));
            } else if line.contains("no answer yet") {
                out.late.insert(seq, ts);
            }
        }
        if line.contains("packets transmitted") {
            let first: String = line.chars().take_while(char::is_ascii_digit).collect();
            out.transmitted = first.parse().ok();
            out.received = num_after(line, ", ");
        }
    }
    out
}

impl PingLog {
    /// The first reply after `t`.
    fn first_after(&self, t: f64) -> Option<f64> {
        self.replies.iter().map(|r| r.0).find(|&ts| ts > t)
    }
    /// The last reply before `t`.
    fn last_before(&self, t: f64) -> Option<f64> {
        self.replies
            .iter()
            .map(|r| r.0)
            .take_while(|&ts| ts < t)
            .last()
    }
    /// Echo requests sent between the last reply before `t0` and the first
    /// after `t1` (the requests of an outage).
    fn unanswered(&self, t0: f64, t1: f64) -> u64 {
        let before = self.replies.iter().take_while(|r| r.0 < t0).last();
        let after = self.replies.iter().find(|r| r.0 > t1);
        match (before, after) {
            (Some(b), Some(a)) => a.1.saturating_sub(b.1 + 1),
            _ => 0,
        }
    }
    /// Echo requests that never got a reply, with about when they were sent
    /// (the last one sent, still in flight when ping stopped, not counted).
    fn lost(&self) -> Vec<(u64, f64)> {
        let got: BTreeSet<u64> = self.replies.iter().map(|r| r.1).collect();
        let sent = self.transmitted.unwrap_or(0);
        (1..sent)
            .filter(|s| !got.contains(s))
            .map(|s| {
                let at = self.late.get(&s).copied().unwrap_or_else(|| {
                    // No "no answer yet" line: about one interval after the
                    // previous reply.
                    self.replies
                        .iter()
                        .rev()
                        .find(|r| r.1 < s)
                        .map_or(0.0, |r| r.0)
                        + 0.05
                });
                (s, at)
            })
            .collect()
    }
}

impl Ping {
    fn read(&self, sb: &Sandbox) -> PingLog {
        parse_ping(&sb.log(&self.log))
    }
    /// Stops it with SIGINT (it prints its summary) and returns what it printed.
    fn stop(&self, sb: &mut Sandbox) -> PingLog {
        sb.signal(self.pid, libc::SIGINT);
        sb.wait(self.pid, Duration::from_secs(5));
        let log = self.read(sb);
        assert!(
            log.transmitted.is_some(),
            "{}: no summary:\n{}",
            self.what,
            sb.log(&self.log)
        );
        log
    }
    /// Waits (at most `limit`) for a reply after `t`; its time.
    fn resumed_after(&self, sb: &Sandbox, t: f64, limit: Duration) -> Option<f64> {
        let mut at = None;
        wait_until(limit, || {
            at = self.read(sb).first_after(t);
            at.is_some()
        });
        at
    }
}

/// Starts the traffic of both tests: `a` pings `b`, `c` pings the upstream
/// through the NAT, and waits until both get replies.
fn traffic(l: &mut Lab) -> (Ping, Ping) {
    let (a, c, b_ip) = (l.ns["a"].clone(), l.ns["c"].clone(), l.ip["b"].clone());
    let ab = start_ping(&mut l.sb, &a, &b_ip, "ping-ab.log", "a -> b");
    let nat = start_ping(
        &mut l.sb,
        &c,
        UPSTREAM,
        "ping-nat.log",
        "c -> upstream (NAT)",
    );
    let t = now_s();
    for p in [&ab, &nat] {
        assert!(
            p.resumed_after(&l.sb, t, Duration::from_secs(10)).is_some(),
            "{} gets no replies:\n{}",
            p.what,
            l.sb.log(&p.log)
        );
    }
    (ab, nat)
}

fn summary(what: &str, log: &PingLog) -> String {
    let (tx, rx) = (log.transmitted.unwrap_or(0), log.received.unwrap_or(0));
    format!(
        "{what}: {tx} sent, {rx} received, {} lost ({:.2} %)",
        tx.saturating_sub(rx),
        100.0 * tx.saturating_sub(rx) as f64 / tx.max(1) as f64
    )
}

// ------------------------------------------------------------------ what is on the host

/// name -> (ifindex, is a TAP) of every interface in `ns`.
type Links = BTreeMap<String, (u32, bool)>;

fn links(sb: &Sandbox, ns: &str) -> Links {
    let out = sb.out(
        ns,
        "cd /sys/class/net && for n in *; do t=0; [ -e $n/tun_flags ] && t=1; echo \"$(cat $n/ifindex) $n $t\"; done",
    );
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let idx = f.next()?.parse().ok()?;
            let name = f.next()?.to_string();
            Some((name, (idx, f.next()? == "1")))
        })
        .collect()
}

/// The interfaces of every namespace of the lab.
fn inventory(l: &Lab) -> BTreeMap<String, Links> {
    l.namespaces()
        .into_iter()
        .map(|ns| {
            let v = links(&l.sb, &ns);
            (ns, v)
        })
        .collect()
}

/// Interfaces of the root namespace named with the lab's prefix (read only).
fn root_links(p: &str) -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(p))
                .collect()
        })
        .unwrap_or_default()
}

/// `name` is in `links` and is a TAP or (`tap` false) not; else fails with `what`.
fn assert_link(links: &Links, name: &str, tap: bool, what: &str) {
    assert_eq!(links.get(name).map(|x| x.1), Some(tap), "{what}: {links:?}");
}

/// The interface names in `links`.
fn names(links: &Links) -> BTreeSet<&str> {
    links.keys().map(String::as_str).collect()
}

/// The running layout: the NIC is `k<device>`, the host TAP `<device>`,
/// each app's TAP is in the app's namespace, and there is nothing else.
fn check_layout(l: &Lab, inv: &BTreeMap<String, Links>, when: &str) {
    let dev = &inv[&l.dev];
    let (nic, knic) = (l.nic(), l.knic());
    assert_link(dev, &knic, false, &format!("{when}: the NIC is not {knic}"));
    assert_link(
        dev,
        &nic,
        true,
        &format!("{when}: the host TAP {nic} is missing"),
    );
    assert_eq!(
        names(dev),
        BTreeSet::from(["lo", nic.as_str(), knic.as_str()]),
        "{when}: interfaces of the device namespace"
    );
    for (app, ns) in &l.ns {
        let tap = l.tap(app);
        let here = &inv[ns];
        assert_link(
            here,
            &tap,
            true,
            &format!("{when}: TAP {tap} missing in {ns}"),
        );
        assert_eq!(
            names(here),
            BTreeSet::from(["lo", tap.as_str()]),
            "{when}: interfaces of {ns}"
        );
    }
    let up = &inv[&l.up];
    assert!(up.values().all(|x| !x.1), "{when}: a TAP upstream: {up:?}");
    // Each TAP exists once, in its own namespace.
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (ns, ls) in inv {
        for (name, (_, tap)) in ls {
            if *tap {
                seen.entry(name).or_default().push(ns);
            }
        }
    }
    assert!(
        seen.values().all(|v| v.len() == 1),
        "{when}: a TAP in several namespaces: {seen:?}"
    );
    let root = root_links(&l.p);
    assert!(
        root.is_empty(),
        "{when}: links of the lab in the root namespace: {root:?}"
    );
}

/// True when `ns` pings `ip` once within 5 s.
fn reaches(sb: &Sandbox, ns: &str, ip: &str) -> bool {
    wait_until(Duration::from_secs(5), || {
        sb.ok(ns, &format!("ping -c 1 -W 1 {ip}"))
    })
}

fn read_json(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// taps.json lists exactly the TAPs of the config, nics.json the renamed NIC
/// as it was before niswitch changed it.
fn check_records(l: &Lab, when: &str) {
    let taps = read_json(&l.d.state.join("taps.json"));
    let got: BTreeSet<(String, Option<String>)> = taps
        .as_array()
        .map(|v| {
            v.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or("").to_string(),
                        t["netns"].as_str().map(String::from),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut want: BTreeSet<(String, Option<String>)> =
        l.ns.iter()
            .map(|(app, ns)| (l.tap(app), Some(ns.clone())))
            .collect();
    want.insert((l.nic(), None));
    assert_eq!(got, want, "{when}: taps.json: {taps}");
    // The NIC as it was before niswitch renamed it, recorded once: the
    // same record after every restart.
    let nics = read_json(&l.d.state.join("nics.json"));
    let rec = nics
        .as_array()
        .filter(|v| v.len() == 1)
        .map(|v| v[0].clone())
        .unwrap_or(Value::Null);
    assert!(
        rec["device"] == l.nic().as_str() && rec["renamed_to"] == l.knic().as_str(),
        "{when}: nics.json: {nics}"
    );
    assert_eq!(
        rec["ipv6"].as_str(),
        Some(l.nic_ipv6.as_str()),
        "{when}: the NIC's original IPv6 state in nics.json: {nics}"
    );
}

/// Every lease of the local NI is the one from before: in status (with its
/// app), in the lease file, on the app's interface, and it works.
fn check_leases(l: &Lab, when: &str) {
    let ni = lan(&l.d);
    let st = l.d.status();
    let file = read_json(&l.d.state.join(format!("leases-{LAN_UUID}.json")));
    let now = now_s() as u64;
    for app in LOCAL {
        let (ip, mac) = (&l.ip[app], &l.mac[app]);
        let same_mac = |v: &Value| v.as_str().is_some_and(|m| m.eq_ignore_ascii_case(mac));
        let in_status = ni["leases"].as_array().is_some_and(|v| {
            v.iter()
                .any(|x| x["ip"] == ip.as_str() && x["app"] == app && same_mac(&x["mac"]))
        });
        assert!(
            in_status,
            "{when}: lease of {app} ({ip}, {mac}) not in status: {}",
            ni["leases"]
        );
        let vif_ips = st["apps"]
            .as_array()
            .and_then(|v| v.iter().find(|a| a["name"] == app))
            .map(|a| a["interfaces"][0]["ips"].clone())
            .unwrap_or(Value::Null);
        assert!(
            vif_ips
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == ip.as_str())),
            "{when}: {app}'s interface does not show {ip}: {vif_ips}"
        );
        let in_file = file.as_array().is_some_and(|v| {
            v.iter().any(|x| {
                x["ip"] == ip.as_str()
                    && same_mac(&x["mac"])
                    && x["expires"].as_u64().is_some_and(|e| e > now)
            })
        });
        assert!(
            in_file,
            "{when}: lease of {app} ({ip}) not in the lease file: {file}"
        );
        let ns = &l.ns[app];
        assert_eq!(
            ipv4_of(&l.sb, ns, &l.tap(app)),
            *ip,
            "{when}: {app}'s address"
        );
        assert!(
            reaches(&l.sb, ns, GW),
            "{when}: {app} cannot ping the gateway"
        );
    }
    // The switch NI's app and the host keep their upstream leases.
    assert_eq!(ipv4_of(&l.sb, &l.ns["s"], &l.tap("s")), l.ip["s"], "{when}");
    assert!(
        reaches(&l.sb, &l.ns["s"], UPSTREAM),
        "{when}: the switch NI's app cannot reach the upstream LAN"
    );
    assert_eq!(ipv4_of(&l.sb, &l.dev, &l.nic()), l.host_ip, "{when}");
}

fn daemon_pid(d: &Daemon) -> Option<u64> {
    control::call(&d.ctl, &Request::Info)
        .ok()
        .and_then(|v| v["pid"].as_u64())
}

/// Warnings and errors a daemon logged.
fn complaints(sb: &Sandbox, log: &str) -> Vec<String> {
    sb.log(log)
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
        .map(String::from)
        .collect()
}

// ------------------------------------------------------------------ the tests

/// How soon after the killed daemon is gone traffic must flow again (the
/// new one starts in about 0.1 s; the router then gets its uplink address
/// by DHCP again and probes the gateway: about 2 s here).
const RESUME_APPS: Duration = Duration::from_secs(3);
const RESUME_NAT: Duration = Duration::from_secs(8);
const RESTARTS: usize = 20;

/// What one restart took, in seconds: until the new daemon answered, until
/// each ping got a reply again (from when the old one was gone), and the
/// whole gap between replies.
struct Round {
    n: usize,
    answered: f64,
    back_ab: f64,
    gap_ab: f64,
    back_nat: f64,
    gap_nat: f64,
    /// Echo requests of the outage of each ping.
    lost_ab: u64,
    lost_nat: u64,
    /// Drop counters of the apps' interfaces that are not zero.
    drops: String,
}

/// The drop counters of the apps' interfaces that are not zero.
fn vif_drops(d: &Daemon) -> String {
    let st = d.status();
    let mut out = Vec::new();
    for a in st["apps"].as_array().into_iter().flatten() {
        for v in a["interfaces"].as_array().into_iter().flatten() {
            for (reason, n) in v["drops"].as_object().into_iter().flatten() {
                if n.as_u64().unwrap_or(0) > 0 {
                    out.push(format!(
                        "{}:{reason}={n}",
                        a["name"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    out.join(" ")
}

#[test]
fn kill_9_restarts_under_traffic_keep_leases_taps_and_names() {
    if !root_or_skip("kill_9_restarts_under_traffic_keep_leases_taps_and_names") {
        return;
    }
    let t_test = Instant::now();
    let mut l = lab("nswfk");
    let first = inventory(&l);
    check_layout(&l, &first, "before the first kill");
    check_records(&l, "before the first kill");
    check_leases(&l, "before the first kill");
    let (ab, nat) = traffic(&mut l);

    let mut rows = Vec::new();
    let mut logs = vec![l.d.log.clone()];
    for round in 1..=RESTARTS {
        let when = format!("after restart {round}");
        let t_kill = now_s();
        let old = l.d.pid;
        l.sb.signal(old, libc::SIGKILL);
        l.sb.wait(old, Duration::from_secs(5));
        assert!(
            !Path::new(&format!("/proc/{old}")).exists(),
            "round {round}: niswitch {old} survived SIGKILL"
        );
        let t_dead = now_s();
        let log = format!("nsw-{round}.log");
        let t0 = Instant::now();
        let d = restart(&mut l.sb, &l.d, &log, &[]);
        let answered = t0.elapsed();
        l.d = d;
        logs.push(log.clone());
        assert_eq!(daemon_pid(&l.d), Some(l.d.pid as u64), "{when}");

        // Traffic resumes (replies sent after the old daemon was gone).
        let within =
            |limit: Duration| limit.saturating_sub(Duration::from_secs_f64(now_s() - t_dead));
        let back_ab = ab
            .resumed_after(&l.sb, t_dead, within(RESUME_APPS))
            .filter(|t| t - t_dead <= RESUME_APPS.as_secs_f64());
        let back_nat = nat
            .resumed_after(&l.sb, t_dead, within(RESUME_NAT))
            .filter(|t| t - t_dead <= RESUME_NAT.as_secs_f64());
        let (pa, pn) = (ab.read(&l.sb), nat.read(&l.sb));
        assert!(
            back_ab.is_some(),
            "{when}: a -> b did not resume within {RESUME_APPS:?}; log:\n{}",
            l.sb.log(&log)
        );
        assert!(
            back_nat.is_some(),
            "{when}: c -> upstream did not resume within {RESUME_NAT:?}; uplink {}; log:\n{}",
            uplink(&l.d),
            l.sb.log(&log)
        );
        let gap = |p: &PingLog, back: Option<f64>| {
            back.unwrap_or(t_dead) - p.last_before(t_kill).unwrap_or(t_kill)
        };
        rows.push(Round {
            n: round,
            answered: answered.as_secs_f64(),
            back_ab: back_ab.unwrap() - t_dead,
            gap_ab: gap(&pa, back_ab),
            back_nat: back_nat.unwrap() - t_dead,
            gap_nat: gap(&pn, back_nat),
            lost_ab: pa.unanswered(t_kill, t_dead),
            lost_nat: pn.unanswered(t_kill, t_dead),
            drops: vif_drops(&l.d),
        });

        let inv = inventory(&l);
        check_layout(&l, &inv, &when);
        assert_eq!(
            inv, first,
            "{when}: interfaces (names, ifindex, TAP or not)"
        );
        check_records(&l, &when);
        check_leases(&l, &when);
    }

    let (pa, pn) = (ab.stop(&mut l.sb), nat.stop(&mut l.sb));
    eprintln!(
        "round  status after  a->b back  a->b gap  nat back  nat gap  (s)  a->b lost  nat lost  VIF drops"
    );
    for r in &rows {
        eprintln!(
            "{:5}  {:12.2}  {:9.2}  {:8.2}  {:8.2}  {:7.2}       {:9}  {:8}  {}",
            r.n,
            r.answered,
            r.back_ab,
            r.gap_ab,
            r.back_nat,
            r.gap_nat,
            r.lost_ab,
            r.lost_nat,
            r.drops
        );
    }
    let max = |f: fn(&Round) -> f64| rows.iter().map(f).fold(0.0, f64::max);
    eprintln!(
        "{RESTARTS} kill -9 restarts: {}; {}; longest outage a->b {:.2} s, c->upstream {:.2} s",
        summary("a -> b", &pa),
        summary("c -> upstream", &pn),
        max(|r| r.gap_ab),
        max(|r| r.gap_nat)
    );
    for log in &logs {
        for c in complaints(&l.sb, log) {
            eprintln!("{log}: {c}");
        }
        assert!(
            !l.sb.log(log).contains("panicked"),
            "{log}:\n{}",
            l.sb.log(log)
        );
    }

    // A clean exit gives the NIC its name (and MAC) back and removes the TAPs.
    let pid = l.d.pid;
    l.sb.signal(pid, libc::SIGTERM);
    assert_eq!(
        l.sb.wait(pid, Duration::from_secs(10)),
        Some(0),
        "{}",
        l.sb.log(&l.d.log)
    );
    let inv = inventory(&l);
    let dev = &inv[&l.dev];
    assert_link(
        dev,
        &l.nic(),
        false,
        &format!("{} is the NIC again", l.nic()),
    );
    assert!(!dev.contains_key(&l.knic()), "no renamed NIC left: {dev:?}");
    assert_eq!(mac_of(&l.sb, &l.dev, &l.nic()), l.nic_mac);
    assert_eq!(
        l.sb.out(
            &l.dev,
            &format!("cat /proc/sys/net/ipv6/conf/{}/disable_ipv6", l.nic())
        ),
        l.nic_ipv6,
        "the NIC's IPv6 state is given back"
    );
    for (ns, ls) in &inv {
        assert!(
            ls.values().all(|x| !x.1),
            "a TAP left in {ns} after a clean exit: {ls:?}"
        );
    }
    eprintln!("kill -9 test took {:?}", t_test.elapsed());
}

const FLAPS: usize = 10;
/// How long the NIC's peer stays down: long enough for a probe to see it.
const DOWN: Duration = Duration::from_millis(1500);

#[test]
fn link_flaps_under_traffic() {
    if !root_or_skip("link_flaps_under_traffic") {
        return;
    }
    let t_test = Instant::now();
    let mut l = lab("nswff");
    let pid = l.d.pid;
    assert_eq!(daemon_pid(&l.d), Some(pid as u64));
    let (ab, nat) = traffic(&mut l);
    let peer = format!("{}-lan", l.p);
    let link_up = |d: &Daemon| d.status()["ports"][0]["link_up"].clone();
    // Upstream traffic comes back within interval × failures + interval of
    // the link coming back (and some slack for the measurement).
    let bound = PROBE_INTERVAL * PROBE_FAILURES + PROBE_INTERVAL;
    let slack = 0.5;

    let mut windows = Vec::new();
    let mut back = Vec::new();
    let mut unhealthy = 0;
    for flap in 1..=FLAPS {
        let t_down = now_s();
        assert!(l.sb.ok(&l.up, &format!("ip link set {peer} down")));
        assert!(
            wait_until(Duration::from_secs(3), || link_up(&l.d) == false),
            "flap {flap}: status never showed the link down"
        );
        let rest = DOWN.saturating_sub(Duration::from_secs_f64(now_s() - t_down));
        if wait_until(rest, || uplink(&l.d)["healthy"] == false) {
            unhealthy += 1;
        }
        std::thread::sleep(DOWN.saturating_sub(Duration::from_secs_f64(now_s() - t_down)));
        let t_up = now_s();
        assert!(l.sb.ok(&l.up, &format!("ip link set {peer} up")));
        let limit = Duration::from_secs_f64(bound + slack + 1.0);
        let at = nat.resumed_after(&l.sb, t_up, limit);
        let took = at.map(|t| t - t_up);
        assert!(
            took.is_some_and(|t| t <= bound + slack),
            "flap {flap}: c -> upstream came back after {took:?} s (bound {bound} s); uplink {}",
            uplink(&l.d)
        );
        back.push(took.unwrap());
        assert!(
            wait_until(Duration::from_secs(3), || link_up(&l.d) == true),
            "flap {flap}: status never showed the link up"
        );
        // Some traffic with the link up before the next flap.
        std::thread::sleep(Duration::from_millis(1000));
        windows.push((t_down, now_s()));
        assert_eq!(
            daemon_pid(&l.d),
            Some(pid as u64),
            "flap {flap}: the daemon changed"
        );
    }
    let (pa, pn) = (ab.stop(&mut l.sb), nat.stop(&mut l.sb));
    let lost = pa.lost();
    let per_flap: Vec<usize> = windows
        .iter()
        .map(|(a, b)| lost.iter().filter(|x| x.1 >= *a && x.1 <= *b).count())
        .collect();
    eprintln!(
        "{FLAPS} link flaps ({DOWN:?} down): {}; lost per flap {per_flap:?}; {}; \
         upstream back after {:?} s (bound {bound} s); the uplink was seen unhealthy in \
         {unhealthy} of the flaps",
        summary("a -> b", &pa),
        summary("c -> upstream", &pn),
        back.iter()
            .map(|t| (t * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    assert!(
        lost.len() <= FLAPS && per_flap.iter().all(|&n| n <= 1),
        "app-to-app pings lost across the flaps: {lost:?} (per flap {per_flap:?})"
    );
    // The same daemon all along.
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(daemon_pid(&l.d), Some(pid as u64));
    let log = l.sb.log(&l.d.log);
    assert_eq!(
        log.matches("niswitch is running").count(),
        1,
        "one start only:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    for c in complaints(&l.sb, &l.d.log) {
        eprintln!("nsw.log: {c}");
    }
    eprintln!("link flap test took {:?}", t_test.elapsed());
}
