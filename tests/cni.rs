//! The CNI plugin `niswitch-cni` driven exactly as a runtime drives it (SPEC
//! §7): the CNI_* environment and the network config on stdin, a result or
//! an error object on stdout and the exit code. Proves that VERSION names
//! 0.4.0, 1.0.0 and 1.1.0; that ADD on a local NI gives a spec-conformant
//! result whose interface, address, routes and DNS really are in the pod
//! (the pod pings the gateway and resolves a configured app, which resolves
//! the pod), and `status` lists the pod; that CHECK, STATUS, GC (which never
//! touches a configured app) and an idempotent DEL behave; that 0.4.0 and
//! 1.0.0 results have their own shape; that a switch NI gives the interface
//! only and reaches an app at L2; that DEL works after the netns is gone;
//! that pods survive a clean restart and a kill -9 of the daemon; that bad
//! input gets the right error code and leaves nothing behind; and that the
//! README's example configs under dist/cni/ are configs the plugin accepts.

mod common;
use common::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CNI: &str = env!("CARGO_BIN_EXE_niswitch-cni");
/// The CNI network's name (the config's `name`); GC works per network.
const NET: &str = "lan";

/// One run of the plugin.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or(Value::Null)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin exit {}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// Runs the plugin with only `vars` (plus PATH and CNI_PATH) in its
/// environment and `stdin` as its input, as a runtime does.
fn exec(vars: &[(&str, &str)], stdin: &str) -> Run {
    let dir = Path::new(CNI).parent().expect("plugin directory");
    let mut c = Command::new(CNI);
    c.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_PATH", dir);
    for (k, v) in vars {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn niswitch-cni");
    if let Some(mut i) = child.stdin.take() {
        // VERSION need not read it; a closed pipe is fine.
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for niswitch-cni");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An attachment as the runtime names it.
struct Pod {
    /// The sandbox namespace's name (for `sb.sh`).
    ns: String,
    cid: String,
    /// CNI_NETNS; empty = not passed.
    netns: String,
    ifname: String,
    args: String,
}

impl Pod {
    fn new(ns: &str, cid: &str) -> Pod {
        let netns = format!("/run/netns/{ns}");
        assert!(Path::new(&netns).exists(), "{netns} exists");
        Pod {
            ns: ns.to_string(),
            cid: cid.to_string(),
            netns,
            ifname: "eth0".into(),
            args: String::new(),
        }
    }
}

/// ADD, DEL or CHECK for `pod` with network config `conf`.
fn verb(cmd: &str, pod: &Pod, conf: &Value) -> Run {
    verb_raw(cmd, pod, &conf.to_string())
}

/// `verb` with `stdin` as the plugin's input, as it is.
fn verb_raw(cmd: &str, pod: &Pod, stdin: &str) -> Run {
    let mut vars = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", pod.cid.as_str()),
        ("CNI_IFNAME", pod.ifname.as_str()),
        ("CNI_ARGS", pod.args.as_str()),
    ];
    if !pod.netns.is_empty() {
        vars.push(("CNI_NETNS", pod.netns.as_str()));
    }
    exec(&vars, stdin)
}

/// ADD for `pod`, which must succeed.
fn add(sb: &Sandbox, d: &Daemon, pod: &Pod, conf: &Value) -> Run {
    let r = verb("ADD", pod, conf);
    assert_eq!(r.code, 0, "ADD\n{}", ctx(sb, d, &r));
    r
}

/// The address of the first IP of an ADD result, without its prefix length.
fn address(r: &Run) -> String {
    let cidr = r.json()["ips"][0]["address"].clone();
    let cidr = cidr.as_str().unwrap_or_default();
    cidr.split('/').next().unwrap_or_default().to_string()
}

/// `conf` with `res` as its prevResult, for CHECK.
fn with_prev(conf: &Value, res: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = res.clone();
    c
}

/// A sysfs attribute (`address`, `ifindex`) of eth0 in `ns`.
fn eth0(sb: &Sandbox, ns: &str, attr: &str) -> String {
    sb.out(ns, &format!("cat /sys/class/net/eth0/{attr}"))
}

/// STATUS or GC: no container variables.
fn net_verb(cmd: &str, conf: &Value) -> Run {
    exec(&[("CNI_COMMAND", cmd)], &conf.to_string())
}

fn conf(version: &str, ni: &str, ctl: &Path) -> Value {
    json!({"cniVersion": version, "name": NET, "type": "niswitch-cni",
           "ni": ni, "control": ctl})
}

/// The daemon log's last lines, for assertion messages.
fn tail(sb: &Sandbox, d: &Daemon) -> String {
    let log = sb.log(&d.log);
    let lines: Vec<&str> = log.lines().collect();
    let from = lines.len().saturating_sub(80);
    format!(
        "--- daemon log ({}) ---\n{}",
        d.log,
        lines[from..].join("\n")
    )
}

fn ctx(sb: &Sandbox, d: &Daemon, r: &Run) -> String {
    format!("{r}\n{}", tail(sb, d))
}

/// The pods the daemon lists in `status`.
fn pods(d: &Daemon) -> Vec<Value> {
    d.status()["pods"].as_array().cloned().unwrap_or_default()
}

fn pod_status(d: &Daemon, cid: &str) -> Option<Value> {
    pods(d).into_iter().find(|p| p["container_id"] == cid)
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}

fn dig(sb: &Sandbox, ns: &str, server: &str, name: &str) -> String {
    sb.out(
        ns,
        &format!("dig +time=1 +tries=2 +short @{server} {name} A"),
    )
}

/// Waits (5 s at most) until eth0 is gone from `ns`; fails with `what` otherwise.
fn wait_gone(sb: &Sandbox, d: &Daemon, ns: &str, what: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || !has_link(sb, ns, "eth0")),
        "{what}\n{}",
        tail(sb, d)
    );
}

