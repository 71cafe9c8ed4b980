//! The plugins built into this binary, as registry versions: listed beside pushed ones,
//! active until an operator activates something else, and a version to roll back to.
//! The binary is their source of truth: a rebuilt built-in replaces its stored bytes,
//! and a newer built-in becomes active unless an operator's push is.

use base64::Engine as _;
use payloom_host::Manifest;
use payloom_platform::{ApiError, ApiResult};
use sha2::{Digest, Sha256};

use crate::{PluginRegistry, PluginVersion, PushIn, VersionStatus, store, version_key};

/// The components this binary carries, with their manifests: the binary provides them to
/// the registry through the service wiring.
#[derive(Debug, Clone, Default)]
pub struct BuiltIns(pub Vec<(&'static [u8], &'static str)>);

/// Who the history names for what the binary brought.
const ACTOR: &str = "payloom (built in)";

impl PluginRegistry {
    /// Records the built-ins and activates what no operator has replaced.
    pub async fn seed_built_ins(&self, built_ins: &BuiltIns) -> anyhow::Result<()> {
        for &(wasm, manifest) in &built_ins.0 {
            match self.seed(wasm, manifest).await {
                // Another node seeding at the same moment did it.
                Err(e) if e.status == 409 => {}
                other => other.map_err(|e| anyhow::anyhow!("a built-in plugin: {e}"))?,
            }
        }
        Ok(())
    }

    async fn seed(&self, wasm: &[u8], manifest_text: &str) -> ApiResult<()> {
        let manifest = Manifest::parse(manifest_text).map_err(ApiError::internal)?;
        let push = PushIn {
            component_base64: base64::engine::general_purpose::STANDARD.encode(wasm),
            manifest: manifest_text.to_owned(),
            signature: None,
            uploaded_by: ACTOR.to_owned(),
        };
        let version = PluginVersion {
            plugin_id: manifest.id.clone(),
            version: manifest.version.clone(),
            world: manifest.world.world().to_owned(),
            digest: hex::encode(Sha256::digest(wasm)),
            publisher: "built-in".to_owned(),
            uploaded_by: ACTOR.to_owned(),
            status: VersionStatus::Staged,
            canary_percent: None,
            size_bytes: wasm.len() as i64,
            created_at_ms: self.clock.now_ms(),
        };
        match store::version(&self.db, &version.plugin_id, &version.version).await? {
            None => store::insert_version(&self.db, &version, &push).await?,
            Some(stored)
                if stored.version.publisher == "built-in"
                    && stored.version.digest != version.digest =>
            {
                store::replace_built_in(&self.db, &version, &push).await?
            }
            Some(_) => {}
        }
        let active = store::active_version(&self.db, &version.plugin_id).await?;
        let take_over = match &active {
            None => true,
            Some(active) => {
                active.publisher == "built-in"
                    && version_key(&version.version) > version_key(&active.version)
            }
        };
        if take_over {
            let change = self.change(
                &version.plugin_id,
                &version.version,
                "activate",
                ACTOR,
                "built into this binary",
            );
            store::activate(&self.db, &self.outbox, change, false).await?;
            self.outbox.wake();
        }
        Ok(())
    }
}
