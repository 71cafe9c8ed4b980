//! Assembling the platform: which services run in this process, how they reach the ones
//! that do not, the plugin host, databases and caches. `dev` and `serve` both build on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use payloom_admin_bff::{Admin, AdminClients};
use payloom_channel_adapter::ChannelApi;
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::Counters;
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::watch::Watcher;
use payloom_host::{HostConfig, Registry, Runtime};
use payloom_merchant_auth::MerchantAuthApi;
use payloom_payment_gateway::Dependencies;
use payloom_platform::Db;
use payloom_platform::config::Config;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::{Bus, Consumer, Outbox, Publisher, Relay, Subscription};
use payloom_platform::kafka;
use payloom_platform::provenance::EventVerifier;
use payloom_platform::server::ReadyCheck;
use payloom_platform::tls::ServiceIdentity;
use payloom_risk::RiskConfig;
use prometheus_client::registry::Registry as Metrics;
use serde::Deserialize;

use crate::wiring::Wiring;

pub const DEFAULT_CONFIG: &str = include_str!("../config.default.toml");

/// The services this binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[clap(rename_all = "kebab-case")]
pub enum Role {
    AdminBff,
    PaymentGateway,
    Order,
    ChannelAdapter,
    Risk,
    MerchantAuth,
    MerchantPolicy,
    MerchantQuota,
    Accounting,
    Notification,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::AdminBff,
        Role::PaymentGateway,
        Role::Order,
        Role::ChannelAdapter,
        Role::Risk,
        Role::MerchantAuth,
        Role::MerchantPolicy,
        Role::MerchantQuota,
        Role::Accounting,
        Role::Notification,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::AdminBff => "admin-bff",
            Role::PaymentGateway => "payment-gateway",
            Role::Order => "order",
            Role::ChannelAdapter => "channel-adapter",
            Role::Risk => "risk",
            Role::MerchantAuth => "merchant-auth",
            Role::MerchantPolicy => "merchant-policy",
            Role::MerchantQuota => "merchant-quota",
            Role::Accounting => "accounting",
            Role::Notification => "notification",
        }
    }

    /// The services this one calls over HTTP when they run in another process. Each
    /// accepts internal calls only from the services that list it here.
    pub fn calls(self) -> &'static [Role] {
        match self {
            Role::PaymentGateway => &[
                Role::MerchantAuth,
                Role::Order,
                Role::MerchantQuota,
                Role::MerchantPolicy,
                Role::Risk,
                Role::ChannelAdapter,
                Role::Accounting,
                Role::Notification,
            ],
            Role::AdminBff => &[
                Role::MerchantAuth,
                Role::ChannelAdapter,
                Role::MerchantPolicy,
                Role::Accounting,
                Role::Notification,
            ],
            _ => &[],
        }
    }

    /// The topics this service's outbox publishes, as its contract names them. Under
    /// Kafka a consumer believes an event only when the service declared here signed it.
    pub fn produces(self) -> &'static [&'static str] {
        use payloom_gateway_contract::events::{PAYMENT_TOPIC, REFUND_TOPIC};
        match self {
            Role::PaymentGateway => &[PAYMENT_TOPIC, REFUND_TOPIC],
            Role::Order => &[payloom_order_contract::TOPIC],
            Role::Accounting => &[payloom_accounting_contract::TOPIC],
            _ => &[],
        }
    }

    /// The topics this service consumes.
    pub fn consumes(self) -> &'static [&'static str] {
        use payloom_gateway_contract::events::{PAYMENT_TOPIC, REFUND_TOPIC};
        match self {
            Role::Accounting | Role::Notification => &[PAYMENT_TOPIC, REFUND_TOPIC],
            _ => &[],
        }
    }

    /// Every (topic, producing service) pair.
    pub fn producers() -> impl Iterator<Item = (&'static str, &'static str)> {
        Role::ALL.into_iter().flat_map(|role| {
            role.produces()
                .iter()
                .map(move |topic| (*topic, role.name()))
        })
    }

    /// The services allowed to call this one's internal routes.
    pub fn callers(self) -> impl Iterator<Item = Role> {
        Role::ALL
            .into_iter()
            .filter(move |caller| caller.calls().contains(&self))
    }

    pub(crate) fn uses_plugins(self) -> bool {
        matches!(
            self,
            Role::ChannelAdapter | Role::Risk | Role::MerchantPolicy
        )
    }
}