/// Waits (at most `secs`) until `ns` resolves `name` at the gateway to `want` ("" for none).
fn wait_dig(sb: &Sandbox, ns: &str, name: &str, want: &str, secs: u64, what: &str) {
    assert!(
        wait_until(Duration::from_secs(secs), || dig(sb, ns, GW, name) == want),
        "got {:?}: {what}",
        dig(sb, ns, GW, name)
    );
}

/// Status lists no pod; fails with `what` otherwise.
fn assert_no_pods(sb: &Sandbox, d: &Daemon, what: &str) {
    assert!(
        pods(d).is_empty(),
        "{what}: status lists a pod: {:?}\n{}",
        d.status()["pods"],
        tail(sb, d)
    );
}

/// A successful run without output (DEL, CHECK, STATUS, GC).
fn assert_quiet(sb: &Sandbox, d: &Daemon, r: &Run, what: &str) {
    assert!(
        r.code == 0 && r.stdout.trim().is_empty(),
        "{what}: exit 0 and no output expected\n{}",
        ctx(sb, d, r)
    );
}

/// A spec error object with `code` on stdout and exit 1, without a panic.
fn assert_error(r: &Run, code: u64, what: &str, log: &str) {
    let v = r.json();
    assert!(
        r.code == 1
            && v["code"].as_u64() == Some(code)
            && v["msg"].as_str().is_some_and(|m| !m.is_empty())
            && v["cniVersion"].is_string(),
        "{what}: an error object with code {code} and exit 1 expected\n{r}\n{log}"
    );
    assert!(!r.stderr.contains("panicked"), "{what}: panic\n{r}");
}

/// The local NI's gateway (and DNS server).
const GW: &str = "10.61.0.1";

/// A local NI `lan` (10.61.0.0/24, domain `lan`) with app `web` at the fixed
/// address 10.61.0.20, its TAP in namespace `<p>-web`; with `uplink`, a port
/// to an upstream dnsmasq.
fn local_config(p: &str, uplink: bool) -> String {
    let (ports, uplinks) = if uplink {
        (
            format!("ports:\n  - {{ name: up, device: {p}-nic }}\n"),
            "    uplinks: [up]\n",
        )
    } else {
        (String::new(), "")
    };
    format!(
        "version: 1
{ports}network_instances:
  - name: lan
    type: local
    subnet: 10.61.0.0/24
    dns: {{ domain: lan }}
{uplinks}apps:
  - name: web
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd46101
    interfaces: [{{ ni: lan, tap: {p}-web, netns: {p}-web, ip: 10.61.0.20 }}]
"
    )
}

struct Lab {
    sb: Sandbox,
    d: Daemon,
    /// The app's namespace.
    web: String,
}

