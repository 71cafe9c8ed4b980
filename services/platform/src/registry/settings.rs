//! What an assembly is built from: the layered configuration, the data directory, the
//! certificates, and the databases the services open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::{INTERNAL_PORT_OFFSET, Manifest};
use crate::Db;
use crate::config::Config;
use crate::db::{PoolOptions, sqlite_url};

/// Everything an assembly is built from.
pub struct Settings {
    pub config: Config,
    pub data_dir: PathBuf,
    /// `dev`: secrets are generated into the data directory when not configured.
    pub generate_secrets: bool,
    /// `serve`: the folder of `payloom certs init`, whose certificates every call between
    /// processes presents and verifies. `None` only when every service is in this process.
    pub certs: Option<PathBuf>,
}

/// Where a service listens and is reached: `[services.<name>]`, each field defaulting to
/// loopback on the port its manifest declares.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Public routes and `/health`, `/ready`, `/metrics`: plain HTTP, for a gateway such
    /// as Kong to front.
    pub listen: std::net::SocketAddr,
    /// Internal routes, over mutual TLS, for the services allowed to call this one.
    pub internal_listen: std::net::SocketAddr,
    /// Where the other services reach the internal listener (`https://…`).
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointConfig {
    listen: Option<std::net::SocketAddr>,
    internal_listen: Option<std::net::SocketAddr>,
    url: Option<String>,
    /// The service's own database, as the origin deploys them; unset, it shares
    /// `[database]` with the services beside it.
    database_url: Option<String>,
}

impl Settings {
    /// `manifest`'s endpoint: the configured fields over the declared port's defaults.
    pub fn endpoint(&self, manifest: &Manifest) -> anyhow::Result<Endpoint> {
        let configured: HashMap<String, EndpointConfig> = self.config.section("services")?;
        let mut config = configured.get(manifest.name).cloned().unwrap_or_default();
        let internal_port = manifest
            .port
            .checked_add(INTERNAL_PORT_OFFSET)
            .context("the internal port is out of range")?;
        let internal_listen = config
            .internal_listen
            .unwrap_or_else(|| ([127, 0, 0, 1], internal_port).into());
        Ok(Endpoint {
            listen: config
                .listen
                .unwrap_or_else(|| ([127, 0, 0, 1], manifest.port).into()),
            url: config
                .url
                .take()
                .unwrap_or_else(|| format!("https://{internal_listen}")),
            internal_listen,
        })
    }

    /// `security.<key>`, or under `dev` a value generated once into `<data-dir>/<file>`.
    pub fn secret(
        &self,
        key: &str,
        file: &str,
        make: impl FnOnce() -> String,
    ) -> anyhow::Result<String> {
        if let Some(value) = self
            .config
            .get_str(&format!("security.{key}"))
            .filter(|v| !v.is_empty())
        {
            return Ok(value.to_owned());
        }
        anyhow::ensure!(
            self.generate_secrets,
            "security.{key} is required (PAYLOOM_SECURITY__{})",
            key.to_ascii_uppercase()
        );
        let path = self.data_dir.join(file);
        if let Ok(existing) = std::fs::read_to_string(&path) {
            return Ok(existing.trim().to_owned());
        }
        let value = make();
        std::fs::create_dir_all(&self.data_dir)?;
        write_private(&path, &value)?;
        Ok(value)
    }
}

/// Writes a file only the owner can read (secrets in the data directory).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
struct DatabaseConfig {
    url: Option<String>,
    max_connections: u32,
    acquire_timeout_ms: u64,
}

/// Databases by URL: a service with `[services.<name>] database_url` has its own; the
/// others on PostgreSQL share one pool (one per service would multiply connections past
/// the server's limit); on SQLite each service has a file.
pub struct Databases {
    sqlite_dir: Option<PathBuf>,
    url: Option<String>,
    /// Services with a database of their own, by name.
    own: HashMap<String, String>,
    options: PoolOptions,
    open: HashMap<String, Db>,
}

impl Databases {
    /// `[database]`: a URL, or SQLite files under the data directory (created here).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let db_config: DatabaseConfig = settings.config.section("database")?;
        let sqlite_dir = db_config
            .url
            .is_none()
            .then(|| settings.data_dir.join("db"));
        if let Some(dir) = &sqlite_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let services: HashMap<String, EndpointConfig> = settings.config.section("services")?;
        let own = services
            .into_iter()
            .filter_map(|(name, s)| s.database_url.filter(|u| !u.is_empty()).map(|u| (name, u)))
            .collect();
        Ok(Self {
            sqlite_dir,
            url: db_config.url,
            own,
            options: PoolOptions {
                max_connections: db_config.max_connections,
                acquire_timeout: Duration::from_millis(db_config.acquire_timeout_ms),
            },
            open: HashMap::new(),
        })
    }

    pub async fn for_service(&mut self, service: &str) -> anyhow::Result<Db> {
        let url = match (self.own.get(service), &self.url, &self.sqlite_dir) {
            (Some(own), _, _) => own.clone(),
            (None, Some(url), _) => url.clone(),
            (None, None, Some(dir)) => sqlite_url(dir, service),
            (None, None, None) => anyhow::bail!("database.url is required"),
        };
        if let Some(db) = self.open.get(&url) {
            return Ok(db.clone());
        }
        let db = Db::connect(&url, &self.options)
            .await
            .with_context(|| format!("database for {service}"))?;
        self.open.insert(url, db.clone());
        Ok(db)
    }

    /// Every database opened so far.
    pub fn opened(&self) -> impl Iterator<Item = &Db> {
        self.open.values()
    }

    /// Where the databases are, without passwords.
    pub fn describe(&self) -> String {
        let shared = match (&self.url, &self.sqlite_dir) {
            (Some(url), _) => redact(url),
            (None, Some(dir)) => format!("sqlite files in {}", dir.display()),
            (None, None) => "none".into(),
        };
        match self.own.len() {
            0 => shared,
            n => format!("{shared} ({n} services on their own databases)"),
        }
    }
}

/// A database URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_lose_their_password_in_output() {
        assert_eq!(
            super::redact("postgres://u:pw@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(super::redact("postgres://h/db"), "postgres://h/db");
    }
}
