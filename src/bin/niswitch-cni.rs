//! `niswitch-cni`: the CNI plugin binary. A runtime runs it with the CNI_*
//! environment variables and the network config on stdin; it prints a
//! result or a CNI error object and exits 0 or 1 (see `niswitch::cni`).

use std::io::{Read, Write};
use std::process::ExitCode;

use niswitch::cni::{self, Env};

fn main() -> ExitCode {
    let env = Env::read(|k| std::env::var(k).ok());
    let mut stdin = String::new();
    // VERSION may come without a config; a read error leaves it empty and
    // the verb reports the config as undecodable.
    if env.command != "VERSION" {
        let _ = std::io::stdin().take(1 << 20).read_to_string(&mut stdin);
    }
    let (out, code) = cni::run(&env, &stdin);
    if !out.is_empty() {
        let _ = writeln!(std::io::stdout().lock(), "{out}");
    }
    ExitCode::from(code)
}
