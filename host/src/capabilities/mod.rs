//! Host imports: one module per capability, each implementing its generated `Host` trait
//! on [`crate::state::CallState`].

pub mod clock;
pub mod counters;
pub mod crypto;
pub mod http;
pub mod lists;
pub mod log;
pub mod secrets;

use std::sync::Arc;

use crate::bindings::imports::payloom::plugin::types;

impl types::Host for crate::state::CallState {}

/// Shared backends behind the capabilities; services swap in their own implementations.
pub struct HostServices {
    /// Outbound HTTP.
    pub http: Arc<dyn http::Outbound>,
    /// Velocity counters.
    pub counters: Arc<dyn counters::Counters>,
    /// Lists.
    pub lists: Arc<dyn lists::Lists>,
}

impl HostServices {
    /// In-memory counters and lists, and outbound HTTP through `http`.
    pub fn in_memory(http: Arc<dyn http::Outbound>) -> Self {
        Self {
            http,
            counters: Arc::new(counters::MemoryCounters::default()),
            lists: Arc::new(lists::MemoryLists::default()),
        }
    }
}
