//! `serve` with Kafka between processes: the payment services in one process publish
//! their outboxes to Kafka (librdkafka's mock cluster, run by this test on real ports);
//! accounting and notification in another process consume them. A payment and a refund
//! are booked and told by signed webhooks, and every outbox drains.
//!
//! This test is a third consumer, in a process and a consumer group of its own: it reads
//! every event accounting read, each signed by the service that produces its topic. And
//! what anyone else writes to a topic (unsigned, signed by a service that does not produce
//! it, or by a certificate from another CA) is refused by both consumers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use payloom_accounting_contract::LedgerEvent;
use payloom_gateway_contract::{PaymentEvent, PaymentOut, RefundEvent};
use payloom_order_contract::OrderEvent;
use payloom_platform::Db;
use payloom_platform::db::PoolOptions;
use payloom_platform::events::Envelope;
use payloom_platform::kafka;
use payloom_platform::provenance::{EventSigner, EventVerifier};
use payloom_platform::tls::ServiceIdentity;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use crate::multiprocess::{Urls, bootstrap_merchant, certs_init, serve, serve_config};
use crate::receiver::{Receiver, assert_verified};
use crate::support::{Merchant, TestDatabase};

const PAYMENTS: [&str; 8] = [
    "merchant-auth",
    "order",
    "merchant-quota",
    "merchant-policy",
    "risk",
    "channel-adapter",
    "admin-bff",
    "payment-gateway",
];
const CONSUMERS: [&str; 2] = ["accounting", "notification"];

/// Each topic and the one service that produces it (`docs/architecture.md`).
const PRODUCERS: [(&str, &str); 4] = [
    ("payment.events", "payment-gateway"),
    ("refund.events", "payment-gateway"),
    ("order.events", "order"),
    ("ledger.events", "accounting"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_in_two_processes_exchange_events_through_kafka() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // librdkafka's mock cluster has no CreateTopics: the topics are made here, and `serve`
    // finds them (creation itself is tested against a real broker in the platform crate).
    let cluster = MockCluster::new(1).unwrap();
    // Plugin activations have a topic too; this journey publishes nothing on it.
    for topic in PRODUCERS
        .iter()
        .map(|(topic, _)| *topic)
        .chain(["plugin.events"])
    {
        cluster.create_topic(topic, 3, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[events]\nkafka_brokers = \"{brokers}\"\ntopic_partitions = 3\n[notification]\nallow_loopback = true\n"
    );
    let (config, urls) = serve_config(dir.path(), &extra);
    let _consumers = serve(
        &config,
        &dir.path().join("b"),
        &db.url,
        &CONSUMERS,
        "notification",
    );
    let _payments = serve(
        &config,
        &dir.path().join("a"),
        &db.url,
        &PAYMENTS,
        "payment-gateway",
    );
    let third = ThirdConsumer::start(&brokers, &urls);
    let m = bootstrap_merchant(&urls).await;
    let receiver = Receiver::start().await;
    let id = pay_and_refund(&m, &receiver).await;
    assert_eq!(ledger_kinds(&urls, &id, 2).await, ["capture", "refund"]);

    let pool = Db::connect(&db.url, &PoolOptions::default()).await.unwrap();
    let left = poll(|| async {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payloom_outbox")
            .fetch_one(pool.pool())
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
    assert!(left.is_some(), "every outbox drains into Kafka");

    third.saw_everything_accounting_read(&pool).await;
    forgeries_change_nothing(&brokers, &urls, &m, &receiver, &pool).await;
    third.stop().await;
    pool.pool().close().await;
}

/// Pays 5,000 and refunds 1,000, and checks both webhooks arrived signed; the payment id.
pub(crate) async fn pay_and_refund(m: &Merchant, receiver: &Receiver) -> String {
    let endpoint = m
        .post("/v1/webhook_endpoints", json!({"url": receiver.url}))
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.text);
    let secret = endpoint.json["secret"].as_str().unwrap().to_owned();
    let private = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "http://10.1.2.3/hook"}),
        )
        .await;
    assert_eq!(
        private.status, 422,
        "serve refuses private targets unless allowed"
    );
    let paid = m.pay(5_000, json!({})).await;
    assert_eq!(paid.json["status"], "succeeded", "{}", paid.text);
    let id = paid.json["id"].as_str().unwrap().to_owned();
    let refund = m
        .post(
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 1_000}),
        )
        .await;
    assert_eq!(refund.json["status"], "succeeded", "{}", refund.text);
    let got = receiver
        .wait_for("payment.succeeded and refund.succeeded", |r| {
            r.iter().any(|r| r.kind() == "payment.succeeded")
                && r.iter().any(|r| r.kind() == "refund.succeeded")
        })
        .await;
    assert_verified(&secret, &got);
    id
}

