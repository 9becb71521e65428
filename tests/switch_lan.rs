//! A switch NI on a NIC: apps behind niswitch get leases from the LAN's
//! DHCP server (dnsmasq upstream) with dhcpcd, udhcpc and dhclient, have the
//! derived MACs, ping each other and the upstream, and move TCP through the
//! NIC whose veth peer keeps its default offloads (GRO'd frames, partial
//! checksums).

mod common;
use common::*;

const P: &str = "nswlan";

fn config() -> String {
    format!(
        "version: 1
ports:
  - {{ name: lan, device: {P}-nic }}
network_instances:
  - {{ name: flat, uuid: 2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b, type: switch, port: lan }}
apps:
  - {{ name: a, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430c1, interfaces: [{{ ni: flat, tap: {P}-a, netns: {P}-a }}] }}
  - {{ name: b, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430c2, interfaces: [{{ ni: flat, tap: {P}-b, netns: {P}-b }}] }}
  - {{ name: c, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd430c3, interfaces: [{{ ni: flat, tap: {P}-c, netns: {P}-c }}] }}
"
    )
}

#[test]
fn dhcp_clients_get_leases_and_traffic_flows() {
    if !root_or_skip("dhcp_clients_get_leases_and_traffic_flows") {
        return;
    }
    need(&[
        "dnsmasq", "dhcpcd", "udhcpc", "dhclient", "iperf3", "ping", "ss",
    ]);
    let mut sb = Sandbox::new(P).unwrap();
    let dev = sb.ns("dev").unwrap();
    let up = sb.ns("up").unwrap();
    let apps: Vec<String> = ["a", "b", "c"].iter().map(|n| sb.ns(n).unwrap()).collect();
    sb.veth(&dev, &format!("{P}-nic"), &up, &format!("{P}-lan"))
        .unwrap();
    lan_dnsmasq(
        &mut sb,
        &up,
        &format!("{P}-lan"),
        "192.0.2",
        "dnsmasq",
        &["--port=0"],
    );
    let d = start(&mut sb, &dev, &config(), "nsw");
    let cfg = niswitch::config::load(&d.config).unwrap();

    // TAPs appear in the app namespaces with the derived MACs.
    for (app, ns) in cfg.apps.iter().zip(&apps) {
        let vif = &app.interfaces[0];
        assert_eq!(
            sb.out(ns, &format!("cat /sys/class/net/{}/address", vif.tap)),
            vif.mac.to_string()
        );
    }

    // Three DHCP clients.
    let a_if = format!("{P}-a");
    let b_if = format!("{P}-b");
    let c_if = format!("{P}-c");
    let ok = sb.ok(
        &apps[0],
        &format!("dhcpcd -1 -4 -c /bin/true -t 20 {a_if} >/dev/null 2>&1"),
    );
    assert!(
        ok,
        "dhcpcd got no lease; dnsmasq log:\n{}",
        sb.log("dnsmasq.log")
    );
    assert!(
        sb.ok(
            &apps[1],
            &format!("udhcpc -i {b_if} -n -q -t 10 -T 1 >/dev/null 2>&1")
        ),
        "udhcpc got no lease"
    );
    let pf = sb.path("dhclient.pid");
    let lf = sb.path("dhclient.leases");
    let ok = sb.ok(
        &apps[2],
        &format!(
            "timeout 30 dhclient -1 -4 -pf {} -lf {} {c_if} >/dev/null 2>&1",
            pf.display(),
            lf.display()
        ),
    );
    assert!(ok, "dhclient got no lease");
    let ips: Vec<String> = [(&apps[0], &a_if), (&apps[1], &b_if), (&apps[2], &c_if)]
        .iter()
        .map(|(ns, i)| ipv4_of(&sb, ns, i))
        .collect();
    for ip in &ips {
        assert!(ip.starts_with("192.0.2.1"), "lease in range: {ips:?}");
    }
    // dhcpcd stays around as a daemon only with -1 absent; stop dhclient's.
    sb.sh(
        &apps[2],
        &format!("dhclient -x -pf {} {c_if} >/dev/null 2>&1", pf.display()),
    );
    sb.sh(
        &apps[0],
        &format!("dhcpcd -x {a_if} >/dev/null 2>&1; rm -f /var/lib/dhcpcd/{a_if}.lease*"),
    );

    for i in 0..3 {
        assert!(
            ping(&sb, &apps[i], &ips[(i + 1) % 3]),
            "app {i} -> app {}",
            (i + 1) % 3
        );
        assert!(ping(&sb, &apps[i], "192.0.2.1"), "app {i} -> upstream");
    }

    // status shows the apps' learned addresses and the MAC table.
    let st = d.status();
    for (k, ip) in ips.iter().enumerate() {
        let got = &st["apps"][k]["interfaces"][0]["ips"];
        assert!(
            got.as_array()
                .is_some_and(|v| v.iter().any(|x| x == ip.as_str())),
            "status ips of app {k}: {got} want {ip}"
        );
    }
    assert!(
        st["network_instances"][0]["mac_table"]
            .as_array()
            .is_some_and(|t| t.len() >= 4),
        "{st}"
    );

    // TCP through the NIC both ways: GRO'd, partially checksummed frames pass whole.
    let srv = sb
        .spawn(
            &up,
            std::path::Path::new("/usr/bin/iperf3"),
            &["-s", "-1", "-B", "192.0.2.1"],
            "iperf-up.log",
        )
        .unwrap();
    wait_listening(&sb, &up, 5201);
    let out = sb.out(&apps[0], "iperf3 -c 192.0.2.1 -t 2 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"end\"][\"sum_received\"][\"bits_per_second\"])'");
    let bps: f64 = out.parse().unwrap_or(0.0);
    assert!(
        bps > 50e6,
        "TCP app->upstream {out}; niswitch log:\n{}",
        sb.log(&d.log)
    );
    sb.wait(srv, std::time::Duration::from_secs(5));
    let srv = sb
        .spawn(
            &apps[1],
            std::path::Path::new("/usr/bin/iperf3"),
            &["-s", "-1", "-B", &ips[1]],
            "iperf-b.log",
        )
        .unwrap();
    wait_listening(&sb, &apps[1], 5201);
    let out = sb.out(&up, &format!("iperf3 -c {} -t 2 -R -J | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"end\"][\"sum_received\"][\"bits_per_second\"])'", ips[1]));
    let bps: f64 = out.parse().unwrap_or(0.0);
    assert!(bps > 50e6, "TCP upstream<->app {out}");
    sb.wait(srv, std::time::Duration::from_secs(5));
    assert_eq!(d.drops("lan", "too_big"), 0, "{}", d.status());
}
