//! Host bindings for the WIT package `payloom:plugin@0.1.0`, generated once here.
//!
//! The host imports are generated from the `host-imports` world and shared by the three
//! plugin worlds through `with`, so each capability implements one `Host` trait.

pub mod imports {
    wasmtime::component::bindgen!({
        world: "host-imports",
        path: "../wit",
        imports: {
            // Outbound HTTP and counters (Redis when shared) wait on I/O. A counter store
            // that cannot answer traps the call, so a rule never decides on a zero count.
            "payloom:plugin/http.send": async,
            "payloom:plugin/counters.get": async | trappable,
            "payloom:plugin/lists.contains": async,
        },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `channel-adapter` world.
pub mod channel {
    wasmtime::component::bindgen!({
        world: "channel-adapter",
        path: "../wit",
        exports: { default: async },
        with: {
            "payloom:plugin/types": crate::bindings::imports::payloom::plugin::types,
            "payloom:plugin/http": crate::bindings::imports::payloom::plugin::http,
            "payloom:plugin/crypto": crate::bindings::imports::payloom::plugin::crypto,
            "payloom:plugin/secrets": crate::bindings::imports::payloom::plugin::secrets,
            "payloom:plugin/log": crate::bindings::imports::payloom::plugin::log,
            "payloom:plugin/clock": crate::bindings::imports::payloom::plugin::clock,
        },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `risk-rule` world.
pub mod risk {
    wasmtime::component::bindgen!({
        world: "risk-rule",
        path: "../wit",
        exports: { default: async },
        with: {
            "payloom:plugin/types": crate::bindings::imports::payloom::plugin::types,
            "payloom:plugin/counters": crate::bindings::imports::payloom::plugin::counters,
            "payloom:plugin/lists": crate::bindings::imports::payloom::plugin::lists,
            "payloom:plugin/crypto": crate::bindings::imports::payloom::plugin::crypto,
            "payloom:plugin/log": crate::bindings::imports::payloom::plugin::log,
            "payloom:plugin/clock": crate::bindings::imports::payloom::plugin::clock,
        },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `merchant-policy` world.
pub mod policy {
    wasmtime::component::bindgen!({
        world: "merchant-policy",
        path: "../wit",
        exports: { default: async },
        with: {
            "payloom:plugin/types": crate::bindings::imports::payloom::plugin::types,
            "payloom:plugin/counters": crate::bindings::imports::payloom::plugin::counters,
            "payloom:plugin/lists": crate::bindings::imports::payloom::plugin::lists,
            "payloom:plugin/log": crate::bindings::imports::payloom::plugin::log,
            "payloom:plugin/clock": crate::bindings::imports::payloom::plugin::clock,
        },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `channel` interface's types (requests, outcomes, statements).
pub use channel::exports::payloom::plugin::channel as channel_types;
pub use imports::payloom::plugin::types;
/// The `policy` interface's types (context, decision).
pub use policy::exports::payloom::plugin::policy as policy_types;
/// The `rule` interface's types (context, verdict).
pub use risk::exports::payloom::plugin::rule as risk_types;