/// The kinds of the ledger entries of `payment`, once there are `want` of them.
pub(crate) async fn ledger_kinds(urls: &Urls, payment: &str, want: usize) -> Vec<String> {
    let http = urls.client_as("admin-bff");
    let url = format!(
        "{}/internal/v1/ledger/entries?payment_id={payment}",
        urls.internal("accounting")
    );
    let mut kinds = Vec::new();
    for _ in 0..100 {
        let entries: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        kinds = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect();
        if kinds.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kinds
}

/// Asks `check` every 100 ms for up to 15 s.
pub(crate) async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    mut check: impl FnMut() -> F,
) -> Option<T> {
    for _ in 0..150 {
        if let Some(found) = check().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The ids of the events `consumer` has taken in.
async fn consumed(pool: &Db, consumer: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM payloom_consumed WHERE consumer = $1")
        .bind(consumer)
        .fetch_all(pool.pool())
        .await
        .unwrap()
}

/// A consumer outside the platform: its own group, every topic, the platform's own check
/// of who signed each message, and each contract's typed reading of its events.
struct ThirdConsumer {
    /// (topic, event id) of each message whose producer checked out.
    believed: Arc<Mutex<Vec<(String, String)>>>,
    refused: Arc<Mutex<usize>>,
    stop: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The (topic, event id) of a message whose producer checks out and that reads as its
/// contract's type; `None` for any other.
fn believe(message: &impl rdkafka::Message, verifier: &EventVerifier) -> Option<(String, String)> {
    if !kafka::verified(message, verifier, &Default::default()) {
        return None;
    }
    let envelope: Envelope = serde_json::from_slice(message.payload()?).ok()?;
    reads_as_its_contract(message.topic(), &envelope)
        .then(|| (message.topic().to_owned(), envelope.id))
}

impl ThirdConsumer {
    fn start(brokers: &str, urls: &Urls) -> Self {
        let ca = std::fs::read(urls.certs.join("ca.pem")).unwrap();
        let verifier = EventVerifier::new(&ca, PRODUCERS).unwrap();
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "third-party")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        let topics: Vec<&str> = PRODUCERS.iter().map(|(topic, _)| *topic).collect();
        consumer.subscribe(&topics).unwrap();
        let this = Self {
            believed: Arc::default(),
            refused: Arc::default(),
            stop: Arc::default(),
            task: None,
        };
        let (believed, refused, stop) = (
            this.believed.clone(),
            this.refused.clone(),
            this.stop.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = stop.notified() => break,
                    message = consumer.recv() => message,
                };
                let Ok(message) = message else { continue };
                match believe(&message, &verifier) {
                    Some(seen) => believed.lock().unwrap().push(seen),
                    None => *refused.lock().unwrap() += 1,
                }
            }
            // The consumer leaves its group here, while the cluster still answers.
        });
        Self {
            task: Some(task),
            ..this
        }
    }

    /// Stops reading and closes the consumer (before the test drops the cluster: a
    /// consumer closing against a cluster that is gone waits forever).
    async fn stop(mut self) {
        self.stop.notify_one();
        let task = self.task.take().expect("started");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the third consumer closes")
            .unwrap();
    }

    /// Every event accounting consumed reached this consumer too, believed, and so did
    /// the events of every topic, each from its declared producer.
    async fn saw_everything_accounting_read(&self, pool: &Db) {
        let ledger_read = consumed(pool, "accounting").await;
        assert!(ledger_read.len() >= 2, "{ledger_read:?}");
        let seen = poll(|| async {
            let believed = self.believed.lock().unwrap().clone();
            let ids: Vec<&String> = believed.iter().map(|(_, id)| id).collect();
            let every_topic = PRODUCERS
                .iter()
                .all(|(topic, _)| believed.iter().any(|(t, _)| t == topic));
            (every_topic && ledger_read.iter().all(|id| ids.contains(&id))).then_some(())
        })
        .await;
        assert!(
            seen.is_some(),
            "the third consumer saw {:?}; accounting read {ledger_read:?}",
            self.believed.lock().unwrap()
        );
        assert_eq!(*self.refused.lock().unwrap(), 0);
    }
}

