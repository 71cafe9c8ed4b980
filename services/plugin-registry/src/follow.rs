//! How a node running plugins follows the registry's active set.
//!
//! Every period the node asks for the active set; when its generation moves, each plugin
//! whose active version or digest differs from what this node serves is fetched, loaded
//! through the node's own checks (its trusted keys, its limits, its cache) and swapped
//! in. A version the node cannot load is logged and counted; the node keeps serving what
//! it had and does not retry that version until the set changes again. A node that
//! starts later catches up on its first poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use payloom_host::{Installed, Plugin, Registry};
use payloom_plugin_registry_contract::{
    ActivePlugin, ActiveSet, NodeRefusal, NodeReport, NodeShadow, NodeVersion, PluginRegistryApi,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    plugin: String,
    version: String,
}

/// Follows the active set of `api` into `host`, and reports what this node serves.
pub struct Follower {
    api: Arc<dyn PluginRegistryApi>,
    host: Arc<Registry>,
    failures: Family<VersionLabels, Counter>,
    node: String,
}

/// Versions this node could not load, with why, until the active set changes.
pub type Refused = HashMap<(String, String), String>;

/// Polls between two reports of what this node serves.
const POLLS_PER_REPORT: u32 = 4;

impl Follower {
    /// `node` names this process in reports (`<services>@<host>:<pid>`).
    pub fn new(
        api: Arc<dyn PluginRegistryApi>,
        host: Arc<Registry>,
        node: String,
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
            node,
        }
    }

    /// Polls every `period` until the process ends.
    pub fn spawn(self, period: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let (mut seen, mut refused) = (None, Refused::new());
            let mut reachable = true;
            let mut poll = 0u32;
            loop {
                if poll.is_multiple_of(POLLS_PER_REPORT) {
                    self.report(&refused).await;
                }
                poll = poll.wrapping_add(1);
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

    /// Tells the registry what this node serves, the calls each version took here, and
    /// what it refused. A registry that does not answer misses one report.
    async fn report(&self, refused: &Refused) {
        let versions = self
            .host
            .stats()
            .into_iter()
            .map(|s| NodeVersion {
                plugin_id: s.plugin,
                version: s.version,
                digest: s.digest,
                canary_percent: s.canary_percent.map(i64::from),
                calls: s.calls,
                errors: s.errors,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
            })
            .collect();
        let refused = refused
            .iter()
            .map(|((plugin_id, version), reason)| NodeRefusal {
                plugin_id: plugin_id.clone(),
                version: version.clone(),
                reason: reason.clone(),
            })
            .collect();
        let shadows = self
            .host
            .shadow_summaries()
            .into_iter()
            .map(|s| NodeShadow {
                plugin_id: s.plugin,
                version: s.version,
                compared: s.compared,
                differing: s.differing,
                differences: s.differences,
            })
            .collect();
        let report = NodeReport {
            node: self.node.clone(),
            versions,
            refused,
            shadows,
            at_ms: 0,
        };
        if let Err(e) = self.api.report(report).await {
            tracing::debug!("the plugin registry did not take this node's report: {e}");
        }
    }

    /// Brings every plugin of `set` to its active version and canary; returns the
    /// active versions it swapped in.
    pub async fn apply(&self, set: &ActiveSet, refused: &mut Refused) -> Vec<Installed> {
        let mut swapped = Vec::new();
        for wanted in &set.plugins {
            let serving = self.host.get(&wanted.plugin_id);
            let current = serving
                .is_some_and(|p| p.version() == wanted.version && p.info().digest == wanted.digest);
            if !current
                && let Some(plugin) = self
                    .fetch(&wanted.plugin_id, &wanted.version, &wanted.digest, refused)
                    .await
            {
                match self.swap_active(plugin) {
                    Ok(installed) => swapped.push(installed),
                    Err(e) => self.refuse(&wanted.plugin_id, &wanted.version, &e, refused),
                }
            }
            self.follow_canary(wanted, refused).await;
            self.follow_shadow(wanted, refused).await;
            self.follow_bindings(wanted, refused).await;
        }
        swapped
    }

    /// The registry decided: an older version than the serving one is its rollback.
    fn swap_active(&self, plugin: Arc<Plugin>) -> anyhow::Result<Installed> {
        let older = self.host.get(plugin.id()).is_some_and(|serving| {
            serving.info().manifest.version_key() > plugin.info().manifest.version_key()
        });
        let installed = match older {
            true => self.host.roll_back_to(plugin)?,
            false => self.host.activate(plugin)?,
        };
        tracing::info!(plugin = %installed.id, version = %installed.version, "plugin version from the registry serves");
        Ok(installed)
    }

    async fn follow_canary(&self, wanted: &ActivePlugin, refused: &mut Refused) {
        let id = &wanted.plugin_id;
        let running = self.host.canary(id);
        let Some(canary) = &wanted.canary else {
            if running.is_some() {
                self.host.clear_canary(id);
                tracing::info!(plugin = %id, "canary ended");
            }
            return;
        };
        let percent = u8::try_from(canary.percent).unwrap_or(0);
        let same = running.is_some_and(|(p, share)| {
            p.version() == canary.version && p.info().digest == canary.digest && share == percent
        });
        if same {
            return;
        }
        let Some(plugin) = self
            .fetch(id, &canary.version, &canary.digest, refused)
            .await
        else {
            return;
        };
        match self.host.set_canary(plugin, percent) {
            Ok(()) => {
                tracing::info!(plugin = %id, version = %canary.version, percent, "canary serves")
            }
            Err(e) => self.refuse(id, &canary.version, &e, refused),
        }
    }

    /// Binds each merchant to its version; a version already loaded here (bound,
    /// active or canary) is reused.
    async fn follow_bindings(&self, wanted: &ActivePlugin, refused: &mut Refused) {
        let id = &wanted.plugin_id;
        let current = self.host.pins(id);
        let same = current.len() == wanted.bindings.len()
            && wanted.bindings.iter().all(|b| {
                current
                    .get(&b.merchant_id)
                    .is_some_and(|p| p.version() == b.version && p.info().digest == b.digest)
            });
        if same {
            return;
        }
        let mut loaded: Vec<Arc<Plugin>> = current.values().cloned().collect();
        loaded.extend(self.host.get(id));
        loaded.extend(self.host.canary(id).map(|(p, _)| p));
        let mut pins = HashMap::new();
        for binding in &wanted.bindings {
            let known = loaded
                .iter()
                .find(|p| p.version() == binding.version && p.info().digest == binding.digest)
                .cloned();
            let plugin = match known {
                Some(plugin) => plugin,
                None => match self
                    .fetch(id, &binding.version, &binding.digest, refused)
                    .await
                {
                    Some(plugin) => {
                        loaded.push(plugin.clone());
                        plugin
                    }
                    // The merchant stays on what it had until the version loads.
                    None => match current.get(&binding.merchant_id) {
                        Some(previous) => previous.clone(),
                        None => continue,
                    },
                },
            };
            pins.insert(binding.merchant_id.clone(), plugin);
        }
        let count = pins.len();
        match self.host.set_pins(id, pins) {
            Ok(()) => {
                tracing::info!(plugin = %id, merchants = count, "bindings follow the registry")
            }
            Err(e) => tracing::error!(plugin = %id, "keeping the bindings: {e:#}"),
        }
    }

    async fn follow_shadow(&self, wanted: &ActivePlugin, refused: &mut Refused) {
        let id = &wanted.plugin_id;
        let running = self.host.shadow(id);
        let Some(shadow) = &wanted.shadow else {
            if running.is_some() {
                self.host.clear_shadow(id);
                tracing::info!(plugin = %id, "shadow run ended");
            }
            return;
        };
        if running
            .is_some_and(|p| p.version() == shadow.version && p.info().digest == shadow.digest)
        {
            return;
        }
        let Some(plugin) = self
            .fetch(id, &shadow.version, &shadow.digest, refused)
            .await
        else {
            return;
        };
        match self.host.set_shadow(plugin) {
            Ok(()) => {
                tracing::info!(plugin = %id, version = %shadow.version, "shadow run serves nobody, compares everything")
            }
            Err(e) => self.refuse(id, &shadow.version, &e, refused),
        }
    }

    fn refuse(&self, plugin: &str, version: &str, error: &anyhow::Error, refused: &mut Refused) {
        tracing::error!(
            plugin,
            version,
            "keeping what serves: cannot load the registry's version: {error:#}"
        );
        let labels = VersionLabels {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
        };
        self.failures.get_or_create(&labels).inc();
        refused.insert(labels.into(), format!("{error:#}"));
    }

    /// Loads a stored version through this node's checks; `None` when it cannot (said
    /// once per version and active set).
    async fn fetch(
        &self,
        plugin_id: &str,
        version: &str,
        digest: &str,
        refused: &mut Refused,
    ) -> Option<Arc<Plugin>> {
        if refused.contains_key(&(plugin_id.to_owned(), version.to_owned())) {
            return None;
        }
        match self.load(plugin_id, version, digest).await {
            Ok(plugin) => Some(plugin),
            Err(e) => {
                self.refuse(plugin_id, version, &e, refused);
                None
            }
        }
    }

    async fn load(
        &self,
        plugin_id: &str,
        version: &str,
        digest: &str,
    ) -> anyhow::Result<Arc<Plugin>> {
        let artifact = self
            .api
            .artifact(plugin_id, version)
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
            plugin.info().digest == digest,
            "the stored component's digest is not the one the registry activated"
        );
        anyhow::ensure!(
            plugin.id() == plugin_id && plugin.version() == version,
            "the stored manifest names {}@{}",
            plugin.id(),
            plugin.version()
        );
        Ok(plugin)
    }
}

impl From<VersionLabels> for (String, String) {
    fn from(labels: VersionLabels) -> Self {
        (labels.plugin, labels.version)
    }
}
