//! The services' payment facts into the WIT `types` a component is handed, and money
//! back out of what it answers. The one place the two shapes meet.

use payloom_payment_facts as facts;

use crate::bindings::types;

impl From<facts::Money> for types::Money {
    fn from(m: facts::Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

impl From<types::Money> for facts::Money {
    fn from(m: types::Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

impl From<facts::KeyValue> for types::KeyValue {
    fn from(kv: facts::KeyValue) -> Self {
        Self {
            key: kv.key,
            value: kv.value,
        }
    }
}

impl From<types::KeyValue> for facts::KeyValue {
    fn from(kv: types::KeyValue) -> Self {
        Self {
            key: kv.key,
            value: kv.value,
        }
    }
}

impl From<facts::Customer> for types::Customer {
    fn from(c: facts::Customer) -> Self {
        Self {
            email: c.email,
            ip: c.ip,
            country: c.country,
            device_id: c.device_id,
            phone: c.phone,
        }
    }
}

impl From<facts::CaptureMode> for types::CaptureMode {
    fn from(mode: facts::CaptureMode) -> Self {
        match mode {
            facts::CaptureMode::Automatic => Self::Automatic,
            facts::CaptureMode::Manual => Self::Manual,
        }
    }
}

impl From<facts::Payment> for types::Payment {
    fn from(p: facts::Payment) -> Self {
        Self {
            id: p.id,
            merchant_id: p.merchant_id,
            order_no: p.order_no,
            amount: p.amount.into(),
            method: p.method,
            capture: p.capture.into(),
            customer: p.customer.into(),
            description: p.description,
            return_url: p.return_url,
            metadata: into_all(p.metadata),
            created_at_ms: p.created_at_ms,
        }
    }
}

/// Converts every element, for the lists of key-values both shapes carry.
pub fn into_all<A: Into<B>, B>(items: Vec<A>) -> Vec<B> {
    items.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_keeps_every_fact_on_the_way_to_a_component() {
        let payment = facts::Payment {
            id: "pay_1".into(),
            merchant_id: "mch_1".into(),
            order_no: "o-1".into(),
            amount: facts::Money {
                amount_minor: 1250,
                currency: "EUR".into(),
            },
            method: "card".into(),
            capture: facts::CaptureMode::Manual,
            customer: facts::Customer {
                email: Some("a@example.com".into()),
                ip: Some("203.0.113.9".into()),
                country: Some("DE".into()),
                device_id: Some("dev".into()),
                phone: Some("+49".into()),
            },
            description: Some("shoes".into()),
            return_url: Some("https://shop.example/back".into()),
            metadata: vec![facts::KeyValue {
                key: "k".into(),
                value: "v".into(),
            }],
            created_at_ms: 42,
        };
        // Both shapes serialize their fields under the same names, so the JSON of the
        // converted value equals the original's field for field.
        let wit: types::Payment = payment.clone().into();
        assert_eq!(
            serde_json::to_value(&wit).unwrap(),
            serde_json::to_value(&payment).unwrap()
        );
        let back: facts::Money = wit.amount.into();
        assert_eq!(back, payment.amount);
    }
}
