//! ACLs of an app interface against real traffic: only what a rule allows
//! passes (and its replies), a `host` rule opens the addresses the NI's DNS
//! answered, a limit rule drops the excess, and flow records with the
//! SPEC §6 fields and the right counts land in flows.jsonl.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

const P: &str = "nswacl";

fn config(p: &str) -> String {
    format!(
        "version: 1
ports: [{{ name: wan, device: {p}-n }}]
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, dhcp_range: 10.50.0.100-10.50.0.199, uplinks: [wan], probe: {{ interval: 1, failures: 2 }} }}
apps:
  - name: a
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43201
    interfaces:
      - ni: lan
        tap: {p}-a
        netns: {p}-a
        acls:
          - {{ match: {{ ip: 192.0.2.1/32, protocol: tcp, fport: 80 }}, action: allow }}
          - {{ match: {{ host: upstream.example }}, action: allow }}
          - {{ match: {{ protocol: udp, fport: 5001 }}, action: allow, limit: {{ rate: 10, burst: 5, unit: s }} }}
  - name: b
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43202
    interfaces: [{{ ni: lan, tap: {p}-b, netns: {p}-b }}]
"
    )
}

/// A UDP receiver that prints a line per datagram.
const COUNTER: &str = "import socket, sys\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
s.bind(('192.0.2.1', 5001))\n\
while True:\n\
    s.recv(2048)\n\
    print('got', flush=True)\n";

fn curl(sb: &Sandbox, ns: &str, url: &str) -> bool {
    sb.ok(ns, &format!("curl -sf -m 3 -o /dev/null {url}"))
}

fn vif_a(d: &Daemon) -> serde_json::Value {
    d.status()["apps"][0]["interfaces"][0].clone()
}

