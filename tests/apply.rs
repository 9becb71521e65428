//! Live apply (SPEC §8) and the daemon around it, against real clients:
//!
//! 1. a long TCP transfer through the NAT of an unchanged app survives an
//!    apply that adds an app and changes another app's ACLs; the unchanged
//!    app keeps its TAP (same ifindex), the new app's TAP gets a lease;
//! 2. a 20 pps ping between two unchanged apps loses at most one packet
//!    across an apply that adds, removes and changes apps; the removed app's
//!    TAP goes;
//! 3. an apply whose probe fails (a wrong uplink gateway) is rolled back:
//!    `apply` exits 1 naming the probe, the old uplink comes back and the
//!    host's management TAP still reaches the LAN;
//! 4. an invalid config is refused with the same field paths as `check` and
//!    changes nothing; `--dry-run` prints the plan and changes nothing;
//! 5. SIGHUP re-reads the config file and applies it;
//! 6. an invalid config at start falls back to the last good config, and
//!    the log says so once;
//! 7. kill -9 in the middle of an apply leaves no TAP and no renamed NIC
//!    behind: the next start runs the last good config and cleans up;
//! 8. `/metrics` is valid Prometheus text with port, NI, uplink and apply
//!    metrics;
//! 9. the control socket is 0600, refuses a request over 4 MiB with an
//!    error reply and keeps answering;
//! 10. two applies at once are serialized: the result is one of the two
//!     configs, never a mix.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use niswitch::control::{self, Request};
use serde_json::Value;

/// One app with one interface in its own namespace `{p}-{name}`.
fn app(p: &str, name: &str, n: u8, ni: &str, extra: &str) -> String {
    format!(
        "  - {{ name: {name}, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd431{n:02x}, interfaces: [{{ ni: {ni}, tap: {p}-{name}, netns: {p}-{name}{extra} }}] }}\n"
    )
}

/// A local NI `lan` whose uplink `wan` is the NIC `{p}-n`.
fn local_cfg(p: &str, apps: &str) -> String {
    format!(
        "version: 1
ports: [{{ name: wan, device: {p}-n }}]
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, dhcp_range: 10.50.0.100-10.50.0.199, uplinks: [wan], probe: {{ target: gateway, interval: 1, failures: 2 }} }}
apps:
{apps}"
    )
}

/// An air-gapped switch NI `n`: nothing to probe, applies are quick.
fn switch_cfg(apps: &str) -> String {
    format!("version: 1\nnetwork_instances: [{{ name: n, type: switch }}]\napps:\n{apps}")
}

/// Switch NI `n` with the apps `names`, numbered from 1.
fn switch_apps(p: &str, names: &[&str]) -> String {
    let apps: Vec<String> = (1..)
        .zip(names)
        .map(|(i, n)| app(p, n, i, "n", ""))
        .collect();
    switch_cfg(&apps.concat())
}

/// A sandbox `p` with the device namespace `dev` and one namespace per app.
fn sandbox(p: &str, apps: &[&str]) -> (Sandbox, String) {
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    for a in apps {
        sb.ns(a).unwrap();
    }
    (sb, dev)
}

/// A sandbox `p` running niswitch with app `a` on switch NI `n`; `more` apps get namespaces.
fn switch_lab(p: &str, more: &[&str]) -> (Sandbox, Daemon) {
    let (mut sb, dev) = sandbox(p, &[&["a"], more].concat());
    let d = start(&mut sb, &dev, &switch_apps(p, &["a"]), "nsw");
    (sb, d)
}

/// `sandbox` and a namespace `up`, whose `{p}-lan` is a veth to the NIC `nic` in `dev`.
fn with_up(p: &str, nic: &str, apps: &[&str]) -> (Sandbox, String, String) {
    let (mut sb, dev) = sandbox(p, apps);
    let up = sb.ns("up").unwrap();
    sb.veth(&dev, nic, &up, &format!("{p}-lan")).unwrap();
    (sb, dev, up)
}

/// `with_up` where dnsmasq leases 192.0.2.100-150 (192.0.2.1 is the upstream host).
fn lab(p: &str, nic: &str, apps: &[&str]) -> (Sandbox, String, String) {
    let (mut sb, dev, up) = with_up(p, nic, apps);
    upstream_dhcp(&mut sb, &up, &format!("{p}-lan"), "dnsmasq");
    (sb, dev, up)
}

/// Frames the daemon has received from the app interface `tap`.
fn vif_rx(d: &Daemon, tap: &str) -> u64 {
    let st = d.status();
    let ifs = st["apps"].as_array().into_iter().flatten();
    ifs.flat_map(|a| a["interfaces"].as_array().cloned().unwrap_or_default())
        .find(|i| i["tap"] == tap)
        .and_then(|i| i["rx_packets"].as_u64())
        .unwrap_or(0)
}

