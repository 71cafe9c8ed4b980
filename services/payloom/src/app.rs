//! Assembling the platform: which services run in this process, how they reach the ones
//! that do not, the plugin host, databases and caches. `dev` and `serve` both build on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::{Counters, MemoryCounters};
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::config::CacheKey;
use payloom_host::watch::{Installer, Watcher};
use payloom_host::{HostConfig, Registry, Runtime, signing};
use payloom_platform::Db;
use payloom_platform::config::Config;
use payloom_platform::event_metrics::{ConsumerMetrics, OutboxMetrics};
use payloom_platform::events::{Bus, Consumer, Outbox, Publisher, Relay, Subscription};
use payloom_platform::kafka;
use payloom_platform::provenance::EventVerifier;
use payloom_platform::registry::{Provided, Routes, Services, Settings, Wiring};
use payloom_platform::server::ReadyCheck;
use payloom_platform::tls::ServiceIdentity;
use payloom_plugin_registry::folder::FolderPublisher;
use payloom_plugin_registry::follow::Follower;
use payloom_plugin_registry::{BuiltIns, PluginRegistryApi};
use payloom_risk::{RedisCounters, RiskConfig};
use prometheus_client::registry::Registry as Metrics;
use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = include_str!("../config.default.toml");

/// `[events]`.
#[derive(Debug, Clone, Deserialize)]
struct EventsConfig {
    kafka_brokers: Option<String>,
    consumer_group: String,
    topic_prefix: String,
    sole_consumers: bool,
    topic_partitions: i32,
    topic_replication: i32,
    relay_poll_ms: u64,
    relay_batch: i64,
}

/// `[plugins]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PluginsConfig {
    dir: Option<PathBuf>,
    allow_unsigned: bool,
    trusted_keys: Vec<String>,
    dir_publishes: bool,
}

/// Logs and traces for a process running `service` (its name in exported spans), with
/// spans sent to `[telemetry] otlp_endpoint` when it is set.
pub fn telemetry(
    config: &Config,
    service: &str,
    json: bool,
    default_filter: &str,
) -> anyhow::Result<payloom_platform::telemetry::Telemetry> {
    let endpoint = config
        .get_str("telemetry.otlp_endpoint")
        .filter(|e| !e.is_empty());
    payloom_platform::telemetry::init(service, json, default_filter, endpoint)
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

/// The running services of this process.
pub struct Assembly {
    pub registry: Option<Arc<Registry>>,
    pub metrics: Arc<Metrics>,
    pub checks: Vec<(String, ReadyCheck)>,
    /// Per local service: its public and internal routes.
    pub routes: Vec<(&'static str, Routes)>,
    /// What the services provide (their APIs, local or clients), by type.
    pub provided: Provided,
    pub database_url: String,
    /// The services this process runs.
    pub local: Vec<&'static str>,
    _watcher: Option<Watcher>,
}

/// How long each service may take to finish its background work when the process stops:
/// well inside the ten seconds a supervisor (or `dev --split`) waits before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

impl Assembly {
    /// Stops the local services once the listeners have closed.
    pub async fn stop(&self) {
        crate::services::registered()
            .stop(&self.local, &self.provided, STOP_GRACE)
            .await;
    }
}

/// Builds this process: the plugin host if a local service runs plugins, clients of the
/// remote services the local ones call, the local services (callees first), the event
/// relays and consumers, readiness checks and metrics.
pub async fn assemble(settings: &Settings, local: &[&str]) -> anyhow::Result<Assembly> {
    let services = crate::services::registered();
    let mut w = Wiring::open(settings, &services, local).await?;
    let uses_plugins = w
        .local()
        .iter()
        .any(|name| services.manifest(name).is_ok_and(|m| m.uses_plugins));
    let registry = match uses_plugins {
        true => Some(start_plugins(&mut w).await?),
        false => None,
    };
    let routes = services.start(&mut w).await?;
    let watcher = match &registry {
        Some(host) => Some(follow_and_watch(&mut w, host.clone()).await?),
        None => None,
    };
    let local = w.local().to_vec();
    start_events(&mut w).await?;
    for db in w.dbs.opened().cloned().collect::<Vec<_>>() {
        w.check(
            "database",
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
            }),
        );
    }
    let http_metrics = payloom_platform::server::HttpMetrics::register(&mut w.metrics);
    let instrument = |router| payloom_platform::server::instrument(router, http_metrics.clone());
    let routes = routes
        .into_iter()
        .map(|(name, routes)| {
            let Routes { public, internal } = routes;
            let (public, internal) = (instrument(public), instrument(internal));
            (name, Routes { public, internal })
        })
        .collect();
    Ok(Assembly {
        registry,
        metrics: Arc::new(w.metrics),
        checks: w.checks,
        routes,
        provided: w.provided,
        database_url: w.dbs.describe(),
        local,
        _watcher: watcher,
    })
}