/// `[services.<name>]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    /// Public routes (merchant API, PSP notifications, admin) and `/health`, `/ready`,
    /// `/metrics`: plain HTTP, for a gateway such as Kong to front.
    pub listen: std::net::SocketAddr,
    /// Internal routes, over mutual TLS, for the services allowed to call this one.
    pub internal_listen: std::net::SocketAddr,
    /// Where the other services reach the internal listener (`https://…`).
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
struct DatabaseConfig {
    url: Option<String>,
    max_connections: u32,
    acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RedisConfig {
    pub url: Option<String>,
}

/// `[admin]`: the first operator of a new deployment.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AdminBootstrap {
    bootstrap_username: String,
    bootstrap_password: Option<String>,
}

/// `[events]`.
#[derive(Debug, Clone, Deserialize)]
struct EventsConfig {
    kafka_brokers: Option<String>,
    consumer_group: String,
    topic_partitions: i32,
    topic_replication: i32,
    relay_poll_ms: u64,
    relay_batch: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct EmailConfig {
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PluginsConfig {
    dir: Option<PathBuf>,
    allow_unsigned: bool,
}

/// The configuration layers: embedded defaults, the `--config` file, `PAYLOOM_*`, then
/// the database and Redis flags.
pub fn load_config(
    file: Option<&Path>,
    database_url: Option<&str>,
    redis_url: Option<&str>,
) -> anyhow::Result<Config> {
    let mut config = Config::load(DEFAULT_CONFIG, file)?;
    for (key, value) in [("database.url", database_url), ("redis.url", redis_url)] {
        if let Some(value) = value {
            config.set(key, toml::Value::String(value.to_owned()));
        }
    }
    Ok(config)
}

/// Runs `main` on a multi-threaded runtime: the services' entry point.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    main: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(main)
}

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

impl Settings {
    pub fn endpoint(&self, role: Role) -> anyhow::Result<Endpoint> {
        let all: HashMap<String, Endpoint> = self.config.section("services")?;
        all.get(role.name())
            .cloned()
            .with_context(|| format!("no [services.{}] in the configuration", role.name()))
    }

    pub(crate) fn secret(
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

/// The running services of this process.
pub struct Assembly {
    pub registry: Option<Arc<Registry>>,
    pub metrics: Arc<Metrics>,
    pub checks: Vec<(String, ReadyCheck)>,
    /// Per local role: its public and internal routes.
    pub routers: Vec<(Role, Router)>,
    pub auth: Arc<dyn MerchantAuthApi>,
    pub channels: Arc<dyn ChannelApi>,
    pub admin: Option<Arc<Admin>>,
    pub database_url: String,
    _watcher: Option<Watcher>,
}

/// Databases by URL: co-located services on PostgreSQL share one pool (one per service
/// would multiply connections past the server's limit); on SQLite each service has a file.
pub(crate) struct Databases {
    sqlite_dir: Option<PathBuf>,
    url: Option<String>,
    options: PoolOptions,
    open: HashMap<String, Db>,
}

impl Databases {
    /// `[database]`: a URL, or SQLite files under the data directory (created here).
    pub(crate) fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let db_config: DatabaseConfig = settings.config.section("database")?;
        let sqlite_dir = db_config
            .url
            .is_none()
            .then(|| settings.data_dir.join("db"));
        if let Some(dir) = &sqlite_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self {
            sqlite_dir,
            url: db_config.url,
            options: PoolOptions {
                max_connections: db_config.max_connections,
                acquire_timeout: Duration::from_millis(db_config.acquire_timeout_ms),
            },
            open: HashMap::new(),
        })
    }

