//! channel-adapter in the service registry.

use std::sync::Arc;

use payloom_host::Registry;
use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{ChannelAdapter, ChannelApi, ChannelHttp, ChannelMetrics, MIGRATIONS};

pub const SERVICE: &str = "channel-adapter";

/// The PSP channels (plugins) and each merchant's sealed credentials for them.
pub struct ChannelService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40005,
    config_section: None,
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
impl Service for ChannelService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        let client: Arc<dyn ChannelApi> = Arc::new(ChannelHttp(w.client(SERVICE)?));
        w.provide(client);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let plugins: Arc<Registry> = w.get()?;
        let db = w.db(SERVICE).await?;
        let metrics = ChannelMetrics::register(&mut w.metrics);
        let (key, clock) = (w.master_key.clone(), w.clock.clone());
        let service = ChannelAdapter::new(db, plugins, key, clock, metrics).await?;
        let api: Arc<dyn ChannelApi> = service.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::router(service),
            ..Routes::default()
        })
    }
}