/// Starts `job` in a thread and, once `tap` has sent `frames` more frames
/// through the daemon, applies `file`: (output, `job` still ran, its result).
fn apply_during<T: Send>(
    sb: &Sandbox,
    d: &Daemon,
    file: &Path,
    (tap, frames): (&str, u64),
    job: impl FnOnce() -> T + Send,
) -> (Output, bool, T) {
    let before = vif_rx(d, tap);
    std::thread::scope(|s| {
        let job = s.spawn(job);
        let going = wait_until(Duration::from_secs(10), || {
            vif_rx(d, tap) >= before + frames
        });
        assert!(going, "{tap} sent {frames} frames before the apply");
        let applied = apply(sb, d, file, "");
        let still_running = !job.is_finished();
        (applied, still_running, job.join().unwrap())
    })
}

/// The apply exited 0; else the test fails with its output and the daemon's log.
fn assert_applied(sb: &Sandbox, d: &Daemon, applied: &Output) {
    let (out, err) = (text(&applied.stdout), text(&applied.stderr));
    let log = sb.log(&d.log);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "apply failed:\n{out}{err}\nlog:\n{log}"
    );
}

/// `niswitch apply` of `file` against `d`, started in the background; its PID.
fn spawn_apply(sb: &mut Sandbox, d: &Daemon, file: &Path, log: &str) -> u32 {
    let (file, ctl) = (file.to_string_lossy(), d.ctl.to_string_lossy());
    let args = ["apply", "--config", &file, "--control", &ctl];
    sb.spawn(&d.ns, Path::new(BIN), &args, log).unwrap()
}

