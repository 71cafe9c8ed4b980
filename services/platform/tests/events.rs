//! The event machinery against real databases and librdkafka's mock cluster: the relay
//! drains the outbox into Kafka, a separate consumer reads it back, and redelivery (the
//! same events produced again, and a second group re-reading the topic) changes nothing;
//! a poison event is dead-lettered after its retries; a message its producer did not sign
//! is skipped.

mod deployment;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use payloom_platform::db::PoolOptions;
use payloom_platform::event_metrics::{ConsumerMetrics, OutboxMetrics};
use payloom_platform::events::{
    self, Consumer, Envelope, Outbox, Outgoing, Processed, Publisher, Relay, Subscription,
};
use payloom_platform::kafka::{self, KafkaPublisher};
use payloom_platform::provenance::{EventSigner, EventVerifier};
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

/// A signer for each of `services`, and a verifier that believes the gateway on
/// `payment.events`.
fn signers(services: &[&str]) -> (EventVerifier, Vec<EventSigner>) {
    let (ca, signers) = deployment::deployment(services);
    let verifier =
        EventVerifier::new(ca.as_bytes(), [("payment.events", "payment-gateway")]).unwrap();
    (verifier, signers)
}

/// Writes `events` to `outbox` in one transaction, keyed by their payments.
async fn append(db: &Db, outbox: &Outbox, events: &[Envelope]) {
    let mut tx = db.pool().begin().await.unwrap();
    for event in events {
        let key = &event.aggregate_id;
        outbox.append(&mut tx, event, key).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Relays until the outbox is empty; how many events left it.
async fn drain(relay: &Relay) -> usize {
    let mut relayed = 0;
    loop {
        match relay.relay_once().await.unwrap() {
            0 => return relayed,
            n => relayed += n,
        }
    }
}

/// Reads until `want` more messages were handled.
async fn consume(
    consumer: &StreamConsumer,
    subscription: &Subscription,
    verifier: &EventVerifier,
    want: usize,
) {
    for handled in 0..want {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("got only {handled} of {want} messages"))
            .unwrap();
        kafka::handle_message(
            consumer,
            &message,
            subscription,
            verifier,
            &Default::default(),
        )
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
    append(&producer_db, &outbox, &sent).await;
    assert_eq!(
        events::pending(&producer_db, "payment-gateway")
            .await
            .unwrap(),
        25
    );

    let (verifier, mut signers) = signers(&["payment-gateway"]);
    let publisher = Arc::new(KafkaPublisher::new(&brokers, signers.remove(0)).unwrap());
    let relay = Relay {
        db: producer_db.clone(),
        outbox: outbox.clone(),
        publisher: publisher.clone(),
        batch: 10,
        poll: Duration::from_millis(100),
        metrics: OutboxMetrics::default(),
    };
    assert_eq!(drain(&relay).await, 25);
    assert_eq!(
        events::pending(&producer_db, "payment-gateway")
            .await
            .unwrap(),
        0,
        "the outbox drains"
    );
    // The relay counted what it published, and its last read found the outbox empty.
    assert_eq!(relay.metrics.published_count("payment-gateway"), 25);
    assert_eq!(relay.metrics.oldest_age("payment-gateway"), 0.0);

    // A separate consumer reads every event once.
    let subscription = Subscription::new(consumer_db.clone(), Arc::new(Counter));
    let ledger = kafka::consumer(&brokers, "ledger", &subscription, &Default::default()).unwrap();
    consume(&ledger, &subscription, &verifier, 25).await;
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
            trace_parent: None,
        })
        .collect();
    publisher.publish(&again).await.unwrap();
    consume(&ledger, &subscription, &verifier, 25).await;
    assert_eq!(effects(&consumer_db).await, (25, 25));

    // A new group re-reads the whole topic (50 messages): still nothing new.
    let replay = kafka::consumer(&brokers, "replay", &subscription, &Default::default()).unwrap();
    consume(&replay, &subscription, &verifier, 50).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_its_producer_did_not_sign_is_skipped() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("payment.events", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "consumer").await;
    let (verifier, mut signers) = signers(&["payment-gateway", "notification"]);
    let (intruder, gateway) = (signers.pop().unwrap(), signers.pop().unwrap());

    // Unsigned, then signed by a service that does not produce payment events.
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for n in [1, 2] {
        let json = serde_json::to_string(&payment_event(n)).unwrap();
        let key = format!("pay_{n}");
        let mut record = FutureRecord::to("payment.events").key(&key).payload(&json);
        if n == 2 {
            let signed = kafka::signed_headers(&intruder, "payment.events", &key, json.as_bytes());
            record = record.headers(signed.unwrap());
        }
        raw.send(record, Duration::from_secs(10)).await.unwrap();
    }
    // Then the genuine producer.
    let genuine = payment_event(3);
    let publisher = KafkaPublisher::new(&brokers, gateway).unwrap();
    publisher
        .publish(&[Outgoing {
            seq: 1,
            topic: genuine.topic(),
            key: genuine.aggregate_id.clone(),
            json: serde_json::to_string(&genuine).unwrap(),
            envelope: genuine.clone(),
            trace_parent: None,
        }])
        .await
        .unwrap();

    let subscription = Subscription::new(db.clone(), Arc::new(Counter));
    let consumer = kafka::consumer(&brokers, "ledger", &subscription, &Default::default()).unwrap();
    consume(&consumer, &subscription, &verifier, 3).await;
    assert_eq!(
        effects(&db).await,
        (1, 1),
        "only the signed event took effect"
    );
    let took: String = sqlx::query_scalar("SELECT event_id FROM effects")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(took, genuine.id);
}

