//! Uplinks of a local NI: the router's address on each uplink (by DHCP from
//! the LAN, or static), probes of the gateway, the cheapest healthy uplink
//! active, failover within interval × failures + interval and back.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn uplinks(d: &Daemon) -> serde_json::Value {
    d.status()["network_instances"][0]["uplinks"].clone()
}

fn active(d: &Daemon) -> Option<String> {
    uplinks(d)
        .as_array()?
        .iter()
        .find(|u| u["active"] == true)
        .and_then(|u| u["port"].as_str().map(String::from))
}

/// Waits (10 s at most) until `port` is the active uplink; how long it took.
fn time_until_active(d: &Daemon, port: &str) -> Duration {
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || active(d).as_deref()
            == Some(port)),
        "{port} never active: {}",
        uplinks(d)
    );
    let took = t0.elapsed();
    eprintln!("{port} active after {took:?}");
    took
}

/// A device whose one NIC is a veth to an upstream host at 192.0.2.1.
fn one_uplink_lab(p: &str) -> (Sandbox, String, String) {
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let up = sb.ns("up").unwrap();
    sb.veth(&dev, &format!("{p}-n"), &up, &format!("{p}-l"))
        .unwrap();
    assert!(sb.ok(&up, &format!("ip addr add 192.0.2.1/24 dev {p}-l")));
    (sb, dev, up)
}

#[test]
fn cheapest_healthy_uplink_is_active_and_fails_over_within_the_bound() {
    if !root_or_skip("cheapest_healthy_uplink_is_active_and_fails_over_within_the_bound") {
        return;
    }
    need(&["dnsmasq"]);
    let p = "nswupl";
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let up1 = sb.ns("up1").unwrap();
    let up2 = sb.ns("up2").unwrap();
    sb.veth(&dev, &format!("{p}-n1"), &up1, &format!("{p}-l1"))
        .unwrap();
    sb.veth(&dev, &format!("{p}-n2"), &up2, &format!("{p}-l2"))
        .unwrap();
    lan_dnsmasq(&mut sb, &up1, &format!("{p}-l1"), "192.0.2", "up1", &[]);
    lan_dnsmasq(&mut sb, &up2, &format!("{p}-l2"), "198.51.100", "up2", &[]);
    let cfg = format!(
        "version: 1
ports:
  - {{ name: wan1, device: {p}-n1, cost: 0 }}
  - {{ name: wan2, device: {p}-n2, cost: 10 }}
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, uplinks: [wan2, wan1], probe: {{ target: gateway, interval: 1, failures: 2 }} }}
"
    );
    let d = start(&mut sb, &dev, &cfg, "nsw");
    assert!(
        wait_until(Duration::from_secs(15), || active(&d).as_deref()
            == Some("wan1")),
        "wan1 (cost 0) active: {}",
        uplinks(&d)
    );
    let u = uplinks(&d);
    assert!(
        u.to_string().contains("198.51.100."),
        "wan2 has its own address too: {u}"
    );
    assert!(
        u.as_array().unwrap().iter().all(|x| x["healthy"] == true),
        "{u}"
    );

    // The cable of wan1 is pulled: wan2 takes over within 1 × 2 + 1 seconds.
    sb.sh(&up1, &format!("ip link set {p}-l1 down"));
    let took = time_until_active(&d, "wan2");
    assert!(
        took <= Duration::from_millis(3500),
        "failover took {took:?}"
    );

    // wan1 comes back: after 2 good probes in a row it is active again.
    sb.sh(&up1, &format!("ip link set {p}-l1 up"));
    let took = time_until_active(&d, "wan1");
    assert!(
        took <= Duration::from_millis(4500),
        "failback took {took:?}"
    );
}