/// The plugin host, and the velocity counters its risk rules read: shared through Redis
/// when there is one, so every node counts every payment. Both are provided to the
/// services that run plugins.
async fn start_plugins(w: &mut Wiring<'_>) -> anyhow::Result<Arc<Registry>> {
    let counters: Arc<dyn Counters> = match &w.redis {
        Some(conn) => Arc::new(RedisCounters::new(conn.clone(), "payloom:")),
        None => Arc::new(MemoryCounters::default()),
    };
    let cache_key = CacheKey(w.master_key.derive("plugin-cache"));
    let registry = plugin_host(w.settings, counters.clone(), cache_key, &mut w.metrics).await?;
    let loaded = registry.clone();
    w.check(
        "plugins",
        Arc::new(move || {
            let empty = loaded.list().is_empty();
            Box::pin(async move {
                match empty {
                    true => Err("no plugins loaded".to_owned()),
                    false => Ok(()),
                }
            })
        }),
    );
    w.provide(registry.clone());
    w.provide(counters);
    w.provide(BuiltIns(
        payloom_reference_plugins::ALL
            .iter()
            .map(|p| (p.wasm, p.manifest))
            .collect(),
    ));
    Ok(registry)
}

/// How often a node asks the plugin registry for the active set: activations reach every
/// node within a second.
const PLUGIN_FOLLOW_PERIOD: Duration = Duration::from_millis(250);

/// How this process appears in the plugin registry's node reports:
/// `<services>@<host>:<pid>`.
fn node_name(local: &[&str]) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let services = match local.len() {
        n if n > 3 => format!("{n} services"),
        _ => local.join("+"),
    };
    format!("{services}@{host}:{}", std::process::id())
}

