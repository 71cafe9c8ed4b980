//! Plugin versions an operator pushed, which one is active, and who moved it and why.
//!
//! A push goes through the plugin host's whole load pipeline before anything is stored,
//! so what the registry holds is what any node will accept. Component bytes are stored
//! once per SHA-256. An activation is one transaction: the statuses, the history row
//! and the `plugin.activated` event commit together. Nodes follow the active set
//! ([`follow`]).

mod builtin;
pub use builtin::BuiltIns;
pub mod folder;
pub mod follow;
mod routes;
pub mod service;
mod store;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use payloom_host::Registry;
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::events::{self, Outbox};
use payloom_platform::{ApiError, ApiResult, Db};
pub use payloom_plugin_registry_contract::*;

pub use routes::router;

pub const SERVICE: &str = "plugin-registry";

// The contract states the host's cap to callers that do not link the host.
const _: () = assert!(COMPONENT_BYTES_MAX == payloom_host::runtime::COMPONENT_BYTES_MAX);

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "plugin versions, blobs and activations",
    sql: include_str!("../migrations/0001_plugins.sql"),
}];

/// How recent a node's report must be for `plugin` to show it: nodes report every second.
const NODE_REPORT_FRESH_MS: i64 = 10_000;
/// Entries one node report may carry.
const NODE_REPORT_ENTRIES_MAX: usize = 1_000;

/// Longest activation reason and actor name kept in the history.
const TEXT_LEN_MAX: usize = 500;

/// The registry: its database, the plugin host that checks pushes, and its outbox.
pub struct PluginRegistry {
    db: Db,
    clock: SharedClock,
    outbox: Outbox,
    host: Arc<Registry>,
}

impl PluginRegistry {
    /// `host` checks pushes with this node's trust settings and limits.
    pub async fn new(db: Db, clock: SharedClock, host: Arc<Registry>) -> anyhow::Result<Arc<Self>> {
        db.migrate(SERVICE, MIGRATIONS).await?;
        events::install(&db).await?;
        Ok(Arc::new(Self {
            db,
            clock,
            outbox: Outbox::new(SERVICE),
            host,
        }))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Loads the component as a node would; any failure is the push's refusal.
    async fn check(&self, push: &PushIn, component: &[u8]) -> ApiResult<Arc<payloom_host::Plugin>> {
        let plugin = self
            .host
            .runtime()
            .load(component, &push.manifest, push.signature.as_deref())
            .await
            .map_err(|e| {
                ApiError::new(
                    422,
                    "invalid_request_error",
                    "plugin_refused",
                    format!("{e:#}"),
                )
            })?;
        let Some(serving) = self.host.get(plugin.id()) else {
            return Ok(plugin);
        };
        if serving.kind() != plugin.kind() {
            return Err(ApiError::new(
                422,
                "invalid_request_error",
                "plugin_refused",
                format!(
                    "`{}` is a {} plugin; this component is a {}",
                    plugin.id(),
                    serving.kind(),
                    plugin.kind()
                ),
            ));
        }
        if serving.version() == plugin.version()
            && serving.info().pair_digest != plugin.info().pair_digest
        {
            return Err(ApiError::conflict(
                "version_exists",
                format!(
                    "{}@{} already serves with other bytes; push the change as a new version",
                    plugin.id(),
                    plugin.version()
                ),
            ));
        }
        Ok(plugin)
    }
}

impl PluginRegistry {
    fn change<'a>(
        &self,
        plugin_id: &'a str,
        version: &'a str,
        action: &'a str,
        actor: &'a str,
        reason: &'a str,
    ) -> store::Change<'a> {
        store::Change {
            plugin_id,
            version,
            action,
            percent: None,
            merchant_id: None,
            actor,
            reason,
            at_ms: self.clock.now_ms(),
        }
    }

    /// Tells the relay and the log about a committed change.
    fn changed(&self, done: ApiResult<Activation>) -> ApiResult<Activation> {
        let activation = done?;
        self.outbox.wake();
        tracing::info!(
            plugin = %activation.plugin_id,
            version = %activation.version,
            action = %activation.action,
            by = %activation.actor,
            "plugin registry changed what serves"
        );
        Ok(activation)
    }
}