    pub(crate) async fn for_service(&mut self, service: &str) -> anyhow::Result<Db> {
        let url = match (&self.url, &self.sqlite_dir) {
            (Some(url), _) => url.clone(),
            (None, Some(dir)) => sqlite_url(dir, service),
            (None, None) => anyhow::bail!("database.url is required"),
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

    fn describe(&self) -> String {
        match (&self.url, &self.sqlite_dir) {
            (Some(url), _) => redact(url),
            (None, Some(dir)) => format!("sqlite files in {}", dir.display()),
            (None, None) => "none".into(),
        }
    }
}

/// A database URL without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Builds this process: the local roles' services (in dependency order) and clients of
/// the remote ones, the event relays and consumers, readiness checks and metrics.
pub async fn assemble(settings: &Settings, local: &[Role]) -> anyhow::Result<Assembly> {
    let mut w = Wiring::open(settings, local).await?;
    let auth = w.auth().await?;
    let orders = w.orders().await?;
    let quota = w.quota().await?;
    let policy = w.policy().await?;
    let risk = w.risk().await?;
    let channels = w.channels().await?;
    let accounting = w.accounting().await?;
    let notifications = w.notifications().await?;
    w.gateway(|limits| Dependencies {
        auth: auth.clone(),
        orders,
        quota,
        policy: policy.clone(),
        risk,
        channels: channels.clone(),
        accounting: accounting.clone(),
        notifications: notifications.clone(),
        limits,
    })
    .await?;
    let admin = w
        .admin(|dead_letters| AdminClients {
            auth: auth.clone(),
            channels: channels.clone(),
            policy,
            accounting,
            notifications,
            dead_letters,
        })
        .await?;
    start_events(&mut w).await?;
    let database_url = w.dbs.describe();
    for db in w.dbs.open.into_values() {
        w.checks.push((
            "database".into(),
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
            }),
        ));
    }
    let http_metrics = payloom_platform::server::HttpMetrics::register(&mut w.metrics);
    let routers = w
        .routers
        .into_iter()
        .map(|(role, router)| {
            let router = payloom_platform::server::instrument(router, http_metrics.clone());
            (role, router)
        })
        .collect();
    Ok(Assembly {
        registry: w.registry,
        metrics: Arc::new(w.metrics),
        checks: w.checks,
        routers,
        auth,
        channels,
        admin,
        database_url,
        _watcher: w.watcher,
    })
}

/// Creates the first operator from `[admin] bootstrap_password`, once: only while there is
/// no operator at all, so the password is never re-applied to an existing account.
pub(crate) async fn bootstrap_admin(
    admin: &Admin,
    bootstrap: AdminBootstrap,
) -> anyhow::Result<()> {
    let Some(password) = bootstrap.bootstrap_password.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let username = &bootstrap.bootstrap_username;
    if admin.bootstrap_admin(username, &password).await? {
        tracing::info!(
            username,
            "created the first operator from [admin] bootstrap_password"
        );
    } else {
        tracing::warn!(
            "operators exist, so [admin] bootstrap_password was not applied; remove it from the configuration"
        );
    }
    Ok(())
}

/// Relays this process's outboxes and feeds its consumers: through Kafka when brokers are
/// configured, else through the in-process bus. The bus can only reach consumers in this
/// process, so without them its outboxes wait (for a node that can deliver) rather than
/// drop events nobody received.
async fn start_events(w: &mut Wiring<'_>) -> anyhow::Result<()> {
    let config: EventsConfig = w.settings.config.section("events")?;
    let all_consumers_here = Role::ALL
        .into_iter()
        .filter(|role| !role.consumes().is_empty())
        .all(|role| w.is_local(role));
    let (outboxes, consumers) = (
        std::mem::take(&mut w.outboxes),
        std::mem::take(&mut w.consumers),
    );
    let relay = |db: Db, outbox: Outbox, publisher: Arc<dyn Publisher>| {
        Relay {
            db,
            outbox,
            publisher,
            batch: config.relay_batch,
            poll: Duration::from_millis(config.relay_poll_ms),
        }
        .spawn();
    };
    if let Some(brokers) = config.kafka_brokers.as_deref().filter(|b| !b.is_empty()) {
        let certs = w.settings.certs.as_deref().context(
            "events over Kafka are signed with the service certificates: run them under `serve` with --certs",
        )?;
        for (db, outbox, publisher) in
            start_kafka(&config, brokers, certs, outboxes, consumers).await?
        {
            relay(db, outbox, publisher);
        }
    } else if all_consumers_here {
        let mut bus = Bus::default();
        for (db, consumer) in consumers {
            bus.subscribe(Subscription::new(db, consumer));
        }
        let bus: Arc<dyn Publisher> = Arc::new(bus);
        for (db, outbox) in outboxes {
            relay(db, outbox, bus.clone());
        }
    } else if !outboxes.is_empty() {
        tracing::warn!(
            "no [events] kafka_brokers and some consumers run elsewhere: events wait in the outbox"
        );
    }
    Ok(())
}

/// An outbox and where its relay publishes.
type Relayed = (Db, Outbox, Arc<dyn Publisher>);

/// Kafka consumers that believe only the declared producer of each topic, and a publisher
/// per outbox that signs as the service the outbox belongs to.
async fn start_kafka(
    config: &EventsConfig,
    brokers: &str,
    certs: &Path,
    outboxes: Vec<(Db, Outbox)>,
    consumers: Vec<(Db, Arc<dyn Consumer>)>,
) -> anyhow::Result<Vec<Relayed>> {
    let ca_path = certs.join("ca.pem");
    let ca = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let verifier = Arc::new(EventVerifier::new(&ca, Role::producers())?);
    let mut topics: Vec<&str> = Role::producers().map(|(topic, _)| topic).collect();
    topics.dedup();
    let (partitions, replication) = (config.topic_partitions, config.topic_replication);
    kafka::ensure_topics(brokers, &topics, partitions, replication).await?;
    for (db, consumer) in consumers {
        let group = format!("{}.{}", config.consumer_group, consumer.name());
        let subscription = Subscription::new(db, consumer);
        kafka::spawn_consumer(brokers, &group, subscription, verifier.clone())?;
    }
    outboxes
        .into_iter()
        .map(|(db, outbox)| {
            let signer = ServiceIdentity::load(certs, outbox.service())?.event_signer()?;
            let publisher: Arc<dyn Publisher> =
                Arc::new(kafka::KafkaPublisher::new(brokers, signer)?);
            Ok((db, outbox, publisher))
        })
        .collect()
}

/// The plugin runtime, the registry loaded from the plugins directory (seeded with the
/// reference plugins) and watched for hot swaps; plugins read `counters`.
pub(crate) async fn plugin_host(
    settings: &Settings,
    counters: Arc<dyn Counters>,
    metrics: &mut Metrics,
) -> anyhow::Result<(Arc<Registry>, Watcher)> {
    let plugins: PluginsConfig = settings.config.section("plugins")?;
    let dir = plugins
        .dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("plugins"));
    seed_plugins(&dir)?;
    let config = HostConfig {
        allow_unsigned: plugins.allow_unsigned,
        cache_dir: Some(settings.data_dir.join("cache")),
        ..HostConfig::default()
    };
    let http = HttpClient::from_config(&config)?;
    let lists = Arc::new(MemoryLists::default());
    let risk: RiskConfig = settings.config.section("risk")?;
    for (name, values) in &risk.lists {
        for value in values {
            lists.add(name, value);
        }
    }
    let services = HostServices {
        http: Arc::new(http),
        counters,
        lists,
    };
    let runtime = Runtime::new(config, services, metrics)?;
    let registry = Registry::new(runtime);
    let watcher = Watcher::start(registry.clone(), &dir).await?;
    Ok((registry, watcher))
}

