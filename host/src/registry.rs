//! Active plugin versions by id, swapped atomically, with rollback, failure policy and
//! circuit breaker.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::bindings::risk_types::{Action, Verdict};
use crate::manifest::PluginKind;
use crate::metrics::ErrorKind;
use crate::plugin::{Call, Plugin, Reply};
use crate::policy::FailurePolicy;
use crate::runtime::{CallError, CallReport, Runtime};
use crate::shadow::{Recording, Replay, ShadowStats, ShadowSummary};
use crate::state::CallContext;

/// One plugin id: the version serving now, the one before it, and a candidate taking a
/// share of calls.
struct Slot {
    active: ArcSwap<Plugin>,
    previous: ArcSwapOption<Plugin>,
    canary: ArcSwapOption<Canary>,
    shadow: ArcSwapOption<Shadow>,
    /// Versions bound to merchants: a merchant's calls reach its version, whatever is
    /// active or in canary.
    pins: ArcSwap<HashMap<String, Arc<Plugin>>>,
}

/// A channel candidate running beside the active version, never reaching the PSP.
struct Shadow {
    plugin: Arc<Plugin>,
    stats: Arc<ShadowStats>,
}

/// A candidate version taking `percent` of calls, chosen by routing key.
pub struct Canary {
    pub plugin: Arc<Plugin>,
    pub percent: u8,
}

/// Whether a call keyed by `key` goes to a canary taking `percent` of calls. Each key has
/// a fixed bucket in 0..100 (from its SHA-256), so every call about one payment reaches
/// the same version, and raising the share only moves keys toward the canary.
pub fn in_canary(key: &str, percent: u8) -> bool {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let bucket = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % 100;
    bucket < u64::from(percent)
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Plugin id.
    pub id: String,
    /// The version now serving.
    pub version: String,
    /// The version it replaced, if any.
    pub replaced: Option<String>,
}

/// A summary row for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// Plugin id.
    pub id: String,
    /// World.
    pub kind: PluginKind,
    /// Serving version.
    pub version: String,
    /// Component digest (hex SHA-256).
    pub digest: String,
    /// Version kept for rollback.
    pub previous: Option<String>,
    /// Who vouches for the serving version.
    pub publisher: crate::plugin::Publisher,
    /// A canary's version and the percentage of calls it takes.
    pub canary: Option<(String, u8)>,
    /// Whether the breaker is refusing calls.
    pub breaker_open: bool,
    /// Whether the breaker of PSP notifications is refusing them.
    pub notify_breaker_open: bool,
}

/// What one serving version did on this node, for `plugin status`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct VersionStats {
    pub plugin: String,
    pub version: String,
    pub digest: String,
    /// The share of calls it takes as a canary; `None` for the active version.
    pub canary_percent: Option<u8>,
    pub calls: u64,
    /// Failed calls by kind (`trap`, `timeout`, `memory`, `denied`, `refused`).
    pub errors: std::collections::BTreeMap<String, u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Why a call through the registry failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallFailure {
    /// No plugin with this id, or of another kind.
    #[error("no {kind} plugin `{id}` is loaded")]
    NotFound {
        /// Requested id.
        id: String,
        /// Requested kind.
        kind: PluginKind,
    },
    /// The call failed and the kind's policy is to fail closed.
    #[error("plugin `{id}` failed closed: {error}")]
    Closed {
        /// Plugin id.
        id: String,
        /// The failure.
        error: CallError,
    },
    /// The call failed and the kind's policy is to fail open: callers skip this plugin.
    #[error("plugin `{id}` failed open: {error}")]
    Open {
        /// Plugin id.
        id: String,
        /// The failure.
        error: CallError,
    },
}

/// Which way an activation may move a plugin's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Back,
}

