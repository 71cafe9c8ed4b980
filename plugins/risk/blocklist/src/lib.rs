//! Blocks customers found on host lists.
//!
//! Checks each customer field against a list, by default `blocked-emails`, `blocked-ips`,
//! `blocked-devices`, `blocked-phones` and `blocked-countries`; config `list.<field>`
//! renames a list and `list.<field> = ""` skips that field. Emails compare lower-cased.

use payloom_sdk::config::Config;
use payloom_sdk::risk::*;
use payloom_sdk::{KeyValue, String, ToString, Vec, format, lists, vec};

struct Blocklist;

const FIELDS: &[(&str, &str)] = &[
    ("email", "blocked-emails"),
    ("ip", "blocked-ips"),
    ("device_id", "blocked-devices"),
    ("phone", "blocked-phones"),
    ("country", "blocked-countries"),
];

impl Guest for Blocklist {
    fn describe() -> Descriptor {
        Descriptor {
            id: "blocklist".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Blocks customers on host lists".into(),
            config_keys: FIELDS.iter().map(|(f, _)| format!("list.{f}")).collect(),
        }
    }

    fn evaluate(ctx: Context, config: Vec<KeyValue>) -> Result<Verdict, String> {
        let config = Config(&config);
        let customer = &ctx.payment.customer;
        let mut reasons = Vec::new();
        for (field, default_list) in FIELDS {
            let list = config.get(&format!("list.{field}")).unwrap_or(default_list);
            let value = match *field {
                "email" => customer.email.as_deref().map(|e| e.to_lowercase()),
                "ip" => customer.ip.as_deref().map(str::to_string),
                "device_id" => customer.device_id.as_deref().map(str::to_string),
                "phone" => customer.phone.as_deref().map(str::to_string),
                _ => customer.country.as_deref().map(|c| c.to_uppercase()),
            };
            if let Some(value) = value.filter(|_| !list.is_empty())
                && lists::contains(list, &value)
            {
                reasons.push(format!("{field} is on list {list}"));
            }
        }
        Ok(match reasons.is_empty() {
            true => Verdict {
                action: Action::Allow,
                score: 0,
                reasons: vec![],
            },
            false => Verdict {
                action: Action::Block,
                score: 1000,
                reasons,
            },
        })
    }
}

payloom_sdk::export_risk_rule!(Blocklist);
