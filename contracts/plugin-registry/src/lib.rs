//! plugin-registry's contract: the versions of each plugin an operator pushed, which one
//! is active, the history of activations with who and why, and the active set every node
//! running plugins follows. The admin API and the nodes depend on this crate, not on the
//! service.

use async_trait::async_trait;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use payloom_platform::events::Envelope;
use serde::{Deserialize, Serialize};

/// The service that owns plugin versions and produces their events.
pub const PRODUCER: &str = "plugin-registry";
/// Where activations are published.
pub const TOPIC: &str = "plugin.events";

/// Largest component a push may carry (the plugin host's own cap).
pub const COMPONENT_BYTES_MAX: usize = 64 << 20;
/// Largest push body: the largest component in base64, with room for the manifest and
/// the signature.
pub const PUSH_BODY_MAX: usize = COMPONENT_BYTES_MAX / 3 * 4 + (1 << 20);

/// A component, its manifest and its signature, as an operator pushes them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushIn {
    /// The component's bytes, base64 (standard alphabet, padded).
    pub component_base64: String,
    /// The manifest's text, exactly as signed.
    pub manifest: String,
    /// The signature file's text (`<public key hex> <signature hex>`).
    #[serde(default)]
    pub signature: Option<String>,
    /// Who pushed it (the operator's username).
    #[serde(default)]
    pub uploaded_by: String,
}

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Checked and stored; serves nobody.
    Staged,
    /// Serves its plugin id on every node.
    Active,
    /// Takes a share of calls beside the active version, chosen by payment id.
    Canary,
    /// A channel candidate running beside the active version on every call, answered
    /// from the live call's recorded HTTP; its answers are compared, never used.
    Shadow,
    /// Served once, replaced since.
    Retired,
}

/// One pushed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    pub plugin_id: String,
    pub version: String,
    /// `channel-adapter`, `risk-rule` or `merchant-policy`.
    pub world: String,
    /// Hex SHA-256 of the component: where its bytes are stored.
    pub digest: String,
    /// `ed25519:<key>`, `built-in` or `unsigned`.
    pub publisher: String,
    pub uploaded_by: String,
    pub status: VersionStatus,
    /// The share of calls it takes while it is the canary.
    pub canary_percent: Option<i64>,
    pub size_bytes: i64,
    pub created_at_ms: i64,
}

/// Make `version` the active one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivateIn {
    pub version: String,
    /// Why, for the history.
    pub reason: String,
    /// Allows a version older than the active one.
    #[serde(default)]
    pub rollback: bool,
    /// Who (the operator's username).
    #[serde(default)]
    pub actor: String,
}

/// Run `version` as a canary taking `percent` (1 to 99) of calls, by payment id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CanaryIn {
    pub version: String,
    pub percent: i64,
    pub reason: String,
    #[serde(default)]
    pub actor: String,
}

/// Run channel `version` in shadow beside the active version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowIn {
    pub version: String,
    pub reason: String,
    #[serde(default)]
    pub actor: String,
}

/// Bind a merchant to `version`: its calls reach that version whatever is active.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindIn {
    pub merchant_id: String,
    pub version: String,
    pub reason: String,
    #[serde(default)]
    pub actor: String,
}

/// Remove a merchant's binding: it follows the active version (and canary) again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnbindIn {
    pub merchant_id: String,
    pub reason: String,
    #[serde(default)]
    pub actor: String,
}

/// Which merchant a version is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub merchant_id: String,
    pub version: String,
    pub digest: String,
}

/// Make the canary the active version, or (rollback) end a canary or put back the version
/// that was active before the current one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackIn {
    pub reason: String,
    #[serde(default)]
    pub actor: String,
}

/// One entry of a plugin's activation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// Position in the registry's history: the active set's generation after it.
    pub seq: i64,
    pub plugin_id: String,
    pub version: String,
    /// The version it replaced, if one was active.
    pub previous: Option<String>,
    /// `activate`, `rollback`, `canary`, `promote`, `canary_rollback`, `shadow`,
    /// `shadow_end`, `bind` or `unbind`.
    pub action: String,
    /// The canary's share, for `canary`.
    pub percent: Option<i64>,
    /// The merchant, for `bind` and `unbind`.
    #[serde(default)]
    pub merchant_id: Option<String>,
    pub actor: String,
    pub reason: String,
    pub at_ms: i64,
}

/// A plugin: its versions, newest first, its activation history, latest first, and what
/// each node that reported in the last seconds serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginOut {
    pub plugin_id: String,
    pub world: String,
    pub active: Option<String>,
    pub versions: Vec<PluginVersion>,
    pub history: Vec<Activation>,
    /// Merchants bound to a version of their own.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default)]
    pub nodes: Vec<NodeReport>,
}

