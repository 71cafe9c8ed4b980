//! How each role is put together in this process: its own service when the role is
//! local, otherwise an HTTP client of it. `app::assemble` calls these in dependency order.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use payloom_accounting::{AccountingApi, AccountingHttp, Ledger};
use payloom_admin_bff::{Admin, AdminClients, LoginConfig};
use payloom_channel_adapter::{ChannelAdapter, ChannelApi, ChannelHttp, ChannelMetrics};
use payloom_host::Registry;
use payloom_host::capabilities::counters::{Counters, MemoryCounters};
use payloom_host::watch::Watcher;
use payloom_merchant_auth::{AuthConfig, MerchantAuth, MerchantAuthApi, MerchantAuthHttp};
use payloom_merchant_policy::{MerchantPolicy, PolicyApi, PolicyConfig, PolicyHttp};
use payloom_merchant_quota::{QuotaApi, QuotaConfig, QuotaHttp, Quotas, RedisUsage, UsageStore};
use payloom_notification::email::{FileMailer, LogMailer, Mailer};
use payloom_notification::{NotificationApi, NotificationConfig, NotificationHttp, Notifications};
use payloom_order::{OrderApi, OrderHttp, Orders};
use payloom_payment_gateway::{Dependencies, Gateway, GatewayConfig};
use payloom_platform::cache::{KeyStore, MemoryKeyStore, RedisKeyStore, redis_connect};
use payloom_platform::client::ServiceClient;
use payloom_platform::clock::SharedClock;
use payloom_platform::events::{
    Consumer, DeadLetterApi, DeadLetterHttp, Outbox, Subscription, dead_letter_router,
};
use payloom_platform::seal::MasterKey;
use payloom_platform::server::ReadyCheck;
use payloom_platform::tls::ServiceIdentity;
use payloom_platform::{Db, SystemClock};
use payloom_risk::{RedisCounters, Risk, RiskApi, RiskConfig, RiskHttp};
use prometheus_client::registry::Registry as Metrics;
use redis::aio::ConnectionManager;

use crate::app::{Databases, EmailConfig, RedisConfig, Role, Settings, plugin_host};

/// What the roles share while this process is assembled, and what they leave behind.
pub(crate) struct Wiring<'a> {
    pub settings: &'a Settings,
    local: &'a [Role],
    pub clock: SharedClock,
    pub dbs: Databases,
    master_key: MasterKey,
    redis: Option<ConnectionManager>,
    pub metrics: Metrics,
    pub checks: Vec<(String, ReadyCheck)>,
    pub registry: Option<Arc<Registry>>,
    counters: Option<Arc<dyn Counters>>,
    pub watcher: Option<Watcher>,
    /// Per local role: its public and internal routes.
    pub routers: Vec<(Role, Router)>,
    /// Outboxes this process relays, and the consumers it runs.
    pub outboxes: Vec<(Db, Outbox)>,
    pub consumers: Vec<(Db, Arc<dyn Consumer>)>,
    /// Where operators find each consumer's dead letters.
    dead_letters: Vec<(String, Arc<dyn DeadLetterApi>)>,
}

impl<'a> Wiring<'a> {
    /// Databases, secrets, Redis and (when a local role runs plugins) the plugin host.
    pub async fn open(settings: &'a Settings, local: &'a [Role]) -> anyhow::Result<Self> {
        let master_key =
            MasterKey::from_hex(&settings.secret("master_key", "master.key", || {
                MasterKey::generate().to_hex()
            })?)?;
        let redis_config: RedisConfig = settings.config.section("redis")?;
        let redis = match &redis_config.url {
            Some(url) => Some(redis_connect(url).await.context("connecting to Redis")?),
            None => None,
        };
        let mut wiring = Self {
            settings,
            local,
            clock: Arc::new(SystemClock),
            dbs: Databases::from_settings(settings)?,
            master_key,
            redis,
            metrics: Metrics::default(),
            checks: Vec::new(),
            registry: None,
            counters: None,
            watcher: None,
            routers: Vec::new(),
            outboxes: Vec::new(),
            consumers: Vec::new(),
            dead_letters: Vec::new(),
        };
        if local.iter().any(|r| r.uses_plugins()) {
            wiring.start_plugins().await?;
        }
        Ok(wiring)
    }

    /// The plugin host, and the velocity counters its risk rules read: shared through
    /// Redis when there is one, so every node counts every payment.
    async fn start_plugins(&mut self) -> anyhow::Result<()> {
        let counters: Arc<dyn Counters> = match &self.redis {
            Some(conn) => Arc::new(RedisCounters::new(conn.clone(), "payloom:")),
            None => Arc::new(MemoryCounters::default()),
        };
        let (registry, watcher) =
            plugin_host(self.settings, counters.clone(), &mut self.metrics).await?;
        let loaded = registry.clone();
        self.checks.push((
            "plugins".into(),
            Arc::new(move || {
                let empty = loaded.list().is_empty();
                Box::pin(async move {
                    match empty {
                        true => Err("no plugins loaded".to_owned()),
                        false => Ok(()),
                    }
                })
            }),
        ));
        self.registry = Some(registry);
        self.counters = Some(counters);
        self.watcher = Some(watcher);
        Ok(())
    }

