//! Checks the capabilities a command needs, so it can say so in one line
//! instead of failing half-way.

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Err with a one-line message naming what is missing.
pub fn require_net_admin(command: &str) -> Result<(), String> {
    let caps = effective_caps();
    let missing: Vec<&str> = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ]
    .iter()
    .filter(|(bit, _)| caps & (1 << bit) == 0)
    .map(|(_, n)| *n)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "niswitch {command} needs {} (run it as root)",
            missing.join(" and ")
        ))
    }
}
