//! `serve` with Kafka between processes: the payment services in one process publish
//! their outboxes to Kafka (librdkafka's mock cluster, run by this test on real ports);
//! accounting and notification in another process consume them. A payment and a refund
//! are booked and told by signed webhooks, and every outbox drains.

use std::time::Duration;

use payloom_platform::Db;
use payloom_platform::db::PoolOptions;
use rdkafka::mocking::MockCluster;
use serde_json::{Value, json};

use crate::multiprocess::{bootstrap_merchant, serve, serve_config};
use crate::receiver::{Receiver, assert_verified};
use crate::support::TestDatabase;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_in_two_processes_exchange_events_through_kafka() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let cluster = MockCluster::new(1).unwrap();
    for topic in [
        "payment.events",
        "refund.events",
        "order.events",
        "ledger.events",
    ] {
        cluster.create_topic(topic, 2, 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[events]\nkafka_brokers = \"{}\"\n[notification]\nallow_loopback = true\n",
        cluster.bootstrap_servers()
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
    let m = bootstrap_merchant(&urls).await;

    let receiver = Receiver::start().await;
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
    let id = paid.json["id"].as_str().unwrap();
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

    let http = urls.client_as("admin-bff");
    let mut kinds = Vec::new();
    for _ in 0..100 {
        let entries: Value = http
            .get(format!(
                "{}/internal/v1/ledger/entries?payment_id={id}",
                urls.internal("accounting")
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        kinds = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect();
        if kinds.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kinds, ["capture", "refund"]);

    // Every outbox (the gateway's, the orders', the ledger's) drains into Kafka.
    let pool = Db::connect(&db.url, &PoolOptions::default()).await.unwrap();
    let mut left = -1i64;
    for _ in 0..100 {
        left = sqlx::query_scalar("SELECT COUNT(*) FROM payloom_outbox")
            .fetch_one(pool.pool())
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0);
    pool.pool().close().await;
}