/// Writes the reference plugins that are not there yet; an operator's edits stay.
pub fn seed_plugins(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for plugin in payloom_reference_plugins::ALL {
        if !dir.join(format!("{}.wasm", plugin.name)).exists() {
            plugin.write_to(dir)?;
        }
    }
    Ok(())
}

pub fn ops(assembly: &Assembly) -> payloom_platform::server::Ops {
    payloom_platform::server::Ops {
        metrics: assembly.metrics.clone(),
        checks: assembly.checks.clone(),
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

    #[test]
    fn each_topic_is_produced_by_the_service_its_contract_names() {
        use payloom_gateway_contract::events as gateway;
        let declared: Vec<_> = super::Role::producers().collect();
        let contracts = [
            (gateway::PAYMENT_TOPIC, gateway::PRODUCER),
            (gateway::REFUND_TOPIC, gateway::PRODUCER),
            (
                payloom_order_contract::TOPIC,
                payloom_order_contract::PRODUCER,
            ),
            (
                payloom_accounting_contract::TOPIC,
                payloom_accounting_contract::PRODUCER,
            ),
        ];
        assert_eq!(declared.len(), contracts.len());
        for pair in contracts {
            assert!(declared.contains(&pair), "{pair:?}");
        }
    }

    #[test]
    fn every_consumed_topic_has_one_producer() {
        for role in super::Role::ALL {
            for topic in role.consumes() {
                let producers = super::Role::producers().filter(|(t, _)| t == topic).count();
                assert_eq!(producers, 1, "{topic}, consumed by {}", role.name());
            }
        }
    }

    #[test]
    fn the_embedded_defaults_parse_into_every_section() {
        let config =
            payloom_platform::config::Config::load_with_env(super::DEFAULT_CONFIG, None, &[])
                .unwrap();
        let gateway: payloom_payment_gateway::GatewayConfig = config.section("gateway").unwrap();
        gateway.validate().unwrap();
        let quota: payloom_merchant_quota::QuotaConfig = config.section("quota").unwrap();
        quota.validate().unwrap();
        let auth: payloom_merchant_auth::AuthConfig = config.section("auth").unwrap();
        auth.validate().unwrap();
        let login: payloom_admin_bff::LoginConfig = config.section("admin").unwrap();
        login.validate().unwrap();
        let risk: payloom_risk::RiskConfig = config.section("risk").unwrap();
        assert_eq!(risk.rules.len(), 3);
        let _: payloom_merchant_policy::PolicyConfig = config.section("policy").unwrap();
        let services: std::collections::HashMap<String, super::Endpoint> =
            config.section("services").unwrap();
        assert_eq!(services.len(), super::Role::ALL.len());
    }
}
