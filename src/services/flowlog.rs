//! Flow records (one JSON object per line) and the file they go to:
//! `--state-dir/flows.jsonl`, rotated by size, read back by `niswitch flows`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Size at which flows.jsonl is rotated, and how many old files are kept.
pub const ROTATE_BYTES: u64 = 8 << 20;
pub const KEEP: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowRecord {
    pub app: String,
    pub app_uuid: String,
    pub ni: String,
    pub vif: String,
    pub proto: u8,
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
    /// Started by the remote side.
    pub inbound: bool,
    pub start: String,
    pub end: String,
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    pub rx_pkts: u64,
    pub rx_bytes: u64,
    /// `allow` or `drop`.
    pub action: String,
    /// Index of the rule that decided, in the VIF's `acls`; None: no rule matched.
    pub acl: Option<usize>,
}

pub fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("flows.jsonl")
}

/// Appends records to flows.jsonl, rotating it when it grows too big.
pub struct FlowLog {
    path: PathBuf,
    max: u64,
}

impl FlowLog {
    pub fn new(state_dir: &Path) -> FlowLog {
        FlowLog {
            path: file(state_dir),
            max: ROTATE_BYTES,
        }
    }

    pub fn write(&self, records: &[FlowRecord]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max) {
            self.rotate()?;
        }
        let mut text = String::new();
        for r in records {
            if let Ok(line) = serde_json::to_string(r) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(text.as_bytes())
    }

    fn rotate(&self) -> io::Result<()> {
        let name = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = fs::remove_file(name(KEEP));
        for i in (1..KEEP).rev() {
            let _ = fs::rename(name(i), name(i + 1));
        }
        fs::rename(&self.path, name(1))
    }
}

/// One line for people.
pub fn render(r: &FlowRecord) -> String {
    let proto = match r.proto {
        1 => "icmp".to_string(),
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        n => n.to_string(),
    };
    let rule = r.acl.map_or("-".to_string(), |i| format!("acl[{i}]"));
    format!(
        "{} {} {}/{} {proto} {}:{} {} {}:{} {} {} tx {}p/{}B rx {}p/{}B",
        r.start,
        r.end,
        r.app,
        r.vif,
        r.src,
        r.sport,
        if r.inbound { "<-" } else { "->" },
        r.dst,
        r.dport,
        r.action,
        rule,
        r.tx_pkts,
        r.tx_bytes,
        r.rx_pkts,
        r.rx_bytes
    )
}

/// Prints the records of `state_dir` (raw JSON lines or rendered); with
/// `follow`, keeps printing new ones as they are written.
pub fn show(state_dir: &Path, json: bool, follow: bool, out: &mut dyn Write) -> io::Result<()> {
    let path = file(state_dir);
    let mut pos = 0u64;
    loop {
        match File::open(&path) {
            Ok(mut f) => {
                let len = f.metadata()?.len();
                if len < pos {
                    pos = 0; // rotated
                }
                f.seek(SeekFrom::Start(pos))?;
                let mut r = BufReader::new(f);
                let mut line = String::new();
                while r.read_line(&mut line)? > 0 {
                    if !line.ends_with('\n') {
                        break; // written half: read it next time
                    }
                    pos += line.len() as u64;
                    let t = line.trim_end();
                    if json {
                        writeln!(out, "{t}")?;
                    } else {
                        match serde_json::from_str::<FlowRecord>(t) {
                            Ok(rec) => writeln!(out, "{}", render(&rec))?,
                            Err(_) => writeln!(out, "(unreadable record) {t}")?,
                        }
                    }
                    line.clear();
                }
                out.flush()?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && follow => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("no flow records yet ({} does not exist)", path.display()),
                ));
            }
            Err(e) => return Err(e),
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> FlowRecord {
        FlowRecord {
            app: "web".into(),
            app_uuid: "u".into(),
            ni: "lan".into(),
            vif: "nbu1x1".into(),
            proto: 6,
            src: "10.50.0.20".into(),
            sport: 40000,
            dst: "192.0.2.80".into(),
            dport: 80,
            inbound: false,
            start: "2026-01-01T00:00:00Z".into(),
            end: "2026-01-01T00:00:01Z".into(),
            tx_pkts: i,
            tx_bytes: 100,
            rx_pkts: 2,
            rx_bytes: 200,
            action: "allow".into(),
            acl: Some(0),
        }
    }

    #[test]
    fn records_are_appended_rotated_and_read_back() {
        let dir = std::env::temp_dir().join(format!("nsw-flowlog-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut log = FlowLog::new(&dir);
        log.max = 600;
        for i in 0..10 {
            log.write(&[rec(i)]).unwrap();
        }
        assert!(dir.join("flows.jsonl.1").exists(), "rotated");
        let mut out = Vec::new();
        show(&dir, true, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let last: FlowRecord = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last, rec(9));
        let mut out = Vec::new();
        show(&dir, false, false, &mut out).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("web/nbu1x1 tcp 10.50.0.20:40000 -> 192.0.2.80:80 allow acl[0]")
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
