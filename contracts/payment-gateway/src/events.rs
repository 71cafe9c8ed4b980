//! The gateway's topics, one enum each. `payment.events` carries a payment every time it
//! reaches a status someone may act on; `refund.events` a refund's. Both are keyed by the
//! payment, so the events of one payment stay in order. The catalogue: `docs/events.md`.

use payloom_platform::events::Envelope;

use crate::model::{PaymentOut, PaymentStatus, RefundOut, RefundStatus};

/// The service that produces both topics; consumers believe no one else.
pub const PRODUCER: &str = "payment-gateway";
pub const PAYMENT_TOPIC: &str = "payment.events";
pub const REFUND_TOPIC: &str = "refund.events";

/// An event that claims a gateway topic but cannot be read as one.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{0} is not a kind this contract knows")]
    UnknownKind(String),
    #[error("{kind} carries an object in status {status}")]
    StatusMismatch { kind: String, status: String },
    #[error("{kind}: {source}")]
    Data {
        kind: String,
        source: serde_json::Error,
    },
}

/// `payment.<status>` on `payment.events`: the payment as the merchant API shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentEvent {
    Pending(PaymentOut),
    RequiresAction(PaymentOut),
    Authorized(PaymentOut),
    Capturing(PaymentOut),
    Canceling(PaymentOut),
    Succeeded(PaymentOut),
    Failed(PaymentOut),
    Canceled(PaymentOut),
    Expired(PaymentOut),
}

impl PaymentEvent {
    /// The event of a payment's current status; `None` while it is `processing`, which
    /// is news to no one.
    pub fn of(payment: PaymentOut) -> Option<Self> {
        use PaymentStatus as S;
        Some(match payment.status {
            S::Pending => Self::Pending(payment),
            S::RequiresAction => Self::RequiresAction(payment),
            S::Processing => return None,
            S::Authorized => Self::Authorized(payment),
            S::Capturing => Self::Capturing(payment),
            S::Canceling => Self::Canceling(payment),
            S::Succeeded => Self::Succeeded(payment),
            S::Failed => Self::Failed(payment),
            S::Canceled => Self::Canceled(payment),
            S::Expired => Self::Expired(payment),
        })
    }

    pub fn payment(&self) -> &PaymentOut {
        match self {
            Self::Pending(p)
            | Self::RequiresAction(p)
            | Self::Authorized(p)
            | Self::Capturing(p)
            | Self::Canceling(p)
            | Self::Succeeded(p)
            | Self::Failed(p)
            | Self::Canceled(p)
            | Self::Expired(p) => p,
        }
    }

    /// `payment.succeeded`, …
    pub fn kind(&self) -> String {
        format!("payment.{}", self.payment().status.as_str())
    }

    /// The envelope the gateway's outbox stores, keyed by [`PaymentEvent::key`].
    pub fn envelope(&self, merchant_id: &str) -> Envelope {
        let p = self.payment();
        let data = serde_json::to_value(p).expect("a payment serialises");
        Envelope::new(self.kind(), "payment", &p.id, p.updated_at_ms, data)
            .for_merchant(merchant_id)
    }

    pub fn key(&self) -> &str {
        &self.payment().id
    }

    /// The payment event in `envelope`; `None` when it is not a payment event at all.
    pub fn read(envelope: &Envelope) -> Result<Option<Self>, EventError> {
        let Some(status) = envelope.kind.strip_prefix("payment.") else {
            return Ok(None);
        };
        if PaymentStatus::parse(status).is_none() {
            return Err(EventError::UnknownKind(envelope.kind.clone()));
        }
        let payment: PaymentOut = data(envelope)?;
        let status = payment.status.as_str();
        let event = Self::of(payment).ok_or_else(|| EventError::StatusMismatch {
            kind: envelope.kind.clone(),
            status: status.to_owned(),
        })?;
        same_status(envelope, &event.kind(), status)?;
        Ok(Some(event))
    }
}

/// `refund.<status>` on `refund.events`, keyed by the refund's payment.
#[derive(Debug, Clone, PartialEq)]
pub enum RefundEvent {
    Pending(RefundOut),
    Succeeded(RefundOut),
    Failed(RefundOut),
}

