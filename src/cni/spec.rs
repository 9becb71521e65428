//! The CNI specification's objects as niswitch-cni reads and writes them:
//! the network config (any version we answer), CNI_ARGS, the result (1.x
//! and 0.4.0 shapes) and the error object with the spec's codes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::{Attachment, PodInfo};

/// Versions this plugin answers, oldest first.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// Error codes of the spec.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// Ours: CHECK found the interface differs from the previous result.
    pub const CHECK_MISMATCH: u32 = 103;
}

/// A CNI error object.
#[derive(Debug, Clone, PartialEq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }

    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

/// The network config on stdin (fields this plugin reads; the rest is
/// ignored, as runtimes add their own).
#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The network instance to attach to.
    #[serde(default)]
    pub ni: Option<String>,
    /// The daemon's control socket.
    #[serde(default)]
    pub control: Option<String>,
    #[serde(default, rename = "runtimeConfig")]
    pub runtime_config: RuntimeConfig,
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub mac: Option<String>,
}

impl NetConf {
    /// Parses stdin; a version we do not answer is error 1.
    pub fn parse(stdin: &str) -> Result<NetConf, CniError> {
        let c: NetConf = serde_json::from_str(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "the network config is not valid JSON of a CNI network",
            )
            .details(e.to_string())
        })?;
        if !SUPPORTED.contains(&c.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {} is not supported; use one of {}",
                    c.cni_version,
                    SUPPORTED.join(", ")
                ),
            ));
        }
        Ok(c)
    }

    /// The NI, which every verb but VERSION needs.
    pub fn ni(&self) -> Result<&str, CniError> {
        self.ni.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "the network config has no \"ni\": name the niswitch network instance to attach to",
            )
        })
    }
}

/// CNI_ARGS: `K=V;K=V`. Unknown keys are refused unless IgnoreUnknown is set.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut m = BTreeMap::new();
    for part in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!("CNI_ARGS part `{part}` is not KEY=VALUE"),
            )
        })?;
        m.insert(k.to_string(), v.to_string());
    }
    let ignore = m
        .get("IgnoreUnknown")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let known = [
        "IgnoreUnknown",
        "MAC",
        "K8S_POD_NAME",
        "K8S_POD_NAMESPACE",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
    ];
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str()))
        && !ignore
    {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_ARGS key `{k}` is not known; add IgnoreUnknown=1 to pass it"),
        ));
    }
    Ok(m)
}

/// CNI_IFNAME must be a valid interface name: 1 to 15 bytes, no `/`,
/// whitespace or `:` (the kernel's rules), not `.` or `..`.
pub fn check_ifname(n: &str) -> Result<(), CniError> {
    let bad = n.is_empty()
        || n.len() > 15
        || n == "."
        || n == ".."
        || n.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    match bad {
        true => Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_IFNAME `{n}` is not an interface name (1-15 bytes, no '/', ':' or spaces)"
            ),
        )),
        false => Ok(()),
    }
}

/// A DNS label for the pod: its Kubernetes name, or the container ID's
/// first 12 characters.
pub fn pod_name(args: &BTreeMap<String, String>, container_id: &str) -> String {
    let label = |s: &str| -> String {
        let l: String = s
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(63)
            .collect();
        l.trim_matches('-').to_string()
    };
    args.get("K8S_POD_NAME")
        .map(|n| label(n))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| label(&container_id.chars().take(12).collect::<String>()))
}

/// The ADD result in the shape of `version`.
pub fn result(version: &str, p: &PodInfo) -> Value {
    let mut iface = json!({"name": p.ifname, "mac": p.mac, "sandbox": p.netns});
    if version == "1.1.0" {
        iface["mtu"] = json!(p.mtu);
    }
    let mut r = json!({"cniVersion": version, "interfaces": [iface]});
    if let Some(a) = &p.address {
        let mut ip = json!({"address": a, "interface": 0});
        if let Some(g) = &p.gateway {
            ip["gateway"] = json!(g);
        }
        if version == "0.4.0" {
            ip["version"] = json!("4");
        }
        r["ips"] = json!([ip]);
        let routes: Vec<Value> = p
            .routes
            .iter()
            .map(|(d, g)| json!({"dst": d, "gw": g}))
            .collect();
        r["routes"] = json!(routes);
    }
    let mut dns = json!({});
    if !p.dns_servers.is_empty() {
        dns["nameservers"] = json!(p.dns_servers);
    }
    if let Some(d) = &p.dns_domain {
        dns["domain"] = json!(d);
        dns["search"] = json!([d]);
    }
    r["dns"] = dns;
    r
}

#[cfg(test)]
mod tests;