    pub fn is_local(&self, role: Role) -> bool {
        self.local.contains(&role)
    }

    /// A client of `role` in another process. Under mutual TLS it presents the certificate
    /// of a local service that `role` accepts calls from; with none here, it presents
    /// nothing and `role` will refuse it, as it should.
    fn client(&self, role: Role) -> anyhow::Result<ServiceClient> {
        let url = self.settings.endpoint(role)?.url;
        let Some(certs) = &self.settings.certs else {
            return Ok(ServiceClient::new(&url));
        };
        match role.callers().find(|caller| self.is_local(*caller)) {
            Some(caller) => {
                let identity = ServiceIdentity::load(certs, caller.name())?;
                ServiceClient::with_identity(&url, &identity)
            }
            None => Ok(ServiceClient::new(&url)),
        }
    }

    /// Short-lived keys under `prefix`: in Redis, shared by every node, or in this process.
    fn key_store(&self, prefix: &str) -> Arc<dyn KeyStore> {
        match &self.redis {
            Some(conn) => Arc::new(RedisKeyStore::new(conn.clone(), prefix)),
            None => Arc::new(MemoryKeyStore::new(self.clock.clone())),
        }
    }

    fn plugins(&self) -> Arc<Registry> {
        self.registry
            .clone()
            .expect("the plugin host runs for this role")
    }

    pub async fn auth(&mut self) -> anyhow::Result<Arc<dyn MerchantAuthApi>> {
        if !self.is_local(Role::MerchantAuth) {
            return Ok(Arc::new(MerchantAuthHttp(self.client(Role::MerchantAuth)?)));
        }
        let config: AuthConfig = self.settings.config.section("auth")?;
        config.validate()?;
        let nonces: Arc<dyn KeyStore> = match &self.redis {
            Some(conn) => Arc::new(RedisKeyStore::new(conn.clone(), "payloom:nonce:")),
            None => Arc::new(MemoryKeyStore::with_limits(
                self.clock.clone(),
                config.memory_limits(),
            )),
        };
        let db = self.dbs.for_service("merchant-auth").await?;
        let service =
            MerchantAuth::new(db, self.clock.clone(), self.master_key.clone(), nonces).await?;
        let router = payloom_merchant_auth::api::router(service.clone());
        self.routers.push((Role::MerchantAuth, router));
        Ok(service)
    }

    pub async fn orders(&mut self) -> anyhow::Result<Arc<dyn OrderApi>> {
        if !self.is_local(Role::Order) {
            return Ok(Arc::new(OrderHttp(self.client(Role::Order)?)));
        }
        let db = self.dbs.for_service("order").await?;
        let service = Orders::new(db, self.clock.clone()).await?;
        self.routers
            .push((Role::Order, payloom_order::router(service.clone())));
        self.outboxes
            .push((service.db().clone(), service.outbox().clone()));
        Ok(service)
    }

    pub async fn quota(&mut self) -> anyhow::Result<Arc<dyn QuotaApi>> {
        if !self.is_local(Role::MerchantQuota) {
            return Ok(Arc::new(QuotaHttp(self.client(Role::MerchantQuota)?)));
        }
        let usage: Option<Arc<dyn UsageStore>> = self
            .redis
            .as_ref()
            .map(|conn| Arc::new(RedisUsage::new(conn.clone(), "payloom:")) as Arc<dyn UsageStore>);
        let config: QuotaConfig = self.settings.config.section("quota")?;
        let db = self.dbs.for_service("merchant-quota").await?;
        let service = Quotas::new(db, self.clock.clone(), config, usage).await?;
        let router = payloom_merchant_quota::router(service.clone());
        self.routers.push((Role::MerchantQuota, router));
        Ok(service)
    }

    pub async fn policy(&mut self) -> anyhow::Result<Arc<dyn PolicyApi>> {
        if !self.is_local(Role::MerchantPolicy) {
            return Ok(Arc::new(PolicyHttp(self.client(Role::MerchantPolicy)?)));
        }
        let config: PolicyConfig = self.settings.config.section("policy")?;
        let db = self.dbs.for_service("merchant-policy").await?;
        let service = MerchantPolicy::new(db, self.plugins(), config, self.clock.clone()).await?;
        let router = payloom_merchant_policy::router(service.clone());
        self.routers.push((Role::MerchantPolicy, router));
        Ok(service)
    }

    pub async fn risk(&mut self) -> anyhow::Result<Arc<dyn RiskApi>> {
        if !self.is_local(Role::Risk) {
            return Ok(Arc::new(RiskHttp(self.client(Role::Risk)?)));
        }
        let config: RiskConfig = self.settings.config.section("risk")?;
        let counters = self
            .counters
            .clone()
            .expect("counters run with the plugin host");
        let db = self.dbs.for_service("risk").await?;
        let service = Risk::new(db, self.plugins(), counters, config, self.clock.clone()).await?;
        self.routers
            .push((Role::Risk, payloom_risk::router(service.clone())));
        Ok(service)
    }

