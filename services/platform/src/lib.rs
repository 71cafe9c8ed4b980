//! Shared infrastructure for Payloom's services.
//!
//! Every service crate builds on the same pieces: layered [`config`], a [`db`] pool that is
//! SQLite or PostgreSQL behind one query layer, the [`server`] bootstrap, one API [`error`]
//! shape, prefixed sortable [`ids`], [`money`] in minor units, a [`clock`] tests can move,
//! [`seal`] for secrets at rest, a short-lived key [`cache`], the inter-service [`client`] and
//! [`events`]: the transactional outbox, its relay and idempotent consumers, and the
//! [`provenance`] of events that cross processes, and the [`registry`] of services that
//! `dev` and `serve` compose.

pub mod cache;
pub mod client;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod event_metrics;
pub mod events;
pub mod ids;
pub mod kafka;
pub mod money;
pub mod operation;
pub mod provenance;
pub mod registry;
pub mod seal;
pub mod server;
pub mod telemetry;
pub mod tls;

pub use clock::{Clock, ManualClock, SystemClock};
pub use db::Db;
pub use error::{ApiError, ApiJson, ApiResult};
