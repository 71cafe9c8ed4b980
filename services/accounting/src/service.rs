//! accounting in the service registry.

use std::sync::Arc;

use payloom_gateway_contract::events::{PAYMENT_TOPIC, REFUND_TOPIC};
use payloom_platform::events::{DeadLetterHttp, Subscription, dead_letter_router};
use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{AccountingApi, AccountingHttp, Ledger, MIGRATIONS, SERVICE};

/// The double-entry ledger; books the gateway's payment and refund events.
pub struct AccountingService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40007,
    config_section: None,
    migrations: MIGRATIONS,
    calls: &[],
    produces: &[payloom_accounting_contract::TOPIC],
    consumes: &[PAYMENT_TOPIC, REFUND_TOPIC],
    uses_plugins: false,
    public_paths: &[],
    bff: false,
};

#[async_trait::async_trait]
impl Service for AccountingService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        // One client (one read of the caller's certificate) for the API and dead letters.
        let client = w.client(SERVICE)?;
        w.park(SERVICE, Arc::new(DeadLetterHttp(client.clone())));
        let api: Arc<dyn AccountingApi> = Arc::new(AccountingHttp(client));
        w.provide(api);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let db = w.db(SERVICE).await?;
        let ledger = Ledger::new(db, w.clock.clone()).await?;
        let parked = Arc::new(Subscription::new(ledger.db().clone(), ledger.clone()));
        w.park(SERVICE, parked.clone());
        w.relay(ledger.db().clone(), ledger.outbox().clone());
        w.consume(ledger.db().clone(), ledger.clone());
        let api: Arc<dyn AccountingApi> = ledger.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::router(ledger).merge(dead_letter_router(parked)),
            ..Routes::default()
        })
    }
}