/// What one node serves and how it went, as it reports every second or so.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    /// `<services>@<host>:<pid>`.
    pub node: String,
    pub versions: Vec<NodeVersion>,
    /// Versions the registry activated that this node could not load, and why.
    pub refused: Vec<NodeRefusal>,
    /// What each shadow candidate did here.
    #[serde(default)]
    pub shadows: Vec<NodeShadow>,
    /// When the registry received it.
    #[serde(default)]
    pub at_ms: i64,
}

/// One version a node serves (the active one, or a canary), with its calls there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeVersion {
    pub plugin_id: String,
    pub version: String,
    pub digest: String,
    pub canary_percent: Option<i64>,
    pub calls: u64,
    /// Failed calls by kind: `trap`, `timeout`, `memory`, `denied`, `refused`.
    pub errors: std::collections::BTreeMap<String, u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A shadow candidate on one node: calls it ran beside, how many differed, the latest
/// differences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeShadow {
    pub plugin_id: String,
    pub version: String,
    pub compared: u64,
    pub differing: u64,
    pub differences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRefusal {
    pub plugin_id: String,
    pub version: String,
    pub reason: String,
}

/// What every node should serve: the active version of each plugin the registry
/// manages. `generation` grows with every activation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSet {
    pub generation: i64,
    pub plugins: Vec<ActivePlugin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePlugin {
    pub plugin_id: String,
    pub version: String,
    pub digest: String,
    pub canary: Option<ActiveCanary>,
    #[serde(default)]
    pub shadow: Option<ActiveShadow>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveShadow {
    pub version: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCanary {
    pub version: String,
    pub digest: String,
    pub percent: i64,
}

/// What a node loads: the stored component, manifest and signature of one version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub component_base64: String,
    pub manifest: String,
    pub signature: Option<String>,
}

#[async_trait]
pub trait PluginRegistryApi: Send + Sync {
    /// Checks a component (signature, world, imports, manifest, smoke test under
    /// production limits) and stages it; 422 `plugin_refused` says why not. Pushing the
    /// same build again answers the stored version; other bytes under a taken version
    /// are 409 `version_exists`.
    async fn push(&self, push: PushIn) -> ApiResult<PluginVersion>;
    /// Every plugin the registry holds, by id.
    async fn plugins(&self) -> ApiResult<Vec<PluginOut>>;
    async fn plugin(&self, plugin_id: &str) -> ApiResult<PluginOut>;
    /// Makes a staged or retired version active; an older one than the active needs
    /// `rollback` (409 `downgrade_needs_rollback`).
    async fn activate(&self, plugin_id: &str, input: ActivateIn) -> ApiResult<Activation>;
    /// Ends the canary if one runs, else the shadow run if one runs; otherwise makes the
    /// version active before the current one active again.
    async fn rollback(&self, plugin_id: &str, input: RollbackIn) -> ApiResult<Activation>;
    /// Sends a share of calls to a newer version beside the active one.
    async fn canary(&self, plugin_id: &str, input: CanaryIn) -> ApiResult<Activation>;
    /// Runs a channel version in shadow beside the active one.
    async fn shadow(&self, plugin_id: &str, input: ShadowIn) -> ApiResult<Activation>;
    /// Binds a merchant to a version of a plugin.
    async fn bind(&self, plugin_id: &str, input: BindIn) -> ApiResult<Activation>;
    /// Removes a merchant's binding.
    async fn unbind(&self, plugin_id: &str, input: UnbindIn) -> ApiResult<Activation>;
    /// Makes the canary the active version.
    async fn promote(&self, plugin_id: &str, input: RollbackIn) -> ApiResult<Activation>;
    async fn active_set(&self) -> ApiResult<ActiveSet>;
    /// A node says what it serves; `plugin` shows the reports of the last seconds.
    async fn report(&self, report: NodeReport) -> ApiResult<()>;
    async fn artifact(&self, plugin_id: &str, version: &str) -> ApiResult<Artifact>;
}

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use payloom_platform::operation::Operation;

    use super::*;

    pub const PUSH: Operation<PushIn, PluginVersion> =
        Operation::post("/internal/v1/plugin-versions");
    pub const LIST: Operation<(), Vec<PluginOut>> = Operation::get("/internal/v1/plugins");
    pub const GET: Operation<(), PluginOut> = Operation::get("/internal/v1/plugins/{id}");
    pub const ACTIVATE: Operation<ActivateIn, Activation> =
        Operation::post("/internal/v1/plugins/{id}/activate");
    pub const ROLLBACK: Operation<RollbackIn, Activation> =
        Operation::post("/internal/v1/plugins/{id}/rollback");
    pub const CANARY: Operation<CanaryIn, Activation> =
        Operation::post("/internal/v1/plugins/{id}/canary");
    pub const SHADOW: Operation<ShadowIn, Activation> =
        Operation::post("/internal/v1/plugins/{id}/shadow");
    pub const BIND: Operation<BindIn, Activation> =
        Operation::post("/internal/v1/plugins/{id}/bindings");
    pub const UNBIND: Operation<UnbindIn, Activation> =
        Operation::post("/internal/v1/plugins/{id}/unbind");
    pub const PROMOTE: Operation<RollbackIn, Activation> =
        Operation::post("/internal/v1/plugins/{id}/promote");
    pub const ACTIVE_SET: Operation<(), ActiveSet> = Operation::get("/internal/v1/plugin-set");
    pub const REPORT: Operation<NodeReport, serde_json::Value> =
        Operation::post("/internal/v1/plugin-nodes");
    pub const ARTIFACT: Operation<(), Artifact> =
        Operation::get("/internal/v1/plugins/{id}/versions/{version}/artifact");
}

