//! The order event is built by one statement for both databases: on SQLite and on
//! PostgreSQL alike, each move leaves in the outbox an envelope that reads back, through
//! the contract's typed `OrderEvent`, as exactly the order the move returned.

use std::sync::Arc;

use payloom_order::{OrderApi, OrderEvent, OrderIn, OrderStatus, Orders, TOPIC};
use payloom_platform::db::Scratch;
use payloom_platform::events::Envelope;
use payloom_platform::{Db, ManualClock};

/// The outbox rows of `order`, oldest first: (topic, key, envelope).
async fn events_of(db: &Db, order: &str) -> Vec<(String, String, Envelope)> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT topic, partition_key, envelope FROM payloom_outbox WHERE partition_key = $1 ORDER BY seq",
    )
    .bind(order)
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(topic, key, json)| (topic, key, serde_json::from_str(&json).unwrap()))
        .collect()
}

#[tokio::test]
async fn each_move_leaves_the_same_typed_event_on_both_databases() {
    let dir = tempfile::tempdir().unwrap();
    for scratch in Scratch::each_dialect(dir.path()).await {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let orders = Orders::new(scratch.db.clone(), clock.clone())
            .await
            .unwrap();
        let created = orders
            .create(OrderIn {
                merchant_id: "mch_1".into(),
                order_no: "A-1".into(),
                amount_minor: 1_250,
                currency: "EUR".into(),
                payment_id: "pay_1".into(),
            })
            .await
            .unwrap();
        let mut moved = Vec::new();
        for to in [OrderStatus::Paid, OrderStatus::PartiallyRefunded] {
            clock.advance(5);
            moved.push(orders.transition(&created.id, to).await.unwrap());
        }
        let events = events_of(&scratch.db, &created.id).await;
        assert_eq!(events.len(), 2, "{:?}", scratch.db.dialect());
        for ((topic, key, envelope), order) in events.iter().zip(&moved) {
            assert_eq!((topic.as_str(), key.as_str()), (TOPIC, created.id.as_str()));
            assert_eq!(envelope.merchant_id.as_deref(), Some("mch_1"));
            assert_eq!(envelope.occurred_at_ms, order.updated_at_ms);
            let read = OrderEvent::read(envelope).unwrap();
            assert_eq!(read, Some(OrderEvent::Moved(order.clone())));
            // Exactly the fields of `Order`, no more.
            assert_eq!(envelope.data, serde_json::to_value(order).unwrap());
        }
        scratch.drop().await;
    }
}
