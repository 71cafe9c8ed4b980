//! Blocks or reviews payments above configured amounts.
//!
//! Config: `block_above_minor`, `review_above_minor` (either may be absent); a key with a
//! currency suffix (`block_above_minor.JPY`) overrides the plain one for that currency.

use payloom_sdk::config::Config;
use payloom_sdk::risk::*;
use payloom_sdk::{KeyValue, String, format, vec};

struct AmountLimit;

/// The threshold for `key`, preferring the currency-specific one.
fn threshold(config: &Config<'_>, key: &str, currency: &str) -> Result<Option<i64>, String> {
    match config.parse(&format!("{key}.{currency}"))? {
        Some(v) => Ok(Some(v)),
        None => config.parse(key),
    }
}

impl Guest for AmountLimit {
    fn describe() -> Descriptor {
        Descriptor {
            id: "amount-limit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Blocks or reviews payments above configured amounts".into(),
            config_keys: vec!["block_above_minor".into(), "review_above_minor".into()],
        }
    }

    fn evaluate(ctx: Context, config: payloom_sdk::Vec<KeyValue>) -> Result<Verdict, String> {
        let config = Config(&config);
        let amount = &ctx.payment.amount;
        let block = threshold(&config, "block_above_minor", &amount.currency)?;
        let review = threshold(&config, "review_above_minor", &amount.currency)?;
        if let (Some(block), Some(review)) = (block, review)
            && review > block
        {
            return Err(format!(
                "review_above_minor ({review}) is above block_above_minor ({block})"
            ));
        }
        let over = |limit: Option<i64>| limit.filter(|l| amount.amount_minor > *l);
        Ok(if let Some(limit) = over(block) {
            Verdict {
                action: Action::Block,
                score: 900,
                reasons: vec![format!(
                    "amount {} {} is above the block limit {limit}",
                    amount.amount_minor, amount.currency
                )],
            }
        } else if let Some(limit) = over(review) {
            Verdict {
                action: Action::Review,
                score: 600,
                reasons: vec![format!(
                    "amount {} {} is above the review limit {limit}",
                    amount.amount_minor, amount.currency
                )],
            }
        } else {
            Verdict {
                action: Action::Allow,
                score: 0,
                reasons: vec![],
            }
        })
    }
}

payloom_sdk::export_risk_rule!(AmountLimit);