/// Keeps this node's plugins on the registry's active versions, local or remote, and
/// watches the plugins folder: under `[plugins] dir_publishes` (as `dev` runs) what is
/// dropped there is pushed to the registry and activated for every node; otherwise it
/// goes live on this node alone, through the same checks.
async fn follow_and_watch(w: &mut Wiring<'_>, host: Arc<Registry>) -> anyhow::Result<Watcher> {
    let api: Arc<dyn PluginRegistryApi> = w
        .get()
        .context("a node that runs plugins follows the plugin registry")?;
    let node = node_name(w.local());
    Follower::new(api.clone(), host.clone(), node, &mut w.metrics).spawn(PLUGIN_FOLLOW_PERIOD);
    let plugins: PluginsConfig = w.settings.config.section("plugins")?;
    let dir = plugins
        .dir
        .clone()
        .unwrap_or_else(|| w.settings.data_dir.join("plugins"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let installer: Arc<dyn Installer> = match plugins.dir_publishes {
        true => Arc::new(FolderPublisher::new(api, &dir)),
        false => host,
    };
    Watcher::start(installer, &dir).await
}

/// Relays this process's outboxes and feeds its consumers: through Kafka when brokers are
/// configured, else through the in-process bus. The bus can only reach consumers in this
/// process, so without them its outboxes wait (for a node that can deliver) rather than
/// drop events nobody received.
async fn start_events(w: &mut Wiring<'_>) -> anyhow::Result<()> {
    let config: EventsConfig = w.settings.config.section("events")?;
    let all_consumers_here = w.services.consumers().all(|m| w.is_local(m.name));
    let (outboxes, consumers) = (
        std::mem::take(&mut w.outboxes),
        std::mem::take(&mut w.consumers),
    );
    let metrics = OutboxMetrics::register(&mut w.metrics);
    let consumed = ConsumerMetrics::register(&mut w.metrics);
    let relay = |db: Db, outbox: Outbox, publisher: Arc<dyn Publisher>| {
        Relay {
            db,
            outbox,
            publisher,
            batch: config.relay_batch,
            poll: Duration::from_millis(config.relay_poll_ms),
            metrics: metrics.clone(),
        }
        .spawn();
    };
    if let Some(brokers) = config.kafka_brokers.as_deref().filter(|b| !b.is_empty()) {
        let certs = w.settings.certs.as_deref().context(
            "events over Kafka are signed with the service certificates: run them under `serve` with --certs",
        )?;
        for (db, outbox, publisher) in start_kafka(
            w.services, &config, brokers, certs, outboxes, consumers, consumed,
        )
        .await?
        {
            relay(db, outbox, publisher);
        }
    } else if all_consumers_here {
        let mut bus = Bus::default();
        for (db, consumer) in consumers {
            bus.subscribe(Subscription::new(db, consumer).counted_in(consumed.clone()));
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
    services: &Services,
    config: &EventsConfig,
    brokers: &str,
    certs: &Path,
    outboxes: Vec<(Db, Outbox)>,
    consumers: Vec<(Db, Arc<dyn Consumer>)>,
    consumed: ConsumerMetrics,
) -> anyhow::Result<Vec<Relayed>> {
    let ca_path = certs.join("ca.pem");
    let ca = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let producers = services.producers();
    let verifier = Arc::new(EventVerifier::new(&ca, producers.iter().copied())?);
    anyhow::ensure!(
        config
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "[events] topic_prefix may hold only letters, digits, '.', '_' and '-'"
    );
    let names = kafka::TopicNames::new(&config.topic_prefix);
    let topics: Vec<String> = producers
        .iter()
        .map(|(topic, _)| names.name(topic))
        .collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let (partitions, replication) = (config.topic_partitions, config.topic_replication);
    kafka::ensure_topics(brokers, &topics, partitions, replication).await?;
    for (db, consumer) in consumers {
        let group = format!("{}.{}", config.consumer_group, consumer.name());
        let subscription = Subscription::new(db, consumer).counted_in(consumed.clone());
        kafka::spawn_consumer(
            brokers,
            &group,
            subscription,
            verifier.clone(),
            names.clone(),
            config.sole_consumers,
        )?;
    }
    outboxes
        .into_iter()
        .map(|(db, outbox)| {
            let signer = ServiceIdentity::load(certs, outbox.service())?.event_signer()?;
            let publisher: Arc<dyn Publisher> =
                Arc::new(kafka::KafkaPublisher::new(brokers, signer)?.named(names.clone()));
            Ok((db, outbox, publisher))
        })
        .collect()
}

/// The plugin runtime and its registry, with the built-in plugins this binary carries
/// (the plugins folder is watched once the services run); plugins read `counters`.
/// Anything not built in needs a trusted publisher's signature unless unsigned plugins
/// are allowed, which is said at start.
pub(crate) async fn plugin_host(
    settings: &Settings,
    counters: Arc<dyn Counters>,
    cache_key: CacheKey,
    metrics: &mut Metrics,
) -> anyhow::Result<Arc<Registry>> {
    let plugins: PluginsConfig = settings.config.section("plugins")?;
    if plugins.allow_unsigned {
        tracing::warn!(
            "[plugins] allow_unsigned is on: components nobody signed will load. Development only"
        );
    }
    let config = HostConfig {
        allow_unsigned: plugins.allow_unsigned,
        trusted_keys: plugins.trusted_keys.clone(),
        cache_dir: Some(settings.data_dir.join("cache")),
        cache_key: Some(cache_key),
        builtin_digests: payloom_reference_plugins::ALL
            .iter()
            .map(|p| signing::pair_digest(p.wasm, p.manifest.as_bytes()))
            .collect(),
        ..HostConfig::default()
    };
    let services = host_services(settings, counters, &config)?;
    let runtime = Runtime::new(config, services, metrics).context("[plugins]")?;
    let registry = Registry::new(runtime);
    for plugin in payloom_reference_plugins::ALL {
        registry
            .install(plugin.wasm, plugin.manifest, None)
            .await
            .with_context(|| format!("loading the built-in plugin {}", plugin.name))?;
    }
    Ok(registry)
}

/// What plugins may reach: outbound HTTP, the counters, the configured risk lists.
fn host_services(
    settings: &Settings,
    counters: Arc<dyn Counters>,
    config: &HostConfig,
) -> anyhow::Result<HostServices> {
    let http = HttpClient::from_config(config)?;
    let lists = Arc::new(MemoryLists::default());
    let risk: RiskConfig = settings.config.section("risk")?;
    for (name, values) in &risk.lists {
        for value in values {
            lists.add(name, value);
        }
    }
    Ok(HostServices {
        http: Arc::new(http),
        counters,
        lists,
    })
}

pub fn ops(assembly: &Assembly) -> payloom_platform::server::Ops {
    payloom_platform::server::Ops {
        metrics: assembly.metrics.clone(),
        checks: assembly.checks.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::services::registered;

    #[test]
    fn each_topic_is_produced_by_the_service_its_contract_names() {
        use payloom_gateway_contract::events as gateway;
        let declared = registered().producers();
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
            (
                payloom_plugin_registry::TOPIC,
                payloom_plugin_registry::PRODUCER,
            ),
        ];
        assert_eq!(declared.len(), contracts.len());
        for pair in contracts {
            assert!(declared.contains(&pair), "{pair:?}");
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
        for manifest in registered().manifests() {
            if let Some(section) = manifest.config_section {
                let _: toml::Value = config.section(section).unwrap();
            }
        }
    }

    #[test]
    fn every_service_has_its_own_ports() {
        let settings = payloom_platform::registry::Settings {
            config: payloom_platform::config::Config::load_with_env(
                super::DEFAULT_CONFIG,
                None,
                &[],
            )
            .unwrap(),
            data_dir: "unused".into(),
            generate_secrets: false,
            certs: None,
        };
        let mut seen = std::collections::BTreeSet::new();
        for manifest in registered().manifests() {
            let endpoint = settings.endpoint(manifest).unwrap();
            assert_eq!(endpoint.listen.port(), manifest.port, "{}", manifest.name);
            assert_eq!(
                endpoint.url,
                format!("https://{}", endpoint.internal_listen)
            );
            assert!(seen.insert(endpoint.listen.port()), "{}", manifest.name);
            assert!(
                seen.insert(endpoint.internal_listen.port()),
                "{}",
                manifest.name
            );
        }
    }
}
