//! The Payloom plugin SDK (guest side).
//!
//! A plugin is one small `lib.rs`: implement the world's `Guest` trait and export it.
//!
//! ```ignore
//! use payloom_sdk::risk::{Guest, Context, Descriptor, Verdict, Action};
//! use payloom_sdk::KeyValue;
//!
//! struct MyRule;
//! impl Guest for MyRule {
//!     fn describe() -> Descriptor { /* … */ }
//!     fn evaluate(ctx: Context, config: Vec<KeyValue>) -> Result<Verdict, String> { /* … */ }
//! }
//! payloom_sdk::export_risk_rule!(MyRule);
//! ```
//!
//! Build with `payloom plugin build`: it compiles for `wasm32-unknown-unknown` and
//! encodes a component with no WASI imports (a panic is simply a trap there).

#![no_std]
extern crate alloc;

#[cfg(all(target_arch = "wasm32", not(feature = "system-allocator")))]
mod allocator;
pub mod config;
pub mod http;
pub mod log;

/// Host imports, generated once and shared by the three worlds.
#[doc(hidden)]
pub mod imports {
    wit_bindgen::generate!({
        world: "host-imports",
        path: "../../wit",
        generate_all,
    });
}

/// The `channel-adapter` world: implement [`channel::Guest`], then [`export_channel!`].
pub mod channel {
    wit_bindgen::generate!({
        world: "channel-adapter",
        path: "../../wit",
        with: {
            "payloom:plugin/types@0.1.0": crate::imports::payloom::plugin::types,
            "payloom:plugin/http@0.1.0": crate::imports::payloom::plugin::http,
            "payloom:plugin/crypto@0.1.0": crate::imports::payloom::plugin::crypto,
            "payloom:plugin/secrets@0.1.0": crate::imports::payloom::plugin::secrets,
            "payloom:plugin/log@0.1.0": crate::imports::payloom::plugin::log,
            "payloom:plugin/clock@0.1.0": crate::imports::payloom::plugin::clock,
        },
        pub_export_macro: true,
        export_macro_name: "export_channel",
        default_bindings_module: "payloom_sdk::channel",
    });
    pub use self::exports::payloom::plugin::channel::*;
}

/// The `risk-rule` world: implement [`risk::Guest`], then [`export_risk_rule!`].
pub mod risk {
    wit_bindgen::generate!({
        world: "risk-rule",
        path: "../../wit",
        with: {
            "payloom:plugin/types@0.1.0": crate::imports::payloom::plugin::types,
            "payloom:plugin/counters@0.1.0": crate::imports::payloom::plugin::counters,
            "payloom:plugin/lists@0.1.0": crate::imports::payloom::plugin::lists,
            "payloom:plugin/crypto@0.1.0": crate::imports::payloom::plugin::crypto,
            "payloom:plugin/log@0.1.0": crate::imports::payloom::plugin::log,
            "payloom:plugin/clock@0.1.0": crate::imports::payloom::plugin::clock,
        },
        pub_export_macro: true,
        export_macro_name: "export_risk_rule",
        default_bindings_module: "payloom_sdk::risk",
    });
    pub use self::exports::payloom::plugin::rule::*;
}

/// The `merchant-policy` world: implement [`policy::Guest`], then [`export_policy!`].
pub mod policy {
    wit_bindgen::generate!({
        world: "merchant-policy",
        path: "../../wit",
        with: {
            "payloom:plugin/types@0.1.0": crate::imports::payloom::plugin::types,
            "payloom:plugin/counters@0.1.0": crate::imports::payloom::plugin::counters,
            "payloom:plugin/lists@0.1.0": crate::imports::payloom::plugin::lists,
            "payloom:plugin/log@0.1.0": crate::imports::payloom::plugin::log,
            "payloom:plugin/clock@0.1.0": crate::imports::payloom::plugin::clock,
        },
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "payloom_sdk::policy",
    });
    pub use self::exports::payloom::plugin::policy::*;
}

pub use channel::export_channel;
pub use policy::export_policy;
pub use risk::export_risk_rule;

pub use imports::payloom::plugin::types::{CaptureMode, Customer, KeyValue, Money, Payment};
pub use imports::payloom::plugin::{clock, counters, crypto, lists, secrets};

pub use alloc::{format, string::String, string::ToString, vec, vec::Vec};

/// Money in minor units.
pub fn money(amount_minor: i64, currency: &str) -> Money {
    Money {
        amount_minor,
        currency: currency.into(),
    }
}

/// A key/value pair.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

/// The value for `key` in a list of pairs (metadata, headers are matched exactly).
pub fn find<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}
