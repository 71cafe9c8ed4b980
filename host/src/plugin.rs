//! A loaded, validated plugin version and the calls it answers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bindings::channel::ChannelAdapterPre;
use crate::bindings::policy::MerchantPolicyPre;
use crate::bindings::risk::RiskRulePre;
use crate::bindings::{channel_types as ch, policy_types as po, risk_types as ri, types};
use crate::capabilities::http::AllowedHost;
use crate::manifest::{Manifest, PluginKind};
use crate::policy::CircuitBreaker;
use crate::state::CallState;

/// What the host keeps about a plugin version besides its code.
#[derive(Debug)]
pub struct PluginInfo {
    /// The manifest it was loaded with.
    pub manifest: Manifest,
    /// Hex SHA-256 of the component bytes.
    pub digest: String,
    /// Parsed `allowed_hosts`.
    pub(crate) allowed_hosts: Vec<AllowedHost>,
    /// Fixed clock and seeded randomness (risk rules).
    pub(crate) deterministic: bool,
    /// Whether the component imports any WASI interface.
    pub uses_wasi: bool,
    /// Component size in bytes.
    pub size_bytes: usize,
    /// Who vouches for it.
    pub publisher: Publisher,
    /// [`crate::signing::pair_digest`] of the component and its manifest text: two loads
    /// are the same build exactly when these agree.
    pub pair_digest: [u8; 32],
}

/// Who vouches for a loaded version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publisher {
    /// A trusted publisher's ed25519 signature; the key, hex.
    Signed(String),
    /// Carried by this binary.
    BuiltIn,
    /// Nobody: loaded because unsigned plugins are allowed (development).
    Unsigned,
}

impl std::fmt::Display for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signed(key) => write!(f, "ed25519:{key}"),
            Self::BuiltIn => f.write_str("built-in"),
            Self::Unsigned => f.write_str("unsigned"),
        }
    }
}

impl serde::Serialize for Publisher {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl PluginInfo {
    pub(crate) fn new(
        manifest: Manifest,
        component: &[u8],
        uses_wasi: bool,
        publisher: Publisher,
        pair_digest: [u8; 32],
    ) -> anyhow::Result<Self> {
        let allowed_hosts = manifest
            .capabilities
            .allowed_hosts
            .iter()
            .map(|h| AllowedHost::parse(h))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            deterministic: manifest.world == PluginKind::Risk,
            digest: hex::encode(Sha256::digest(component)),
            manifest,
            allowed_hosts,
            uses_wasi,
            size_bytes: component.len(),
            publisher,
            pair_digest,
        })
    }

    /// Seed for a deterministic call: the same version at the same instant gets the same bytes.
    pub(crate) fn seed(&self, now_ms: i64) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.digest.as_bytes());
        hasher.update(now_ms.to_le_bytes());
        hasher.finalize().into()
    }
}

/// The type-checked, pre-linked component for one world.
pub(crate) enum WorldPre {
    Channel(ChannelAdapterPre<CallState>),
    Risk(RiskRulePre<CallState>),
    Policy(MerchantPolicyPre<CallState>),
}

/// One immutable plugin version, ready to call. Shared by `Arc`; in-flight calls keep
/// the version they started on alive until they finish.
pub struct Plugin {
    pub(crate) info: Arc<PluginInfo>,
    pub(crate) pre: WorldPre,
    pub(crate) breaker: CircuitBreaker,
    /// PSP notifications arrive unauthenticated until the plugin verifies them, so their
    /// failures trip a breaker of their own and never the one payments go through.
    pub(crate) notify_breaker: CircuitBreaker,
    pub(crate) series: crate::metrics::PluginSeries,
}

impl Plugin {
    /// The manifest id.
    pub fn id(&self) -> &str {
        &self.info.manifest.id
    }
    /// The manifest version.
    pub fn version(&self) -> &str {
        &self.info.manifest.version
    }
    /// The world it implements.
    pub fn kind(&self) -> PluginKind {
        self.info.manifest.world
    }
    /// Everything the host knows about it.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plugin({}@{})", self.id(), self.version())
    }
}

/// A call to a channel adapter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", content = "input", rename_all = "kebab-case")]
// Moved once per call; boxing the big variants would add an allocation instead.
#[allow(clippy::large_enum_variant)]
pub enum ChannelCall {
    /// `describe`
    Describe,
    /// `create-payment`
    CreatePayment(ch::CreateRequest),
    /// `query-payment`
    QueryPayment(ch::PaymentRef),
    /// `capture`
    Capture(ch::PaymentRef),
    /// `cancel`
    Cancel(ch::PaymentRef),
    /// `refund`
    Refund(ch::RefundRequest),
    /// `query-refund`
    QueryRefund(ch::RefundRef),
    /// `handle-notification`
    HandleNotification(ch::Notification),
    /// `parse-statement`
    ParseStatement(Vec<u8>),
}

impl ChannelCall {
    /// The WIT name of the operation, as metrics and logs label it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Describe => "describe",
            Self::CreatePayment(_) => "create-payment",
            Self::QueryPayment(_) => "query-payment",
            Self::Capture(_) => "capture",
            Self::Cancel(_) => "cancel",
            Self::Refund(_) => "refund",
            Self::QueryRefund(_) => "query-refund",
            Self::HandleNotification(_) => "handle-notification",
            Self::ParseStatement(_) => "parse-statement",
        }
    }
}

