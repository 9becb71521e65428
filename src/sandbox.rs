//! Network-namespace sandboxes for the demo and the integration tests:
//! namespaces and veths named with a per-user prefix, background processes
//! tracked by PID, and a teardown that runs on drop (and so on panic). A new
//! sandbox first removes whatever a killed run with the same prefix left.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Sandbox {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

fn ip(args: &[&str]) -> io::Result<Output> {
    Command::new("ip").args(args).output()
}

fn check(out: io::Result<Output>, what: &str) -> io::Result<Output> {
    let out = out?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Namespaces (as `ip netns` lists them) whose names start with `prefix-`.
fn leftover_namespaces(prefix: &str) -> Vec<String> {
    let Ok(out) = ip(&["netns", "list"]) else {
        return vec![];
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(String::from)
        .collect()
}

fn delete_namespace(ns: &str) {
    // Processes a killed run of ours left inside the namespace.
    if let Ok(out) = ip(&["netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) on a PID that lives in our own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = ip(&["netns", "delete", ns]);
    let _ = std::fs::remove_dir_all(Path::new(ETC_NETNS).join(ns));
}

const ETC_NETNS: &str = "/etc/netns";

/// A fresh private directory (mkdtemp: no name another user could predict).
fn make_temp_dir(prefix: &str) -> io::Result<PathBuf> {
    let template = std::env::temp_dir().join(format!("niswitch-{prefix}-XXXXXX"));
    let mut bytes = template.to_string_lossy().into_owned().into_bytes();
    bytes.push(0);
    // SAFETY: mkdtemp rewrites the NUL-terminated template in place.
    let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    bytes.pop();
    Ok(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

impl Sandbox {
    /// A fresh sandbox; `prefix` must be unique per concurrent user.
    pub fn new(prefix: &str) -> io::Result<Sandbox> {
        for ns in leftover_namespaces(prefix) {
            delete_namespace(&ns);
        }
        let dir = make_temp_dir(prefix)?;
        Ok(Sandbox {
            prefix: prefix.to_string(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scratch file path inside the sandbox's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates namespace `<prefix>-<name>` with loopback up; returns its name.
    pub fn ns(&mut self, name: &str) -> io::Result<String> {
        let ns = format!("{}-{name}", self.prefix);
        check(ip(&["netns", "add", &ns]), &format!("ip netns add {ns}"))?;
        self.namespaces.push(ns.clone());
        // `ip netns exec` bind-mounts /etc/netns/NS/* over /etc: DHCP clients
        // inside then write this resolv.conf, never the machine's own.
        let etc = Path::new(ETC_NETNS).join(&ns);
        std::fs::create_dir_all(&etc)?;
        std::fs::write(etc.join("resolv.conf"), "")?;
        check(ip(&["-n", &ns, "link", "set", "lo", "up"]), "lo up")?;
        Ok(ns)
    }

    /// A veth pair from `a_if` in `a` to `b_if` in `b`, both up.
    pub fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) -> io::Result<()> {
        check(
            ip(&[
                "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
            ]),
            "veth",
        )?;
        check(ip(&["-n", a, "link", "set", a_if, "up"]), "veth up")?;
        check(ip(&["-n", b, "link", "set", b_if, "up"]), "veth up")?;
        Ok(())
    }

    /// Runs a shell command inside a namespace and waits for it.
    pub fn sh(&self, ns: &str, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
                stdout: Vec::new(),
                stderr: e.to_string().into_bytes(),
            })
    }

    /// Like `sh`, true when the command exits 0.
    pub fn ok(&self, ns: &str, cmd: &str) -> bool {
        self.sh(ns, cmd).status.success()
    }

    /// stdout of a command, trimmed.
    pub fn out(&self, ns: &str, cmd: &str) -> String {
        String::from_utf8_lossy(&self.sh(ns, cmd).stdout)
            .trim()
            .to_string()
    }

    /// Starts a program in a namespace in the background; its output goes to
    /// `<log>` in the sandbox directory. Returns its PID.
    pub fn spawn(&mut self, ns: &str, program: &Path, args: &[&str], log: &str) -> io::Result<u32> {
        let out = File::create(self.path(log))?;
        let err = out.try_clone()?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Sends a signal to a process this sandbox started.
    pub fn signal(&self, pid: u32, sig: i32) {
        if self.children.iter().any(|c| c.id() == pid) {
            // SAFETY: kill(2) on a child we spawned.
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// Waits for a child to exit; returns its exit code (None on timeout or signal).
    pub fn wait(&mut self, pid: u32, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let i = self.children.iter().position(|c| c.id() == pid)?;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.children[i].try_wait() {
                let mut done = self.children.remove(i);
                let _ = done.wait();
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The text a background process wrote so far.
    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.path(log)).unwrap_or_default()
    }
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SAFETY: kill(2) on a child we spawned.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            delete_namespace(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