/// Waits until `d` keeps its config as the last good one; that file.
fn wait_last_good(sb: &Sandbox, d: &Daemon) -> PathBuf {
    let last_good = d.state.join("last-good.yaml");
    assert!(
        wait_until(Duration::from_secs(10), || last_good.exists()),
        "the starting config is kept as the last good one\nlog:\n{}",
        sb.log(&d.log)
    );
    last_good
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The app names in status, sorted.
fn app_names(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = d.status()["apps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What a config put in place, as status shows it: ports, NIs, and the
/// apps with their interfaces (no counters, leases or apply record).
fn shape(d: &Daemon) -> Value {
    let s = d.status();
    let names = |k: &str| -> Vec<Value> {
        s[k].as_array()
            .map(|a| a.iter().map(|x| x["name"].clone()).collect())
            .unwrap_or_default()
    };
    let apps: Vec<Value> = s["apps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let ifs: Vec<Value> = x["interfaces"]
                        .as_array()
                        .map(|i| {
                            i.iter()
                                .map(|v| {
                                    serde_json::json!([v["ni"], v["tap"], v["mac"], v["netns"]])
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    serde_json::json!({"name": x["name"], "uuid": x["uuid"], "interfaces": ifs})
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({"ports": names("ports"), "nis": names("network_instances"), "apps": apps})
}

/// True when app `n`'s TAP `{p}-{n}` is in its namespace of the same name.
fn app_tap(sb: &Sandbox, p: &str, n: &str) -> bool {
    let t = format!("{p}-{n}");
    is_tap(sb, &t, &t)
}

/// True when app `n`'s namespace `{p}-{n}` has no interface `{p}-{n}`.
fn app_tap_gone(sb: &Sandbox, p: &str, n: &str) -> bool {
    let t = format!("{p}-{n}");
    !has_link(sb, &t, &t)
}

fn ifindex(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    sb.out(ns, &format!("cat /sys/class/net/{ifname}/ifindex"))
}

fn uplink(d: &Daemon) -> Value {
    d.status()["network_instances"][0]["uplinks"][0].clone()
}

fn uplink_active(d: &Daemon) -> bool {
    let u = uplink(d);
    u["healthy"] == true && u["active"] == true
}

fn wait_uplink(sb: &Sandbox, d: &Daemon) {
    assert!(
        wait_until(Duration::from_secs(15), || uplink_active(d)),
        "the uplink never became healthy and active: {}\nlog:\n{}",
        uplink(d),
        sb.log(&d.log)
    );
}

#[test]
fn nat_transfer_of_an_unchanged_app_survives_an_apply() {
    if !root_or_skip("nat_transfer_of_an_unchanged_app_survives_an_apply") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "iperf3", "ss", "dig"]);
    let p = "nswap1";
    let (mut sb, dev, up) = lab(p, &format!("{p}-n"), &["a", "b", "c"]);
    let (a_ns, c_ns) = (format!("{p}-a"), format!("{p}-c"));
    let (a_tap, c_tap) = (format!("{p}-a"), format!("{p}-c"));
    sb.spawn(
        &up,
        Path::new("/usr/bin/iperf3"),
        &["-s", "-B", "192.0.2.1", "-p", "5201", "--forceflush"],
        "iperf3-server.log",
    )
    .unwrap();
    let old = local_cfg(
        p,
        &format!(
            "{}{}",
            app(p, "a", 1, "lan", ""),
            app(
                p,
                "b",
                2,
                "lan",
                ", acls: [{ match: { ip: 0.0.0.0/0 }, action: allow }]"
            )
        ),
    );
    let new = local_cfg(
        p,
        &format!(
            "{}{}{}",
            app(p, "a", 1, "lan", ""),
            app(
                p,
                "b",
                2,
                "lan",
                ", acls: [{ match: { protocol: icmp }, action: allow }, { match: { protocol: tcp, fport: 80 }, action: allow }]"
            ),
            app(p, "c", 3, "lan", "")
        ),
    )
    // The NI's own DNS changes too: in place, its NAT sessions stay.
    .replace(
        "subnet: 10.50.0.0/24,",
        "subnet: 10.50.0.0/24, dns: { records: [{ name: added.example, ip: 10.50.0.9 }] },",
    );
    let d = start(&mut sb, &dev, &old, "nsw");
    wait_uplink(&sb, &d);
    lease(&sb, &a_ns, &a_tap);
    let index_before = ifindex(&sb, &a_ns, &a_tap);
    assert!(!index_before.is_empty());
    wait_listening(&sb, &up, 5201);
    let new_file = write_file(&sb, "new.yaml", &new);

    // Let the transfer get going before the apply.
    let (applied, still_running, iperf) = apply_during(&sb, &d, &new_file, (&a_tap, 2000), || {
        sb.sh(&a_ns, "iperf3 -c 192.0.2.1 -p 5201 -t 8 -J")
    });
    assert_applied(&sb, &d, &applied);
    let log = sb.log(&d.log);
    let plan = text(&applied.stdout);
    assert!(
        plan.contains(&format!("add app interface {c_tap}"))
            && plan.contains(&format!("update app interface {p}-b in place"))
            && plan.contains("update network instance lan in place")
            && !plan.contains("router"),
        "plan:\n{plan}"
    );
    assert!(
        !plan.contains(&a_tap),
        "the unchanged app is not in the plan:\n{plan}"
    );
    assert!(
        still_running,
        "the apply ended while the transfer still ran"
    );
    let report: Value = serde_json::from_slice(&iperf.stdout).unwrap_or(Value::Null);
    assert!(
        iperf.status.success() && report.get("error").is_none(),
        "iperf3 through the NAT failed across the apply: {}\n{}\nlog:\n{log}",
        report.get("error").unwrap_or(&Value::Null),
        text(&iperf.stderr)
    );
    let bytes = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    eprintln!("iperf3 moved {bytes} bytes across the apply");
    assert!(bytes > 10_000_000, "only {bytes} bytes: {}", report["end"]);
    // It went through the NAT: the server saw the router's uplink address.
    let ext = uplink(&d)["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or("?")
        .to_string();
    let server = sb.log("iperf3-server.log");
    assert!(
        server.contains(&format!("Accepted connection from {ext},")),
        "the server saw the uplink address {ext}:\n{server}"
    );

    // The unchanged app kept its TAP; the new one has its own and a lease.
    assert_eq!(
        ifindex(&sb, &a_ns, &a_tap),
        index_before,
        "app a's TAP was made again"
    );
    assert!(
        is_tap(&sb, &c_ns, &c_tap),
        "the new app's TAP in its namespace"
    );
    let c_ip = lease(&sb, &c_ns, &c_tap);
    assert!(c_ip.starts_with("10.50.0."), "{c_ip}");
    assert!(
        app_names(&d).contains(&"c".to_string()),
        "status shows app c: {:?}",
        app_names(&d)
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            d.status()["network_instances"][0]["leases"]
                .as_array()
                .is_some_and(|l| {
                    l.iter()
                        .any(|x| x["app"] == "c" && x["ip"] == c_ip.as_str())
                })
        }),
        "status shows c's lease: {}",
        d.status()["network_instances"][0]["leases"]
    );
    assert_eq!(d.status()["apply"]["last_result"], "ok");
    // The new record answers.
    let added = sb.out(&a_ns, "dig +short +time=2 @10.50.0.1 -q added.example");
    assert_eq!(added, "10.50.0.9", "the NI's new DNS record");
}

#[test]
fn ping_between_unchanged_apps_loses_at_most_one_packet_across_an_apply() {
    if !root_or_skip("ping_between_unchanged_apps_loses_at_most_one_packet_across_an_apply") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "ping"]);
    let p = "nswap2";
    let (mut sb, dev, _up) = lab(p, &format!("{p}-n"), &["a", "b", "c", "d", "e"]);
    let ns = |n: &str| format!("{p}-{n}");
    let icmp = ", acls: [{ match: { protocol: icmp }, action: allow }]";
    let icmp_tcp = ", acls: [{ match: { protocol: icmp }, action: allow }, { match: { protocol: tcp }, action: allow }]";
    let old = local_cfg(
        p,
        &[
            app(p, "a", 1, "lan", ""),
            app(p, "b", 2, "lan", ""),
            app(p, "c", 3, "lan", ""),
            app(p, "d", 4, "lan", icmp),
        ]
        .concat(),
    );
    let new = local_cfg(
        p,
        &[
            app(p, "a", 1, "lan", ""),
            app(p, "b", 2, "lan", ""),
            app(p, "d", 4, "lan", icmp_tcp),
            app(p, "e", 5, "lan", ""),
        ]
        .concat(),
    );
    let d = start(&mut sb, &dev, &old, "nsw");
    wait_uplink(&sb, &d);
    lease(&sb, &ns("a"), &ns("a"));
    let b_ip = lease(&sb, &ns("b"), &ns("b"));
    assert!(ping(&sb, &ns("a"), &b_ip), "a reaches b");
    let new_file = write_file(&sb, "new.yaml", &new);

    // Twenty pings before the apply.
    let (applied, still_running, pinged) = apply_during(&sb, &d, &new_file, (&ns("a"), 20), || {
        sb.sh(&ns("a"), &format!("ping -i 0.05 -c 100 -W 1 {b_ip}"))
    });
    assert_applied(&sb, &d, &applied);
    let log = sb.log(&d.log);
    let plan = text(&applied.stdout);
    for step in [
        format!("remove app interface {p}-c"),
        format!("add app interface {p}-e"),
        format!("update app interface {p}-d in place"),
    ] {
        assert!(plan.contains(&step), "`{step}` in the plan:\n{plan}");
    }
    assert!(still_running, "the apply ended while the ping still ran");
    let summary = text(&pinged.stdout);
    let count = |what: &str| -> u64 {
        summary
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| {
                l.split(',')
                    .find(|f| f.contains(what))
                    .and_then(|f| f.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    let (sent, got) = (count("transmitted"), count("received"));
    eprintln!("ping across the apply: {sent} sent, {got} received");
    assert_eq!(sent, 100, "{summary}");
    assert!(
        sent - got <= 1,
        "lost {} of {sent} pings across the apply:\n{summary}\nlog:\n{log}",
        sent - got
    );

    // The removed app's TAP goes, and it leaves status.
    assert!(
        wait_until(Duration::from_secs(5), || app_tap_gone(&sb, p, "c")),
        "{}-c still exists in its namespace",
        p
    );
    let names = app_names(&d);
    assert_eq!(names, ["a", "b", "d", "e"], "status after the apply");
    assert!(app_tap(&sb, p, "e"), "the new app's TAP");
}

#[test]
fn a_failed_probe_restores_the_previous_config() {
    if !root_or_skip("a_failed_probe_restores_the_previous_config") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "ping"]);
    let p = "nswap3";
    let nic = format!("{p}e0");
    let (mut sb, dev, _up) = lab(p, &nic, &["a"]);
    let cfg = |uplink: &str| {
        format!(
            "version: 1
ports:
  - {{ device: {nic}, management: true }}
network_instances:
  - {{ name: lan, type: local, subnet: 10.50.0.0/24, uplinks: [{nic}], probe: {{ target: gateway, interval: 1, failures: 2 }}{uplink} }}
apps:
{}",
            app(p, "a", 1, "lan", "")
        )
    };
    let d = start(&mut sb, &dev, &cfg(""), "nsw");
    // The host gets its lease (and default route) through its TAP.
    let host_ip = lease(&sb, &dev, &nic);
    assert!(host_ip.starts_with("192.0.2."), "{host_ip}");
    let routes = sb.out(&dev, "ip route show default");
    assert!(
        routes.contains(&format!("via 192.0.2.1 dev {nic}")),
        "default route through the host TAP: {routes}"
    );
    wait_uplink(&sb, &d);
    let old_addr = uplink(&d)["address"].clone();
    assert!(
        old_addr
            .as_str()
            .is_some_and(|a| a.starts_with("192.0.2.1")),
        "a DHCP address on the uplink: {old_addr}"
    );
    let before = shape(&d);

    // Valid, but nobody answers at this gateway.
    let bad = write_file(
        &sb,
        "bad.yaml",
        &cfg(", uplink_address: 192.0.2.50/24, uplink_gateway: 192.0.2.77"),
    );
    let out = sb.out(
        &dev,
        &format!("{BIN} check --config {} >/dev/null; echo $?", bad.display()),
    );
    assert_eq!(out, "0", "the broken config is valid");
    let t0 = Instant::now();
    let applied = apply(&sb, &d, &bad, "--probe-timeout 5");
    let took = t0.elapsed();
    let (stdout, stderr) = (text(&applied.stdout), text(&applied.stderr));
    let log = sb.log(&d.log);
    eprintln!("apply with a failing probe took {took:?}: {stderr}");
    assert_eq!(
        applied.status.code(),
        Some(1),
        "apply must fail:\n{stdout}{stderr}\nlog:\n{log}"
    );
    assert!(
        stderr.contains("probe failed")
            && stderr.contains("network instance `lan` has no healthy uplink"),
        "stderr names the failed probe: {stderr}"
    );
    assert!(
        stderr.contains("previous config was restored"),
        "stderr says the previous config was restored: {stderr}"
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(30),
        "the probe had its 5 s: {took:?}"
    );

    // The old config runs again: its DHCP address, healthy and active.
    assert_eq!(shape(&d), before, "the same ports, NIs and apps");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let u = uplink(&d);
            u["address"] == old_addr && u["healthy"] == true && u["active"] == true
        }),
        "the old uplink is back ({old_addr}): {}\nlog:\n{}",
        uplink(&d),
        sb.log(&d.log)
    );
    let st = d.status();
    assert_eq!(st["apply"]["last_result"], "reverted", "{}", st["apply"]);
    assert!(
        is_tap(&sb, &dev, &nic) && ipv4_of(&sb, &dev, &nic) == host_ip,
        "the host TAP keeps its address"
    );
    assert!(
        ping(&sb, &dev, "192.0.2.1"),
        "the host still reaches the upstream through its TAP\nlog:\n{}",
        sb.log(&d.log)
    );
}

#[test]
fn an_invalid_config_is_refused_and_a_dry_run_changes_nothing() {
    if !root_or_skip("an_invalid_config_is_refused_and_a_dry_run_changes_nothing") {
        return;
    }
    let p = "nswap4";
    let (sb, d) = switch_lab(p, &["x"]);
    let before = shape(&d);
    let count = || d.status()["apply"]["count"].as_u64();
    let count_before = count();

    let bad_text = switch_cfg(&format!(
        "{}{}",
        app(p, "a", 1, "nope", ""),
        "  - { name: b, uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43102, interfaces: [{ ni: n, tap: waytoolongtapname0 }] }\n"
    ));
    let bad = write_file(&sb, "bad.yaml", &bad_text);
    let checked = sb.sh(&d.ns, &format!("{BIN} check --config {}", bad.display()));
    assert_eq!(checked.status.code(), Some(1));
    let problems: Vec<String> = text(&checked.stderr)
        .lines()
        .filter(|l| !l.contains("problem(s) in"))
        .map(String::from)
        .collect();
    assert_eq!(problems.len(), 2, "check's problems: {problems:?}");
    assert!(
        problems[0].contains("apps[0].interfaces[0].ni")
            && problems[1].contains("apps[1].interfaces[0].tap"),
        "{problems:?}"
    );
    let applied = apply(&sb, &d, &bad, "");
    let stderr = text(&applied.stderr);
    assert_eq!(applied.status.code(), Some(1), "{stderr}");
    for line in &problems {
        assert!(
            stderr.lines().any(|l| l == line),
            "apply shows `{line}` as check does:\n{stderr}"
        );
    }
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(shape(&d), before, "status unchanged");
    assert_eq!(count(), count_before, "the daemon saw no apply");

    // The daemon refuses it on its own as well (a client that skips the check).
    let refused = control::call(
        &d.ctl,
        &Request::Apply {
            config: bad_text,
            source: "bad.yaml".into(),
            probe_timeout: 5,
            dry_run: false,
        },
    );
    let err = refused.expect_err("the daemon refuses an invalid config");
    assert!(
        err.contains("bad.yaml: apps[0].interfaces[0].ni")
            && err.contains("apps[1].interfaces[0].tap")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(shape(&d), before, "status unchanged");
    assert_eq!(d.status()["apply"]["last_result"], "refused");

    // A dry run prints the plan and makes nothing.
    let more = write_file(&sb, "more.yaml", &switch_apps(p, &["a", "x"]));
    let dry = apply(&sb, &d, &more, "--dry-run");
    let (stdout, stderr) = (text(&dry.stdout), text(&dry.stderr));
    assert_eq!(dry.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("add app interface {p}-x")),
        "the plan: {stdout}"
    );
    assert!(!stdout.contains("applied in"), "{stdout}");
    assert!(app_tap_gone(&sb, p, "x"), "a dry run made the TAP");
    assert_eq!(shape(&d), before, "status unchanged by the dry run");
    assert_eq!(app_names(&d), ["a"]);
}

#[test]
fn sighup_applies_the_rewritten_config_file() {
    if !root_or_skip("sighup_applies_the_rewritten_config_file") {
        return;
    }
    let p = "nswap5";
    let (sb, d) = switch_lab(p, &["b"]);
    assert_eq!(app_names(&d), ["a"]);
    std::fs::write(&d.config, switch_apps(p, &["a", "b"])).unwrap();
    sb.signal(d.pid, libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || app_names(&d) == ["a", "b"]
            && app_tap(&sb, p, "b")),
        "after SIGHUP: apps {:?}, TAP b {}\nlog:\n{}",
        app_names(&d),
        app_tap(&sb, p, "b"),
        sb.log(&d.log)
    );
    assert_eq!(d.status()["apply"]["last_result"], "ok");
    assert!(app_tap(&sb, p, "a"));
}