/// Whether `envelope` reads as the typed event of `topic`'s contract.
fn reads_as_its_contract(topic: &str, envelope: &Envelope) -> bool {
    let read = match topic {
        "payment.events" => PaymentEvent::read(envelope).map(|e| e.is_some()).ok(),
        "refund.events" => RefundEvent::read(envelope).map(|e| e.is_some()).ok(),
        "order.events" => OrderEvent::read(envelope).map(|e| e.is_some()).ok(),
        "ledger.events" => LedgerEvent::read(envelope).map(|e| e.is_some()).ok(),
        _ => None,
    };
    read == Some(true)
}

/// Writes forged `payment.succeeded` events for `m` straight to Kafka, then a pending
/// payment the gateway's key really signed behind them on the same partition. Once both consumers
/// took that in, they had read the forgeries: none of them is recorded, booked or told.
async fn forgeries_change_nothing(
    brokers: &str,
    urls: &Urls,
    m: &Merchant,
    receiver: &Receiver,
    pool: &Db,
) {
    let before = m.get("/v1/balance").await;
    assert_eq!(before.status, 200, "{}", before.text);
    let signer = |certs: &std::path::Path, service: &str| -> EventSigner {
        ServiceIdentity::load(certs, service)
            .unwrap()
            .event_signer()
            .unwrap()
    };
    let elsewhere = tempfile::tempdir().unwrap();
    certs_init(elsewhere.path());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let forged = forged_payment(&m.key.merchant_id);
    let mut forged_ids = Vec::new();
    for signed_by in [
        None,
        Some(signer(&urls.certs, "notification")),
        Some(signer(elsewhere.path(), "payment-gateway")),
    ] {
        let event = forged(&mut forged_ids);
        produce(&producer, &event, signed_by.as_ref()).await;
    }
    let sentinel = PaymentEvent::Pending(PaymentOut {
        id: "pay_sentinel".into(),
        channel: Some("sandbox".into()),
        ..PaymentOut::default()
    })
    .envelope(&m.key.merchant_id);
    produce(
        &producer,
        &sentinel,
        Some(&signer(&urls.certs, "payment-gateway")),
    )
    .await;

    for consumer in CONSUMERS {
        let reached = poll(|| async {
            let ids = consumed(pool, consumer).await;
            ids.contains(&sentinel.id).then_some(ids)
        })
        .await
        .unwrap_or_else(|| panic!("{consumer} never read the sentinel"));
        assert!(
            forged_ids.iter().all(|id| !reached.contains(id)),
            "{consumer} took in a forged event"
        );
    }
    assert_eq!(
        ledger_kinds(urls, "pay_forged", 0).await,
        Vec::<String>::new()
    );
    let after = m.get("/v1/balance").await;
    assert_eq!(after.json, before.json, "the balance did not move");
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| !r.json().to_string().contains("pay_forged")),
        "no webhook tells of a forged payment"
    );
}

/// Makes forged `payment.succeeded` events for `merchant`, noting each id.
fn forged_payment(merchant: &str) -> impl Fn(&mut Vec<String>) -> Envelope + '_ {
    move |ids| {
        let data = json!({
            "id": "pay_forged", "amount": 100_000, "currency": "USD", "channel": "sandbox",
            "amount_captured": 100_000, "fee": 0, "status": "succeeded",
        });
        let event = Envelope::new("payment.succeeded", "payment", "pay_forged", 1, data)
            .for_merchant(merchant);
        ids.push(event.id.clone());
        event
    }
}

/// Writes `event` to its topic, signed when a signer is given, on the partition of the
/// forgeries (so once a consumer read it, it had read them).
async fn produce(producer: &FutureProducer, event: &Envelope, signer: Option<&EventSigner>) {
    let (topic, json) = (event.topic(), serde_json::to_string(event).unwrap());
    let key = "pay_forged";
    let mut record = FutureRecord::to(&topic).key(key).payload(&json);
    if let Some(signer) = signer {
        record =
            record.headers(kafka::signed_headers(signer, &topic, key, json.as_bytes()).unwrap());
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap();
}
