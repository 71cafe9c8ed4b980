//! The TOML manifest that sits beside every component.
//!
//! ```toml
//! id = "sandbox"
//! world = "channel-adapter"
//! version = "0.1.0"
//!
//! [capabilities]
//! allowed_hosts = ["https://api.psp.example"]
//! secrets = ["api_key"]
//! keys = ["notify_hmac"]
//!
//! [limits]
//! memory_bytes_max = 16777216
//! deadline_ms = 2000
//! ```

use serde::{Deserialize, Serialize};

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PluginKind {
    /// `channel-adapter`
    #[serde(rename = "channel-adapter")]
    Channel,
    /// `risk-rule`
    #[serde(rename = "risk-rule")]
    Risk,
    /// `merchant-policy`
    #[serde(rename = "merchant-policy")]
    Policy,
}

impl PluginKind {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            Self::Channel => "channel-adapter",
            Self::Risk => "risk-rule",
            Self::Policy => "merchant-policy",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.world())
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Stable plugin id: lower-case letters, digits and `-`.
    pub id: String,
    /// The world the component implements.
    pub world: PluginKind,
    /// Semantic version of this build.
    pub version: String,
    /// Free text for operators.
    #[serde(default)]
    pub description: String,
    /// What the plugin may reach.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Limits stricter than the host's.
    #[serde(default)]
    pub limits: Limits,
}

/// Grants; anything not listed is denied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Outbound HTTP destinations as `scheme://host[:port]`; `*.` prefixes a subdomain wildcard.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Secret names `secrets.get` may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Key handles `crypto` may use.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Per-plugin limits; each may only lower the host's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory cap (bytes).
    pub memory_bytes_max: Option<u64>,
    /// Call deadline (ms).
    pub deadline_ms: Option<u64>,
}

/// Longest plugin id; ids end up in metric labels and file names.
const ID_LEN_MAX: usize = 64;

impl Manifest {
    /// Parses and validates manifest text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The version as numbers, for ordering: `0.10.0` is newer than `0.9.1`.
    pub fn version_key(&self) -> (u64, u64, u64) {
        parse_version(&self.version).expect("validated at parse")
    }

    fn validate(&self) -> anyhow::Result<()> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= ID_LEN_MAX
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.id.starts_with('-');
        anyhow::ensure!(
            id_ok,
            "manifest id {:?} must be 1..={ID_LEN_MAX} of [a-z0-9-]",
            self.id
        );
        anyhow::ensure!(
            parse_version(&self.version).is_some(),
            "manifest version {:?} must be MAJOR.MINOR.PATCH",
            self.version
        );
        for host in &self.capabilities.allowed_hosts {
            crate::capabilities::http::AllowedHost::parse(host)?;
        }
        if let Some(ms) = self.limits.deadline_ms {
            anyhow::ensure!(ms > 0, "limits.deadline_ms must be positive");
        }
        if let Some(bytes) = self.limits.memory_bytes_max {
            anyhow::ensure!(
                bytes >= 1 << 16,
                "limits.memory_bytes_max must be at least one 64 KiB page"
            );
        }
        Ok(())
    }
}

/// `MAJOR.MINOR.PATCH`, each a decimal number.
pub fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let number = |p: &str| match !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
        true => p.parse().ok(),
        false => None,
    };
    let mut parts = version.split('.').map(number);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(
            r#"
            id = "sandbox"
            world = "channel-adapter"
            version = "1.2.3"
            [capabilities]
            allowed_hosts = ["https://api.example.com", "http://*.psp.test:8080"]
            secrets = ["api_key"]
            [limits]
            deadline_ms = 100
            "#,
        )
        .unwrap();
        assert_eq!(m.world, PluginKind::Channel);
        assert_eq!(m.capabilities.secrets, ["api_key"]);
        assert_eq!(m.version_key(), (1, 2, 3));
    }

    #[test]
    fn versions_order_by_number_not_text() {
        let at = |v: &str| {
            Manifest::parse(&format!(
                "id = \"x\"\nworld = \"risk-rule\"\nversion = \"{v}\""
            ))
            .unwrap()
            .version_key()
        };
        assert!(at("0.10.0") > at("0.9.1"));
        assert!(at("1.0.0") > at("0.99.99"));
        assert!(
            Manifest::parse(
                "id = \"x\"\nworld = \"risk-rule\"\nversion = \"99999999999999999999.0.0\""
            )
            .is_err()
        );
    }

    #[test]
    fn rejects_bad_ids_versions_worlds_and_fields() {
        for bad in [
            "id = \"Bad_Id\"\nworld = \"risk-rule\"\nversion = \"1.0.0\"",
            "id = \"ok\"\nworld = \"risk-rule\"\nversion = \"1.0\"",
            "id = \"ok\"\nworld = \"wasi-http\"\nversion = \"1.0.0\"",
            "id = \"ok\"\nworld = \"risk-rule\"\nversion = \"1.0.0\"\nextra = 1",
            "id = \"ok\"\nworld = \"risk-rule\"\nversion = \"1.0.0\"\n[capabilities]\nallowed_hosts = [\"ftp://x\"]",
        ] {
            assert!(Manifest::parse(bad).is_err(), "accepted: {bad}");
        }
    }
}
