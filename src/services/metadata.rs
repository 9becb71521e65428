//! The metadata server's pure part (SPEC §5.1): reads one HTTP request,
//! bounded and strict about its first line, and builds the answer for the
//! app that asked — EVE's `/eve/v1/...` and the OpenStack layout that
//! cloud-init reads. Who asked is settled by the router, never here.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::json;

use crate::config::Mac;

/// The address every cloud image looks for its metadata at.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The largest request (line and headers) the server reads.
pub const MAX_REQUEST: usize = 8192;

/// One request as far as it has arrived.
#[derive(Debug, PartialEq)]
pub enum Request {
    /// The headers have not ended yet.
    Incomplete,
    /// Not HTTP, or too large: answered with this status and closed.
    Bad(u16),
    /// A request for `path` (query string removed); `head`: no body wanted.
    Get { path: String, head: bool },
}

/// Parses the bytes a connection sent so far.
pub fn parse(input: &[u8]) -> Request {
    let end = find(input, b"\r\n\r\n").or_else(|| find(input, b"\n\n"));
    let Some(end) = end else {
        return match input.len() >= MAX_REQUEST {
            true => Request::Bad(431),
            false => Request::Incomplete,
        };
    };
    if end > MAX_REQUEST {
        return Request::Bad(431);
    }
    let line = input.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Bad(400);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad(400);
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Request::Bad(400);
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Request::Bad(400);
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    match method {
        "GET" => Request::Get {
            path: path.to_string(),
            head: false,
        },
        "HEAD" => Request::Get {
            path: path.to_string(),
            head: true,
        },
        _ => Request::Bad(405),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the server knows of one app on this NI.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMeta {
    pub name: String,
    /// None for a pod (it has no app UUID).
    pub uuid: Option<uuid::Uuid>,
    pub user_data: Option<String>,
    /// The app's interfaces on this NI.
    pub macs: Vec<Mac>,
}

/// The NI's side of an answer.
#[derive(Debug, Clone, Copy)]
pub struct NiFacts {
    pub gateway: Ipv4Addr,
    pub mtu: u16,
    /// The active uplink's address.
    pub external: Option<Ipv4Addr>,
}

/// The whole HTTP response to `path` for `app`, asked from `caller`.
pub fn respond(app: &AppMeta, caller: SocketAddr, ni: &NiFacts, path: &str, head: bool) -> Vec<u8> {
    let path = path.trim_end_matches('/');
    let (status, kind, body) = match document(app, caller, ni, path) {
        Some((kind, body)) => (200, kind, body),
        None => (404, TEXT, "not found\n".to_string()),
    };
    response(status, kind, &body, head)
}

/// An error response (for a request that could not be read).
pub fn error(status: u16) -> Vec<u8> {
    response(status, TEXT, &format!("{}\n", reason(status)), false)
}

const TEXT: &str = "text/plain";
const JSON: &str = "application/json";

fn document(
    app: &AppMeta,
    caller: SocketAddr,
    ni: &NiFacts,
    path: &str,
) -> Option<(&'static str, String)> {
    let uuid = app.uuid.map(|u| u.to_string());
    let doc = match path {
        "/eve/v1/network.json" => {
            let v = json!({
                "caller-ip": caller.to_string(),
                "external-ipv4": ni.external.map(|a| a.to_string()).unwrap_or_default(),
                "hostname": app.name,
                "app-uuid": uuid,
                "app-name": app.name,
            });
            (JSON, v.to_string())
        }
        "/eve/v1/external_ipv4" => (TEXT, ni.external?.to_string()),
        "/eve/v1/hostname" => (TEXT, app.name.clone()),
        "/openstack" => (TEXT, "latest\n".to_string()),
        "/openstack/latest" => (
            TEXT,
            "meta_data.json\nnetwork_data.json\nuser_data\n".to_string(),
        ),
        "/openstack/latest/meta_data.json" => {
            let v = json!({
                "uuid": uuid.clone().unwrap_or_else(|| app.name.clone()),
                "name": app.name,
                "hostname": app.name,
                "launch_index": 0,
            });
            (JSON, v.to_string())
        }
        "/openstack/latest/user_data" => ("application/octet-stream", app.user_data.clone()?),
        "/openstack/latest/network_data.json" => (JSON, network_data(app, ni).to_string()),
        _ => return None,
    };
    Some(doc)
}

/// OpenStack's network_data.json: each interface on DHCP, the gateway as DNS.
fn network_data(app: &AppMeta, ni: &NiFacts) -> serde_json::Value {
    let links: Vec<_> = (app.macs.iter().enumerate())
        .map(|(i, m)| {
            json!({
                "id": format!("interface{i}"),
                "type": "phy",
                "ethernet_mac_address": m.to_string(),
                "mtu": ni.mtu,
            })
        })
        .collect();
    let networks: Vec<_> = (0..app.macs.len())
        .map(|i| {
            json!({
                "id": format!("network{i}"),
                "link": format!("interface{i}"),
                "type": "ipv4_dhcp",
            })
        })
        .collect();
    json!({
        "links": links,
        "networks": networks,
        "services": [{ "type": "dns", "address": ni.gateway.to_string() }],
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

fn response(status: u16, kind: &str, body: &str, head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests;
