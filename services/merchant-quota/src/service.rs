//! merchant-quota in the service registry.

use std::sync::Arc;

use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{MIGRATIONS, QuotaApi, QuotaConfig, QuotaHttp, Quotas, RedisUsage, UsageStore};

pub const SERVICE: &str = "merchant-quota";

/// Per-merchant rate and volume limits.
pub struct QuotaService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40024,
    config_section: Some("quota"),
    migrations: MIGRATIONS,
    calls: &[],
    produces: &[],
    consumes: &[],
    uses_plugins: false,
    public_paths: &[],
    bff: false,
};

#[async_trait::async_trait]
impl Service for QuotaService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        let client: Arc<dyn QuotaApi> = Arc::new(QuotaHttp(w.client(SERVICE)?));
        w.provide(client);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        // Usage counters in Redis when there is one (shared by every node), else in SQL.
        let usage = w
            .redis
            .as_ref()
            .map(|conn| Arc::new(RedisUsage::new(conn.clone(), "payloom:")) as Arc<dyn UsageStore>);
        let config: QuotaConfig = w.section("quota")?;
        let db = w.db(SERVICE).await?;
        let service = Quotas::new(db, w.clock.clone(), config, usage).await?;
        let api: Arc<dyn QuotaApi> = service.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::router(service),
            ..Routes::default()
        })
    }
}
