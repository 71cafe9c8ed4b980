//! risk in the service registry.

use std::sync::Arc;

use payloom_host::Registry;
use payloom_host::capabilities::counters::Counters;
use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{MIGRATIONS, Risk, RiskApi, RiskConfig, RiskHttp, RiskMetrics};

pub const SERVICE: &str = "risk";

/// Risk rules (plugins) over each payment, with velocity counters.
pub struct RiskService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40006,
    config_section: Some("risk"),
    migrations: MIGRATIONS,
    // Its node follows the active plugin versions there.
    calls: &["plugin-registry"],
    produces: &[],
    consumes: &[],
    uses_plugins: true,
    public_paths: &[],
    bff: false,
};

#[async_trait::async_trait]
impl Service for RiskService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        let client: Arc<dyn RiskApi> = Arc::new(RiskHttp(w.client(SERVICE)?));
        w.provide(client);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let config: RiskConfig = w.section("risk")?;
        let plugins: Arc<Registry> = w.get()?;
        let counters: Arc<dyn Counters> = w.get()?;
        let db = w.db(SERVICE).await?;
        let metrics = RiskMetrics::register(&mut w.metrics);
        let service = Risk::new(db, plugins, counters, config, w.clock.clone(), metrics).await?;
        let api: Arc<dyn RiskApi> = service.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::router(service),
            ..Routes::default()
        })
    }
}
