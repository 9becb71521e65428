//! Prometheus text exposition on `GET /metrics`: per port and per app
//! interface rx/tx packets and bytes and drops by reason; per network
//! instance MAC-table size, leases, NAT sessions, uplink health and the
//! active uplink; live applies and how the last one ended.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use super::status::{Counters, Status};

/// Renders a status snapshot as Prometheus text.
pub fn render(s: &Status) -> String {
    let mut rows: Vec<(String, &str, &Counters)> = Vec::new();
    for p in &s.ports {
        rows.push((p.name.clone(), "nic", &p.counters));
        if let Some(h) = &p.host_interface {
            rows.push((h.tap.clone(), "host", &h.counters));
        }
    }
    for a in &s.apps {
        for v in &a.interfaces {
            rows.push((v.tap.clone(), "vif", &v.counters));
        }
    }
    let mut o = String::new();
    for (metric, help, get) in [
        (
            "niswitch_port_rx_packets_total",
            "Frames received on a port.",
            (|c: &Counters| c.rx_packets) as fn(&Counters) -> u64,
        ),
        (
            "niswitch_port_tx_packets_total",
            "Frames sent on a port.",
            |c| c.tx_packets,
        ),
        (
            "niswitch_port_rx_bytes_total",
            "Bytes received on a port.",
            |c| c.rx_bytes,
        ),
        (
            "niswitch_port_tx_bytes_total",
            "Bytes sent on a port.",
            |c| c.tx_bytes,
        ),
    ] {
        let _ = writeln!(o, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (name, kind, c) in &rows {
            let _ = writeln!(o, "{metric}{{port=\"{name}\",kind=\"{kind}\"}} {}", get(c));
        }
    }
    let _ = writeln!(
        o,
        "# HELP niswitch_port_drops_total Frames dropped, by port and reason.\n# TYPE niswitch_port_drops_total counter"
    );
    for (name, kind, c) in &rows {
        for (reason, v) in &c.drops {
            let _ = writeln!(
                o,
                "niswitch_port_drops_total{{port=\"{name}\",kind=\"{kind}\",reason=\"{reason}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP niswitch_port_link_up Whether a NIC's link is up.\n# TYPE niswitch_port_link_up gauge"
    );
    for p in &s.ports {
        let _ = writeln!(
            o,
            "niswitch_port_link_up{{port=\"{}\"}} {}",
            p.name, p.link_up as u8
        );
    }
    network_instances(&mut o, s);
    applies(&mut o, s);
    o
}

fn header(o: &mut String, metric: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
}

fn network_instances(o: &mut String, s: &Status) {
    type Get = fn(&super::status::NiStatus) -> usize;
    let gauges: [(&str, &str, Get); 3] = [
        (
            "niswitch_ni_mac_entries",
            "MAC addresses learned in a network instance.",
            |n| n.mac_table.len(),
        ),
        (
            "niswitch_ni_leases",
            "DHCP leases bound in a local network instance.",
            |n| n.leases.len(),
        ),
        (
            "niswitch_ni_nat_sessions",
            "NAT sessions of a local network instance.",
            |n| n.nat_sessions as usize,
        ),
    ];
    for (metric, help, get) in gauges {
        header(o, metric, "gauge", help);
        for n in &s.network_instances {
            let _ = writeln!(
                o,
                "{metric}{{ni=\"{}\",type=\"{}\"}} {}",
                n.name,
                n.kind,
                get(n)
            );
        }
    }
    for (metric, help, active) in [
        (
            "niswitch_uplink_healthy",
            "Whether an uplink of a local network instance passes its probes.",
            false,
        ),
        (
            "niswitch_uplink_active",
            "Whether an uplink carries the network instance's traffic now.",
            true,
        ),
    ] {
        header(o, metric, "gauge", help);
        for n in &s.network_instances {
            for u in &n.uplinks {
                let v = if active { u.active } else { u.healthy };
                let _ = writeln!(
                    o,
                    "{metric}{{ni=\"{}\",port=\"{}\"}} {}",
                    n.name, u.port, v as u8
                );
            }
        }
    }
    let metric = "niswitch_uplink_sessions";
    header(
        o,
        metric,
        "gauge",
        "Flows carried over the host's own sockets (the `host` uplink).",
    );
    for n in &s.network_instances {
        for u in &n.uplinks {
            if let Some(v) = u.sessions {
                let _ = writeln!(o, "{metric}{{ni=\"{}\",port=\"{}\"}} {v}", n.name, u.port);
            }
        }
    }
}

fn applies(o: &mut String, s: &Status) {
    let a = &s.apply;
    header(
        o,
        "niswitch_apply_total",
        "counter",
        "Live applies (niswitch apply, SIGHUP).",
    );
    let _ = writeln!(o, "niswitch_apply_total {}", a.count);
    header(
        o,
        "niswitch_apply_failed_total",
        "counter",
        "Live applies refused or reverted.",
    );
    let _ = writeln!(o, "niswitch_apply_failed_total {}", a.failed);
    header(
        o,
        "niswitch_apply_last_success",
        "gauge",
        "1 when the last apply (if any) kept its config, 0 when it was refused or reverted.",
    );
    let ok = a.last_result.is_empty() || a.last_result == "ok";
    let _ = writeln!(o, "niswitch_apply_last_success {}", ok as u8);
}

/// Serves `/metrics` until `stop` is set; `snapshot` gives the current status.
pub fn serve(
    addr: SocketAddr,
    snapshot: Arc<dyn Fn() -> Option<Status> + Send + Sync>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let l = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("metrics on {addr}: {e}")))?;
    l.set_nonblocking(true)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        while !stop.load(Relaxed) {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            let mut req = [0u8; 1024];
            let n = s.read(&mut req).unwrap_or(0);
            let first = String::from_utf8_lossy(&req[..n]);
            let (code, body) = if first.starts_with("GET /metrics") {
                match snapshot() {
                    Some(st) => ("200 OK", render(&st)),
                    None => ("503 Service Unavailable", "shutting down\n".to_string()),
                }
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let _ = write!(s, "HTTP/1.0 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::status::{NiStatus, Uplink};

    fn sample() -> Status {
        let ni = NiStatus {
            vlans: Vec::new(),
            stp: None,
            name: "lan".into(),
            uuid: "u".into(),
            kind: "local".into(),
            port: None,
            mac_table: Vec::new(),
            leases: Vec::new(),
            uplinks: vec![
                Uplink {
                    port: "eth0".into(),
                    address: None,
                    gateway: None,
                    healthy: true,
                    active: true,
                    link_local6: None,
                    gateway6: None,
                    sessions: None,
                },
                Uplink {
                    port: "host".into(),
                    address: Some("192.168.1.20/32".into()),
                    gateway: None,
                    healthy: true,
                    active: false,
                    link_local6: None,
                    gateway6: None,
                    sessions: Some(4),
                },
            ],
            nat_sessions: 7,
            router: None,
        };
        let mut s = Status {
            network_instances: vec![ni],
            ..Default::default()
        };
        s.apply.count = 3;
        s.apply.failed = 1;
        s.apply.last_result = "reverted".into();
        s
    }

    #[test]
    fn every_sample_line_is_a_name_labels_and_a_number() {
        let text = render(&sample());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("niswitch_"), "{line}");
        }
        for want in [
            "niswitch_ni_nat_sessions{ni=\"lan\",type=\"local\"} 7",
            "niswitch_uplink_active{ni=\"lan\",port=\"eth0\"} 1",
            "niswitch_apply_total 3",
            "niswitch_apply_failed_total 1",
            "niswitch_apply_last_success 0",
            "niswitch_uplink_sessions{ni=\"lan\",port=\"host\"} 4",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