impl RefundEvent {
    pub fn of(refund: RefundOut) -> Self {
        match refund.status {
            RefundStatus::Pending => Self::Pending(refund),
            RefundStatus::Succeeded => Self::Succeeded(refund),
            RefundStatus::Failed => Self::Failed(refund),
        }
    }

    pub fn refund(&self) -> &RefundOut {
        match self {
            Self::Pending(r) | Self::Succeeded(r) | Self::Failed(r) => r,
        }
    }

    pub fn kind(&self) -> String {
        format!("refund.{}", self.refund().status.as_str())
    }

    pub fn envelope(&self, merchant_id: &str) -> Envelope {
        let r = self.refund();
        let data = serde_json::to_value(r).expect("a refund serialises");
        Envelope::new(self.kind(), "refund", &r.id, r.updated_at_ms, data).for_merchant(merchant_id)
    }

    pub fn key(&self) -> &str {
        &self.refund().payment_id
    }

    /// The refund event in `envelope`; `None` when it is not a refund event at all.
    pub fn read(envelope: &Envelope) -> Result<Option<Self>, EventError> {
        let Some(status) = envelope.kind.strip_prefix("refund.") else {
            return Ok(None);
        };
        if RefundStatus::parse(status).is_none() {
            return Err(EventError::UnknownKind(envelope.kind.clone()));
        }
        let refund: RefundOut = data(envelope)?;
        let event = Self::of(refund);
        same_status(envelope, &event.kind(), event.refund().status.as_str())?;
        Ok(Some(event))
    }
}

fn data<T: serde::de::DeserializeOwned>(envelope: &Envelope) -> Result<T, EventError> {
    serde_json::from_value(envelope.data.clone()).map_err(|source| EventError::Data {
        kind: envelope.kind.clone(),
        source,
    })
}

/// The kind names the status the object is in, or the event is not what it says.
fn same_status(envelope: &Envelope, kind: &str, status: &str) -> Result<(), EventError> {
    if envelope.kind == kind {
        return Ok(());
    }
    Err(EventError::StatusMismatch {
        kind: envelope.kind.clone(),
        status: status.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succeeded() -> PaymentOut {
        PaymentOut {
            id: "pay_1".into(),
            amount: 700,
            currency: "USD".into(),
            status: PaymentStatus::Succeeded,
            amount_captured: 700,
            updated_at_ms: 5,
            ..PaymentOut::default()
        }
    }

    #[test]
    fn an_event_reads_back_as_it_was_written() {
        let event = PaymentEvent::of(succeeded()).unwrap();
        let envelope = event.envelope("mch_1");
        assert_eq!(
            (envelope.kind.as_str(), envelope.topic().as_str()),
            ("payment.succeeded", PAYMENT_TOPIC)
        );
        assert_eq!(envelope.merchant_id.as_deref(), Some("mch_1"));
        assert_eq!(PaymentEvent::read(&envelope).unwrap(), Some(event));
        assert_eq!(RefundEvent::read(&envelope).unwrap(), None);

        let refund = RefundEvent::of(RefundOut {
            id: "re_1".into(),
            payment_id: "pay_1".into(),
            status: RefundStatus::Succeeded,
            ..RefundOut::default()
        });
        let envelope = refund.envelope("mch_1");
        assert_eq!(envelope.topic(), REFUND_TOPIC);
        assert_eq!(refund.key(), "pay_1");
        assert_eq!(RefundEvent::read(&envelope).unwrap(), Some(refund));
    }

    #[test]
    fn a_processing_payment_is_no_event() {
        let mut payment = succeeded();
        payment.status = PaymentStatus::Processing;
        assert_eq!(PaymentEvent::of(payment), None);
    }

    #[test]
    fn an_event_that_is_not_what_it_says_is_refused() {
        let mut envelope = PaymentEvent::of(succeeded()).unwrap().envelope("mch_1");
        envelope.kind = "payment.authorized".into();
        assert!(matches!(
            PaymentEvent::read(&envelope),
            Err(EventError::StatusMismatch { .. })
        ));
        envelope.kind = "payment.teleported".into();
        assert!(matches!(
            PaymentEvent::read(&envelope),
            Err(EventError::UnknownKind(_))
        ));
        envelope.kind = "payment.succeeded".into();
        envelope.data["amount"] = serde_json::json!("700");
        assert!(matches!(
            PaymentEvent::read(&envelope),
            Err(EventError::Data { .. })
        ));
    }
}