/// The daemon in `<p>-dev` with `local_config`; the app's TAP gets its
/// fixed address. `pods` names the pod namespaces to create.
fn local_lab(p: &str, uplink: bool, pods: &[&str]) -> (Lab, Vec<String>) {
    let mut sb = Sandbox::new(p).unwrap();
    let dev = sb.ns("dev").unwrap();
    let web = sb.ns("web").unwrap();
    let pod_ns: Vec<String> = pods.iter().map(|n| sb.ns(n).unwrap()).collect();
    if uplink {
        let (up, lan) = (sb.ns("up").unwrap(), format!("{p}-lan"));
        sb.veth(&dev, &format!("{p}-nic"), &up, &lan).unwrap();
        lan_dnsmasq(&mut sb, &up, &lan, "192.0.2", "upstream", &[]);
    }
    let d = start(&mut sb, &dev, &local_config(p, uplink), "nsw");
    assert!(
        sb.ok(
            &web,
            &format!("ip link set {p}-web up && ip addr add 10.61.0.20/24 dev {p}-web")
        ),
        "app address\n{}",
        sb.log(&d.log)
    );
    (Lab { sb, d, web }, pod_ns)
}

#[test]
fn version_names_the_supported_versions() {
    let r = exec(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.1.0"}"#);
    let v = r.json();
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(v["cniVersion"], "1.1.0", "{r}");
    let got: Vec<&str> = v["supportedVersions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(got.contains(&want), "{want} supported: {r}");
    }
}

#[test]
fn lifecycle_on_a_local_ni() {
    if !root_or_skip("lifecycle_on_a_local_ni") {
        return;
    }
    need(&["dnsmasq", "dig", "ping"]);
    let (l, ns) = local_lab("nswcl", true, &["pod"]);
    let (sb, d, p) = (&l.sb, &l.d, "nswcl");
    let mut pod = Pod::new(&ns[0], "c0ffee0001lifecycle");
    pod.args = "IgnoreUnknown=1;K8S_POD_NAME=webpod;K8S_POD_NAMESPACE=default".into();
    let c = conf("1.1.0", "lan", &d.ctl);

    // ADD: the result conforms to 1.1.0.
    let r = add(sb, d, &pod, &c);
    let res = r.json();
    let why = ctx(sb, d, &r);
    assert_eq!(res["cniVersion"], "1.1.0", "{why}");
    let i0 = &res["interfaces"][0];
    assert_eq!(i0["name"], "eth0", "{why}");
    assert_eq!(i0["sandbox"], pod.netns.as_str(), "{why}");
    let mac = i0["mac"].as_str().unwrap_or_default().to_string();
    assert!(is_mac(&mac), "MAC as aa:bb:cc:dd:ee:ff\n{why}");
    assert!(i0["mtu"].as_u64().is_some_and(|m| m >= 576), "{why}");
    let ip0 = &res["ips"][0];
    let cidr: ipnet::Ipv4Net = ip0["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("ips[0].address is a CIDR\n{why}"));
    let subnet: ipnet::Ipv4Net = "10.61.0.0/24".parse().unwrap();
    assert!(
        subnet.contains(&cidr.addr()) && cidr.prefix_len() == 24 && cidr.addr() != subnet.network(),
        "address inside the subnet with its mask\n{why}"
    );
    let ip = cidr.addr().to_string();
    assert_ne!(ip, "10.61.0.1", "{why}");
    assert_ne!(ip, "10.61.0.20", "not the app's address\n{why}");
    assert_eq!(ip0["gateway"], "10.61.0.1", "{why}");
    assert_eq!(ip0["interface"], 0, "{why}");
    assert!(ip0.get("version").is_none(), "no version in 1.x\n{why}");
    assert_eq!(res["dns"]["nameservers"], json!(["10.61.0.1"]), "{why}");
    let routes = res["routes"].as_array().cloned().unwrap_or_default();
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r["gw"] == "10.61.0.1"),
        "default route via the gateway (the NI has an uplink)\n{why}"
    );

    // The pod has it all.
    assert_eq!(eth0(sb, &pod.ns, "address"), mac, "{why}");
    let addrs = sb.out(&pod.ns, "ip -4 -o addr show dev eth0");
    assert!(addrs.contains(&format!(" {cidr} ")), "{addrs}\n{why}");
    let route = sb.out(&pod.ns, "ip -4 route show default");
    assert!(route.contains("via 10.61.0.1 dev eth0"), "{route}\n{why}");
    assert!(
        ping(sb, &pod.ns, "10.61.0.1"),
        "pod pings the gateway\n{why}"
    );
    let why_app = format!("the pod resolves the app\n{why}");
    wait_dig(sb, &pod.ns, "web", "10.61.0.20", 10, &why_app);
    assert_eq!(
        dig(sb, &pod.ns, "10.61.0.1", "web.lan"),
        "10.61.0.20",
        "{why}"
    );
    let why_name = format!("the app resolves the pod by its K8S_POD_NAME\n{why}");
    wait_dig(sb, &l.web, "webpod", &ip, 10, &why_name);
    assert_eq!(dig(sb, &l.web, "10.61.0.1", "webpod.lan"), ip, "{why}");
    assert!(ping(sb, &l.web, &ip), "the app pings the pod\n{why}");

    // `niswitch status --json` lists it.
    let out = Command::new(BIN)
        .args(["status", "--json", "--control"])
        .arg(&d.ctl)
        .output()
        .expect("niswitch status");
    let st: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let listed = st["pods"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["container_id"] == pod.cid.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        listed["ifname"] == "eth0"
            && listed["ni"] == "lan"
            && listed["mac"] == mac.as_str()
            && listed["ips"] == json!([ip]),
        "status lists the pod: {}\n{why}",
        st["pods"]
    );

    // CHECK against the ADD result, then with the address gone.
    let checked = with_prev(&c, &res);
    let r = verb("CHECK", &pod, &checked);
    assert_quiet(sb, d, &r, "CHECK of an intact pod");
    assert!(sb.ok(&pod.ns, "ip addr flush dev eth0"));
    let r = verb("CHECK", &pod, &checked);
    let v = r.json();
    assert!(
        r.code == 1
            && v["code"].as_u64().is_some_and(|c| c > 0)
            && v["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "CHECK after the address was flushed: an error object\n{}",
        ctx(sb, d, &r)
    );

    // STATUS.
    let r = net_verb("STATUS", &c);
    assert_quiet(sb, d, &r, "STATUS");
    let r = net_verb("STATUS", &conf("1.1.0", "nope", &d.ctl));
    assert_error(&r, 50, "STATUS of an unknown NI", &tail(sb, d));

    // GC without the list of valid attachments removes nothing.
    let r = net_verb("GC", &c);
    assert_error(&r, 7, "GC without cni.dev/valid-attachments", &tail(sb, d));
    assert!(
        pod_status(d, &pod.cid).is_some(),
        "GC without a list removed the pod"
    );

    // GC keeps what is valid, removes the rest, never a configured app.
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "another0001", "ifname": "eth0"},
        {"containerID": pod.cid, "ifname": "eth0"}
    ]);
    let r = net_verb("GC", &gc);
    assert_quiet(sb, d, &r, "GC listing the pod");
    assert!(
        has_link(sb, &pod.ns, "eth0") && pod_status(d, &pod.cid).is_some(),
        "a valid attachment stays\n{}",
        tail(sb, d)
    );
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "another0001", "ifname": "eth0"}]);
    let r = net_verb("GC", &gc);
    assert_quiet(sb, d, &r, "GC");
    wait_gone(
        sb,
        d,
        &pod.ns,
        &format!("GC removed the pod's interface\n{r}"),
    );
    assert_no_pods(sb, d, "GC");
    // The pod's flows were recorded, like an app's without ACLs: its
    // interface's last records were written when it went.
    let pod_flow = |r: &&Value| {
        r["app"] == "webpod" && r["vif"] == "eth0" && r["proto"] == 1 && r["dst"] == "10.61.0.1"
    };
    assert!(
        wait_until(Duration::from_secs(3), || flow_records(&d.state)
            .iter()
            .any(|r| pod_flow(&r))),
        "the pod's ping of the gateway has a flow record: {:?}",
        flow_records(&d.state)
    );
    assert!(
        has_link(sb, &l.web, &format!("{p}-web")),
        "GC left the app's TAP\n{}",
        tail(sb, d)
    );
    assert!(
        ping(sb, &l.web, "10.61.0.1"),
        "the app still pings the gateway\n{}",
        tail(sb, d)
    );

    // ADD again, then DEL twice.
    let r = add(sb, d, &pod, &c);
    assert!(has_link(sb, &pod.ns, "eth0"), "{}", ctx(sb, d, &r));
    let ip = address(&r);
    let r = verb("DEL", &pod, &c);
    assert_quiet(sb, d, &r, "DEL");
    wait_gone(sb, d, &pod.ns, "DEL removed the interface");
    assert_no_pods(sb, d, "DEL");
    // An answer without records (not a failure to answer at all).
    let unknown = || {
        let out = sb.out(&l.web, &format!("dig +time=1 +tries=2 @{GW} webpod A"));
        out.contains("ANSWER: 0,") && !out.contains(&ip)
    };
    assert!(
        wait_until(Duration::from_secs(5), unknown),
        "the pod's name went with it ({ip})\n{}",
        tail(sb, d)
    );
    let r = verb("DEL", &pod, &c);
    assert_quiet(sb, d, &r, "DEL again");
}

