//! The standard merchant policy.
//!
//! Config (all optional):
//! - `fee.<tier>.bps` and `fee.<tier>.fixed_minor`: percentage (basis points) and fixed
//!   fee for a pricing tier; `fee.bps` / `fee.fixed_minor` apply to tiers not listed.
//! - `min_minor`, `max_minor` (or `min_minor.<CUR>`, `max_minor.<CUR>`): per-transaction limits.
//! - `route.<CUR>`: comma-separated channel ids preferred for that currency, best first.
//!
//! Channels that take the payment's method, currency and the customer's country are
//! ranked: preferred ones in the configured order, then the rest by id. No eligible
//! channel, or an amount outside the limits, denies the payment.

use payloom_sdk::config::Config;
use payloom_sdk::policy::*;
use payloom_sdk::{String, ToString, Vec, format, money};

struct Standard;

/// Basis points in one whole.
const BPS_PER_UNIT: i128 = 10_000;

fn limit(config: &Config<'_>, key: &str, currency: &str) -> Result<Option<i64>, String> {
    match config.parse(&format!("{key}.{currency}"))? {
        Some(v) => Ok(Some(v)),
        None => config.parse(key),
    }
}

/// Percentage fee rounded half up, plus the fixed part.
fn fee_minor(amount_minor: i64, bps: i64, fixed_minor: i64) -> Result<i64, String> {
    if !(0..=BPS_PER_UNIT as i64).contains(&bps) || fixed_minor < 0 {
        return Err("fee bps must be 0..=10000 and fixed fee non-negative".into());
    }
    let variable = (i128::from(amount_minor) * i128::from(bps) + BPS_PER_UNIT / 2) / BPS_PER_UNIT;
    i64::try_from(variable + i128::from(fixed_minor)).map_err(|_| "fee overflows".into())
}

fn eligible(channel: &ChannelOption, method: &str, currency: &str, country: Option<&str>) -> bool {
    channel.methods.iter().any(|m| m == method)
        && channel.currencies.iter().any(|c| c == currency)
        && (channel.countries.is_empty()
            || country.is_none_or(|c| channel.countries.iter().any(|x| x == c)))
}

impl Guest for Standard {
    fn describe() -> Descriptor {
        Descriptor {
            id: "standard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Tiered fees, per-transaction limits, channel ranking".into(),
        }
    }

    fn decide(ctx: Context) -> Result<Decision, String> {
        let config = Config(&ctx.config);
        let payment = &ctx.payment;
        let currency = payment.amount.currency.as_str();
        let amount = payment.amount.amount_minor;
        let tier = ctx.merchant_tier.as_str();
        let bps = match config.parse(&format!("fee.{tier}.bps"))? {
            Some(v) => v,
            None => config.parse_or("fee.bps", 0)?,
        };
        let fixed = match config.parse(&format!("fee.{tier}.fixed_minor"))? {
            Some(v) => v,
            None => config.parse_or("fee.fixed_minor", 0)?,
        };
        let fee = money(fee_minor(amount, bps, fixed)?, currency);
        let limits = Limits {
            min_minor: limit(&config, "min_minor", currency)?,
            max_minor: limit(&config, "max_minor", currency)?,
        };

        let country = payment.customer.country.as_deref();
        let mut channels: Vec<&ChannelOption> = ctx
            .channels
            .iter()
            .filter(|c| eligible(c, &payment.method, currency, country))
            .collect();
        let preferred: Vec<&str> = config
            .get(&format!("route.{currency}"))
            .map(|r| r.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let rank = |c: &ChannelOption| {
            preferred
                .iter()
                .position(|p| *p == c.id)
                .unwrap_or(usize::MAX)
        };
        channels.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.id.cmp(&b.id)));
        let channels: Vec<String> = channels.into_iter().map(|c| c.id.to_string()).collect();

        let verdict = if limits.min_minor.is_some_and(|min| amount < min) {
            Verdict::Deny(format!(
                "amount {amount} is below the minimum {}",
                limits.min_minor.unwrap_or_default()
            ))
        } else if limits.max_minor.is_some_and(|max| amount > max) {
            Verdict::Deny(format!(
                "amount {amount} is above the maximum {}",
                limits.max_minor.unwrap_or_default()
            ))
        } else if channels.is_empty() {
            Verdict::Deny(format!("no channel takes {} in {currency}", payment.method))
        } else {
            Verdict::Allow
        };
        Ok(Decision {
            verdict,
            fee,
            channels,
            limits,
        })
    }
}

payloom_sdk::export_policy!(Standard);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_half_up_and_reject_bad_rates() {
        assert_eq!(fee_minor(10_000, 290, 30), Ok(320));
        assert_eq!(fee_minor(150, 290, 0), Ok(4)); // 4.35 -> 4
        assert_eq!(fee_minor(50, 100, 0), Ok(1)); // 0.5 -> 1
        assert!(fee_minor(100, 10_001, 0).is_err());
        assert!(fee_minor(100, 100, -1).is_err());
    }
}