#[test]
fn an_invalid_config_at_start_falls_back_to_the_last_good_one() {
    if !root_or_skip("an_invalid_config_at_start_falls_back_to_the_last_good_one") {
        return;
    }
    let p = "nswap6";
    let (mut sb, dev) = sandbox(p, &["a", "b"]);
    let d = start(&mut sb, &dev, &switch_apps(p, &["a", "b"]), "nsw");
    let last_good = wait_last_good(&sb, &d);
    sb.signal(d.pid, libc::SIGTERM);
    assert_eq!(
        sb.wait(d.pid, Duration::from_secs(10)),
        Some(0),
        "{}",
        sb.log(&d.log)
    );
    assert!(app_tap_gone(&sb, p, "a"));

    std::fs::write(
        &d.config,
        "version: 1\nports: [ { this is not: yaml\napps: 7\n",
    )
    .unwrap();
    let d2 = restart(&mut sb, &d, "nsw2.log", &[]);
    let log = sb.log(&d2.log);
    assert_eq!(
        app_names(&d2),
        ["a", "b"],
        "the last good config runs\n{log}"
    );
    for n in ["a", "b"] {
        assert!(
            wait_until(Duration::from_secs(5), || app_tap(&sb, p, n)),
            "{p}-{n}\n{log}"
        );
    }
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("starting from the last good config"))
        .collect();
    assert_eq!(said.len(), 1, "one line says so:\n{log}");
    assert!(
        said[0].contains(&last_good.display().to_string())
            && said[0].contains(&d.config.display().to_string()),
        "it names both files: {}",
        said[0]
    );
}

