//! The plugin author's kit: a local runner under production limits, recorded HTTP
//! exchanges, the channel conformance suite and a fresh-instance benchmark.
//!
//! In the manner of Shopify's function-runner: every call reports its result, wall time,
//! peak memory and bytes in/out against the limits the platform enforces.

pub mod bench;
pub mod conformance;
pub mod recorded;
pub mod runner;

pub use runner::{Fixture, RunReport, Runner};
