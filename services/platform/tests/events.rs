//! The event machinery against real databases and librdkafka's mock cluster: the relay
//! drains the outbox into Kafka, a separate consumer reads it back, and redelivery (the
//! same events produced again, and a second group re-reading the topic) changes nothing;
//! a poison event is dead-lettered after its retries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use payloom_platform::db::PoolOptions;
use payloom_platform::events::{
    self, Consumer, Envelope, Outbox, Outgoing, Processed, Publisher, Relay, Subscription,
};
use payloom_platform::kafka::{self, KafkaPublisher};
use payloom_platform::{Db, db::sqlite_url};
use rdkafka::consumer::StreamConsumer;
use rdkafka::mocking::MockCluster;
use sqlx::AnyConnection;

/// Counts how often each event took effect.
struct Counter;

#[async_trait]
impl Consumer for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn topics(&self) -> &'static [&'static str] {
        &["payment.events"]
    }
    async fn handle(&self, tx: &mut AnyConnection, event: &Envelope) -> anyhow::Result<()> {
        anyhow::ensure!(event.data["poison"] != true, "this event cannot be handled");
        sqlx::query(
            "INSERT INTO effects (event_id, times) VALUES ($1, 1) ON CONFLICT (event_id) DO UPDATE SET times = effects.times + 1",
        )
        .bind(&event.id)
        .execute(tx)
        .await?;
        Ok(())
    }
}

async fn database(dir: &tempfile::TempDir, name: &str) -> Db {
    let db = Db::connect(&sqlite_url(dir.path(), name), &PoolOptions::default())
        .await
        .unwrap();
    events::install(&db).await.unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS effects (event_id TEXT PRIMARY KEY, times BIGINT NOT NULL)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db
}

fn payment_event(n: i64) -> Envelope {
    Envelope::new(
        "payment.succeeded",
        "payment",
        format!("pay_{n}"),
        1_700_000_000_000 + n,
        serde_json::json!({"id": format!("pay_{n}"), "amount": n}),
    )
    .for_merchant("mch_1")
}

/// (distinct events with an effect, total effects)
async fn effects(db: &Db) -> (i64, i64) {
    sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(times), 0) FROM effects")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// Reads until `want` more messages were handled.
async fn consume(consumer: &StreamConsumer, subscription: &Subscription, want: usize) {
    for handled in 0..want {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("got only {handled} of {want} messages"))
            .unwrap();
        kafka::handle_message(consumer, &message, subscription)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_to_kafka_and_redelivery_changes_nothing() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("payment.events", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let producer_db = database(&dir, "producer").await;
    let consumer_db = database(&dir, "consumer").await;

    // A service commits 25 state changes with their events.
    let outbox = Outbox::new("payment-gateway");
    let sent: Vec<Envelope> = (1..=25).map(payment_event).collect();
    let mut tx = producer_db.pool().begin().await.unwrap();
    for event in &sent {
        outbox
            .append(&mut tx, event, &event.aggregate_id)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        events::pending(&producer_db, "payment-gateway")
            .await
            .unwrap(),
        25
    );

    let publisher = Arc::new(KafkaPublisher::new(&brokers).unwrap());
    let relay = Relay {
        db: producer_db.clone(),
        outbox: outbox.clone(),
        publisher: publisher.clone(),
        batch: 10,
        poll: Duration::from_millis(100),
    };
    let mut relayed = 0;
    loop {
        let n = relay.relay_once().await.unwrap();
        if n == 0 {
            break;
        }
        relayed += n;
    }
    assert_eq!(relayed, 25);
    assert_eq!(
        events::pending(&producer_db, "payment-gateway")
            .await
            .unwrap(),
        0,
        "the outbox drains"
    );

    // A separate consumer reads every event once.
    let subscription = Subscription::new(consumer_db.clone(), Arc::new(Counter));
    let ledger = kafka::consumer(&brokers, "ledger", &subscription).unwrap();
    consume(&ledger, &subscription, 25).await;
    assert_eq!(effects(&consumer_db).await, (25, 25));

    // The same events produced again (a relay that crashed before deleting its batch) are
    // read and change nothing.
    let again: Vec<Outgoing> = sent
        .iter()
        .enumerate()
        .map(|(i, e)| Outgoing {
            seq: i as i64,
            topic: e.topic(),
            key: e.aggregate_id.clone(),
            envelope: e.clone(),
            json: serde_json::to_string(e).unwrap(),
        })
        .collect();
    publisher.publish(&again).await.unwrap();
    consume(&ledger, &subscription, 25).await;
    assert_eq!(effects(&consumer_db).await, (25, 25));

    // A new group re-reads the whole topic (50 messages): still nothing new.
    let replay = kafka::consumer(&brokers, "replay", &subscription).unwrap();
    consume(&replay, &subscription, 50).await;
    assert_eq!(effects(&consumer_db).await, (25, 25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_once_and_the_rest_flow() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "consumer").await;
    let mut subscription = Subscription::new(db.clone(), Arc::new(Counter));
    subscription.retry_base = Duration::from_millis(1);
    let mut poison = payment_event(1);
    poison.data["poison"] = serde_json::json!(true);
    assert_eq!(
        subscription.process(&poison).await.unwrap(),
        Processed::DeadLettered
    );
    assert_eq!(
        subscription.process(&poison).await.unwrap(),
        Processed::Duplicate
    );
    let (error, attempts): (String, i64) = sqlx::query_as(
        "SELECT error, attempts FROM payloom_dead_letters WHERE consumer = 'counter' AND event_id = $1",
    )
    .bind(&poison.id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(error.contains("cannot be handled"), "{error}");
    assert_eq!(attempts, 5);
    let fine = payment_event(2);
    assert_eq!(
        subscription.process(&fine).await.unwrap(),
        Processed::Handled
    );
    assert_eq!(
        subscription.process(&fine).await.unwrap(),
        Processed::Duplicate
    );
    let mut future = payment_event(3);
    future.version = 99;
    assert_eq!(
        subscription.process(&future).await.unwrap(),
        Processed::DeadLettered
    );
    assert_eq!(effects(&db).await, (1, 1));
}