#[test]
fn kill_9_during_an_apply_leaves_nothing_behind() {
    if !root_or_skip("kill_9_during_an_apply_leaves_nothing_behind") {
        return;
    }
    let p = "nswap7";
    let nic = format!("{p}e0");
    let knic = format!("k{nic}");
    let apps = ["a", "b", "c", "d", "e"];
    let (mut sb, dev, _up) = with_up(p, &nic, &apps);
    let nic_mac = mac_of(&sb, &dev, &nic);
    let old = switch_apps(p, &["a"]);
    let new = format!(
        "version: 1
ports:
  - {{ device: {nic}, management: true, host_interface: {nic} }}
network_instances:
  - {{ name: n, type: switch }}
  - {{ name: flat, type: switch, port: {nic} }}
apps:
{}",
        [
            app(p, "a", 1, "n", ""),
            app(p, "b", 2, "flat", ""),
            app(p, "c", 3, "flat", ""),
            app(p, "d", 4, "flat", ""),
            app(p, "e", 5, "flat", ""),
        ]
        .concat()
    );
    let d = start_with(
        &mut sb,
        &dev,
        &old,
        "nsw",
        &[],
        &[("NISWITCH_TEST_STEP_PAUSE_MS", "400")],
    );
    wait_last_good(&sb, &d);
    let new_file = write_file(&sb, "new.yaml", &new);
    let applier = spawn_apply(&mut sb, &d, &new_file, "apply.log");
    // Some steps done: the NIC renamed, the host TAP and b's TAP made ...
    assert!(
        wait_until(Duration::from_secs(10), || app_tap(&sb, p, "b")),
        "the apply never made {p}-b\nlog:\n{}\n{}",
        sb.log(&d.log),
        sb.log("apply.log")
    );
    sb.signal(d.pid, libc::SIGKILL);
    sb.wait(d.pid, Duration::from_secs(5));
    // ... but not all.
    assert!(has_link(&sb, &dev, &knic), "the NIC was renamed");
    assert!(is_tap(&sb, &dev, &nic), "the host TAP was made");
    assert!(app_tap_gone(&sb, p, "e"), "the apply was not finished");
    assert!(d.state.join("apply-in-progress").exists());
    assert_ne!(
        sb.wait(applier, Duration::from_secs(5)),
        Some(0),
        "{}",
        sb.log("apply.log")
    );

    // Started again from the old config file, without the pause.
    let d2 = restart(&mut sb, &d, "nsw2.log", &[]);
    let log = sb.log(&d2.log);
    for n in &apps[1..] {
        assert!(
            app_tap_gone(&sb, p, n),
            "{p}-{n} of the aborted apply remains\n{log}"
        );
    }
    assert!(!has_link(&sb, &dev, &knic), "{knic} remains\n{log}");
    assert!(
        has_link(&sb, &dev, &nic) && !is_tap(&sb, &dev, &nic),
        "{nic} is the NIC again\n{log}"
    );
    assert_eq!(mac_of(&sb, &dev, &nic), nic_mac);
    assert!(
        sb.ok(&dev, &format!("ip -o link show dev {nic} | grep -q ',UP'")),
        "the NIC is up again: {}",
        sb.out(&dev, &format!("ip -o link show dev {nic}"))
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("ended in the middle of an apply")
                && l.contains("starting from the last good config"))
            .count(),
        1,
        "it says it starts from the last good config:\n{log}"
    );
    assert_eq!(app_names(&d2), ["a"], "the last good config runs\n{log}");
    assert_eq!(d2.status()["ports"], serde_json::json!([]));
    assert!(app_tap(&sb, p, "a"), "app a's TAP\n{log}");
    assert!(!d.state.join("apply-in-progress").exists());
    // The ledger holds only what runs now.
    let taps = std::fs::read_to_string(d.state.join("taps.json")).unwrap_or_default();
    assert!(taps.contains(&format!("\"{p}-a\"")), "{taps}");
    for n in &apps[1..] {
        assert!(!taps.contains(&format!("\"{p}-{n}\"")), "{taps}");
    }
    let nics = std::fs::read_to_string(d.state.join("nics.json")).unwrap_or_default();
    assert!(!nics.contains(&knic), "{nics}");
}