/// Whether `new` may replace the serving `current` (same id, other bytes).
fn may_replace(current: &Plugin, new: &Plugin, direction: Direction) -> anyhow::Result<()> {
    let id = new.id();
    anyhow::ensure!(
        current.kind() == new.kind(),
        "`{id}` is a {} plugin; a {} component cannot replace it",
        current.kind(),
        new.kind()
    );
    if direction == Direction::Back {
        return Ok(());
    }
    let (serving, offered) = (
        current.info().manifest.version_key(),
        new.info().manifest.version_key(),
    );
    anyhow::ensure!(
        offered != serving,
        "`{id}` {} already serves other bytes; publish the change as a new version",
        new.version()
    );
    anyhow::ensure!(
        offered > serving,
        "`{id}` {} is older than the serving {}: a downgrade needs an explicit rollback",
        new.version(),
        current.version()
    );
    Ok(())
}

/// Makes `plugin` its slot's active version and keeps the one it replaces as previous.
fn swap(slot: &Slot, plugin: Arc<Plugin>) -> Installed {
    let (id, version) = (plugin.id().to_owned(), plugin.version().to_owned());
    // A canary that becomes the active version has been promoted.
    let promoted = slot
        .canary
        .load()
        .as_ref()
        .is_some_and(|c| c.plugin.info().pair_digest == plugin.info().pair_digest);
    if promoted && let Some(canary) = slot.canary.swap(None) {
        canary.plugin.series.canary_percent.set(0);
    }
    plugin.series.serving.set(1);
    let old = slot.active.swap(plugin);
    if old.version() != version {
        old.series.serving.set(0);
    }
    let replaced = Some(old.version().to_owned());
    slot.previous.store(Some(old));
    Installed {
        id,
        version,
        replaced,
    }
}

/// The plugin a call reaches, its context, and the shadow run beside it, if any.
type Resolved = (
    Arc<Plugin>,
    CallContext,
    Option<(Arc<Shadow>, Arc<Recording>)>,
);

/// The merchant's bound version, else the canary for its share of routing keys, else the
/// active version.
fn pick(slot: &Slot, merchant: Option<&str>, routing_key: Option<&str>) -> Arc<Plugin> {
    if let Some(pinned) = merchant.and_then(|m| slot.pins.load().get(m).cloned()) {
        return pinned;
    }
    if let (Some(key), Some(canary)) = (routing_key, slot.canary.load_full())
        && in_canary(key, canary.percent)
    {
        return canary.plugin.clone();
    }
    slot.active.load_full()
}

/// A call's answer as compared between a live version and its shadow.
fn reply_text(result: &Result<CallReport, CallError>) -> String {
    match result {
        Ok(report) => serde_json::to_string(&report.reply).unwrap_or_default(),
        Err(error) => format!("failure ({:?})", error.kind),
    }
}

/// Active plugins by id.
pub struct Registry {
    runtime: Arc<Runtime>,
    slots: RwLock<HashMap<String, Arc<Slot>>>,
}

