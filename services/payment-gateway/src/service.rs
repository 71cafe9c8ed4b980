//! payment-gateway in the service registry.

use payloom_gateway_contract::events::{PAYMENT_TOPIC, REFUND_TOPIC};
use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{Dependencies, Gateway, GatewayConfig, MIGRATIONS, SERVICE};

/// The merchant API and PSP notifications; publishes `payment.events` and `refund.events`.
pub struct GatewayService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40003,
    config_section: Some("gateway"),
    migrations: MIGRATIONS,
    calls: &[
        "merchant-auth",
        "order",
        "merchant-quota",
        "merchant-policy",
        "risk",
        "channel-adapter",
        "accounting",
        "notification",
    ],
    produces: &[PAYMENT_TOPIC, REFUND_TOPIC],
    consumes: &[],
    uses_plugins: false,
    public_paths: &["/v1"],
    bff: false,
};

#[async_trait::async_trait]
impl Service for GatewayService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    /// Nothing calls the gateway's internal routes; merchants reach its public ones.
    fn connect(&self, _: &mut Wiring<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let config: GatewayConfig = w.section("gateway")?;
        let deps = Dependencies {
            auth: w.get()?,
            orders: w.get()?,
            quota: w.get()?,
            policy: w.get()?,
            risk: w.get()?,
            channels: w.get()?,
            accounting: w.get()?,
            notifications: w.get()?,
            limits: w.key_store("payloom:limit:"),
        };
        let db = w.db(SERVICE).await?;
        let metrics = crate::metrics::PaymentMetrics::register(&mut w.metrics);
        let gateway = Gateway::new(db, w.clock.clone(), config, deps, metrics).await?;
        gateway.spawn_sweeps();
        w.relay(gateway.db().clone(), gateway.outbox().clone());
        Ok(Routes {
            public: crate::api::router(gateway),
            ..Routes::default()
        })
    }
}
