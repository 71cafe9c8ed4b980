//! A watched folder that publishes: a component dropped in is pushed to the plugin
//! registry and activated there, with the folder as who and the file as why, so `dev`
//! takes the same checks and leaves the same history as an operator's push, and every
//! node follows it.

use std::sync::Arc;

use base64::Engine as _;
use payloom_host::Installed;
use payloom_host::watch::Installer;

use crate::{ActivateIn, PluginRegistryApi, PushIn};

pub struct FolderPublisher {
    api: Arc<dyn PluginRegistryApi>,
    /// Who the history names: the folder.
    actor: String,
}

impl FolderPublisher {
    pub fn new(api: Arc<dyn PluginRegistryApi>, dir: &std::path::Path) -> Self {
        Self {
            api,
            actor: format!("watched folder {}", dir.display()),
        }
    }
}

#[async_trait::async_trait]
impl Installer for FolderPublisher {
    async fn install(
        &self,
        component: &[u8],
        manifest: &str,
        signature: Option<&str>,
    ) -> anyhow::Result<Installed> {
        let push = PushIn {
            component_base64: base64::engine::general_purpose::STANDARD.encode(component),
            manifest: manifest.to_owned(),
            signature: signature.map(str::to_owned),
            uploaded_by: self.actor.clone(),
        };
        let version = self
            .api
            .push(push)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let activate = ActivateIn {
            version: version.version.clone(),
            reason: "dropped into the watched folder".to_owned(),
            rollback: false,
            actor: self.actor.clone(),
        };
        let previous = match self.api.activate(&version.plugin_id, activate).await {
            Ok(activation) => activation.previous,
            // Another process watching the same folder was first.
            Err(e) if e.code == "already_active" => None,
            Err(e) => anyhow::bail!("{}", e.message),
        };
        Ok(Installed {
            id: version.plugin_id,
            version: version.version,
            replaced: previous,
        })
    }
}
