//! The order service's contract: orders, their state machine, the internal API and its
//! HTTP client, and the typed event of `order.events`. Callers (the gateway) depend on
//! this crate, not on the service.

use async_trait::async_trait;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use payloom_platform::events::Envelope;
use serde::{Deserialize, Serialize};

/// The service that produces `order.events`; consumers believe no one else.
pub const PRODUCER: &str = "order";
pub const TOPIC: &str = "order.events";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Authorized,
    Paid,
    PartiallyRefunded,
    Refunded,
    Failed,
    Canceled,
    Expired,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        Self::Created,
        Self::Authorized,
        Self::Paid,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Authorized => "authorized",
            Self::Paid => "paid",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    /// The state machine. Exhaustive on purpose: a new state must say where it goes.
    pub fn can_move_to(self, to: Self) -> bool {
        use OrderStatus::*;
        match self {
            Created => matches!(to, Authorized | Paid | Failed | Canceled | Expired),
            Authorized => matches!(to, Paid | Canceled | Expired),
            Paid => matches!(to, PartiallyRefunded | Refunded),
            PartiallyRefunded => matches!(to, PartiallyRefunded | Refunded),
            Refunded | Failed | Canceled | Expired => false,
        }
    }
}

/// An order, as the order service answers and its events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub merchant_id: String,
    pub order_no: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: OrderStatus,
    pub payment_id: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderIn {
    pub merchant_id: String,
    pub order_no: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveIn {
    pub to: OrderStatus,
}

#[async_trait]
pub trait OrderApi: Send + Sync {
    /// A new order in `created`. 409 `order_no_taken` when the merchant already has it.
    async fn create(&self, req: OrderIn) -> ApiResult<Order>;
    async fn get(&self, id: &str) -> ApiResult<Order>;
    /// Moves the order; 409 `order_transition_invalid` when the machine does not allow it.
    async fn transition(&self, id: &str, to: OrderStatus) -> ApiResult<Order>;
}

/// [`OrderApi`] over HTTP.
pub struct OrderHttp(pub ServiceClient);

#[async_trait]
impl OrderApi for OrderHttp {
    async fn create(&self, req: OrderIn) -> ApiResult<Order> {
        operations::CREATE.call(&self.0, &[], &req).await
    }
    async fn get(&self, id: &str) -> ApiResult<Order> {
        operations::GET.call(&self.0, &[id], &()).await
    }
    async fn transition(&self, id: &str, to: OrderStatus) -> ApiResult<Order> {
        operations::TRANSITION
            .call(&self.0, &[id], &MoveIn { to })
            .await
    }
}

/// The order service's internal operations, each declared once for its client and router.
pub mod operations {
    use payloom_platform::operation::Operation;

    use super::{MoveIn, Order, OrderIn};

    pub const CREATE: Operation<OrderIn, Order> = Operation::post("/internal/v1/orders");
    pub const GET: Operation<(), Order> = Operation::get("/internal/v1/orders/{id}");
    pub const TRANSITION: Operation<MoveIn, Order> =
        Operation::post("/internal/v1/orders/{id}/transitions");
}

/// `order.<status>` on `order.events`, keyed by the order: the order after it was created
/// or moved. One variant, since what changed is the status, which `Order` types.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    Moved(Order),
}

impl OrderEvent {
    pub fn order(&self) -> &Order {
        let Self::Moved(order) = self;
        order
    }

    /// `order.paid`, …
    pub fn kind(&self) -> String {
        format!("order.{}", self.order().status.as_str())
    }

    /// The order event in `envelope`; `None` when it is not an order event.
    pub fn read(envelope: &Envelope) -> anyhow::Result<Option<Self>> {
        if !envelope.kind.starts_with("order.") {
            return Ok(None);
        }
        let order: Order = serde_json::from_value(envelope.data.clone())?;
        let event = Self::Moved(order);
        anyhow::ensure!(
            envelope.kind == event.kind(),
            "{} carries an order in status {}",
            envelope.kind,
            event.order().status.as_str()
        );
        Ok(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn terminal_states_never_move_and_refunds_follow_payment() {
        for terminal in [Refunded, Failed, Canceled, Expired] {
            for to in OrderStatus::ALL {
                assert!(!terminal.can_move_to(to), "{terminal:?} -> {to:?}");
            }
        }
        assert!(Created.can_move_to(Paid));
        assert!(!Created.can_move_to(Refunded));
        assert!(Paid.can_move_to(PartiallyRefunded));
        assert!(!Paid.can_move_to(Created));
    }
}
