//! Command-line behaviour that needs no sandbox: `mac`, and the one-line
//! messages of commands that cannot do their job.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_niswitch");

#[test]
fn mac_prints_spec_vector() {
    let out = Command::new(BIN)
        .args([
            "mac",
            "--app",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "--ni",
            "2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b",
            "--ifnum",
            "0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "02:16:3e:87:5f:dc"
    );
}

#[test]
fn status_without_daemon_says_so_in_one_line() {
    let out = Command::new(BIN)
        .args(["status", "--control", "/nonexistent/niswitch.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no niswitch daemon is running"), "{err}");
}

/// Runs a command as an unprivileged user (needs root to switch to it).
fn unprivileged(args: &[&str]) -> Option<std::process::Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(Command::new(BIN).args(args).output().unwrap());
    }
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(BIN)
        .args(args)
        .output()
        .ok()?;
    Some(o)
}

#[test]
fn commands_needing_privileges_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "version: 1\nnetwork_instances: [{name: a, type: switch}]\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    for args in [vec!["run", "--config", cfg.to_str().unwrap()], vec!["demo"]] {
        let Some(out) = unprivileged(&args) else {
            eprintln!("SKIPPED: setpriv is missing");
            return;
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("needs CAP_NET_ADMIN"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"));
    }
    // check and mac need nothing.
    let out = unprivileged(&["check", "--config", cfg.to_str().unwrap()]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