/// [`PluginRegistryApi`] over HTTP.
pub struct PluginRegistryHttp(pub ServiceClient);

#[async_trait]
impl PluginRegistryApi for PluginRegistryHttp {
    async fn push(&self, push: PushIn) -> ApiResult<PluginVersion> {
        operations::PUSH.call(&self.0, &[], &push).await
    }
    async fn plugins(&self) -> ApiResult<Vec<PluginOut>> {
        operations::LIST.call(&self.0, &[], &()).await
    }
    async fn plugin(&self, plugin_id: &str) -> ApiResult<PluginOut> {
        operations::GET.call(&self.0, &[plugin_id], &()).await
    }
    async fn activate(&self, plugin_id: &str, input: ActivateIn) -> ApiResult<Activation> {
        operations::ACTIVATE
            .call(&self.0, &[plugin_id], &input)
            .await
    }
    async fn rollback(&self, plugin_id: &str, input: RollbackIn) -> ApiResult<Activation> {
        operations::ROLLBACK
            .call(&self.0, &[plugin_id], &input)
            .await
    }
    async fn canary(&self, plugin_id: &str, input: CanaryIn) -> ApiResult<Activation> {
        operations::CANARY.call(&self.0, &[plugin_id], &input).await
    }
    async fn shadow(&self, plugin_id: &str, input: ShadowIn) -> ApiResult<Activation> {
        operations::SHADOW.call(&self.0, &[plugin_id], &input).await
    }
    async fn bind(&self, plugin_id: &str, input: BindIn) -> ApiResult<Activation> {
        operations::BIND.call(&self.0, &[plugin_id], &input).await
    }
    async fn unbind(&self, plugin_id: &str, input: UnbindIn) -> ApiResult<Activation> {
        operations::UNBIND.call(&self.0, &[plugin_id], &input).await
    }
    async fn promote(&self, plugin_id: &str, input: RollbackIn) -> ApiResult<Activation> {
        operations::PROMOTE
            .call(&self.0, &[plugin_id], &input)
            .await
    }
    async fn active_set(&self) -> ApiResult<ActiveSet> {
        operations::ACTIVE_SET.call(&self.0, &[], &()).await
    }
    async fn report(&self, report: NodeReport) -> ApiResult<()> {
        operations::REPORT
            .call(&self.0, &[], &report)
            .await
            .map(drop)
    }
    async fn artifact(&self, plugin_id: &str, version: &str) -> ApiResult<Artifact> {
        operations::ARTIFACT
            .call(&self.0, &[plugin_id, version], &())
            .await
    }
}

/// The events of `plugin.events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginEvent {
    /// A version became active (an activation or a rollback).
    Activated(Activation),
}

impl PluginEvent {
    pub const ACTIVATED: &str = "plugin.activated";

    pub fn envelope(&self) -> Envelope {
        let Self::Activated(activation) = self;
        let data = serde_json::to_value(activation).expect("an activation serialises");
        let id = format!("{}@{}", activation.plugin_id, activation.version);
        Envelope::new(Self::ACTIVATED, "plugin", id, activation.at_ms, data)
    }

    /// Activations of one plugin keep their order.
    pub fn key(&self) -> &str {
        let Self::Activated(activation) = self;
        &activation.plugin_id
    }

    /// The plugin event in `envelope`; `None` when it is not one.
    pub fn read(envelope: &Envelope) -> anyhow::Result<Option<Self>> {
        if !envelope.kind.starts_with("plugin.") {
            return Ok(None);
        }
        anyhow::ensure!(
            envelope.kind == Self::ACTIVATED,
            "unknown plugin event {}",
            envelope.kind
        );
        Ok(Some(Self::Activated(serde_json::from_value(
            envelope.data.clone(),
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_travels_on_its_topic_and_reads_back() {
        let event = PluginEvent::Activated(Activation {
            seq: 3,
            plugin_id: "sandbox".into(),
            version: "0.2.0".into(),
            previous: Some("0.1.0".into()),
            action: "activate".into(),
            percent: None,
            merchant_id: None,
            actor: "ops".into(),
            reason: "new decline codes".into(),
            at_ms: 1,
        });
        let envelope = event.envelope();
        assert_eq!((envelope.topic().as_str(), event.key()), (TOPIC, "sandbox"));
        assert_eq!(PluginEvent::read(&envelope).unwrap(), Some(event));
        let mut other = envelope;
        other.kind = "plugin.erased".into();
        assert!(PluginEvent::read(&other).is_err());
    }
}
