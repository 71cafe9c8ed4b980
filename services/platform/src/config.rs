//! Layered configuration: embedded commented defaults, then a config file, then
//! `PAYLOOM_*` environment variables, then command-line flags. Each service owns its
//! section type and validates it once, at load.
//!
//! Environment variables address keys with `__` between levels:
//! `PAYLOOM_GATEWAY__BODY_LIMIT_BYTES=65536` sets `gateway.body_limit_bytes`. Values are
//! read as TOML (`8`, `true`, `[1, 2]`) and fall back to a string.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// The merged configuration tree.
#[derive(Debug, Clone, Default)]
pub struct Config {
    table: Table,
}

const ENV_PREFIX: &str = "PAYLOOM_";

impl Config {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(defaults: &str, file: Option<&Path>) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(defaults, file, &env)
    }

    /// As [`Config::load`], with the environment given (tests).
    pub fn load_with_env(
        defaults: &str,
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut config = Self {
            table: toml::from_str(defaults).context("embedded default configuration")?,
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let layer: Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            merge(&mut config.table, layer);
        }
        for (name, raw) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // PAYLOOM_LOG is the log filter, not a config key.
            if key == "LOG" {
                continue;
            }
            let dotted = key.to_ascii_lowercase().replace("__", ".");
            config.set(&dotted, parse_value(raw));
        }
        Ok(config)
    }

    /// Sets one dotted key (`gateway.listen`), creating tables on the way.
    pub fn set(&mut self, dotted: &str, value: Value) {
        let mut table = &mut self.table;
        let mut parts = dotted.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_owned(), value);
                return;
            }
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            table = entry.as_table_mut().expect("just made a table");
        }
    }

    /// A string value, if set.
    pub fn get_str(&self, dotted: &str) -> Option<&str> {
        let mut value: Option<&Value> = None;
        let mut table = &self.table;
        for part in dotted.split('.') {
            value = table.get(part);
            if let Some(Value::Table(t)) = value {
                table = t;
            }
        }
        value.and_then(Value::as_str)
    }

    /// Deserializes section `name` (an empty table if absent, so serde defaults apply).
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<T> {
        let value = self
            .table
            .get(name)
            .cloned()
            .unwrap_or_else(|| Value::Table(Table::new()));
        value
            .try_into()
            .with_context(|| format!("configuration section [{name}]"))
    }
}

fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn merge(base: &mut Table, layer: Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base)), Value::Table(layer)) => merge(base, layer),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Gateway {
        body_limit_bytes: u64,
        name: String,
        #[serde(default)]
        missing: Option<u32>,
    }

    #[test]
    fn layers_apply_in_order() {
        let defaults = "[gateway]\nbody_limit_bytes = 10\nname = \"a\"\n";
        let dir = std::env::temp_dir().join(format!("payloom-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[gateway]\nname = \"b\"\n").unwrap();
        let env = vec![
            (
                "PAYLOOM_GATEWAY__BODY_LIMIT_BYTES".to_owned(),
                "65536".to_owned(),
            ),
            ("PAYLOOM_LOG".to_owned(), "debug".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let mut config = Config::load_with_env(defaults, Some(&file), &env).unwrap();
        let g: Gateway = config.section("gateway").unwrap();
        assert_eq!(
            (g.body_limit_bytes, g.name.as_str(), g.missing),
            (65536, "b", None)
        );
        config.set("gateway.name", Value::String("flag".into()));
        assert_eq!(config.get_str("gateway.name"), Some("flag"));
        assert!(config.get_str("log").is_none());
    }

    #[test]
    fn a_wrong_type_names_the_section() {
        let config = Config::load_with_env(
            "[gateway]\nbody_limit_bytes = \"x\"\nname = \"a\"",
            None,
            &[],
        )
        .unwrap();
        let err = config.section::<Gateway>("gateway").unwrap_err();
        assert!(format!("{err:#}").contains("[gateway]"), "{err:#}");
    }
}
