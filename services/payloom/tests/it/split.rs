//! `payloom dev --split` as a user meets it: it refuses to start without what the split
//! runs on, keeps its merchant across a restart on the same data directory, and never
//! leaves a service behind when it is killed.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::{Backend, Platform};

/// Without PostgreSQL, Redis or a broker, it says which one and starts nothing.
#[test]
fn dev_split_names_what_it_is_missing() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_payloom"))
            .args(["dev", "--split", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .env_remove("PAYLOOM_EVENTS__KAFKA_BROKERS")
            .env_remove("PAYLOOM_REDIS__URL")
            .env_remove("PAYLOOM_DATABASE__URL")
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run(&[]).contains("--database-url"));
    let pg = ["--database-url", "postgres://postgres@127.0.0.1:5432/test"];
    assert!(run(&pg).contains("--redis-url"));
    let redis = ["--redis-url", "redis://127.0.0.1:6379"];
    assert!(run(&[&pg[..], &redis[..]].concat()).contains("--kafka-brokers"));
    assert!(
        !data.path().join("certs").exists(),
        "nothing was made for a split that could not start"
    );
}

/// A restart on the same data directory and databases finds the merchant and its
/// payments; each service's database is its own, beside the one named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_keeps_its_merchant_across_a_restart() {
    let Some(mut p) = Platform::start(Backend::Split).await else {
        return;
    };
    let paid = p.merchant.pay(1_500, json!({})).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    let id = paid.json["id"].as_str().unwrap().to_owned();
    let merchant = p.merchant.key.merchant_id.clone();
    p.restart();
    assert_eq!(p.credentials["merchant"]["id"], merchant.as_str());
    let again = p.merchant.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["status"], "succeeded");
    let services = p.credentials["services"].as_object().unwrap();
    assert_eq!(services.len(), 11, "{services:?}");
    let gateway_db = p.database_of("payment-gateway");
    let pool = sqlx::PgPool::connect(&gateway_db).await.unwrap();
    let payments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payments")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(payments, 1, "in {gateway_db}");
    pool.close().await;
}

/// SIGKILL to the command alone (not its process group): its services notice they lost
/// their parent and stop within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_stop_when_the_command_is_killed() {
    let Some(mut p) = Platform::start(Backend::Split).await else {
        return;
    };
    let urls: Vec<String> = p.credentials["services"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| format!("{}/health", s["public"].as_str().unwrap()))
        .collect();
    for url in &urls {
        assert!(reqwest::get(url).await.is_ok(), "{url} is up");
    }
    p.kill_launcher_only();
    let mut answering = urls.clone();
    for _ in 0..100 {
        let mut still = Vec::new();
        for url in &answering {
            if reqwest::get(url).await.is_ok() {
                still.push(url.clone());
            }
        }
        answering = still;
        if answering.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answering, Vec::<String>::new(), "services left behind");
}