    pub async fn channels(&mut self) -> anyhow::Result<Arc<dyn ChannelApi>> {
        if !self.is_local(Role::ChannelAdapter) {
            return Ok(Arc::new(ChannelHttp(self.client(Role::ChannelAdapter)?)));
        }
        let db = self.dbs.for_service("channel-adapter").await?;
        let metrics = ChannelMetrics::register(&mut self.metrics);
        let (key, clock) = (self.master_key.clone(), self.clock.clone());
        let service = ChannelAdapter::new(db, self.plugins(), key, clock, metrics).await?;
        let router = payloom_channel_adapter::router(service.clone());
        self.routers.push((Role::ChannelAdapter, router));
        Ok(service)
    }

    pub async fn accounting(&mut self) -> anyhow::Result<Arc<dyn AccountingApi>> {
        if !self.is_local(Role::Accounting) {
            let parked = Arc::new(DeadLetterHttp(self.client(Role::Accounting)?));
            self.dead_letters.push(("accounting".into(), parked));
            return Ok(Arc::new(AccountingHttp(self.client(Role::Accounting)?)));
        }
        let db = self.dbs.for_service("accounting").await?;
        let ledger = Ledger::new(db, self.clock.clone()).await?;
        let parked = Arc::new(Subscription::new(ledger.db().clone(), ledger.clone()));
        self.dead_letters
            .push(("accounting".into(), parked.clone()));
        let router = payloom_accounting::router(ledger.clone()).merge(dead_letter_router(parked));
        self.routers.push((Role::Accounting, router));
        self.outboxes
            .push((ledger.db().clone(), ledger.outbox().clone()));
        self.consumers.push((ledger.db().clone(), ledger.clone()));
        Ok(ledger)
    }

    pub async fn notifications(&mut self) -> anyhow::Result<Arc<dyn NotificationApi>> {
        if !self.is_local(Role::Notification) {
            let parked = Arc::new(DeadLetterHttp(self.client(Role::Notification)?));
            self.dead_letters.push(("notification".into(), parked));
            return Ok(Arc::new(NotificationHttp(self.client(Role::Notification)?)));
        }
        let config: NotificationConfig = self.settings.config.section("notification")?;
        let email: EmailConfig = self.settings.config.section("email")?;
        let mailer: Arc<dyn Mailer> = match email.file {
            Some(path) if !path.as_os_str().is_empty() => Arc::new(FileMailer::new(path)),
            _ => Arc::new(LogMailer),
        };
        let db = self.dbs.for_service("notification").await?;
        let (key, clock) = (self.master_key.clone(), self.clock.clone());
        let service = Notifications::new(db, clock, key, config, mailer).await?;
        service.spawn_worker();
        let parked = Arc::new(Subscription::new(service.db().clone(), service.clone()));
        self.dead_letters
            .push(("notification".into(), parked.clone()));
        let router =
            payloom_notification::router(service.clone()).merge(dead_letter_router(parked));
        self.routers.push((Role::Notification, router));
        self.consumers.push((service.db().clone(), service.clone()));
        Ok(service)
    }

    /// The gateway, when local, over `deps` (their `limits` are set here).
    pub async fn gateway(
        &mut self,
        deps: impl FnOnce(Arc<dyn KeyStore>) -> Dependencies,
    ) -> anyhow::Result<()> {
        if !self.is_local(Role::PaymentGateway) {
            return Ok(());
        }
        let config: GatewayConfig = self.settings.config.section("gateway")?;
        let deps = deps(self.key_store("payloom:limit:"));
        let db = self.dbs.for_service("payment-gateway").await?;
        let gateway = Gateway::new(db, self.clock.clone(), config, deps).await?;
        gateway.spawn_sweeps();
        self.outboxes
            .push((gateway.db().clone(), gateway.outbox().clone()));
        let router = payloom_payment_gateway::api::router(gateway);
        self.routers.push((Role::PaymentGateway, router));
        Ok(())
    }

    /// The admin API, when local, over `clients` (their dead letters are added here).
    pub async fn admin(
        &mut self,
        clients: impl FnOnce(Vec<(String, Arc<dyn DeadLetterApi>)>) -> AdminClients,
    ) -> anyhow::Result<Option<Arc<Admin>>> {
        if !self.is_local(Role::AdminBff) {
            return Ok(None);
        }
        let secret = self
            .settings
            .secret("admin_jwt_secret", "admin-jwt.secret", || {
                payloom_platform::ids::random_hex(32)
            })?;
        let login: LoginConfig = self.settings.config.section("admin")?;
        let attempts = self.key_store("payloom:admin:");
        let clients = clients(std::mem::take(&mut self.dead_letters));
        let db = self.dbs.for_service("admin-bff").await?;
        let admin = Admin::new(
            db,
            self.clock.clone(),
            secret.as_bytes(),
            &login,
            attempts,
            clients,
        )
        .await?;
        crate::app::bootstrap_admin(&admin, self.settings.config.section("admin")?).await?;
        self.routers
            .push((Role::AdminBff, payloom_admin_bff::router(admin.clone())));
        Ok(Some(admin))
    }
}
