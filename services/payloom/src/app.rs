//! Assembling the platform: which services run in this process, how they reach the ones
//! that do not, the plugin host, databases and caches. `dev` and `serve` both build on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use payloom_accounting::{AccountingApi, AccountingHttp, Ledger};
use payloom_admin_bff::{Admin, AdminClients, LoginConfig};
use payloom_notification::email::{FileMailer, LogMailer, Mailer};
use payloom_notification::{NotificationApi, NotificationConfig, NotificationHttp, Notifications};
use payloom_platform::events::{
    Bus, Consumer, DeadLetterApi, DeadLetterHttp, Outbox, Publisher, Relay, Subscription,
    dead_letter_router,
};
use payloom_platform::kafka;

use payloom_channel_adapter::{ChannelAdapter, ChannelApi, ChannelHttp};
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::{Counters, MemoryCounters};
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::watch::Watcher;
use payloom_host::{HostConfig, Registry, Runtime};
use payloom_merchant_auth::{AuthConfig, MerchantAuth, MerchantAuthApi, MerchantAuthHttp};
use payloom_merchant_policy::{MerchantPolicy, PolicyApi, PolicyConfig, PolicyHttp};
use payloom_merchant_quota::{QuotaApi, QuotaConfig, QuotaHttp, Quotas, RedisUsage, UsageStore};
use payloom_order::{OrderApi, OrderHttp, Orders};
use payloom_payment_gateway::{Dependencies, Gateway, GatewayConfig};
use payloom_platform::cache::{KeyStore, MemoryKeyStore, RedisKeyStore, redis_connect};
use payloom_platform::client::ServiceClient;
use payloom_platform::clock::SharedClock;
use payloom_platform::config::Config;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::seal::MasterKey;
use payloom_platform::server::ReadyCheck;
use payloom_platform::{Db, SystemClock};
use payloom_risk::{RedisCounters, Risk, RiskApi, RiskConfig, RiskHttp};
use prometheus_client::registry::Registry as Metrics;
use serde::Deserialize;

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

    fn uses_plugins(self) -> bool {
        matches!(
            self,
            Role::ChannelAdapter | Role::Risk | Role::MerchantPolicy
        )
    }
}

/// `[services.<name>]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    pub listen: std::net::SocketAddr,
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
struct DatabaseConfig {
    url: Option<String>,
    max_connections: u32,
    acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RedisConfig {
    url: Option<String>,
}

/// `[admin]`: the first operator of a new deployment.
#[derive(Debug, Clone, Deserialize)]
struct AdminBootstrap {
    bootstrap_username: String,
    bootstrap_password: Option<String>,
}

/// `[events]`.
#[derive(Debug, Clone, Deserialize)]
struct EventsConfig {
    kafka_brokers: Option<String>,
    consumer_group: String,
    relay_poll_ms: u64,
    relay_batch: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct EmailConfig {
    file: Option<PathBuf>,
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
}

impl Settings {
    pub fn endpoint(&self, role: Role) -> anyhow::Result<Endpoint> {
        let all: HashMap<String, Endpoint> = self.config.section("services")?;
        all.get(role.name())
            .cloned()
            .with_context(|| format!("no [services.{}] in the configuration", role.name()))
    }