#[test]
fn results_of_0_4_0_and_1_0_0() {
    if !root_or_skip("results_of_0_4_0_and_1_0_0") {
        return;
    }
    need(&["ping"]);
    let (l, ns) = local_lab("nswcv", false, &["p04", "p10"]);
    let (sb, d) = (&l.sb, &l.d);
    let pods = [
        ("0.4.0", Pod::new(&ns[0], "c0ffee0004version")),
        ("1.0.0", Pod::new(&ns[1], "c0ffee0010version")),
    ];
    let mut seen = Vec::new();
    for (v, pod) in &pods {
        let c = conf(v, "lan", &d.ctl);
        let r = verb("ADD", pod, &c);
        let res = r.json();
        let why = ctx(sb, d, &r);
        assert_eq!(r.code, 0, "ADD {v}\n{why}");
        assert_eq!(res["cniVersion"], *v, "{why}");
        let i0 = &res["interfaces"][0];
        assert!(
            i0["name"] == "eth0"
                && i0["sandbox"] == pod.netns.as_str()
                && i0["mac"].as_str().is_some_and(is_mac),
            "{why}"
        );
        assert!(i0.get("mtu").is_none(), "no mtu before 1.1.0\n{why}");
        let ip0 = &res["ips"][0];
        match *v {
            "0.4.0" => assert_eq!(ip0["version"], "4", "{why}"),
            _ => assert!(ip0.get("version").is_none(), "{why}"),
        }
        assert_eq!(ip0["interface"], 0, "{why}");
        assert_eq!(ip0["gateway"], "10.61.0.1", "{why}");
        let cidr = ip0["address"].as_str().unwrap_or_default().to_string();
        assert!(
            cidr.starts_with("10.61.0.") && cidr.ends_with("/24"),
            "{why}"
        );
        let addrs = sb.out(&pod.ns, "ip -4 -o addr show dev eth0");
        assert!(addrs.contains(&format!(" {cidr} ")), "{addrs}\n{why}");
        let r = verb("CHECK", pod, &with_prev(&c, &res));
        assert_quiet(sb, d, &r, &format!("CHECK {v}"));
        seen.push((cidr, i0["mac"].clone()));
    }
    assert_ne!(seen[0].0, seen[1].0, "two pods, two addresses");
    assert_ne!(seen[0].1, seen[1].1, "two pods, two MACs");
    assert!(ping(sb, &pods[0].1.ns, "10.61.0.1"), "{}", tail(sb, d));
    assert!(ping(sb, &pods[1].1.ns, "10.61.0.1"), "{}", tail(sb, d));
    for (v, pod) in &pods {
        let r = verb("DEL", pod, &conf(v, "lan", &d.ctl));
        assert_quiet(sb, d, &r, &format!("DEL {v}"));
        wait_gone(sb, d, &pod.ns, &format!("DEL {v} removed the interface"));
    }
    assert_no_pods(sb, d, "after the DELs");
}

