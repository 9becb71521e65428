//! The metadata server of a local NI (SPEC §5.1) against curl and raw
//! sockets in app namespaces: each app reads its own EVE and OpenStack
//! documents (an app with ACLs too), never another's; a forged source gets
//! nothing; bad and slow requests are answered or cut without holding up
//! others; a live apply changes user data; an air-gapped NI's apps reach
//! the server by the route DHCP gives them.

mod common;
use common::*;
use std::time::{Duration, Instant};

const UUID_A: &str = "6ba7b810-9dad-11d1-80b4-00c04fd43a01";

fn config(p: &str, user_data: &str) -> String {
    format!(
        "version: 1
ports:
  - {{ name: up, device: {p}-nic }}
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, uplinks: [up] }}
  - {{ name: gap, type: local, subnet: 10.60.0.0/24 }}
apps:
  - name: a
    uuid: {UUID_A}
    user_data: \"{user_data}\"
    interfaces: [{{ ni: lan, tap: {p}-a, netns: {p}-a }}]
  - name: b
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43a02
    interfaces:
      - {{ ni: lan, tap: {p}-b, netns: {p}-b, acls: [{{ match: {{ protocol: udp, fport: 9 }}, action: allow }}] }}
  - name: c
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43a03
    interfaces: [{{ ni: gap, tap: {p}-c, netns: {p}-c }}]
"
    )
}

const META: &str = "http://169.254.169.254";