/// One sample of Prometheus text: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without =")?;
            let key = &rest[..eq];
            if key.is_empty()
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || key.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("bad label name `{key}`"));
            }
            let mut chars = rest[eq + 1..].char_indices();
            if chars.next().map(|c| c.1) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, e @ ('\\' | '"'))) => value.push(e),
                        _ => return Err("bad escape in a label value".into()),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or("unterminated label value")?;
            labels.push((key.to_string(), value));
            rest = &rest[eq + 1 + end + 1..];
            if !(rest.starts_with(',') || rest.starts_with('}')) {
                return Err("expected , or } after a label".into());
            }
        }
    }
    let fields: Vec<&str> = rest.split(' ').collect();
    let (value, stamp) = match fields.as_slice() {
        ["", v] => (*v, None),
        ["", v, t] => (*v, Some(*t)),
        _ => return Err("expected ` value` after the name and labels".into()),
    };
    if stamp.is_some_and(|t| t.parse::<i64>().is_err()) {
        return Err("bad timestamp".into());
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("value `{v}` is not a number"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[test]
fn metrics_are_valid_prometheus_text_with_ni_uplink_and_apply_metrics() {
    if !root_or_skip("metrics_are_valid_prometheus_text_with_ni_uplink_and_apply_metrics") {
        return;
    }
    need(&["dnsmasq", "udhcpc", "curl", "ping"]);
    let p = "nswap8";
    let (mut sb, dev, _up) = lab(p, &format!("{p}-n"), &["a", "b"]);
    let addr = "127.0.0.1:19408";
    let d = start_with(
        &mut sb,
        &dev,
        &local_cfg(p, &app(p, "a", 1, "lan", "")),
        "nsw",
        &["--metrics", addr],
        &[],
    );
    wait_uplink(&sb, &d);
    let a = format!("{p}-a");
    lease(&sb, &a, &a);
    assert!(ping(&sb, &a, "10.50.0.1"), "a pings its gateway");
    let more = write_file(
        &sb,
        "more.yaml",
        &local_cfg(
            p,
            &format!("{}{}", app(p, "a", 1, "lan", ""), app(p, "b", 2, "lan", "")),
        ),
    );
    assert_applied(&sb, &d, &apply(&sb, &d, &more, ""));

    let body = sb.sh(&dev, &format!("curl -sf -m 5 http://{addr}/metrics"));
    assert!(
        body.status.success(),
        "GET /metrics: {}",
        text(&body.stderr)
    );
    let body = text(&body.stdout);
    let mut samples = Vec::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(c) = line.strip_prefix('#') {
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.first() == Some(&"TYPE") {
                assert!(f.len() == 3, "bad TYPE line `{line}`");
                typed.insert(f[1].to_string());
            }
            continue;
        }
        match parse_sample(line) {
            Ok(s) => samples.push(s),
            Err(e) => panic!("not a Prometheus sample ({e}): `{line}`\n{body}"),
        }
    }
    for s in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|x| s.name.strip_suffix(x))
            .filter(|f| typed.contains(*f))
            .unwrap_or(&s.name);
        assert!(typed.contains(family), "no # TYPE for {}", s.name);
    }
    let find = |name: &str| -> Vec<&Sample> { samples.iter().filter(|s| s.name == name).collect() };
    let label = |s: &Sample, k: &str| -> Option<String> {
        s.labels.iter().find(|l| l.0 == k).map(|l| l.1.clone())
    };
    let rx = find("niswitch_port_rx_packets_total");
    assert!(
        rx.iter()
            .any(|s| label(s, "port").as_deref() == Some(a.as_str()) && s.value > 0.0),
        "rx packets of VIF {a}: {rx:?}"
    );
    let missing: Vec<&str> = [
        "niswitch_ni_mac_entries",
        "niswitch_ni_leases",
        "niswitch_ni_nat_sessions",
        "niswitch_uplink_healthy",
        "niswitch_uplink_active",
        "niswitch_apply_total",
        "niswitch_apply_failed_total",
        "niswitch_apply_last_success",
    ]
    .into_iter()
    .filter(|m| find(m).is_empty())
    .collect();
    assert!(missing.is_empty(), "metrics missing: {missing:?}\n{body}");
    let one = |name: &str| -> f64 {
        let v = find(name);
        v.iter().map(|s| s.value).sum()
    };
    assert!(one("niswitch_ni_leases") >= 1.0, "a's lease is counted");
    assert!(one("niswitch_ni_mac_entries") >= 1.0, "MACs learned");
    assert_eq!(one("niswitch_uplink_healthy"), 1.0, "one healthy uplink");
    assert_eq!(one("niswitch_uplink_active"), 1.0, "one active uplink");
    assert!(one("niswitch_apply_total") >= 1.0, "the apply is counted");
    assert_eq!(one("niswitch_apply_failed_total"), 0.0);
    assert!(one("niswitch_apply_last_success") > 0.0, "it succeeded");
    for n in ["niswitch_ni_leases", "niswitch_ni_nat_sessions"] {
        assert!(
            find(n)
                .iter()
                .any(|s| label(s, "ni").as_deref() == Some("lan")),
            "{n} labelled with ni=\"lan\": {:?}",
            find(n)
        );
    }
}