#[test]
fn switch_ni_gives_the_interface_only() {
    if !root_or_skip("switch_ni_gives_the_interface_only") {
        return;
    }
    need(&["ping"]);
    let p = "nswcsw";
    let mut sb = Sandbox::new(p).unwrap();
    let [dev, peer, pns] = ["dev", "peer", "pod"].map(|n| sb.ns(n).unwrap());
    let cfg = format!(
        "version: 1
network_instances:
  - {{ name: sw, type: switch }}
apps:
  - name: peer
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd46201
    interfaces: [{{ ni: sw, tap: {p}-peer, netns: {p}-peer }}]
"
    );
    let d = start(&mut sb, &dev, &cfg, "nsw");
    let pod = Pod::new(&pns, "c0ffee0002switch");
    let c = conf("1.1.0", "sw", &d.ctl);
    let r = verb("ADD", &pod, &c);
    let res = r.json();
    let why = ctx(&sb, &d, &r);
    assert_eq!(r.code, 0, "ADD\n{why}");
    assert_eq!(res["cniVersion"], "1.1.0", "{why}");
    let i0 = &res["interfaces"][0];
    assert!(
        i0["name"] == "eth0"
            && i0["sandbox"] == pod.netns.as_str()
            && i0["mac"].as_str().is_some_and(is_mac)
            && i0["mtu"].is_u64(),
        "{why}"
    );
    assert!(res.get("ips").is_none(), "a switch NI gives no ips\n{why}");
    let mac = i0["mac"].as_str().unwrap_or_default().to_string();
    assert_eq!(eth0(&sb, &pns, "address"), mac, "{why}");
    assert_eq!(
        sb.out(&pns, "ip -4 -o addr show dev eth0"),
        "",
        "no address set by the plugin\n{why}"
    );
    // Both sides get static addresses; they meet at L2.
    assert!(sb.ok(&pns, "ip addr add 10.62.0.2/24 dev eth0"), "{why}");
    assert!(sb.ok(
        &peer,
        &format!("ip link set {p}-peer up && ip addr add 10.62.0.1/24 dev {p}-peer")
    ));
    assert!(
        ping(&sb, &pns, "10.62.0.1"),
        "the pod reaches the app at L2\n{}",
        tail(&sb, &d)
    );
    let peer_mac = mac_of(&sb, &peer, &format!("{p}-peer"));
    let neigh = sb.out(&pns, "ip neigh show 10.62.0.1");
    assert!(neigh.contains(&peer_mac), "{neigh} / {peer_mac}");
    // Switch NIs learn the addresses of their interfaces (SPEC §3, §7).
    assert!(
        wait_until(Duration::from_secs(5), || pod_status(&d, &pod.cid)
            .is_some_and(|s| s["ips"] == json!(["10.62.0.2"]))),
        "status shows the pod's learned IP: {:?}\n{}",
        pod_status(&d, &pod.cid),
        tail(&sb, &d)
    );
    let r = verb("DEL", &pod, &c);
    assert_quiet(&sb, &d, &r, "DEL");
    wait_gone(&sb, &d, &pns, "DEL");
    assert_no_pods(&sb, &d, "DEL");
}