/// The component's bytes, or why they cannot be.
fn decode_component(push: &PushIn) -> ApiResult<Vec<u8>> {
    // Base64 holds 3 bytes in 4 characters: a longer text cannot decode under the cap.
    let too_large = || {
        ApiError::new(
            413,
            "invalid_request_error",
            "component_too_large",
            format!("a component may be at most {COMPONENT_BYTES_MAX} bytes"),
        )
    };
    if push.component_base64.len() / 4 * 3 > COMPONENT_BYTES_MAX + 3 {
        return Err(too_large());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(push.component_base64.trim())
        .map_err(|_| ApiError::invalid("component_base64", "is not standard, padded base64"))?;
    match bytes.len() {
        0 => Err(ApiError::invalid("component_base64", "is empty")),
        n if n > COMPONENT_BYTES_MAX => Err(too_large()),
        _ => Ok(bytes),
    }
}

fn bounded(param: &str, text: &str, required: bool) -> ApiResult<()> {
    if required && text.trim().is_empty() {
        return Err(ApiError::invalid(param, "is required"));
    }
    if text.len() > TEXT_LEN_MAX {
        return Err(ApiError::invalid(
            param,
            format!("is longer than {TEXT_LEN_MAX} bytes"),
        ));
    }
    Ok(())
}

/// `MAJOR.MINOR.PATCH` as numbers; the registry only stores versions the host parsed.
fn version_key(version: &str) -> (u64, u64, u64) {
    payloom_host::manifest::parse_version(version).unwrap_or_default()
}

#[async_trait]
impl PluginRegistryApi for PluginRegistry {
    async fn push(&self, push: PushIn) -> ApiResult<PluginVersion> {
        bounded("uploaded_by", &push.uploaded_by, false)?;
        let component = decode_component(&push)?;
        let plugin = self.check(&push, &component).await?;
        let info = plugin.info();
        if let Some(stored) = store::version(&self.db, plugin.id(), plugin.version()).await? {
            let same = stored.version.digest == info.digest && stored.manifest == push.manifest;
            return match same {
                true => Ok(stored.version),
                false => Err(ApiError::conflict(
                    "version_exists",
                    format!(
                        "{}@{} is already stored with other bytes; push the change as a new version",
                        plugin.id(),
                        plugin.version()
                    ),
                )),
            };
        }
        let version = PluginVersion {
            plugin_id: plugin.id().to_owned(),
            version: plugin.version().to_owned(),
            world: plugin.kind().world().to_owned(),
            digest: info.digest.clone(),
            publisher: info.publisher.to_string(),
            uploaded_by: push.uploaded_by.clone(),
            status: VersionStatus::Staged,
            canary_percent: None,
            size_bytes: component.len() as i64,
            created_at_ms: self.clock.now_ms(),
        };
        store::insert_version(&self.db, &version, &push).await?;
        tracing::info!(plugin = %version.plugin_id, version = %version.version, by = %version.uploaded_by, "plugin version staged");
        Ok(version)
    }

    async fn plugins(&self) -> ApiResult<Vec<PluginOut>> {
        let mut out = Vec::new();
        for id in store::plugin_ids(&self.db).await? {
            out.push(self.plugin(&id).await?);
        }
        Ok(out)
    }

    async fn plugin(&self, plugin_id: &str) -> ApiResult<PluginOut> {
        let mut plugin = store::plugin(&self.db, plugin_id)
            .await?
            .ok_or_else(|| ApiError::not_found("plugin", plugin_id))?;
        plugin.bindings = store::bindings(&self.db)
            .await?
            .remove(plugin_id)
            .unwrap_or_default();
        let since = self.clock.now_ms() - NODE_REPORT_FRESH_MS;
        plugin.nodes = store::reports(&self.db, since)
            .await?
            .into_iter()
            .map(|mut report| {
                report.versions.retain(|v| v.plugin_id == plugin_id);
                report.refused.retain(|r| r.plugin_id == plugin_id);
                report
            })
            .collect();
        Ok(plugin)
    }

    async fn report(&self, mut report: NodeReport) -> ApiResult<()> {
        bounded("node", &report.node, true)?;
        if report.versions.len() > NODE_REPORT_ENTRIES_MAX
            || report.refused.len() > NODE_REPORT_ENTRIES_MAX
        {
            return Err(ApiError::invalid(
                "versions",
                format!("at most {NODE_REPORT_ENTRIES_MAX} entries"),
            ));
        }
        report.at_ms = self.clock.now_ms();
        Ok(store::save_report(&self.db, &report).await?)
    }

    async fn activate(&self, plugin_id: &str, input: ActivateIn) -> ApiResult<Activation> {
        bounded("reason", &input.reason, true)?;
        bounded("actor", &input.actor, false)?;
        let action = match input.rollback {
            true => "rollback",
            false => "activate",
        };
        let change = self.change(
            plugin_id,
            &input.version,
            action,
            &input.actor,
            &input.reason,
        );
        let done = store::activate(&self.db, &self.outbox, change, input.rollback).await;
        self.changed(done)
    }

    async fn rollback(&self, plugin_id: &str, input: RollbackIn) -> ApiResult<Activation> {
        bounded("reason", &input.reason, true)?;
        bounded("actor", &input.actor, false)?;
        if let Some(canary) = store::canary(&self.db, plugin_id).await? {
            let change = self.change(
                plugin_id,
                &canary,
                "canary_rollback",
                &input.actor,
                &input.reason,
            );
            return self.changed(store::end_canary(&self.db, &self.outbox, change).await);
        }
        if let Some(shadow) = store::running(&self.db, plugin_id, "shadow").await? {
            let change = self.change(
                plugin_id,
                &shadow,
                "shadow_end",
                &input.actor,
                &input.reason,
            );
            let ended = store::end_running(&self.db, &self.outbox, change, "shadow").await;
            return self.changed(ended);
        }
        let plugin = self.plugin(plugin_id).await?;
        let previous = plugin
            .history
            .iter()
            .find(|a| matches!(a.action.as_str(), "activate" | "rollback" | "promote"))
            .and_then(|latest| latest.previous.clone())
            .ok_or_else(|| {
                ApiError::conflict(
                    "nothing_to_roll_back",
                    format!("`{plugin_id}` has no version active before the current one"),
                )
            })?;
        let change = self.change(
            plugin_id,
            &previous,
            "rollback",
            &input.actor,
            &input.reason,
        );
        self.changed(store::activate(&self.db, &self.outbox, change, true).await)
    }

    async fn canary(&self, plugin_id: &str, input: CanaryIn) -> ApiResult<Activation> {
        bounded("reason", &input.reason, true)?;
        bounded("actor", &input.actor, false)?;
        if !(1..=99).contains(&input.percent) {
            return Err(ApiError::invalid(
                "percent",
                "is 1 to 99: 100 is a promotion",
            ));
        }
        let mut change = self.change(
            plugin_id,
            &input.version,
            "canary",
            &input.actor,
            &input.reason,
        );
        change.percent = Some(input.percent);
        self.changed(store::start_canary(&self.db, &self.outbox, change).await)
    }

    async fn shadow(&self, plugin_id: &str, input: ShadowIn) -> ApiResult<Activation> {
        bounded("reason", &input.reason, true)?;
        bounded("actor", &input.actor, false)?;
        let change = self.change(
            plugin_id,
            &input.version,
            "shadow",
            &input.actor,
            &input.reason,
        );
        self.changed(store::start_shadow(&self.db, &self.outbox, change).await)
    }

    async fn bind(&self, plugin_id: &str, input: BindIn) -> ApiResult<Activation> {
        bounded("reason", &input.reason, true)?;
        bounded("actor", &input.actor, false)?;
        bounded("merchant_id", &input.merchant_id, true)?;
        let mut change = self.change(
            plugin_id,
            &input.version,
            "bind",
            &input.actor,
            &input.reason,
        );
        change.merchant_id = Some(&input.merchant_id);
        self.changed(store::bind(&self.db, &self.outbox, change, &input.merchant_id).await)
    }

    async fn unbind(&self, plugin_id: &str, input: UnbindIn) -> ApiResult<Activation> {
        bounded("reason", &input.reason, true)?;
        bounded("actor", &input.actor, false)?;
        bounded("merchant_id", &input.merchant_id, true)?;
        let mut change = self.change(plugin_id, "", "unbind", &input.actor, &input.reason);
        change.merchant_id = Some(&input.merchant_id);
        self.changed(store::unbind(&self.db, &self.outbox, change, &input.merchant_id).await)
    }

    async fn promote(&self, plugin_id: &str, input: RollbackIn) -> ApiResult<Activation> {
        bounded("reason", &input.reason, true)?;
        bounded("actor", &input.actor, false)?;
        let canary = store::canary(&self.db, plugin_id).await?.ok_or_else(|| {
            ApiError::conflict(
                "no_canary",
                format!("`{plugin_id}` has no canary to promote"),
            )
        })?;
        let change = self.change(plugin_id, &canary, "promote", &input.actor, &input.reason);
        self.changed(store::activate(&self.db, &self.outbox, change, false).await)
    }

    async fn active_set(&self) -> ApiResult<ActiveSet> {
        Ok(store::active_set(&self.db).await?)
    }

    async fn artifact(&self, plugin_id: &str, version: &str) -> ApiResult<Artifact> {
        store::artifact(&self.db, plugin_id, version)
            .await?
            .ok_or_else(|| ApiError::not_found("plugin version", &format!("{plugin_id}@{version}")))
    }
}
