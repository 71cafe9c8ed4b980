//! merchant-auth in the service registry.

use std::sync::Arc;

use payloom_platform::cache::{KeyStore, MemoryKeyStore, RedisKeyStore};
use payloom_platform::registry::{Manifest, Routes, Service, Wiring};

use crate::{AuthConfig, MIGRATIONS, MerchantAuth, MerchantAuthApi, MerchantAuthHttp};

pub const SERVICE: &str = "merchant-auth";

/// Merchants, API keys and request signatures.
pub struct MerchantAuthService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40011,
    config_section: Some("auth"),
    migrations: MIGRATIONS,
    calls: &[],
    produces: &[],
    consumes: &[],
    uses_plugins: false,
    public_paths: &[],
    bff: false,
};

#[async_trait::async_trait]
impl Service for MerchantAuthService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()> {
        let client: Arc<dyn MerchantAuthApi> = Arc::new(MerchantAuthHttp(w.client(SERVICE)?));
        w.provide(client);
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let config: AuthConfig = w.section("auth")?;
        config.validate()?;
        // Nonces are shared by every node through Redis, or bounded in this process.
        let nonces: Arc<dyn KeyStore> = match &w.redis {
            Some(conn) => Arc::new(RedisKeyStore::new(conn.clone(), "payloom:nonce:")),
            None => Arc::new(MemoryKeyStore::with_limits(
                w.clock.clone(),
                config.memory_limits(),
            )),
        };
        let db = w.db(SERVICE).await?;
        let service = MerchantAuth::new(db, w.clock.clone(), w.master_key.clone(), nonces).await?;
        let api: Arc<dyn MerchantAuthApi> = service.clone();
        w.provide(api);
        Ok(Routes {
            internal: crate::api::router(service),
            ..Routes::default()
        })
    }
}