#[test]
fn del_after_the_netns_is_gone() {
    if !root_or_skip("del_after_the_netns_is_gone") {
        return;
    }
    let (l, ns) = local_lab("nswcgn", false, &["pod"]);
    let (sb, d) = (&l.sb, &l.d);
    let pod = Pod::new(&ns[0], "c0ffee0003gone");
    let c = conf("1.1.0", "lan", &d.ctl);
    let r = add(sb, d, &pod, &c);
    let mac = r.json()["interfaces"][0]["mac"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(pod_status(d, &pod.cid).is_some(), "{}", tail(sb, d));
    let del = Command::new("ip")
        .args(["netns", "del", &pod.ns])
        .status()
        .expect("ip netns del");
    assert!(del.success(), "ip netns del {}", pod.ns);
    assert!(
        wait_until(Duration::from_secs(5), || !Path::new(&pod.netns).exists()),
        "{} gone",
        pod.netns
    );
    let r = verb("DEL", &pod, &c);
    assert_quiet(sb, d, &r, "DEL after the netns is gone");
    assert!(
        pod_status(d, &pod.cid).is_none(),
        "status: {:?}\n{}",
        d.status()["pods"],
        tail(sb, d)
    );
    let r = verb("DEL", &pod, &c);
    assert_quiet(sb, d, &r, "DEL again");
    // The TAP did not fall back into the machine's own namespace.
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&mac),
        "the pod's TAP ({mac}) moved to the root namespace"
    );
    assert!(
        d.status() != Value::Null && !sb.log(&d.log).contains("panicked"),
        "{}",
        tail(sb, d)
    );
}

/// Waits until the restarted daemon lists the pod with `ip` and the pod
/// reaches the gateway through it.
fn pod_back(sb: &Sandbox, d: &Daemon, pod: &Pod, ip: &str, how: &str) {
    assert!(
        wait_until(Duration::from_secs(15), || pod_status(d, &pod.cid)
            .is_some_and(|s| s["ips"] == json!([ip]) && s["ifname"] == "eth0")),
        "after {how}: status lists the pod with {ip}: {:?}\n{}",
        d.status()["pods"],
        tail(sb, d)
    );
    assert!(
        wait_until(Duration::from_secs(10), || ping(sb, &pod.ns, "10.61.0.1")),
        "after {how}: the pod pings the gateway\n{}",
        tail(sb, d)
    );
}