#[test]
fn control_socket_is_private_and_refuses_oversized_requests() {
    if !root_or_skip("control_socket_is_private_and_refuses_oversized_requests") {
        return;
    }
    let p = "nswap9";
    let (sb, d) = switch_lab(p, &[]);
    let mode = std::fs::metadata(&d.ctl).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "control socket mode {mode:o}");

    let s = UnixStream::connect(&d.ctl).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    // The daemon stops reading at 4 MiB: write from another thread.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..5 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let _ = writer.join();
    let reply: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the reply is not JSON ({e}): {line}"));
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger")),
        "{reply}"
    );
    assert_eq!(
        app_names(&d),
        ["a"],
        "the daemon still answers\n{}",
        sb.log(&d.log)
    );
}

#[test]
fn two_applies_at_once_are_serialized() {
    if !root_or_skip("two_applies_at_once_are_serialized") {
        return;
    }
    let p = "nswap0";
    let (mut sb, dev) = sandbox(p, &["a", "x1", "x2", "y1", "y2"]);
    let with = |extra: &[(&str, u8)]| {
        let mut apps = app(p, "a", 1, "n", "");
        for (n, i) in extra {
            apps.push_str(&app(p, n, *i, "n", ""));
        }
        switch_cfg(&apps)
    };
    // Each step takes 300 ms, so the two applies overlap.
    let d = start_with(
        &mut sb,
        &dev,
        &with(&[]),
        "nsw",
        &[],
        &[("NISWITCH_TEST_STEP_PAUSE_MS", "300")],
    );
    let files = [
        write_file(&sb, "x.yaml", &with(&[("x1", 2), ("x2", 3)])),
        write_file(&sb, "y.yaml", &with(&[("y1", 4), ("y2", 5)])),
    ];
    let t0 = Instant::now();
    let pids: Vec<u32> = files
        .iter()
        .zip(["apply-x.log", "apply-y.log"])
        .map(|(f, log)| spawn_apply(&mut sb, &d, f, log))
        .collect();
    for (pid, log) in pids.iter().zip(["apply-x.log", "apply-y.log"]) {
        assert_eq!(
            sb.wait(*pid, Duration::from_secs(40)),
            Some(0),
            "{log}: {}\ndaemon:\n{}",
            sb.log(log),
            sb.log(&d.log)
        );
    }
    // One after the other: 2 steps, then 4 (remove two, add two), 300 ms each.
    let took = t0.elapsed();
    eprintln!("both applies done in {took:?}");
    assert!(
        took >= Duration::from_millis(1800),
        "the steps of both applies took {took:?}: they ran side by side"
    );
    let st = d.status();
    assert_eq!(st["apply"]["count"], 2, "{}", st["apply"]);
    let got = app_names(&d);
    let (kept, gone) = if got == ["a", "x1", "x2"] {
        (["x1", "x2"], ["y1", "y2"])
    } else {
        assert_eq!(
            got,
            ["a", "y1", "y2"],
            "the result is one of the two configs\n{}",
            sb.log(&d.log)
        );
        (["y1", "y2"], ["x1", "x2"])
    };
    for n in ["a"].iter().chain(&kept) {
        assert!(app_tap(&sb, p, n), "{p}-{n} runs");
    }
    for n in gone {
        assert!(
            app_tap_gone(&sb, p, n),
            "{p}-{n} of the first apply is gone"
        );
    }
    // The second apply planned from the first one's result.
    let later = if kept[0] == "x1" {
        "apply-x.log"
    } else {
        "apply-y.log"
    };
    let plan = sb.log(later);
    assert!(
        plan.contains(&format!("remove app interface {p}-{}", gone[0])),
        "the later apply removed what the earlier one added:\n{plan}"
    );
}