/// A broker that refuses everything.
struct Unreachable;

#[async_trait]
impl Publisher for Unreachable {
    async fn publish(&self, _: &[Outgoing]) -> anyhow::Result<()> {
        anyhow::bail!("no broker")
    }
}

#[tokio::test]
async fn an_outbox_that_cannot_drain_shows_its_oldest_events_age() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "stuck").await;
    let outbox = Outbox::new("payment-gateway");
    let waiting: Vec<Envelope> = (1..=3).map(payment_event).collect();
    append(&db, &outbox, &waiting).await;
    let relay = Relay {
        db: db.clone(),
        outbox,
        publisher: Arc::new(Unreachable),
        batch: 10,
        poll: Duration::from_millis(100),
        metrics: OutboxMetrics::default(),
    };
    assert!(relay.relay_once().await.is_err());
    // The first event occurred at 1_700_000_000_001 ms: years before now.
    let age = relay.metrics.oldest_age("payment-gateway");
    assert!(age > 365.0 * 24.0 * 3600.0, "{age}");
    assert_eq!(relay.metrics.published_count("payment-gateway"), 0);
    assert_eq!(events::pending(&db, "payment-gateway").await.unwrap(), 3);
}

#[tokio::test]
async fn a_consumer_counts_what_it_commits_once_and_how_late() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "counted").await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ConsumerMetrics::register(&mut registry);
    let subscription = Subscription::new(db.clone(), Arc::new(Counter)).counted_in(metrics);
    let batch: Vec<Envelope> = (1..=3).map(payment_event).collect();
    let refs: Vec<&Envelope> = batch.iter().collect();
    subscription.process_batch(&refs).await.unwrap();
    // A redelivery is a duplicate: no effect, and not counted again.
    subscription.process(&batch[0]).await.unwrap();
    assert_eq!(subscription.metrics.consumed_count("counter"), 3);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"payloom_events_consumed_total{consumer="counter"} 3"#),
        "{text}"
    );
    // The events occurred in 2023: the lag adds up to years.
    let sum: f64 = text
        .lines()
        .find(|l| l.starts_with(r#"payloom_event_consume_lag_seconds_sum{consumer="counter"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no lag sum in {text}"));
    assert!(sum > 3.0 * 365.0 * 24.0 * 3600.0, "{sum}");
}