    fn secret(
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
struct Databases {
    sqlite_dir: Option<PathBuf>,
    url: Option<String>,
    options: PoolOptions,
    open: HashMap<String, Db>,
}

impl Databases {
    async fn for_service(&mut self, service: &str) -> anyhow::Result<Db> {
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

pub async fn assemble(settings: &Settings, local: &[Role]) -> anyhow::Result<Assembly> {
    let clock: SharedClock = Arc::new(SystemClock);
    let is_local = |r: Role| local.contains(&r);
    let db_config: DatabaseConfig = settings.config.section("database")?;
    let mut dbs = Databases {
        sqlite_dir: db_config
            .url
            .is_none()
            .then(|| settings.data_dir.join("db")),
        url: db_config.url.clone(),
        options: PoolOptions {
            max_connections: db_config.max_connections,
            acquire_timeout: Duration::from_millis(db_config.acquire_timeout_ms),
        },
        open: HashMap::new(),
    };
    if let Some(dir) = &dbs.sqlite_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let master_key = MasterKey::from_hex(&settings.secret("master_key", "master.key", || {
        MasterKey::generate().to_hex()
    })?)?;
    let redis_config: RedisConfig = settings.config.section("redis")?;
    let redis = match &redis_config.url {
        Some(url) => Some(redis_connect(url).await.context("connecting to Redis")?),
        None => None,
    };
    let mut metrics = Metrics::default();
    let mut checks: Vec<(String, ReadyCheck)> = Vec::new();
    let (registry, counters, watcher) = if local.iter().any(|r| r.uses_plugins()) {
        // Velocity counters are shared through Redis when there is one, so every node
        // counts every payment; otherwise each process keeps its own.
        let counters: Arc<dyn Counters> = match &redis {
            Some(conn) => Arc::new(RedisCounters::new(conn.clone(), "payloom:")),
            None => Arc::new(MemoryCounters::default()),
        };
        let (registry, watcher) = plugin_host(settings, counters.clone(), &mut metrics).await?;
        let check_registry = registry.clone();
        checks.push((
            "plugins".into(),
            Arc::new(move || {
                let empty = check_registry.list().is_empty();
                Box::pin(async move {
                    if empty {
                        Err("no plugins loaded".to_owned())
                    } else {
                        Ok(())
                    }
                })
            }),
        ));
        (Some(registry), Some(counters), Some(watcher))
    } else {
        (None, None, None)
    };
    let mut routers = Vec::new();
    let client = |role: Role| -> anyhow::Result<ServiceClient> {
        Ok(ServiceClient::new(&settings.endpoint(role)?.url))
    };

    let auth: Arc<dyn MerchantAuthApi> = if is_local(Role::MerchantAuth) {
        let config: AuthConfig = settings.config.section("auth")?;
        config.validate()?;
        let nonces: Arc<dyn KeyStore> = match &redis {
            Some(conn) => Arc::new(RedisKeyStore::new(conn.clone(), "payloom:nonce:")),
            None => Arc::new(MemoryKeyStore::with_limits(
                clock.clone(),
                config.memory_limits(),
            )),
        };
        let service = MerchantAuth::new(
            dbs.for_service("merchant-auth").await?,
            clock.clone(),
            master_key.clone(),
            nonces,
        )
        .await?;
        routers.push((
            Role::MerchantAuth,
            payloom_merchant_auth::api::router(service.clone()),
        ));
        service
    } else {
        Arc::new(MerchantAuthHttp(client(Role::MerchantAuth)?))
    };
    // Outboxes this process relays, and the consumers it runs.
    let mut outboxes: Vec<(Db, Outbox)> = Vec::new();
    let mut consumers: Vec<(Db, Arc<dyn Consumer>)> = Vec::new();
    let orders: Arc<dyn OrderApi> = if is_local(Role::Order) {
        let service = Orders::new(dbs.for_service("order").await?, clock.clone()).await?;
        routers.push((Role::Order, payloom_order::router(service.clone())));
        outboxes.push((service.db().clone(), service.outbox().clone()));
        service
    } else {
        Arc::new(OrderHttp(client(Role::Order)?))
    };
    let quota: Arc<dyn QuotaApi> = if is_local(Role::MerchantQuota) {
        let usage: Option<Arc<dyn UsageStore>> = redis
            .as_ref()
            .map(|conn| Arc::new(RedisUsage::new(conn.clone(), "payloom:")) as Arc<dyn UsageStore>);
        let config: QuotaConfig = settings.config.section("quota")?;
        let service = Quotas::new(
            dbs.for_service("merchant-quota").await?,
            clock.clone(),
            config,
            usage,
        )
        .await?;
        routers.push((
            Role::MerchantQuota,
            payloom_merchant_quota::router(service.clone()),
        ));
        service
    } else {
        Arc::new(QuotaHttp(client(Role::MerchantQuota)?))
    };
    let policy: Arc<dyn PolicyApi> = if is_local(Role::MerchantPolicy) {
        let config: PolicyConfig = settings.config.section("policy")?;
        let registry = registry.clone().expect("plugin host for policy");
        let service = MerchantPolicy::new(
            dbs.for_service("merchant-policy").await?,
            registry,
            config,
            clock.clone(),
        )
        .await?;
        routers.push((
            Role::MerchantPolicy,
            payloom_merchant_policy::router(service.clone()),
        ));
        service
    } else {
        Arc::new(PolicyHttp(client(Role::MerchantPolicy)?))
    };
    let risk: Arc<dyn RiskApi> = if is_local(Role::Risk) {
        let config: RiskConfig = settings.config.section("risk")?;
        let registry = registry.clone().expect("plugin host for risk");
        let service = Risk::new(
            dbs.for_service("risk").await?,
            registry,
            counters.clone().expect("counters"),
            config,
            clock.clone(),
        )
        .await?;
        routers.push((Role::Risk, payloom_risk::router(service.clone())));
        service
    } else {
        Arc::new(RiskHttp(client(Role::Risk)?))
    };
    let channels: Arc<dyn ChannelApi> = if is_local(Role::ChannelAdapter) {
        let registry = registry.clone().expect("plugin host for channels");
        let service = ChannelAdapter::new(
            dbs.for_service("channel-adapter").await?,
            registry,
            master_key.clone(),
            clock.clone(),
            payloom_channel_adapter::ChannelMetrics::register(&mut metrics),
        )
        .await?;
        routers.push((
            Role::ChannelAdapter,
            payloom_channel_adapter::router(service.clone()),
        ));
        service
    } else {
        Arc::new(ChannelHttp(client(Role::ChannelAdapter)?))
    };
    // Where operators find each consumer's dead letters.
    let mut dead_letters: Vec<(String, Arc<dyn DeadLetterApi>)> = Vec::new();
    let accounting: Arc<dyn AccountingApi> = if is_local(Role::Accounting) {
        let ledger = Ledger::new(dbs.for_service("accounting").await?, clock.clone()).await?;
        let parked = Arc::new(Subscription::new(ledger.db().clone(), ledger.clone()));
        dead_letters.push(("accounting".into(), parked.clone()));
        routers.push((
            Role::Accounting,
            payloom_accounting::router(ledger.clone()).merge(dead_letter_router(parked)),
        ));
        outboxes.push((ledger.db().clone(), ledger.outbox().clone()));
        consumers.push((ledger.db().clone(), ledger.clone()));
        ledger
    } else {
        dead_letters.push((
            "accounting".into(),
            Arc::new(DeadLetterHttp(client(Role::Accounting)?)),
        ));
        Arc::new(AccountingHttp(client(Role::Accounting)?))
    };
    let notifications: Arc<dyn NotificationApi> = if is_local(Role::Notification) {
        let config: NotificationConfig = settings.config.section("notification")?;
        let email: EmailConfig = settings.config.section("email")?;
        let mailer: Arc<dyn Mailer> = match email.file {
            Some(path) if !path.as_os_str().is_empty() => Arc::new(FileMailer::new(path)),
            _ => Arc::new(LogMailer),
        };
        let service = Notifications::new(
            dbs.for_service("notification").await?,
            clock.clone(),
            master_key.clone(),
            config,
            mailer,
        )
        .await?;
        service.spawn_worker();
        let parked = Arc::new(Subscription::new(service.db().clone(), service.clone()));
        dead_letters.push(("notification".into(), parked.clone()));
        routers.push((
            Role::Notification,
            payloom_notification::router(service.clone()).merge(dead_letter_router(parked)),
        ));
        consumers.push((service.db().clone(), service.clone()));
        service
    } else {
        dead_letters.push((
            "notification".into(),
            Arc::new(DeadLetterHttp(client(Role::Notification)?)),
        ));
        Arc::new(NotificationHttp(client(Role::Notification)?))
    };
    if is_local(Role::PaymentGateway) {
        let config: GatewayConfig = settings.config.section("gateway")?;
        let deps = Dependencies {
            auth: auth.clone(),
            orders,
            quota,
            policy: policy.clone(),
            risk,
            channels: channels.clone(),
            accounting: accounting.clone(),
            notifications: notifications.clone(),
            limits: match &redis {
                Some(conn) => Arc::new(RedisKeyStore::new(conn.clone(), "payloom:limit:")),
                None => Arc::new(MemoryKeyStore::new(clock.clone())),
            },
        };
        let gateway = Gateway::new(
            dbs.for_service("payment-gateway").await?,
            clock.clone(),
            config,
            deps,
        )
        .await?;
        gateway.spawn_sweeps();
        outboxes.push((gateway.db().clone(), gateway.outbox().clone()));
        routers.push((
            Role::PaymentGateway,
            payloom_payment_gateway::api::router(gateway),
        ));
    }
    let admin = if is_local(Role::AdminBff) {
        let secret = settings.secret("admin_jwt_secret", "admin-jwt.secret", || {
            payloom_platform::ids::random_hex(32)
        })?;
        let login: LoginConfig = settings.config.section("admin")?;
        let attempts: Arc<dyn KeyStore> = match &redis {
            Some(conn) => Arc::new(RedisKeyStore::new(conn.clone(), "payloom:admin:")),
            None => Arc::new(MemoryKeyStore::new(clock.clone())),
        };
        let admin = Admin::new(
            dbs.for_service("admin-bff").await?,
            clock.clone(),
            secret.as_bytes(),
            &login,
            attempts,
            AdminClients {
                auth: auth.clone(),
                channels: channels.clone(),
                policy,
                accounting,
                notifications,
                dead_letters,
            },
        )
        .await?;
        bootstrap_admin(&admin, settings.config.section("admin")?).await?;
        routers.push((Role::AdminBff, payloom_admin_bff::router(admin.clone())));
        Some(admin)
    } else {
        None
    };
    let events: EventsConfig = settings.config.section("events")?;
    start_events(
        &events,
        outboxes,
        consumers,
        is_local(Role::Accounting) && is_local(Role::Notification),
    )
    .await?;
    let database_url = dbs.describe();
    for db in dbs.open.into_values() {
        checks.push((
            "database".into(),
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
            }),
        ));
    }
    let http_metrics = payloom_platform::server::HttpMetrics::register(&mut metrics);
    let routers = routers
        .into_iter()
        .map(|(role, router)| {
            (
                role,
                payloom_platform::server::instrument(router, http_metrics.clone()),
            )
        })
        .collect();
    Ok(Assembly {
        registry,
        metrics: Arc::new(metrics),
        checks,
        routers,
        auth,
        channels,
        admin,
        database_url,
        _watcher: watcher,
    })
}

/// Creates the first operator from `[admin] bootstrap_password`, once: only while there is
/// no operator at all, so the password is never re-applied to an existing account.
async fn bootstrap_admin(admin: &Admin, bootstrap: AdminBootstrap) -> anyhow::Result<()> {
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
async fn start_events(
    config: &EventsConfig,
    outboxes: Vec<(Db, Outbox)>,
    consumers: Vec<(Db, Arc<dyn Consumer>)>,
    all_consumers_here: bool,
) -> anyhow::Result<()> {
    let publisher: Arc<dyn Publisher> = match config
        .kafka_brokers
        .as_deref()
        .filter(|b| !b.is_empty())
    {
        Some(brokers) => {
            for (db, consumer) in consumers {
                let group = format!("{}.{}", config.consumer_group, consumer.name());
                kafka::spawn_consumer(brokers, &group, Subscription::new(db, consumer))?;
            }
            Arc::new(kafka::KafkaPublisher::new(brokers)?)
        }
        None if all_consumers_here => {
            let mut bus = Bus::default();
            for (db, consumer) in consumers {
                bus.subscribe(Subscription::new(db, consumer));
            }
            Arc::new(bus)
        }
        None => {
            if !outboxes.is_empty() {
                tracing::warn!(
                    "no [events] kafka_brokers and accounting/notification run elsewhere: events wait in the outbox"
                );
            }
            return Ok(());
        }
    };
    for (db, outbox) in outboxes {
        Relay {
            db,
            outbox,
            publisher: publisher.clone(),
            batch: config.relay_batch,
            poll: Duration::from_millis(config.relay_poll_ms),
        }
        .spawn();
    }
    Ok(())
}

/// The plugin runtime, the registry loaded from the plugins directory (seeded with the
/// reference plugins) and watched for hot swaps; plugins read `counters`.
async fn plugin_host(
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
