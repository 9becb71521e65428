//! niswitch-cni, the CNI plugin (SPEC §7): one function per verb, as a
//! runtime calls it (environment variables and the network config on
//! stdin, a result or an error object on stdout). ADD asks the daemon for
//! the pod's interface on the NI (ConnectPodAtL2) and, on a local NI, sets
//! the address, routes and DNS it was given inside the pod (ConnectPodAtL3);
//! an ADD that fails undoes what it did.

mod l3;
pub mod spec;

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::control::{self, PodInfo, PodRequest, Request};
use spec::{CniError, LATEST, NetConf, SUPPORTED, code};

/// What the runtime passed in the environment.
pub struct Env {
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: String,
}

impl Env {
    /// Reads the CNI_* variables through `get` (the process environment).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Env {
        let some = |k: &str| get(k).filter(|v| !v.is_empty());
        Env {
            command: get("CNI_COMMAND").unwrap_or_default(),
            container_id: some("CNI_CONTAINERID"),
            netns: some("CNI_NETNS"),
            ifname: some("CNI_IFNAME"),
            args: get("CNI_ARGS").unwrap_or_default(),
        }
    }

    fn need<'a>(&self, v: &'a Option<String>, name: &str) -> Result<&'a str, CniError> {
        v.as_deref().ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!(
                    "{name} is not set; the runtime must pass it for {}",
                    self.command
                ),
            )
        })
    }
}

/// Runs one verb; returns what to print on stdout and the exit code.
pub fn run(env: &Env, stdin: &str) -> (String, u8) {
    if env.command == "VERSION" {
        let v = json!({"cniVersion": LATEST, "supportedVersions": SUPPORTED});
        return (v.to_string(), 0);
    }
    // Errors before the config is read use the latest version.
    let version = serde_json::from_str::<Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(String::from))
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string());
    let out = NetConf::parse(stdin).and_then(|conf| match env.command.as_str() {
        "ADD" => add(env, &conf),
        "DEL" => del(env, &conf),
        "CHECK" => check(env, &conf),
        "STATUS" => status(&conf),
        "GC" => gc(&conf),
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_COMMAND `{other}` is not a CNI verb (ADD, DEL, CHECK, STATUS, GC, VERSION)"
            ),
        )),
    });
    match out {
        Ok(Some(v)) => (v.to_string(), 0),
        Ok(None) => (String::new(), 0),
        Err(e) => (e.to_json(&version).to_string(), 1),
    }
}

fn socket(conf: &NetConf) -> PathBuf {
    PathBuf::from(conf.control.as_deref().unwrap_or(control::DEFAULT_SOCKET))
}

/// Asks the daemon; a daemon that does not answer is `unreachable`.
fn ask(conf: &NetConf, req: PodRequest, unreachable: u32) -> Result<Value, CniError> {
    let v = control::call(&socket(conf), &Request::Pod(req)).map_err(|e| {
        CniError::new(unreachable, "the niswitch daemon does not answer; start it (niswitch run) or fix \"control\" in the network config").details(e)
    })?;
    match v.get("error") {
        Some(e) => Err(CniError::new(
            e["code"].as_u64().unwrap_or(code::IO_FAILURE as u64) as u32,
            e["msg"]
                .as_str()
                .unwrap_or("the daemon refused")
                .to_string(),
        )),
        None => Ok(v),
    }
}

fn pod_info(v: Value) -> Result<PodInfo, CniError> {
    serde_json::from_value(v)
        .map_err(|e| CniError::new(code::DECODE_FAILURE, "the daemon's answer is not understood; are the plugin and the daemon the same version?").details(e.to_string()))
}

fn add(env: &Env, conf: &NetConf) -> Result<Option<Value>, CniError> {
    let ni = conf.ni()?;
    let (cid, netns, ifname) = (
        env.need(&env.container_id, "CNI_CONTAINERID")?,
        env.need(&env.netns, "CNI_NETNS")?,
        env.need(&env.ifname, "CNI_IFNAME")?,
    );
    spec::check_ifname(ifname)?;
    let args = spec::parse_args(&env.args)?;
    let mac = args
        .get("MAC")
        .cloned()
        .or_else(|| conf.runtime_config.mac.clone());
    let req = PodRequest::Add {
        network: conf.name.clone(),
        ni: ni.to_string(),
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
        netns: netns.to_string(),
        mac,
        name: Some(spec::pod_name(&args, cid)),
    };
    let info = pod_info(ask(conf, req, code::TRY_AGAIN_LATER)?)?;
    if let Err(e) = l3::configure(&info) {
        // Undo the interface: an ADD that fails leaves nothing behind.
        let _ = ask(conf, del_request(conf, cid, ifname), code::TRY_AGAIN_LATER);
        return Err(e);
    }
    Ok(Some(spec::result(&conf.cni_version, &info)))
}

fn del_request(conf: &NetConf, cid: &str, ifname: &str) -> PodRequest {
    PodRequest::Del {
        network: conf.name.clone(),
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
    }
}

/// Idempotent: nothing to delete is success; the netns may be gone. A
/// daemon that does not answer is no reason to fail: the pod's TAP goes
/// with its namespace, and the daemon forgets it when it starts or on GC.
fn del(env: &Env, conf: &NetConf) -> Result<Option<Value>, CniError> {
    let cid = env.need(&env.container_id, "CNI_CONTAINERID")?;
    let ifname = env.need(&env.ifname, "CNI_IFNAME")?;
    match ask(conf, del_request(conf, cid, ifname), code::TRY_AGAIN_LATER) {
        Err(e) if e.code == code::TRY_AGAIN_LATER => {
            eprintln!(
                "niswitch-cni: DEL of {cid}/{ifname}: {} ({})",
                e.msg, e.details
            );
            Ok(None)
        }
        other => other.map(|_| None),
    }
}

fn check(env: &Env, conf: &NetConf) -> Result<Option<Value>, CniError> {
    conf.ni()?;
    let cid = env.need(&env.container_id, "CNI_CONTAINERID")?;
    let ifname = env.need(&env.ifname, "CNI_IFNAME")?;
    env.need(&env.netns, "CNI_NETNS")?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "CHECK needs prevResult in the network config (the result of ADD)",
        )
    })?;
    let req = PodRequest::Get {
        network: conf.name.clone(),
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
    };
    let info = pod_info(ask(conf, req, code::TRY_AGAIN_LATER)?)?;
    l3::check(&info, prev)?;
    Ok(None)
}

fn status(conf: &NetConf) -> Result<Option<Value>, CniError> {
    // Not ready to attach anything: 50, whatever the reason.
    let ni = conf
        .ni()
        .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg))?
        .to_string();
    ask(conf, PodRequest::Ready { ni }, code::NOT_AVAILABLE)?;
    Ok(None)
}

fn gc(conf: &NetConf) -> Result<Option<Value>, CniError> {
    // Without the list, GC cannot tell what is still in use: remove nothing.
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "GC needs cni.dev/valid-attachments in the network config",
        )
    })?;
    let req = PodRequest::Gc {
        network: conf.name.clone(),
        valid,
    };
    ask(conf, req, code::TRY_AGAIN_LATER)?;
    Ok(None)
}