#[test]
fn pods_survive_a_restart_and_a_crash() {
    if !root_or_skip("pods_survive_a_restart_and_a_crash") {
        return;
    }
    need(&["ping"]);
    let (l, ns) = local_lab("nswcrs", false, &["pod"]);
    let Lab { mut sb, mut d, .. } = l;
    let pod = Pod::new(&ns[0], "c0ffee0005restart");
    let c = conf("1.1.0", "lan", &d.ctl);
    let ip = address(&add(&sb, &d, &pod, &c));
    assert!(ping(&sb, &pod.ns, "10.61.0.1"), "{}", tail(&sb, &d));
    let ifindex = eth0(&sb, &pod.ns, "ifindex");
    let mac = eth0(&sb, &pod.ns, "address");
    assert!(!ifindex.is_empty());

    for (i, (sig, how)) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "kill -9")]
        .into_iter()
        .enumerate()
    {
        sb.signal(d.pid, sig);
        let code = sb.wait(d.pid, Duration::from_secs(10));
        if sig == libc::SIGTERM {
            assert_eq!(code, Some(0), "clean exit on SIGTERM\n{}", tail(&sb, &d));
        }
        assert!(
            has_link(&sb, &pod.ns, "eth0"),
            "after {how}: the interface stays in the pod\n{}",
            tail(&sb, &d)
        );
        assert_eq!(
            eth0(&sb, &pod.ns, "ifindex"),
            ifindex,
            "after {how}: the same interface\n{}",
            tail(&sb, &d)
        );
        assert_eq!(
            eth0(&sb, &pod.ns, "address"),
            mac,
            "after {how}: the same MAC\n{}",
            tail(&sb, &d)
        );
        assert!(
            sb.out(&pod.ns, "ip -4 -o addr show dev eth0")
                .contains(&format!(" {ip}/24 ")),
            "after {how}: the address stays\n{}",
            tail(&sb, &d)
        );
        d = restart(&mut sb, &d, &format!("nsw{}.log", i + 2), &[]);
        pod_back(&sb, &d, &pod, &ip, how);
        assert_eq!(
            eth0(&sb, &pod.ns, "ifindex"),
            ifindex,
            "after {how} and the restart: the same interface\n{}",
            tail(&sb, &d)
        );
    }
    let r = verb("DEL", &pod, &c);
    assert_quiet(&sb, &d, &r, "DEL after the restarts");
    wait_gone(&sb, &d, &pod.ns, "DEL after the restarts");
}

#[test]
fn bad_input_gets_the_right_error_and_leaves_nothing() {
    if !root_or_skip("bad_input_gets_the_right_error_and_leaves_nothing") {
        return;
    }
    let p = "nswcbad";
    let (l, ns) = local_lab(p, false, &["pod"]);
    let (sb, d) = (&l.sb, &l.d);
    let ctl = d.ctl.clone();
    let app_mac = d.status()["apps"][0]["interfaces"][0]["mac"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(is_mac(&app_mac), "the app's MAC: {}", d.status()["apps"]);
    let good = conf("1.1.0", "lan", &ctl);
    let pod = || Pod::new(&ns[0], "c0ffee0007bad");
    // Nothing listens here: a path with no file, and a socket file whose
    // listener is gone.
    let nobody = sb.path("nobody.sock");
    let stale = sb.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("stale socket"));

    let without_ni = {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("ni");
        c
    };
    let mut no_netns = pod();
    no_netns.netns.clear();
    let mut gone = pod();
    gone.netns = format!("/run/netns/{p}-nothere");
    let mut app_mac_arg = pod();
    app_mac_arg.args = format!("IgnoreUnknown=1;MAC={app_mac}");
    let mut runtime_mac = good.clone();
    runtime_mac["runtimeConfig"] = json!({"mac": app_mac});

    let cases: Vec<(&str, Pod, String, u64)> = vec![
        (
            "malformed JSON",
            pod(),
            r#"{"cniVersion":"1.1.0","name":"lan","#.into(),
            6,
        ),
        (
            "cniVersion 0.1.0",
            pod(),
            conf("0.1.0", "lan", &ctl).to_string(),
            1,
        ),
        ("no ni", pod(), without_ni.to_string(), 7),
        (
            "unknown NI",
            pod(),
            conf("1.1.0", "nope", &ctl).to_string(),
            7,
        ),
        ("no CNI_NETNS", no_netns, good.to_string(), 4),
        ("netns that does not exist", gone, good.to_string(), 3),
        (
            "no daemon (no socket)",
            pod(),
            conf("1.1.0", "lan", &nobody).to_string(),
            11,
        ),
        (
            "no daemon (stale socket)",
            pod(),
            conf("1.1.0", "lan", &stale).to_string(),
            11,
        ),
        ("MAC= of the app", app_mac_arg, good.to_string(), 100),
        (
            "runtimeConfig.mac of the app",
            pod(),
            runtime_mac.to_string(),
            100,
        ),
    ];
    for (what, pod, stdin, code) in &cases {
        let r = verb_raw("ADD", pod, stdin);
        assert_error(&r, *code, what, &tail(sb, d));
        assert!(
            !has_link(sb, &ns[0], "eth0"),
            "{what}: an interface was left in the pod\n{}",
            ctx(sb, d, &r)
        );
        assert_no_pods(sb, d, &format!("{what}\n{r}"));
    }
    for (what, path) in [("no socket", &nobody), ("stale socket", &stale)] {
        let r = net_verb("STATUS", &conf("1.1.0", "lan", path));
        assert_error(&r, 50, &format!("STATUS, {what}"), &tail(sb, d));
        // DEL does not fail for a daemon that is not there.
        let r = verb("DEL", &pod(), &conf("1.1.0", "lan", path));
        assert_eq!(r.code, 0, "DEL, {what}\n{}", ctx(sb, d, &r));
    }
    let r = net_verb("STATUS", &without_ni);
    assert_error(&r, 50, "STATUS without ni", &tail(sb, d));
    let mut bad_if = pod();
    bad_if.ifname = "much-too-long-name".into();
    let r = verb("ADD", &bad_if, &good);
    assert_error(&r, 4, "CNI_IFNAME too long", &tail(sb, d));
    // The daemon is unharmed and the same attachment works now.
    let r = verb("ADD", &pod(), &good);
    assert_eq!(
        r.code,
        0,
        "a good ADD after the bad ones\n{}",
        ctx(sb, d, &r)
    );
    let r = verb("DEL", &pod(), &good);
    assert_quiet(sb, d, &r, "DEL");
    assert!(!sb.log(&d.log).contains("panicked"), "{}", tail(sb, d));
}

