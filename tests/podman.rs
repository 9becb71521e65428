//! niswitch-cni under a real container runtime: podman (CNI network
//! backend) with a private root, run root, config and network directory,
//! running a container from a busybox-static root filesystem. The container
//! gets its address from niswitch, pings the gateway, resolves a configured
//! app by name, reaches an upstream web server through the NAT, and
//! `podman rm -f` takes its interface out of `status`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const CNI: &str = env!("CARGO_BIN_EXE_niswitch-cni");

/// A private podman: its own storage, run root, containers.conf and CNI
/// directories inside the sandbox; removes its containers when dropped.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(sb: &Sandbox, control: &Path) -> Podman {
        let dir = sb.path("podman");
        for d in [
            "net",
            "plugins",
            "root",
            "runroot",
            "tmp",
            "rootfs/bin",
            "rootfs/etc",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy(CNI, dir.join("plugins/niswitch-cni")).unwrap();
        std::fs::copy("/bin/busybox", dir.join("rootfs/bin/busybox")).unwrap();
        for c in ["sh", "ping", "nslookup", "wget", "ip", "sleep", "cat"] {
            std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(c)).unwrap();
        }
        for d in ["proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(dir.join("rootfs").join(d)).unwrap();
        }
        let conf = format!(
            "[containers]\nnetns = \"private\"\n[network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{d}/plugins\"]\nnetwork_config_dir = \"{d}/net\"\n\
             default_network = \"nsw\"\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\nevents_logfile_path = \"{d}/events.log\"\n\
             runtime = \"runc\"\ntmp_dir = \"{d}/tmp\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        // podman 4.3's libcni speaks CNI up to 1.0.0.
        let net = format!(
            r#"{{"cniVersion":"1.0.0","name":"nsw","plugins":[{{"type":"niswitch-cni","ni":"lan","control":"{}"}}]}}"#,
            control.display()
        );
        std::fs::write(dir.join("net/nsw.conflist"), net).unwrap();
        Podman { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.display().to_string();
        Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .args([
                "--root",
                &format!("{d}/root"),
                "--runroot",
                &format!("{d}/runroot"),
            ])
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .expect("podman runs")
    }

    /// Starts a container `name` on network nsw that sleeps.
    fn start(&self, name: &str) -> Output {
        let rootfs = self.dir.join("rootfs").display().to_string();
        // No CAP_SYS_RESOURCE here: limits stay below the current ones.
        self.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "nsw",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--rootfs",
            &rootfs,
            "/bin/sleep",
            "600",
        ])
    }

    fn exec(&self, name: &str, cmd: &str) -> Output {
        self.run(&["exec", name, "/bin/sh", "-c", cmd])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-f", "-a", "-t", "0"]);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_podman_container_gets_an_address_a_name_and_the_upstream() {
    if !root_or_skip("a_podman_container_gets_an_address_a_name_and_the_upstream") {
        return;
    }
    need(&["podman", "runc", "dnsmasq", "python3", "busybox"]);
    let p = "nswpm";
    let mut sb = Sandbox::new(p).unwrap();
    let (dev, up) = dev_and_up(&mut sb, &format!("{p}-n1"), &format!("{p}-l1"));
    let app = sb.ns("app").unwrap();
    lan_dnsmasq(&mut sb, &up, &format!("{p}-l1"), "192.0.2", "up", &[]);
    let http = ["-m", "http.server", "8080", "--bind", "192.0.2.1"];
    let python = Path::new("/usr/bin/python3");
    sb.spawn(&up, python, &http, "http.log").unwrap();
    let config = format!(
        "version: 1
ports: [{{ name: wan, device: {p}-n1 }}]
network_instances:
  - {{ name: lan, type: local, subnet: 10.63.0.0/24, dns: {{ domain: lan }}, uplinks: [wan], probe: {{ target: gateway, interval: 1, failures: 2 }} }}
apps:
  - name: db
    uuid: 6ba7b810-9dad-11d1-80b4-00c04fd43171
    interfaces: [{{ ni: lan, tap: {p}-db, netns: {app}, ip: 10.63.0.20 }}]
"
    );
    let d = start(&mut sb, &dev, &config, "nsw");
    assert!(sb.ok(&app, &format!("ip addr add 10.63.0.20/24 dev {p}-db")));
    let pm = Podman::new(&sb, &d.ctl);
    let started = pm.start("web");
    assert!(
        started.status.success(),
        "podman run: {}\n{}",
        text(&started),
        sb.log(&d.log)
    );

    let pods = || d.status()["pods"].clone();
    let ip = pods()[0]["ips"][0].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10.63.0."), "pods in status: {}", pods());
    assert_eq!(
        pods()[0]["name"],
        "web",
        "the container's name is its DNS name"
    );
    let addr = pm.exec("web", "ip -4 addr show eth0");
    assert!(text(&addr).contains(&format!("{ip}/24")), "{}", text(&addr));

    let ping = pm.exec("web", "ping -c 2 -W 2 10.63.0.1");
    assert!(ping.status.success(), "ping gateway: {}", text(&ping));
    let name = pm.exec("web", "nslookup db.lan 10.63.0.1");
    assert!(
        text(&name).contains("10.63.0.20"),
        "db by name: {}",
        text(&name)
    );
    // The configured app resolves the container by its name too.
    assert!(
        sb.out(&app, "dig +short @10.63.0.1 web.lan").contains(&ip),
        "the container's name in the NI's DNS"
    );
    let up_ok = wait_until(Duration::from_secs(15), || {
        d.status()["network_instances"][0]["uplinks"][0]["active"] == true
    });
    assert!(up_ok, "uplink never active: {}", sb.log(&d.log));
    let get = pm.exec(
        "web",
        r"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 192.0.2.1 8080",
    );
    assert!(
        text(&get).contains("200 OK"),
        "upstream through NAT: {}",
        text(&get)
    );

    let rm = pm.run(&["rm", "-f", "-t", "0", "web"]);
    assert!(rm.status.success(), "podman rm: {}", text(&rm));
    assert!(
        wait_until(Duration::from_secs(10), || pods()
            .as_array()
            .is_some_and(|a| a.is_empty())),
        "the pod is still in status: {}",
        pods()
    );
}
