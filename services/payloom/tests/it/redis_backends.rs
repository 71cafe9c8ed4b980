//! The Redis implementations against a real Redis: nonces and quota counters.

use std::sync::Arc;

use payloom_merchant_quota::{RedisUsage, ReservationRecord, UsageStore};
use payloom_platform::cache::{KeyStore, RedisKeyStore};

use crate::support::redis;

#[tokio::test]
async fn redis_nonces_are_claimed_once_and_expire() {
    let Some(conn) = redis().await else { return };
    let prefix = format!("payloom-test:{}:", payloom_platform::ids::random_hex(6));
    let store = RedisKeyStore::new(conn.clone(), &prefix);
    assert!(store.insert_if_absent("key_1:n1", 300).await.unwrap());
    assert!(!store.insert_if_absent("key_1:n1", 300).await.unwrap());
    assert!(store.insert_if_absent("key_1:n2", 300).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        store.insert_if_absent("key_1:n1", 300).await.unwrap(),
        "claimable again after the TTL"
    );
    forget(conn, &prefix).await;
}

#[tokio::test]
async fn redis_windows_count_hits_and_close() {
    let Some(conn) = redis().await else { return };
    let prefix = format!("payloom-test:{}:", payloom_platform::ids::random_hex(6));
    let store = RedisKeyStore::new(conn.clone(), &prefix);
    assert_eq!(store.hit("ip:1", 300).await.unwrap(), 1);
    assert_eq!(store.hit("ip:1", 300).await.unwrap(), 2);
    assert_eq!(store.hit("ip:2", 300).await.unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(store.hit("ip:1", 300).await.unwrap(), 1, "a new window");
    forget(conn, &prefix).await;
}

/// Deletes what a test wrote under its prefix.
async fn forget(conn: redis::aio::ConnectionManager, prefix: &str) {
    forget_matching(conn, &format!("{prefix}*")).await;
}

/// Deletes the keys matching a `KEYS` pattern.
pub(crate) async fn forget_matching(mut conn: redis::aio::ConnectionManager, pattern: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

fn record(id: &str, day: &str, month: &str, amount: i64) -> ReservationRecord {
    ReservationRecord {
        id: id.to_owned(),
        merchant_id: "mch_1".into(),
        currency: "USD".into(),
        amount_minor: amount,
        day: day.to_owned(),
        month: month.to_owned(),
        created_at_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_quota_reservations_never_pass_the_limit_under_concurrency() {
    let Some(conn) = redis().await else { return };
    let prefix = format!("payloom-test:{}:", payloom_platform::ids::random_hex(6));
    let usage = Arc::new(RedisUsage::new(conn.clone(), &prefix));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let usage = usage.clone();
            tokio::spawn(async move {
                usage
                    .reserve(
                        &record(&format!("qr_{i}"), "d:2026-11-21", "m:2026-11", 700),
                        10_000,
                        25_000,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap() {
            granted.push(i);
        }
    }
    assert_eq!(
        granted.len(),
        14,
        "10,000 / 700 = 14 reservations fit the day"
    );
    let first = format!("qr_{}", granted[0]);
    usage.release(&first).await.unwrap();
    usage.release(&first).await.unwrap();
    usage.release("qr_unknown").await.unwrap();
    assert!(
        usage
            .reserve(
                &record("qr_a", "d:2026-11-21", "m:2026-11", 700),
                10_000,
                25_000
            )
            .await
            .unwrap(),
        "one release frees one slot"
    );
    assert!(
        !usage
            .reserve(
                &record("qr_b", "d:2026-11-21", "m:2026-11", 700),
                10_000,
                25_000
            )
            .await
            .unwrap(),
        "a second release of the same one freed nothing"
    );
    assert!(
        !usage
            .reserve(
                &record("qr_c", "d:2026-11-22", "m:2026-11", 700),
                10_000,
                10_000
            )
            .await
            .unwrap(),
        "the month is full even on a new day"
    );
    forget(conn, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_redis_refuses_a_nonce_replayed_on_another_node() {
    let Some(_conn) = redis().await else { return };
    let Some(db) = crate::support::TestDatabase::create().await else {
        return;
    };
    // Two dev processes on one database and one Redis: a nonce used on one is spent on both.
    let dir = tempfile::tempdir().unwrap();
    let start = |data: std::path::PathBuf| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_payloom"));
        command
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--redis-url",
                crate::support::REDIS_URL,
                "--database-url",
                &db.url,
                "--data-dir",
            ])
            .arg(data);
        crate::support::spawn_and_wait(command, "payloom dev listening on ")
    };
    let (_one, base_one) = start(dir.path().join("one"));
    // The second node shares the first's secrets and credentials.
    std::fs::create_dir_all(dir.path().join("two")).unwrap();
    for file in ["master.key", "admin-jwt.secret", "dev-credentials.json"] {
        std::fs::copy(
            dir.path().join("one").join(file),
            dir.path().join("two").join(file),
        )
        .unwrap();
    }
    let (_two, base_two) = start(dir.path().join("two"));
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("one/dev-credentials.json")).unwrap(),
    )
    .unwrap();
    let key = crate::support::Key {
        merchant_id: creds["merchant"]["id"].as_str().unwrap().into(),
        key_id: creds["merchant"]["api_key"]["key_id"]
            .as_str()
            .unwrap()
            .into(),
        secret: creds["merchant"]["api_key"]["secret"]
            .as_str()
            .unwrap()
            .into(),
    };
    let body =
        serde_json::json!({"order_no": "redis-1", "amount": 1000, "currency": "USD"}).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let headers = payloom_payment_gateway::sign_request(
        &key.key_id,
        &key.secret,
        "POST",
        "/v1/payments",
        &body,
        now,
    );
    let one = crate::support::Merchant {
        base: base_one,
        key: key.clone(),
        http: reqwest::Client::new(),
    };
    let two = crate::support::Merchant {
        base: base_two,
        key,
        http: reqwest::Client::new(),
    };
    let first = one
        .send_with("POST", "/v1/payments", &body, &[], |h| *h = headers.clone())
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let replay = two
        .send_with("POST", "/v1/payments", &body, &[], |h| *h = headers.clone())
        .await;
    assert_eq!(
        (replay.status, replay.error_code()),
        (401, "nonce_replayed"),
        "{}",
        replay.text
    );
}
