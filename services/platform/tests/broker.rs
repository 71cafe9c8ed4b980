//! Against a real Kafka-protocol broker process (`tansu`, which `.ci/run` installs and
//! starts; set `PAYLOOM_KAFKA_BROKERS` to use another): topics are created on start with
//! the configured partitions and left alone when they exist, and a signed event crosses
//! the broker with its headers intact and is believed.

mod deployment;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::{self, Consumer, Envelope, Outgoing, Publisher, Subscription};
use payloom_platform::kafka::{self, KafkaPublisher};
use payloom_platform::provenance::EventVerifier;
use payloom_platform::{Db, ids};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sqlx::AnyConnection;

/// The broker's address, or `None` (and the test skips) when none answers and none is
/// required (`PAYLOOM_REQUIRE_KAFKA=1`).
fn broker() -> Option<String> {
    let brokers =
        std::env::var("PAYLOOM_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    let reachable = first
        .parse()
        .ok()
        .and_then(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .is_some();
    match reachable {
        true => Some(brokers),
        false if std::env::var("PAYLOOM_REQUIRE_KAFKA").is_ok_and(|v| v == "1") => {
            panic!("a Kafka broker is required (PAYLOOM_REQUIRE_KAFKA=1) at {brokers}")
        }
        false => {
            eprintln!(
                "skipping: no Kafka broker at {brokers}; set PAYLOOM_REQUIRE_KAFKA=1 to fail instead"
            );
            None
        }
    }
}

/// Partitions per topic, as the broker reports them.
fn partitions(brokers: &str, topics: &[&str]) -> Vec<usize> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    topics
        .iter()
        .map(|name| {
            let topic = metadata.topics().iter().find(|t| t.name() == *name);
            topic.map_or(0, |t| t.partitions().len())
        })
        .collect()
}

/// Records the ids of the events it took in.
struct Recorder(&'static str);

#[async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn topics(&self) -> &'static [&'static str] {
        Box::leak(Box::new([self.0]))
    }
    async fn handle(&self, tx: &mut AnyConnection, event: &Envelope) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO seen (event_id) VALUES ($1)")
            .bind(&event.id)
            .execute(tx)
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_once_and_signed_events_cross_the_broker() {
    let Some(brokers) = broker() else { return };
    let run = ids::random_hex(4);
    let payments: &'static str = Box::leak(format!("payment{run}.events").into_boxed_str());
    let refunds = format!("refund{run}.events");
    let topics = [payments, refunds.as_str()];
    kafka::ensure_topics(&brokers, &topics, 3, 1).await.unwrap();
    assert_eq!(partitions(&brokers, &topics), [3, 3]);
    // Already there: left alone, whatever the configuration says now.
    kafka::ensure_topics(&brokers, &topics, 5, 1).await.unwrap();
    assert_eq!(partitions(&brokers, &topics), [3, 3]);

    let (ca, mut signers) = deployment::deployment(&["payment-gateway"]);
    let verifier = EventVerifier::new(ca.as_bytes(), [(payments, "payment-gateway")]).unwrap();
    let publisher = KafkaPublisher::new(&brokers, signers.remove(0)).unwrap();
    let event = Envelope::new(
        format!("payment{run}.succeeded"),
        "payment",
        "pay_1",
        1,
        serde_json::json!({}),
    );
    assert_eq!(event.topic(), payments);
    let json = serde_json::to_string(&event).unwrap();
    let outgoing = Outgoing {
        seq: 1,
        topic: event.topic(),
        key: "pay_1".into(),
        envelope: event.clone(),
        json,
        trace_parent: None,
    };
    publisher.publish(&[outgoing]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&sqlite_url(dir.path(), "consumer"), &PoolOptions::default())
        .await
        .unwrap();
    events::install(&db).await.unwrap();
    sqlx::query("CREATE TABLE seen (event_id TEXT PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    let subscription = Subscription::new(db.clone(), Arc::new(Recorder(payments)));
    let consumer = kafka::consumer(
        &brokers,
        &format!("group{run}"),
        &subscription,
        &Default::default(),
    )
    .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("the event arrives")
        .unwrap();
    kafka::handle_message(
        &consumer,
        &message,
        &subscription,
        &verifier,
        &Default::default(),
    )
    .await
    .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT event_id FROM seen")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(seen, [event.id]);
}