#[test]
fn static_uplink_address_needs_no_dhcp_server() {
    if !root_or_skip("static_uplink_address_needs_no_dhcp_server") {
        return;
    }
    let p = "nswups";
    let (mut sb, dev, up) = one_uplink_lab(p);
    let cfg = format!(
        "version: 1
ports: [{{ name: wan, device: {p}-n }}]
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, uplinks: [wan], uplink_address: 192.0.2.50/24, uplink_gateway: 192.0.2.1, probe: {{ interval: 1, failures: 2 }} }}
"
    );
    let d = start(&mut sb, &dev, &cfg, "nsw");
    time_until_active(&d, "wan");
    assert_eq!(uplinks(&d)[0]["address"], "192.0.2.50/24");
    assert!(
        ping(&sb, &up, "192.0.2.50"),
        "the router answers on its uplink address"
    );
}

/// UDP datagrams to a broadcast address that no socket in `ns` took.
fn broadcasts_nobody_took(sb: &Sandbox, ns: &str) -> u64 {
    let out = sb.out(ns, "nstat -saz UdpIgnoredMulti");
    (out.lines())
        .filter_map(|l| l.strip_prefix("UdpIgnoredMulti"))
        .find_map(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_dhcp_server_that_starts_late_is_found_within_seconds() {
    if !root_or_skip("a_dhcp_server_that_starts_late_is_found_within_seconds") {
        return;
    }
    need(&["dnsmasq", "nstat"]);
    let p = "nswupd";
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let up = sb.ns("up").unwrap();
    sb.veth(&dev, &format!("{p}-n"), &up, &format!("{p}-l"))
        .unwrap();
    let cfg = format!(
        "version: 1
ports: [{{ name: wan, device: {p}-n }}]
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, uplinks: [wan], probe: {{ interval: 1, failures: 2 }} }}
"
    );
    let d = start(&mut sb, &dev, &cfg, "nsw");
    // The router's first DISCOVER reached the LAN while no server ran.
    assert!(
        wait_until(Duration::from_secs(5), || broadcasts_nobody_took(&sb, &up)
            > 0),
        "no DISCOVER reached the LAN"
    );
    lan_dnsmasq(
        &mut sb,
        &up,
        &format!("{p}-l"),
        "192.0.2",
        "up",
        &["--log-facility=-", "--log-dhcp"],
    );
    // The next DISCOVER goes out at most 4 s after the first; dnsmasq
    // pings an address for up to 3 s before it offers it. A client that
    // waits 10 s to ask again misses this bound.
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || uplinks(&d)[0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("192.0.2."))),
        "no address 10 s after the server started: {}\n{}",
        uplinks(&d),
        sb.log("up.log")
    );
    eprintln!("address {:?} after the server started", t0.elapsed());
}

#[test]
fn tcp_probe_target_follows_the_service() {
    if !root_or_skip("tcp_probe_target_follows_the_service") {
        return;
    }
    let p = "nswupt";
    let (mut sb, dev, up) = one_uplink_lab(p);
    let srv = sb
        .spawn(
            &up,
            std::path::Path::new("/usr/bin/python3"),
            &["-m", "http.server", "8080", "--bind", "192.0.2.1"],
            "http.log",
        )
        .unwrap();
    let cfg = format!(
        "version: 1
ports: [{{ name: wan, device: {p}-n }}]
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, uplinks: [wan], uplink_address: 192.0.2.50/24, uplink_gateway: 192.0.2.1,
      probe: {{ target: \"192.0.2.1:8080\", interval: 1, failures: 2 }} }}
"
    );
    let d = start(&mut sb, &dev, &cfg, "nsw");
    assert!(
        wait_until(Duration::from_secs(10), || uplinks(&d)[0]["healthy"]
            == true),
        "TCP probe succeeds: {}",
        uplinks(&d)
    );
    // The service stops (the host still answers ping): the uplink is unhealthy.
    sb.signal(srv, libc::SIGTERM);
    sb.wait(srv, Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(6), || uplinks(&d)[0]["healthy"]
            == false),
        "{}",
        uplinks(&d)
    );
    assert!(ping(&sb, &up, "192.0.2.50"));
}