/// `curl` of a metadata path from `ns`: the body, or None on any failure.
fn get(sb: &Sandbox, ns: &str, path: &str) -> Option<String> {
    let out = sb.sh(ns, &format!("curl -sf -m 5 {META}{path}"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The HTTP status of a metadata path from `ns`.
fn status_of(sb: &Sandbox, ns: &str, path: &str) -> String {
    sb.out(
        ns,
        &format!("curl -s -m 5 -o /dev/null -w '%{{http_code}}' {META}{path}"),
    )
}

fn counter(d: &Daemon, ni: usize, name: &str) -> u64 {
    d.status()["network_instances"][ni]["router"]["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn each_app_reads_its_own_metadata() {
    if !root_or_skip("each_app_reads_its_own_metadata") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "dhclient", "curl", "python3"]);
    let p = "nswmeta";
    let mut sb = Sandbox::new(p).unwrap();
    let (dev, up) = dev_and_up(&mut sb, &format!("{p}-nic"), &format!("{p}-lan"));
    upstream_dhcp(&mut sb, &up, &format!("{p}-lan"), "up");
    let ns: Vec<String> = ["a", "b", "c"].iter().map(|n| sb.ns(n).unwrap()).collect();
    let d = start(
        &mut sb,
        &dev,
        &config(p, "#cloud-config\\nhostname: a\\n"),
        "nsw",
    );
    let ip_a = lease(&sb, &ns[0], &format!("{p}-a"));
    let ip_b = lease(&sb, &ns[1], &format!("{p}-b"));
    let ext = || {
        let u = &d.status()["network_instances"][0]["uplinks"][0];
        (u["active"] == true).then(|| u["address"].as_str().unwrap_or("").to_string())
    };
    assert!(
        wait_until(Duration::from_secs(15), || ext().is_some()),
        "no active uplink"
    );
    let ext = ext().unwrap_or_default();
    let ext = ext.split('/').next().unwrap_or_default();

    // EVE's documents name the app that asks and where it asked from.
    let doc = get(&sb, &ns[0], "/eve/v1/network.json").expect("network.json for a");
    let v: serde_json::Value = serde_json::from_str(&doc).expect("JSON");
    assert_eq!(v["hostname"], "a", "{v}");
    assert_eq!(v["app-name"], "a", "{v}");
    assert_eq!(v["app-uuid"], UUID_A, "{v}");
    assert_eq!(v["external-ipv4"], ext, "{v}");
    let caller = v["caller-ip"].as_str().unwrap_or("");
    assert!(caller.starts_with(&format!("{ip_a}:")), "{v}");
    assert_eq!(
        get(&sb, &ns[0], "/eve/v1/external_ipv4").as_deref(),
        Some(ext)
    );
    assert_eq!(get(&sb, &ns[0], "/eve/v1/hostname").as_deref(), Some("a"));

    // The OpenStack layout, with a's own user data and MAC.
    let md = get(&sb, &ns[0], "/openstack/latest/meta_data.json").expect("meta_data.json");
    assert!(md.contains(UUID_A), "{md}");
    let ud = get(&sb, &ns[0], "/openstack/latest/user_data");
    assert_eq!(ud.as_deref(), Some("#cloud-config\nhostname: a\n"));
    let nd = get(&sb, &ns[0], "/openstack/latest/network_data.json").expect("network_data");
    assert!(nd.contains(&mac_of(&sb, &ns[0], &format!("{p}-a"))), "{nd}");

    // b has ACLs that allow nothing like it and still reads its own data,
    // never a's: no user data of its own is a 404.
    let doc = get(&sb, &ns[1], "/eve/v1/network.json").expect("network.json for b");
    assert!(doc.contains("\"hostname\":\"b\""), "{doc}");
    assert!(doc.contains(&format!("{ip_b}:")), "{doc}");
    assert_eq!(status_of(&sb, &ns[1], "/openstack/latest/user_data"), "404");
    assert_eq!(status_of(&sb, &ns[1], "/nothing/here"), "404");

    // b forging a's address gets nothing (control: its own address works).
    assert!(sb.ok(&ns[1], &format!("ip addr add {ip_a}/32 dev {p}-b")));
    let forged = sb.sh(
        &ns[1],
        &format!("curl -sf -m 3 --interface {ip_a} {META}/eve/v1/hostname"),
    );
    // 28: the time ran out (not a local failure to bind or connect).
    assert_eq!(
        forged.status.code(),
        Some(28),
        "a forged source gets no answer: {}",
        String::from_utf8_lossy(&forged.stderr)
    );
    assert!(sb.ok(&ns[1], &format!("ip addr del {ip_a}/32 dev {p}-b")));
    assert_eq!(get(&sb, &ns[1], "/eve/v1/hostname").as_deref(), Some("b"));

    // A slow client holding a connection does not hold up another, and is
    // cut; bad requests get their status.
    let slow = "import socket, time\n\
                s = socket.create_connection(('169.254.169.254', 80))\n\
                s.send(b'GET / HTTP/1.1\\r\\n')\n\
                t = time.time()\n\
                try:\n    r = s.recv(99)\nexcept OSError:\n    r = b''\n\
                print('cut' if not r else r, round(time.time() - t))\n";
    let slow_pid = sb
        .spawn(
            &ns[0],
            std::path::Path::new("/usr/bin/python3"),
            &["-c", slow],
            "slow.log",
        )
        .expect("slow client");
    let t0 = Instant::now();
    assert_eq!(get(&sb, &ns[0], "/eve/v1/hostname").as_deref(), Some("a"));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        wait_until(Duration::from_secs(15), || sb
            .log("slow.log")
            .contains("cut")),
        "the slow client was never cut: {}",
        sb.log("slow.log")
    );
    assert!(
        sb.wait(slow_pid, Duration::from_secs(2)).is_some(),
        "the slow client ended"
    );
    let raw = |req: &str| {
        sb.out(
            &ns[0],
            &format!(
                "python3 -c \"import socket; s=socket.create_connection(('169.254.169.254',80)); \
                 s.send({req}); print(s.recv(64).split(b' ')[1].decode())\""
            ),
        )
    };
    assert_eq!(raw("b'POST / HTTP/1.1\\r\\n\\r\\n'"), "405");
    assert_eq!(raw("b'garbage\\r\\n\\r\\n'"), "400");
    assert_eq!(raw("b'GET / HTTP/1.1\\r\\nX: ' + b'a' * 9000"), "431");
    assert!(counter(&d, 0, "metadata_answered") >= 10);
    assert!(
        counter(&d, 0, "tcp_refused") >= 1,
        "the slow client was counted"
    );

    // A live apply changes a's user data without a restart.
    let f = write_file(
        &sb,
        "new.yaml",
        &config(p, "#cloud-config\\nhostname: a2\\n"),
    );
    let out = apply(&sb, &d, &f, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            get(&sb, &ns[0], "/openstack/latest/user_data").as_deref()
                == Some("#cloud-config\nhostname: a2\n")
        }),
        "the new user data is served"
    );

    // An air-gapped NI has no default route: dhclient takes the host route
    // to the metadata server from option 121.
    let c = &ns[2];
    let (pf, lf) = (sb.path("c.pid"), sb.path("c.leases"));
    let dhclient = format!(
        "timeout 20 dhclient -1 -4 -pf {} -lf {} {p}-c >/dev/null 2>&1",
        pf.display(),
        lf.display()
    );
    assert!(sb.ok(c, &dhclient), "dhclient lease on the air-gapped NI");
    let route = sb.out(c, "ip route get 169.254.169.254");
    assert!(route.contains("via 10.60.0.1"), "{route}");
    assert_eq!(get(&sb, c, "/eve/v1/hostname").as_deref(), Some("c"));
    assert_eq!(status_of(&sb, c, "/eve/v1/external_ipv4"), "404");
    sb.sh(c, &format!("kill -9 $(cat {})", pf.display()));
}