/// The niswitch-cni configs in a config or a conflist, as a runtime hands
/// them to the plugin: a list's cniVersion and name go into each entry.
fn niswitch_confs(v: &Value) -> Vec<(String, Value)> {
    if let Some(plugins) = v["plugins"].as_array() {
        plugins
            .iter()
            .enumerate()
            .filter(|(_, p)| p["type"] == "niswitch-cni")
            .map(|(i, p)| {
                let mut p = p.clone();
                p["cniVersion"] = v["cniVersion"].clone();
                p["name"] = v["name"].clone();
                (format!("plugins[{i}]"), p)
            })
            .collect()
    } else if v["type"] == "niswitch-cni" {
        vec![("the config".into(), v.clone())]
    } else {
        Vec::new()
    }
}

#[test]
fn example_configs_in_dist_cni_are_accepted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/cni");
    assert!(
        dir.is_dir(),
        "{} does not exist: the README's \"Kubernetes and containers\" examples \
         (a containerd conflist, a Multus NetworkAttachmentDefinition, a podman network \
         config) are expected there as files",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read dist/cni")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let (mut conflists, mut nads) = (0, 0);
    for f in &files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let confs = match ext {
            "conflist" | "json" => {
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
                if v.get("plugins").is_some() {
                    conflists += 1;
                }
                niswitch_confs(&v)
            }
            "yaml" | "yml" => {
                let mut confs = Vec::new();
                for doc in yaml_serde::Deserializer::from_str(&text) {
                    let v = Value::deserialize(doc)
                        .unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
                    if v["kind"] != "NetworkAttachmentDefinition" {
                        continue;
                    }
                    nads += 1;
                    let cfg = v["spec"]["config"].as_str().unwrap_or_else(|| {
                        panic!("{name}: the NetworkAttachmentDefinition has no spec.config string")
                    });
                    let mut c: Value = serde_json::from_str(cfg)
                        .unwrap_or_else(|e| panic!("{name}: spec.config is not JSON: {e}"));
                    // Multus names a config without a name after the NAD.
                    if c.get("name").is_none() {
                        c["name"] = v["metadata"]["name"].clone();
                    }
                    confs.extend(niswitch_confs(&c));
                }
                confs
            }
            _ => continue,
        };
        assert!(
            !confs.is_empty(),
            "{name}: no niswitch-cni plugin config in it"
        );
        for (what, c) in confs {
            let text = c.to_string();
            let nc = niswitch::cni::spec::NetConf::parse(&text)
                .unwrap_or_else(|e| panic!("{name}, {what}: the plugin refuses it: {e:?}\n{text}"));
            nc.ni()
                .unwrap_or_else(|e| panic!("{name}, {what}: {e:?}\n{text}"));
        }
    }
    assert!(
        conflists > 0,
        "no conflist in {} ({files:?}): the containerd and podman examples are conflists",
        dir.display()
    );
    assert!(
        nads > 0,
        "no Multus NetworkAttachmentDefinition in {} ({files:?})",
        dir.display()
    );
}
