//! Velocity limits from host counters.
//!
//! Config: `key` (`email` | `ip` | `device_id` | `phone`, default `email`),
//! `window_seconds` (default 3600), `max_count` and/or `max_sum_minor`,
//! `action` (`block` | `review`, default `block`). Reads the host counter
//! `payments-by-<key>`; this payment counts as one more.

use payloom_sdk::config::Config;
use payloom_sdk::risk::*;
use payloom_sdk::{KeyValue, String, Vec, counters, format, vec};

struct Velocity;

impl Guest for Velocity {
    fn describe() -> Descriptor {
        Descriptor {
            id: "velocity".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Limits payments per customer key in a trailing window".into(),
            config_keys: vec![
                "key".into(),
                "window_seconds".into(),
                "max_count".into(),
                "max_sum_minor".into(),
                "action".into(),
            ],
        }
    }

    fn evaluate(ctx: Context, config: Vec<KeyValue>) -> Result<Verdict, String> {
        let config = Config(&config);
        let key_name = config.get("key").unwrap_or("email");
        let customer = &ctx.payment.customer;
        let value = match key_name {
            "email" => customer.email.as_deref(),
            "ip" => customer.ip.as_deref(),
            "device_id" => customer.device_id.as_deref(),
            "phone" => customer.phone.as_deref(),
            other => return Err(format!("config `key`: unknown customer field {other:?}")),
        };
        let window: u32 = config.parse_or("window_seconds", 3600)?;
        let max_count: Option<u64> = config.parse("max_count")?;
        let max_sum: Option<i64> = config.parse("max_sum_minor")?;
        if max_count.is_none() && max_sum.is_none() {
            return Err("set `max_count` or `max_sum_minor`".into());
        }
        let action = match config.get("action").unwrap_or("block") {
            "block" => Action::Block,
            "review" => Action::Review,
            other => return Err(format!("config `action`: {other:?} is not block or review")),
        };
        let Some(value) = value else {
            return Ok(Verdict {
                action: Action::None,
                score: 0,
                reasons: vec![format!("no {key_name} to count by")],
            });
        };
        let seen = counters::get(&format!("payments-by-{key_name}"), value, window);
        let count = seen.count + 1;
        let sum = seen
            .sum_minor
            .saturating_add(ctx.payment.amount.amount_minor);
        let mut reasons = Vec::new();
        if let Some(max) = max_count.filter(|max| count > *max) {
            reasons.push(format!(
                "{count} payments by this {key_name} in {window}s (limit {max})"
            ));
        }
        if let Some(max) = max_sum.filter(|max| sum > *max) {
            reasons.push(format!(
                "{sum} minor units by this {key_name} in {window}s (limit {max})"
            ));
        }
        Ok(match reasons.is_empty() {
            true => Verdict {
                action: Action::Allow,
                score: 0,
                reasons,
            },
            false => Verdict {
                action,
                score: 800,
                reasons,
            },
        })
    }
}

payloom_sdk::export_risk_rule!(Velocity);