#[test]
fn acls_allow_only_what_they_say_and_flows_are_recorded() {
    if !root_or_skip("acls_allow_only_what_they_say_and_flows_are_recorded") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "dig", "python3"]);
    let mut sb = Sandbox::new(P).unwrap();
    let dev = sb.ns("dev").unwrap();
    let up = sb.ns("up").unwrap();
    let a = sb.ns("a").unwrap();
    let b = sb.ns("b").unwrap();
    sb.veth(&dev, &format!("{P}-n"), &up, &format!("{P}-l"))
        .unwrap();
    lan_dnsmasq(
        &mut sb,
        &up,
        &format!("{P}-l"),
        "192.0.2",
        "up",
        &["--address=/upstream.example/192.0.2.3"],
    );
    for ip in ["192.0.2.2", "192.0.2.3"] {
        assert!(sb.ok(&up, &format!("ip addr add {ip}/24 dev {P}-l")));
    }
    // A web root with a file of known size, served on ports 80 and 8080.
    let www = sb.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("file"), vec![b'x'; 100_000]).unwrap();
    let py = Path::new("/usr/bin/python3");
    let root = www.to_string_lossy().to_string();
    for port in ["80", "8080"] {
        sb.spawn(
            &up,
            py,
            &["-m", "http.server", port, "-d", &root],
            &format!("http{port}.log"),
        )
        .unwrap();
    }
    sb.spawn(&up, py, &["-u", "-c", COUNTER], "udp.log")
        .unwrap();
    let d = start(&mut sb, &dev, &config(P), "nsw");
    for (ns, tap) in [(&a, "a"), (&b, "b")] {
        assert!(
            sb.ok(
                ns,
                &format!("udhcpc -i {P}-{tap} -n -q -t 10 -T 1 >/dev/null 2>&1")
            ),
            "lease for {tap}"
        );
    }
    let uplink_up = wait_until(Duration::from_secs(15), || {
        d.status()["network_instances"][0]["uplinks"][0]["active"] == true
    });
    assert!(uplink_up, "uplink active");

    // Rule 0: TCP 80 on 192.0.2.1, and nothing else there.
    assert!(
        wait_until(Duration::from_secs(5), || curl(
            &sb,
            &a,
            "http://192.0.2.1/file"
        )),
        "allowed: TCP 80 to 192.0.2.1"
    );
    assert!(!curl(&sb, &a, "http://192.0.2.1:8080/"), "another port");
    assert!(!curl(&sb, &a, "http://192.0.2.2/"), "another host");
    assert!(
        !sb.ok(&a, "ping -c 1 -W 1 192.0.2.1"),
        "ICMP is not allowed"
    );
    assert!(ping(&sb, &b, "192.0.2.1"), "app b has no ACL");

    // Rule 1: the host rule opens 192.0.2.3 only once DNS answered it.
    assert!(!curl(&sb, &a, "http://192.0.2.3/"), "not resolved yet");
    let ans = sb.out(&a, "dig +short +time=2 @10.50.0.1 -q upstream.example");
    assert_eq!(ans, "192.0.2.3", "resolved through the NI's DNS");
    assert!(curl(&sb, &a, "http://192.0.2.3/"), "after resolving");

    // Rule 2: at most 5 + 10/s UDP datagrams to port 5001.
    sb.sh(
        &a,
        "/usr/bin/python3 -c \"import socket; s = socket.socket(2, 2)\n\
         for i in range(200): s.sendto(b'x' * 32, ('192.0.2.1', 5001))\"",
    );
    // Read once the server's count has been still for 300 ms.
    let (mut last, mut still) = (usize::MAX, 0);
    wait_until(Duration::from_secs(3), || {
        let now = sb.log("udp.log").lines().count();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        still >= 3
    });
    let got = sb.log("udp.log").lines().count();
    eprintln!("{got} of 200 datagrams passed the limit");
    assert!((3..=25).contains(&got), "{got} of 200 passed");

    let v = vif_a(&d);
    let hits: Vec<u64> = serde_json::from_value(v["acl_hits"].clone()).unwrap();
    assert!(
        hits.len() == 3 && hits.iter().all(|h| *h >= 1),
        "each of the 3 rules decided a flow: {v}"
    );
    assert!(v["drops"]["acl_denied"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(
        v["drops"]["acl_rate_limited"].as_u64().unwrap_or(0) > 100,
        "{v}"
    );

    // Flow records: the download (closed TCP: soon), the dropped flows
    // (after 30 s without packets).
    let mut recs = Vec::new();
    let done = wait_until(Duration::from_secs(45), || {
        recs = flow_records(&d.state);
        let dl = recs
            .iter()
            .any(|r| r["dport"] == 80 && r["dst"] == "192.0.2.1");
        let dropped = recs
            .iter()
            .any(|r| r["dport"] == 8080 && r["action"] == "drop");
        dl && dropped
    });
    assert!(done, "records: {recs:?}");
    let dl = recs
        .iter()
        .find(|r| r["dport"] == 80 && r["dst"] == "192.0.2.1" && r["rx_bytes"].as_u64() > Some(0))
        .expect("download record");
    for field in [
        "app", "app_uuid", "ni", "vif", "proto", "src", "sport", "dst", "dport", "inbound",
        "start", "end", "tx_pkts", "tx_bytes", "rx_pkts", "rx_bytes", "action", "acl",
    ] {
        assert!(dl.get(field).is_some(), "{field} in {dl}");
    }
    assert_eq!(dl["app"], "a");
    assert_eq!(dl["proto"], 6);
    assert_eq!(dl["action"], "allow");
    assert_eq!(dl["acl"], 0);
    assert_eq!(dl["inbound"], false);
    assert!(dl["rx_bytes"].as_u64().unwrap() > 100_000, "{dl}");
    assert!(
        dl["rx_pkts"].as_u64().unwrap() >= 70,
        "segments counted: {dl}"
    );
    assert!(dl["tx_pkts"].as_u64().unwrap() >= 3, "{dl}");
    let drop = recs
        .iter()
        .find(|r| r["dport"] == 8080)
        .expect("drop record");
    assert_eq!(
        drop["acl"],
        serde_json::Value::Null,
        "no rule matched: {drop}"
    );
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_niswitch"))
        .args(["flows", "--state-dir"])
        .arg(sb.path("nsw-state"))
        .output()
        .expect("niswitch flows");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("a/nswacl-a tcp"), "{text}");
    assert!(text.contains(" drop "), "{text}");
}
