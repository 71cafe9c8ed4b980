//! The Payloom plugin runtime.
//!
//! Components implement one of three WIT worlds (`channel-adapter`, `risk-rule`,
//! `merchant-policy`). The host verifies, compiles, type-checks and smoke-tests each
//! version ([`Runtime::load`]), serves the active version per id behind an atomic
//! pointer ([`Registry`]), and runs every call on a fresh instance under memory, time
//! and byte caps ([`Runtime::call`]). Plugins reach the world only through the host
//! imports in [`capabilities`]; WASI is served from an empty, locked-down context.

pub mod bindings;
pub mod cache;
pub mod capabilities;
pub mod config;
pub mod facts;
pub mod manifest;
pub mod metrics;
pub mod plugin;
pub mod policy;
pub mod registry;
pub mod runtime;
pub mod sandbox;
pub mod shadow;
pub mod signing;
pub mod state;
pub mod watch;

pub use config::HostConfig;
pub use manifest::{Manifest, PluginKind};
pub use plugin::{Call, ChannelCall, Plugin, PolicyCall, Publisher, Reply, RiskCall};
pub use registry::{CallFailure, Installed, Registry};
pub use runtime::{CallError, CallReport, Runtime};
pub use state::CallContext;
