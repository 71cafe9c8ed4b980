//! plugin-registry in the service registry.

use std::sync::Arc;

use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{BuiltIns, MIGRATIONS, PluginRegistry, PluginRegistryApi, PluginRegistryHttp, SERVICE};

/// Plugin versions, their activation, and the active set nodes follow.
pub struct PluginRegistryService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40025,
    config_section: None,
    migrations: MIGRATIONS,
    calls: &[],
    produces: &[payloom_plugin_registry_contract::TOPIC],
    consumes: &[],
    // A push is checked by the plugin host with this node's trust settings and limits.
    uses_plugins: true,
    public_paths: &[],
    bff: false,
};

#[async_trait::async_trait]
impl Service for PluginRegistryService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        let api: Arc<dyn PluginRegistryApi> = Arc::new(PluginRegistryHttp(w.client(SERVICE)?));
        w.provide(api);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let db = w.db(SERVICE).await?;
        let host: Arc<payloom_host::Registry> = w.get()?;
        let registry = PluginRegistry::new(db, w.clock.clone(), host).await?;
        let built_ins: BuiltIns = w.get().unwrap_or_default();
        registry.seed_built_ins(&built_ins).await?;
        w.relay(registry.db().clone(), registry.outbox().clone());
        let api: Arc<dyn PluginRegistryApi> = registry.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::router(registry),
            ..Routes::default()
        })
    }
}