impl Registry {
    /// An empty registry on `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            slots: RwLock::default(),
        })
    }

    /// The runtime underneath.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads, validates and smoke-tests a component, then makes it the active version of
    /// its id. Any failure leaves the serving version untouched.
    pub async fn install(
        &self,
        component: &[u8],
        manifest: &str,
        signature: Option<&str>,
    ) -> anyhow::Result<Installed> {
        let plugin = self.runtime.load(component, manifest, signature).await?;
        self.activate(plugin)
    }

    /// Makes a loaded plugin the active version of its id; the old one is kept for
    /// rollback and drains as its in-flight calls finish. Only a newer version replaces
    /// the serving one: an older one needs [`Registry::roll_back_to`], and the same
    /// version with other bytes is refused (a version names one build).
    pub fn activate(&self, plugin: Arc<Plugin>) -> anyhow::Result<Installed> {
        self.put(plugin, Direction::Forward)
    }

    /// Makes `plugin` active whatever its version: the explicit rollback to an older
    /// build.
    pub fn roll_back_to(&self, plugin: Arc<Plugin>) -> anyhow::Result<Installed> {
        self.put(plugin, Direction::Back)
    }

    fn put(&self, plugin: Arc<Plugin>, direction: Direction) -> anyhow::Result<Installed> {
        let id = plugin.id().to_owned();
        let version = plugin.version().to_owned();
        let mut slots = self.slots.write().expect("registry lock");
        let Some(slot) = slots.get(&id) else {
            plugin.series.serving.set(1);
            slots.insert(
                id.clone(),
                Arc::new(Slot {
                    active: ArcSwap::new(plugin),
                    previous: ArcSwapOption::empty(),
                    canary: ArcSwapOption::empty(),
                    shadow: ArcSwapOption::empty(),
                    pins: ArcSwap::default(),
                }),
            );
            return Ok(Installed {
                id,
                version,
                replaced: None,
            });
        };
        let current = slot.active.load_full();
        if current.info().pair_digest == plugin.info().pair_digest {
            return Ok(Installed {
                id,
                version,
                replaced: None,
            });
        }
        may_replace(&current, &plugin, direction)?;
        Ok(swap(slot, plugin))
    }

    /// Puts the previous version back; the rolled-back one becomes the previous.
    pub fn rollback(&self, id: &str) -> anyhow::Result<Installed> {
        let slot = self
            .slot(id)
            .ok_or_else(|| anyhow::anyhow!("no plugin `{id}`"))?;
        let previous = slot
            .previous
            .load_full()
            .ok_or_else(|| anyhow::anyhow!("`{id}` has no previous version"))?;
        Ok(swap(&slot, previous))
    }

    /// Sends `percent` (1..=99) of the calls of `plugin`'s id to it, chosen by routing
    /// key, beside the active version; replaces any canary before it.
    pub fn set_canary(&self, plugin: Arc<Plugin>, percent: u8) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=99).contains(&percent),
            "a canary takes 1 to 99 percent of calls"
        );
        let id = plugin.id();
        let slot = self.slot(id).ok_or_else(|| {
            anyhow::anyhow!("`{id}` has no active version to run a canary beside")
        })?;
        let active = slot.active.load_full();
        anyhow::ensure!(
            active.kind() == plugin.kind(),
            "`{id}` is a {} plugin; a {} component cannot be its canary",
            active.kind(),
            plugin.kind()
        );
        anyhow::ensure!(
            active.info().pair_digest != plugin.info().pair_digest,
            "`{id}` {} is the active version already",
            plugin.version()
        );
        plugin.series.canary_percent.set(i64::from(percent));
        let canary = Arc::new(Canary { plugin, percent });
        if let Some(old) = slot.canary.swap(Some(canary.clone()))
            && old.plugin.version() != canary.plugin.version()
        {
            old.plugin.series.canary_percent.set(0);
        }
        Ok(())
    }

    /// Ends `id`'s canary, if it has one: every call goes to the active version again.
    pub fn clear_canary(&self, id: &str) {
        if let Some(slot) = self.slot(id)
            && let Some(old) = slot.canary.swap(None)
        {
            old.plugin.series.canary_percent.set(0);
        }
    }

    /// `id`'s canary and its share, if one runs.
    pub fn canary(&self, id: &str) -> Option<(Arc<Plugin>, u8)> {
        let canary = self.slot(id)?.canary.load_full()?;
        Some((canary.plugin.clone(), canary.percent))
    }

    /// Runs `plugin` (a channel) beside `plugin`'s id's active version on every call, off
    /// the request path, answered from the live call's recorded HTTP; replaces any
    /// shadow before it.
    pub fn set_shadow(&self, plugin: Arc<Plugin>) -> anyhow::Result<()> {
        let id = plugin.id();
        anyhow::ensure!(
            plugin.kind() == PluginKind::Channel,
            "only channel components run in shadow"
        );
        let slot = self
            .slot(id)
            .ok_or_else(|| anyhow::anyhow!("`{id}` has no active version to shadow"))?;
        anyhow::ensure!(
            slot.active.load().kind() == plugin.kind(),
            "`{id}` is not a channel"
        );
        let same = slot
            .shadow
            .load()
            .as_ref()
            .is_some_and(|s| s.plugin.info().pair_digest == plugin.info().pair_digest);
        if !same {
            let stats = Arc::default();
            slot.shadow.store(Some(Arc::new(Shadow { plugin, stats })));
        }
        Ok(())
    }

    /// Ends `id`'s shadow run, if one runs.
    pub fn clear_shadow(&self, id: &str) {
        if let Some(slot) = self.slot(id) {
            slot.shadow.store(None);
        }
    }

    /// `id`'s shadow candidate, if one runs.
    pub fn shadow(&self, id: &str) -> Option<Arc<Plugin>> {
        Some(self.slot(id)?.shadow.load_full()?.plugin.clone())
    }

    /// What every shadow candidate did here, by plugin.
    pub fn shadow_summaries(&self) -> Vec<ShadowSummary> {
        let slots = self.slots.read().expect("registry lock");
        let mut out: Vec<ShadowSummary> = slots
            .values()
            .filter_map(|slot| slot.shadow.load_full())
            .map(|s| s.stats.summary(s.plugin.id(), s.plugin.version()))
            .collect();
        out.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        out
    }

    /// Runs `call` on `shadow` with the live call's recorded HTTP, off the request path,
    /// and counts where it differs.
    fn spawn_shadow(
        &self,
        shadow: Arc<Shadow>,
        recording: Arc<Recording>,
        ctx: CallContext,
        call: Call,
        live: &str,
    ) {
        let runtime = self.runtime.clone();
        let live = live.to_owned();
        tokio::spawn(async move {
            let exchanges = recording.exchanges();
            let live_requests: Vec<_> = exchanges.iter().map(|(r, _)| r.clone()).collect();
            let replay = Replay::new(exchanges);
            let result = runtime
                .call(
                    &shadow.plugin,
                    ctx.with_outbound(replay.clone()),
                    call.clone(),
                )
                .await;
            let found = crate::shadow::differences(
                &live_requests,
                &replay.asked(),
                &live,
                &reply_text(&result),
            );
            let name = match &call {
                Call::Channel(c) => c.name(),
                _ => "call",
            };
            shadow.stats.record(name, found);
        });
    }

    /// The version `call` reaches (one lookup of `id`), and, when a channel shadow runs,
    /// the context that records the live call's HTTP for it. `describe` names each
    /// version's own identity, so it is not shadowed.
    fn resolve(&self, id: &str, ctx: CallContext, call: &Call) -> Option<Resolved> {
        let slot = self.slot(id)?;
        let plugin = pick(
            &slot,
            ctx.merchant_id.as_deref(),
            ctx.routing_key.as_deref(),
        );
        let shadow = match call {
            Call::Channel(c) if !matches!(c, crate::plugin::ChannelCall::Describe) => {
                slot.shadow.load_full()
            }
            _ => None,
        };
        let Some(shadow) = shadow else {
            return Some((plugin, ctx, None));
        };
        let inner = ctx
            .outbound
            .clone()
            .unwrap_or_else(|| self.runtime.services().http.clone());
        let recording = Recording::new(inner);
        let ctx = ctx.with_outbound(recording.clone());
        Some((plugin, ctx, Some((shadow, recording))))
    }

    /// The version a call keyed by `routing_key` reaches: the canary for its share of
    /// keys, the active version otherwise.
    pub fn get_for(
        &self,
        id: &str,
        merchant: Option<&str>,
        routing_key: Option<&str>,
    ) -> Option<Arc<Plugin>> {
        let slot = self.slot(id)?;
        Some(pick(&slot, merchant, routing_key))
    }

    /// Binds merchants to versions of `id` (replacing every binding before): each
    /// merchant's calls reach its version.
    pub fn set_pins(&self, id: &str, pins: HashMap<String, Arc<Plugin>>) -> anyhow::Result<()> {
        let slot = self
            .slot(id)
            .ok_or_else(|| anyhow::anyhow!("`{id}` has no active version"))?;
        let kind = slot.active.load().kind();
        anyhow::ensure!(
            pins.values().all(|p| p.id() == id && p.kind() == kind),
            "a binding of `{id}` must be a {kind} component with that id"
        );
        slot.pins.store(Arc::new(pins));
        Ok(())
    }

    /// The versions of `id` bound to merchants.
    pub fn pins(&self, id: &str) -> HashMap<String, Arc<Plugin>> {
        self.slot(id)
            .map(|slot| (**slot.pins.load()).clone())
            .unwrap_or_default()
    }

    fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.slots.read().expect("registry lock").get(id).cloned()
    }

    /// The active version of `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Plugin>> {
        self.slot(id).map(|slot| slot.active.load_full())
    }

    /// Every plugin, sorted by id.
    pub fn list(&self) -> Vec<PluginStatus> {
        let slots = self.slots.read().expect("registry lock");
        let now = Instant::now();
        let mut rows: Vec<PluginStatus> = slots
            .iter()
            .map(|(id, slot)| {
                let active = slot.active.load();
                PluginStatus {
                    id: id.clone(),
                    kind: active.kind(),
                    version: active.version().to_owned(),
                    digest: active.info().digest.clone(),
                    publisher: active.info().publisher.clone(),
                    canary: slot
                        .canary
                        .load()
                        .as_ref()
                        .map(|c| (c.plugin.version().to_owned(), c.percent)),
                    previous: slot
                        .previous
                        .load()
                        .as_ref()
                        .map(|p| p.version().to_owned()),
                    breaker_open: active.breaker.is_open(now),
                    notify_breaker_open: active.notify_breaker.is_open(now),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }

    /// What each active and canary version did here, sorted by plugin.
    pub fn stats(&self) -> Vec<VersionStats> {
        let slots: Vec<(String, Arc<Slot>)> = {
            let slots = self.slots.read().expect("registry lock");
            slots
                .iter()
                .map(|(id, slot)| (id.clone(), slot.clone()))
                .collect()
        };
        let mut out = Vec::new();
        for (_, slot) in slots {
            out.push(self.stats_of(&slot.active.load_full(), None));
            if let Some(canary) = slot.canary.load_full() {
                out.push(self.stats_of(&canary.plugin, Some(canary.percent)));
            }
        }
        out.sort_by(|a, b| (&a.plugin, a.canary_percent).cmp(&(&b.plugin, b.canary_percent)));
        out
    }

    fn stats_of(&self, plugin: &Plugin, canary_percent: Option<u8>) -> VersionStats {
        let errors = self
            .runtime
            .metrics()
            .errors_of(plugin.id(), plugin.version());
        VersionStats {
            plugin: plugin.id().to_owned(),
            version: plugin.version().to_owned(),
            digest: plugin.info().digest.clone(),
            canary_percent,
            calls: plugin.series.calls.get(),
            errors: errors.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            p50_ms: plugin.series.sketch.quantile_ms(0.5),
            p99_ms: plugin.series.sketch.quantile_ms(0.99),
        }
    }

    /// Calls the active version of `id`, through its circuit breaker and the kind's
    /// failure policy. The call runs to completion on the version it started on.
    pub async fn call(
        &self,
        id: &str,
        ctx: CallContext,
        call: Call,
    ) -> Result<CallReport, CallFailure> {
        self.call_inner(id, ctx, call, true).await
    }

    /// Runs the call if its breaker admits it; PSP notifications have a breaker of their
    /// own. Only the plugin's own failures count against a breaker.
    async fn through_breaker(
        &self,
        plugin: &Plugin,
        ctx: &CallContext,
        call: &Call,
    ) -> Result<CallReport, CallError> {
        let breaker = match call.is_notification() {
            true => &plugin.notify_breaker,
            false => &plugin.breaker,
        };
        let Some(admission) = breaker.admit(Instant::now()) else {
            return Err(CallError::refused("circuit breaker is open"));
        };
        let result = self.runtime.call(plugin, ctx.clone(), call.clone()).await;
        // A refusal by the host says nothing about the plugin: the admission just ends.
        if !matches!(&result, Err(e) if e.kind == ErrorKind::Refused) {
            admission.record(result.is_ok(), Instant::now());
        }
        result
    }

    async fn call_inner(
        &self,
        id: &str,
        ctx: CallContext,
        call: Call,
        may_fall_back: bool,
    ) -> Result<CallReport, CallFailure> {
        let kind = call.kind();
        let not_found = || CallFailure::NotFound {
            id: id.to_owned(),
            kind,
        };
        let (plugin, ctx, shadow) = self.resolve(id, ctx, &call).ok_or_else(not_found)?;
        if plugin.kind() != kind {
            return Err(not_found());
        }
        let result = self.through_breaker(&plugin, &ctx, &call).await;
        if let Some((shadow, recording)) = shadow {
            let live = reply_text(&result);
            self.spawn_shadow(shadow, recording, ctx.clone(), call.clone(), &live);
        }
        let error = match result {
            Ok(report) => return Ok(report),
            Err(error) => error,
        };
        tracing::warn!(
            plugin = id,
            version = plugin.version(),
            "plugin call failed: {error}"
        );
        match &self.runtime.config().kind(kind).failure {
            FailurePolicy::FailClosed => Err(CallFailure::Closed {
                id: id.to_owned(),
                error,
            }),
            FailurePolicy::FailOpen => Err(CallFailure::Open {
                id: id.to_owned(),
                error,
            }),
            FailurePolicy::Fallback(other) if may_fall_back && other != id => {
                match Box::pin(self.call_inner(other, ctx, call, false)).await {
                    Ok(report) => Ok(report),
                    // A fallback that cannot answer leaves the original failure standing,
                    // closed; when the fallback ran, its failure's kind is what happened.
                    Err(fallback) => {
                        let message = format!("{}; fallback: {fallback}", error.message);
                        let kind = match &fallback {
                            CallFailure::Closed { error, .. } | CallFailure::Open { error, .. } => {
                                error.kind
                            }
                            CallFailure::NotFound { .. } => error.kind,
                        };
                        Err(CallFailure::Closed {
                            id: id.to_owned(),
                            error: CallError { kind, message },
                        })
                    }
                }
            }
            FailurePolicy::Fallback(_) => Err(CallFailure::Closed {
                id: id.to_owned(),
                error,
            }),
        }
    }
}

impl CallFailure {
    /// Whether the host declined to run the call at all (see [`ErrorKind::Refused`]):
    /// the plugin, and whatever it would have called, was never reached.
    pub fn was_refused(&self) -> bool {
        match self {
            Self::Closed { error, .. } | Self::Open { error, .. } => {
                error.kind == ErrorKind::Refused
            }
            Self::NotFound { .. } => true,
        }
    }

    /// The verdict a risk rule's failure stands for: failing closed blocks the payment,
    /// failing open gives no opinion. `None` for a missing rule.
    pub fn risk_verdict(&self) -> Option<Verdict> {
        let (action, id, error) = match self {
            Self::Closed { id, error } => (Action::Block, id, error),
            Self::Open { id, error } => (Action::None, id, error),
            Self::NotFound { .. } => return None,
        };
        Some(Verdict {
            action,
            score: 0,
            reasons: vec![format!("rule `{id}` failed: {}", error.message)],
        })
    }
}

impl CallReport {
    /// The verdict, when this was an `evaluate` that succeeded.
    pub fn verdict(&self) -> Option<&Verdict> {
        match &self.reply {
            Reply::Verdict(Ok(v)) => Some(v),
            _ => None,
        }
    }
}
