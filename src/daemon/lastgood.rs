//! The last config that passed its probe, kept in the state directory, and
//! a marker that an apply is under way: `run` starts from the last good
//! config when the one it is given is invalid, and after a crash in the
//! middle of an apply.

use std::path::{Path, PathBuf};

const LAST_GOOD: &str = "last-good.yaml";
const PENDING: &str = "apply-in-progress";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(LAST_GOOD)
}

/// The last good config's text, if there is one.
pub fn load(dir: &Path) -> Option<String> {
    std::fs::read_to_string(path(dir)).ok()
}

/// Keeps `text` as the last good config.
pub fn save(dir: &Path, text: &str) {
    if let Err(e) = crate::durable::write(&path(dir), text.as_bytes()) {
        tracing::warn!(error = %e, "could not keep the last good config");
    }
}

/// An apply starts: until `end`, a crash leaves this marker behind.
pub fn begin(dir: &Path) {
    if let Err(e) = crate::durable::write(&dir.join(PENDING), b"") {
        tracing::warn!(error = %e, "could not mark the apply as under way");
    }
}

pub fn end(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(PENDING));
}

/// Whether an earlier run ended in the middle of an apply.
pub fn interrupted(dir: &Path) -> bool {
    dir.join(PENDING).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_and_marks_an_apply_under_way() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()), None);
        save(d.path(), "version: 1\n");
        assert_eq!(load(d.path()).as_deref(), Some("version: 1\n"));
        assert!(!interrupted(d.path()));
        begin(d.path());
        assert!(interrupted(d.path()));
        end(d.path());
        assert!(!interrupted(d.path()));
    }
}
