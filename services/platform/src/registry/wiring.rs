//! What the services of one process share while it is assembled, and what they leave
//! behind: the APIs they provide one another, their routes' outboxes and consumers,
//! readiness checks and metrics.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry as Metrics;
use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;

use super::{Services, Settings, settings::Databases};
use crate::cache::{KeyStore, MemoryKeyStore, RedisKeyStore, redis_connect};
use crate::client::ServiceClient;
use crate::clock::SharedClock;
use crate::events::{Consumer, DeadLetterApi, Outbox};
use crate::seal::MasterKey;
use crate::server::ReadyCheck;
use crate::tls::ServiceIdentity;
use crate::{Db, SystemClock};

/// Values by type: the API each service provides (`Arc<dyn OrderApi>`, local or a
/// client), and shared resources such as the plugin host.
#[derive(Default)]
pub struct Provided(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Provided {
    pub fn insert<T: Any + Send + Sync + Clone>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The `T` something provided, or an error naming what is missing.
    pub fn get<T: Any + Send + Sync + Clone>(&self) -> anyhow::Result<T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
            .with_context(|| {
                format!(
                    "nothing in this process provides {}: is the service that does registered, and declared in `calls`?",
                    type_name::<T>()
                )
            })
    }
}

/// The process being assembled.
pub struct Wiring<'a> {
    pub settings: &'a Settings,
    pub services: &'a Services,
    local: Vec<&'static str>,
    pub clock: SharedClock,
    pub dbs: Databases,
    pub master_key: MasterKey,
    pub redis: Option<ConnectionManager>,
    pub metrics: Metrics,
    pub checks: Vec<(String, ReadyCheck)>,
    pub provided: Provided,
    /// Outboxes this process relays, and the consumers it runs.
    pub outboxes: Vec<(Db, Outbox)>,
    pub consumers: Vec<(Db, Arc<dyn Consumer>)>,
    /// Where operators find each consumer's dead letters.
    dead_letters: Vec<(String, Arc<dyn DeadLetterApi>)>,
}

impl<'a> Wiring<'a> {
    /// Databases, secrets and Redis for the services in `local`.
    pub async fn open(
        settings: &'a Settings,
        services: &'a Services,
        local: &[&str],
    ) -> anyhow::Result<Self> {
        let local = local
            .iter()
            .map(|name| services.manifest(name).map(|m| m.name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let master_key =
            MasterKey::from_hex(&settings.secret("master_key", "master.key", || {
                MasterKey::generate().to_hex()
            })?)?;
        let redis = match settings
            .config
            .get_str("redis.url")
            .filter(|u| !u.is_empty())
        {
            Some(url) => Some(redis_connect(url).await.context("connecting to Redis")?),
            None => None,
        };
        Ok(Self {
            settings,
            services,
            local,
            clock: Arc::new(SystemClock),
            dbs: Databases::from_settings(settings)?,
            master_key,
            redis,
            metrics: Metrics::default(),
            checks: Vec::new(),
            provided: Provided::default(),
            outboxes: Vec::new(),
            consumers: Vec::new(),
            dead_letters: Vec::new(),
        })
    }

    /// The services this process runs.
    pub fn local(&self) -> &[&'static str] {
        &self.local
    }

    pub fn is_local(&self, name: &str) -> bool {
        self.local.contains(&name)
    }

    /// A configuration section.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<T> {
        self.settings.config.section(name)
    }

    /// `service`'s database.
    pub async fn db(&mut self, service: &str) -> anyhow::Result<Db> {
        self.dbs.for_service(service).await
    }

    pub fn provide<T: Any + Send + Sync + Clone>(&mut self, value: T) {
        self.provided.insert(value);
    }

    pub fn get<T: Any + Send + Sync + Clone>(&self) -> anyhow::Result<T> {
        self.provided.get()
    }

    /// A client of `service` in another process. Under mutual TLS it presents the
    /// certificate of a local service that `service` accepts calls from; with none here,
    /// it presents nothing and `service` will refuse it, as it should.
    pub fn client(&self, service: &str) -> anyhow::Result<ServiceClient> {
        let url = self
            .settings
            .endpoint(self.services.manifest(service)?)?
            .url;
        let Some(certs) = &self.settings.certs else {
            return Ok(ServiceClient::new(&url));
        };
        let callers = self.services.callers(service);
        match callers.into_iter().find(|caller| self.is_local(caller)) {
            Some(caller) => {
                let identity = ServiceIdentity::load(certs, caller)?;
                ServiceClient::with_identity(&url, &identity)
            }
            None => Ok(ServiceClient::new(&url)),
        }
    }

    /// Short-lived keys under `prefix`: in Redis, shared by every node, or in this process.
    pub fn key_store(&self, prefix: &str) -> Arc<dyn KeyStore> {
        match &self.redis {
            Some(conn) => Arc::new(RedisKeyStore::new(conn.clone(), prefix)),
            None => Arc::new(MemoryKeyStore::new(self.clock.clone())),
        }
    }

    /// An outbox for this process to relay.
    pub fn relay(&mut self, db: Db, outbox: Outbox) {
        self.outboxes.push((db, outbox));
    }

    /// A consumer of the topics its service's manifest declares.
    pub fn consume(&mut self, db: Db, consumer: Arc<dyn Consumer>) {
        self.consumers.push((db, consumer));
    }

    /// Where operators find `consumer`'s dead letters (local, or over HTTP).
    pub fn park(&mut self, consumer: &str, dead_letters: Arc<dyn DeadLetterApi>) {
        self.dead_letters.push((consumer.to_owned(), dead_letters));
    }

    /// Every consumer's dead letters, for the service that shows them to operators.
    pub fn take_dead_letters(&mut self) -> Vec<(String, Arc<dyn DeadLetterApi>)> {
        std::mem::take(&mut self.dead_letters)
    }

    /// A readiness check.
    pub fn check(&mut self, name: &str, check: ReadyCheck) {
        self.checks.push((name.to_owned(), check));
    }
}