/// A call to a risk rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", content = "input", rename_all = "kebab-case")]
// Moved once per call; boxing the big variants would add an allocation instead.
#[allow(clippy::large_enum_variant)]
pub enum RiskCall {
    /// `describe`
    Describe,
    /// `evaluate`
    Evaluate {
        /// What to evaluate.
        ctx: ri::Context,
        /// The rule's configuration.
        config: Vec<types::KeyValue>,
    },
}

/// A call to a merchant policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", content = "input", rename_all = "kebab-case")]
// Moved once per call; boxing the big variants would add an allocation instead.
#[allow(clippy::large_enum_variant)]
pub enum PolicyCall {
    /// `describe`
    Describe,
    /// `decide`
    Decide(po::Context),
}

/// Any plugin call.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Call {
    /// To a channel adapter.
    Channel(ChannelCall),
    /// To a risk rule.
    Risk(RiskCall),
    /// To a merchant policy.
    Policy(PolicyCall),
}

impl Call {
    /// The world this call needs.
    pub fn kind(&self) -> PluginKind {
        match self {
            Self::Channel(_) => PluginKind::Channel,
            Self::Risk(_) => PluginKind::Risk,
            Self::Policy(_) => PluginKind::Policy,
        }
    }

    /// Whether this hands the plugin a PSP notification (see [`Plugin`]'s breakers).
    pub fn is_notification(&self) -> bool {
        matches!(self, Self::Channel(ChannelCall::HandleNotification(_)))
    }

    /// `describe` for a world.
    pub fn describe(kind: PluginKind) -> Self {
        match kind {
            PluginKind::Channel => Self::Channel(ChannelCall::Describe),
            PluginKind::Risk => Self::Risk(RiskCall::Describe),
            PluginKind::Policy => Self::Policy(PolicyCall::Describe),
        }
    }

    /// Parses a fixture `{"call": "...", "input": ...}` for a world.
    pub fn from_json(kind: PluginKind, value: serde_json::Value) -> anyhow::Result<Self> {
        Ok(match kind {
            PluginKind::Channel => Self::Channel(serde_json::from_value(value)?),
            PluginKind::Risk => Self::Risk(serde_json::from_value(value)?),
            PluginKind::Policy => Self::Policy(serde_json::from_value(value)?),
        })
    }
}

/// What a plugin answered. Errors the plugin chose to return (a decline, a bad
/// configuration) are answers, not call failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// `channel.describe`
    ChannelDescriptor(ch::Descriptor),
    /// Payment operations.
    Payment(Result<ch::PaymentResponse, ch::ChannelError>),
    /// Refund operations.
    Refund(Result<ch::RefundResponse, ch::ChannelError>),
    /// `handle-notification`
    Notification(Result<ch::NotificationResponse, ch::ChannelError>),
    /// `parse-statement`
    Statement(Result<Vec<ch::StatementLine>, ch::ChannelError>),
    /// `rule.describe`
    RiskDescriptor(ri::Descriptor),
    /// `evaluate`
    Verdict(Result<ri::Verdict, String>),
    /// `policy.describe`
    PolicyDescriptor(po::Descriptor),
    /// `decide`
    Decision(Result<po::Decision, String>),
}

/// Runs `call` on a fresh instance. The store is dropped by the caller afterwards.
pub(crate) async fn dispatch(
    pre: &WorldPre,
    store: &mut wasmtime::Store<CallState>,
    call: Call,
) -> wasmtime::Result<Reply> {
    match (pre, call) {
        (WorldPre::Channel(pre), Call::Channel(call)) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let channel = instance.payloom_plugin_channel();
            Ok(match call {
                ChannelCall::Describe => {
                    Reply::ChannelDescriptor(channel.call_describe(&mut *store).await?)
                }
                ChannelCall::CreatePayment(req) => {
                    Reply::Payment(channel.call_create_payment(&mut *store, &req).await?)
                }
                ChannelCall::QueryPayment(req) => {
                    Reply::Payment(channel.call_query_payment(&mut *store, &req).await?)
                }
                ChannelCall::Capture(req) => {
                    Reply::Payment(channel.call_capture(&mut *store, &req).await?)
                }
                ChannelCall::Cancel(req) => {
                    Reply::Payment(channel.call_cancel(&mut *store, &req).await?)
                }
                ChannelCall::Refund(req) => {
                    Reply::Refund(channel.call_refund(&mut *store, &req).await?)
                }
                ChannelCall::QueryRefund(req) => {
                    Reply::Refund(channel.call_query_refund(&mut *store, &req).await?)
                }
                ChannelCall::HandleNotification(req) => {
                    Reply::Notification(channel.call_handle_notification(&mut *store, &req).await?)
                }
                ChannelCall::ParseStatement(content) => {
                    Reply::Statement(channel.call_parse_statement(&mut *store, &content).await?)
                }
            })
        }
        (WorldPre::Risk(pre), Call::Risk(call)) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let rule = instance.payloom_plugin_rule();
            Ok(match call {
                RiskCall::Describe => Reply::RiskDescriptor(rule.call_describe(&mut *store).await?),
                RiskCall::Evaluate { ctx, config } => {
                    Reply::Verdict(rule.call_evaluate(&mut *store, &ctx, &config).await?)
                }
            })
        }
        (WorldPre::Policy(pre), Call::Policy(call)) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let policy = instance.payloom_plugin_policy();
            Ok(match call {
                PolicyCall::Describe => {
                    Reply::PolicyDescriptor(policy.call_describe(&mut *store).await?)
                }
                PolicyCall::Decide(ctx) => {
                    Reply::Decision(policy.call_decide(&mut *store, &ctx).await?)
                }
            })
        }
        (_, call) => wasmtime::bail!("a {} call cannot go to this plugin", call.kind()),
    }
}
