//! order in the service registry.

use std::sync::Arc;

use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{MIGRATIONS, OrderApi, OrderHttp, Orders, SERVICE};

/// Orders and their state machine; publishes `order.events`.
pub struct OrderService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40004,
    config_section: None,
    migrations: MIGRATIONS,
    calls: &[],
    produces: &[payloom_order_contract::TOPIC],
    consumes: &[],
    uses_plugins: false,
    public_paths: &[],
    bff: false,
};

#[async_trait::async_trait]
impl Service for OrderService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        let client: Arc<dyn OrderApi> = Arc::new(OrderHttp(w.client(SERVICE)?));
        w.provide(client);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let db = w.db(SERVICE).await?;
        let service = Orders::new(db, w.clock.clone()).await?;
        w.relay(service.db().clone(), service.outbox().clone());
        let api: Arc<dyn OrderApi> = service.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::router(service),
            ..Routes::default()
        })
    }
}
