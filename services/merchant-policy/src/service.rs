//! merchant-policy in the service registry.

use std::sync::Arc;

use payloom_host::Registry;
use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{MIGRATIONS, MerchantPolicy, PolicyApi, PolicyConfig, PolicyHttp};

pub const SERVICE: &str = "merchant-policy";

/// Fees, limits and routing per merchant, decided by policy plugins.
pub struct PolicyService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40022,
    config_section: Some("policy"),
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
impl Service for PolicyService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        let client: Arc<dyn PolicyApi> = Arc::new(PolicyHttp(w.client(SERVICE)?));
        w.provide(client);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let config: PolicyConfig = w.section("policy")?;
        let plugins: Arc<Registry> = w.get()?;
        let db = w.db(SERVICE).await?;
        let service = MerchantPolicy::new(db, plugins, config, w.clock.clone()).await?;
        let api: Arc<dyn PolicyApi> = service.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::router(service),
            ..Routes::default()
        })
    }
}
