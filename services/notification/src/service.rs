//! notification in the service registry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use payloom_gateway_contract::events::{PAYMENT_TOPIC, REFUND_TOPIC};
use payloom_platform::events::{DeadLetterHttp, Subscription, dead_letter_router};
use payloom_platform::registry::{Manifest, Provided, Routes, Service, Wiring};
use serde::Deserialize;

use crate::email::{FileMailer, LogMailer, Mailer};
use crate::{
    MIGRATIONS, NotificationApi, NotificationConfig, NotificationHttp, Notifications, SERVICE,
};

/// Merchant webhooks (signed, retried) and email.
pub struct NotificationService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40008,
    config_section: Some("notification"),
    migrations: MIGRATIONS,
    calls: &[],
    produces: &[],
    consumes: &[PAYMENT_TOPIC, REFUND_TOPIC],
    uses_plugins: false,
    public_paths: &[],
    bff: false,
};

/// `[email]`.
#[derive(Debug, Clone, Default, Deserialize)]
struct EmailConfig {
    file: Option<PathBuf>,
}

#[async_trait::async_trait]
impl Service for NotificationService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        // One client (one read of the caller's certificate) for the API and dead letters.
        let client = w.client(SERVICE)?;
        w.park(SERVICE, Arc::new(DeadLetterHttp(client.clone())));
        let api: Arc<dyn NotificationApi> = Arc::new(NotificationHttp(client));
        w.provide(api);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let config: NotificationConfig = w.section("notification")?;
        let email: EmailConfig = w.section("email")?;
        let mailer: Arc<dyn Mailer> = match email.file {
            Some(path) if !path.as_os_str().is_empty() => Arc::new(FileMailer::new(path)),
            _ => Arc::new(LogMailer),
        };
        let db = w.db(SERVICE).await?;
        let (key, clock) = (w.master_key.clone(), w.clock.clone());
        let service = Notifications::new(db, clock, key, config, mailer).await?;
        service.spawn_worker();
        service.metrics().register(&mut w.metrics);
        service.spawn_sampler();
        let parked = Arc::new(Subscription::new(service.db().clone(), service.clone()));
        w.park(SERVICE, parked.clone());
        w.consume(service.db().clone(), service.clone());
        let api: Arc<dyn NotificationApi> = service.clone();
        w.provide(api);
        w.provide(service.clone());
        Ok(Routes {
            internal: crate::router(service).merge(dead_letter_router(parked)),
            ..Routes::default()
        })
    }

    /// Lets the webhook attempts under way finish, so a receiver is not cut off mid-send
    /// and told again after the restart.
    async fn stop(&self, provided: &Provided, grace: Duration) -> anyhow::Result<()> {
        let service: Arc<Notifications> = provided.get()?;
        if !service.drain(grace).await {
            tracing::warn!(
                "webhook attempts still under way at stop go out again on the next start"
            );
        }
        Ok(())
    }
}
