//! The systemd unit in dist/ keeps the directives the daemon relies on:
//! notify with a watchdog, reload by SIGHUP, restart on failure, and only the
//! capabilities it needs. Reads the file; needs no root and no systemd.

use std::collections::HashMap;

const UNIT: &str = include_str!("../dist/niswitch.service");

/// `Key=value` lines by key (a key given twice keeps every value), without
/// comments and section headers.
fn directives() -> HashMap<&'static str, Vec<&'static str>> {
    let mut map: HashMap<_, Vec<_>> = HashMap::new();
    for line in UNIT.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a directive: {line}"));
        map.entry(key.trim()).or_default().push(value.trim());
    }
    map
}

fn one(map: &HashMap<&str, Vec<&'static str>>, key: &str) -> &'static str {
    match map.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key} must be set once, found {other:?}"),
    }
}

#[test]
fn unit_has_the_key_directives() {
    let d = directives();
    assert_eq!(one(&d, "Type"), "notify");
    assert_eq!(one(&d, "NotifyAccess"), "main");
    assert_eq!(one(&d, "Restart"), "on-failure");
    assert!(one(&d, "ExecStart").contains(" run --config /etc/niswitch/config.yaml"));

    let reload = one(&d, "ExecReload");
    assert!(reload.contains("kill") && reload.contains("-HUP") && reload.contains("$MAINPID"));

    let watchdog = one(&d, "WatchdogSec");
    assert!(watchdog.parse::<u32>().is_ok_and(|s| s > 0), "{watchdog}");

    let mut caps: Vec<_> = one(&d, "CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    caps.sort_unstable();
    assert_eq!(
        caps,
        [
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_SYS_ADMIN",
            "CAP_SYS_NICE"
        ]
    );
    assert!(
        d.get("AmbientCapabilities")
            .is_none_or(|v| v.iter().all(|v| v.is_empty()))
    );

    assert_eq!(one(&d, "RuntimeDirectory"), "niswitch");
    assert_eq!(one(&d, "RuntimeDirectoryMode"), "0700");
    assert_eq!(one(&d, "StateDirectory"), "niswitch");
    assert_eq!(one(&d, "NoNewPrivileges"), "yes");
    assert_eq!(one(&d, "ProtectSystem"), "strict");
    let rw: Vec<_> = one(&d, "ReadWritePaths")
        .split_whitespace()
        .map(|p| p.trim_start_matches('-'))
        .collect();
    for path in ["/var/lib/niswitch", "/run/niswitch", "/run/netns"] {
        assert!(rw.contains(&path), "ReadWritePaths lacks {path}");
    }
    // The daemon opens the host's NICs: nothing may hide them.
    assert!(!d.contains_key("PrivateNetwork"));
}
