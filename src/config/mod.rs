//! Configuration: the YAML/JSON schema of SPEC §2, its validation with field
//! paths, and the derived values (MACs, TAP names, UUIDs).

pub mod addr;
pub mod derive;
pub mod model;
pub mod schema;
mod validate;

use std::fmt;
use std::path::Path;

pub use addr::Mac;
pub use model::*;

/// One problem in a config file: where, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Parses and validates config text (YAML or JSON).
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let de = yaml_serde::Deserializer::from_str(text);
    let raw: schema::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The YAML parser repeats the location in front; keep one.
        let inner = match inner.split_once(": ") {
            Some((head, rest)) if !head.contains(' ') => rest.to_string(),
            _ => inner,
        };
        vec![ConfigError {
            path: if path == "." { String::new() } else { path },
            message: inner,
        }]
    })?;
    validate::validate(raw)
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    parse(&text)
}

/// The normalized config as YAML, for `niswitch check`.
pub fn to_yaml(cfg: &Config) -> String {
    yaml_serde::to_string(cfg).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
}
