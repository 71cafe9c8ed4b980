//! How a node running plugins follows the registry's active set.
//!
//! Every period the node asks for the active set; when its generation moves, each plugin
//! whose active version or digest differs from what this node serves is fetched, loaded
//! through the node's own checks (its trusted keys, its limits, its cache) and swapped
//! in. A version the node cannot load is logged and counted; the node keeps serving what
//! it had and does not retry that version until the set changes again. A node that
//! starts later catches up on its first poll.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use payloom_host::{Installed, Registry};
use payloom_plugin_registry_contract::{ActivePlugin, ActiveSet, PluginRegistryApi};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    plugin: String,
    version: String,
}

/// Follows the active set of `api` into `host`.
pub struct Follower {
    api: Arc<dyn PluginRegistryApi>,
    host: Arc<Registry>,
    failures: Family<VersionLabels, Counter>,
}

impl Follower {
    pub fn new(
        api: Arc<dyn PluginRegistryApi>,
        host: Arc<Registry>,
        metrics: &mut Metrics,
    ) -> Self {
        let failures = Family::default();
        metrics.register(
            "payloom_plugin_follow_failures",
            "Active versions this node could not load from the plugin registry (it kept the one it had)",
            failures.clone(),
        );
        Self {
            api,
            host,
            failures,
        }
    }

    /// Polls every `period` until the process ends.
    pub fn spawn(self, period: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let (mut seen, mut refused) = (None, HashSet::new());
            let mut reachable = true;
            loop {
                match self.api.active_set().await {
                    Ok(set) => {
                        if !reachable {
                            tracing::info!("the plugin registry answers again");
                            reachable = true;
                        }
                        if seen != Some(set.generation) {
                            refused.clear();
                            self.apply(&set, &mut refused).await;
                            seen = Some(set.generation);
                        }
                    }
                    Err(e) if reachable => {
                        tracing::warn!("cannot read the plugin registry's active set: {e}");
                        reachable = false;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(period).await;
            }
        })
    }

    /// Brings every plugin of `set` to its active version; returns what it swapped.
    pub async fn apply(
        &self,
        set: &ActiveSet,
        refused: &mut HashSet<(String, String)>,
    ) -> Vec<Installed> {
        let mut swapped = Vec::new();
        for wanted in &set.plugins {
            let serving = self.host.get(&wanted.plugin_id);
            if serving
                .is_some_and(|p| p.version() == wanted.version && p.info().digest == wanted.digest)
            {
                continue;
            }
            let key = (wanted.plugin_id.clone(), wanted.version.clone());
            if refused.contains(&key) {
                continue;
            }
            match self.load(wanted).await {
                Ok(installed) => {
                    tracing::info!(plugin = %installed.id, version = %installed.version, "plugin version from the registry serves");
                    swapped.push(installed);
                }
                Err(e) => {
                    tracing::error!(plugin = %wanted.plugin_id, version = %wanted.version, "keeping the serving version: cannot load the active one: {e:#}");
                    let labels = VersionLabels {
                        plugin: key.0.clone(),
                        version: key.1.clone(),
                    };
                    self.failures.get_or_create(&labels).inc();
                    refused.insert(key);
                }
            }
        }
        swapped
    }

    async fn load(&self, wanted: &ActivePlugin) -> anyhow::Result<Installed> {
        let artifact = self
            .api
            .artifact(&wanted.plugin_id, &wanted.version)
            .await
            .map_err(|e| anyhow::anyhow!("fetching it: {e}"))?;
        let component =
            base64::engine::general_purpose::STANDARD.decode(&artifact.component_base64)?;
        let plugin = self
            .host
            .runtime()
            .load(
                &component,
                &artifact.manifest,
                artifact.signature.as_deref(),
            )
            .await?;
        anyhow::ensure!(
            plugin.info().digest == wanted.digest,
            "the stored component's digest is not the one the registry activated"
        );
        anyhow::ensure!(
            plugin.id() == wanted.plugin_id && plugin.version() == wanted.version,
            "the stored manifest names {}@{}",
            plugin.id(),
            plugin.version()
        );
        // The registry decided; an older version here is its explicit rollback.
        let older = self.host.get(plugin.id()).is_some_and(|serving| {
            serving.info().manifest.version_key() > plugin.info().manifest.version_key()
        });
        match older {
            true => self.host.roll_back_to(plugin),
            false => self.host.activate(plugin),
        }
    }
}
