//! Prometheus text exposition of the port counters on `GET /metrics`.

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
    o
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
