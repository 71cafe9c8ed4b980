//! Velocity counters belong to one merchant: another merchant's payments never count
//! toward them, spellings of one e-mail address count as one customer, and with Redis
//! every node counts every payment.

use payloom_host::capabilities::counters::{
    COUNTER_WINDOW_MS_MAX, CounterKey, Counters, MemoryCounters,
};
use payloom_risk::RedisCounters;
use serde_json::json;

use crate::in_every_topology;
use crate::support::{Answer, Backend, Merchant, Platform, REDIS_URL, redis, spawn_and_wait};

in_every_topology!(velocity_counts_each_merchants_own_payments);

/// Only the velocity rule, at three payments per e-mail address an hour.
const LOW_LIMIT: &str = r#"
[[risk.rules]]
plugin = "velocity"
config = { key = "email", window_seconds = "3600", max_count = "3" }
"#;

const VICTIM: &str = "victim@example.com";

async fn pay_as(m: &Merchant, email: &str) -> Answer {
    m.pay(100, json!({"customer": {"email": email}})).await
}

fn assert_succeeded(paid: &Answer) {
    assert_eq!(
        (paid.status, paid.json["status"].as_str()),
        (201, Some("succeeded")),
        "{}",
        paid.text
    );
}

fn assert_velocity_blocked(paid: &Answer) {
    assert_eq!(
        (
            paid.json["status"].as_str(),
            paid.json["failure_code"].as_str()
        ),
        (Some("failed"), Some("risk_blocked")),
        "{}",
        paid.text
    );
    let reason = paid.json["failure_message"].as_str().unwrap_or_default();
    assert!(
        reason.contains("payments by this email in 3600s (limit 3)"),
        "{reason}"
    );
}

async fn velocity_counts_each_merchants_own_payments(backend: Backend) {
    let Some(p) = Platform::start_with(backend, LOW_LIMIT).await else {
        return;
    };
    let (a, b) = (&p.merchant, &p.another_merchant().await);
    assert_succeeded(&pay_as(b, VICTIM).await);
    for _ in 0..3 {
        assert_succeeded(&pay_as(a, VICTIM).await);
    }
    for _ in 0..2 {
        assert_velocity_blocked(&pay_as(a, VICTIM).await);
    }
    // Six payments with this address elsewhere; B has seen it once.
    assert_succeeded(&pay_as(b, "VICTIM@example.com").await);
    // Within A, another spelling is the same customer.
    assert_velocity_blocked(&pay_as(a, "Victim@Example.COM").await);
}

/// Two `dev` nodes on one database and one Redis: a payment on one counts on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_redis_share_velocity_counts() {
    let Some(conn) = redis().await else {
        return;
    };
    let config = format!("{LOW_LIMIT}\n[redis]\nurl = \"{REDIS_URL}\"\n");
    let Some(p) = Platform::start_with(Backend::Postgres, &config).await else {
        return;
    };
    let two = p.data.path().join("two");
    std::fs::create_dir_all(&two).unwrap();
    for file in [
        "master.key",
        "admin-jwt.secret",
        "dev-credentials.json",
        "test.toml",
    ] {
        std::fs::copy(p.data.path().join(file), two.join(file)).unwrap();
    }
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_payloom"));
    command
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&two)
        .arg("--config")
        .arg(two.join("test.toml"))
        .args(["--database-url", &p.database_of("risk")]);
    let (_node_two, base_two) = spawn_and_wait(command, "payloom dev listening on ");

    let (a_one, b_one) = (p.merchant.clone(), p.another_merchant().await);
    let a_two = Merchant {
        base: base_two.clone(),
        ..a_one.clone()
    };
    let b_two = Merchant {
        base: base_two,
        ..b_one.clone()
    };
    assert_succeeded(&pay_as(&b_one, VICTIM).await);
    for _ in 0..3 {
        assert_succeeded(&pay_as(&a_one, VICTIM).await);
    }
    assert_velocity_blocked(&pay_as(&a_two, "Victim@example.com").await);
    assert_succeeded(&pay_as(&b_two, VICTIM).await);

    for merchant in [&a_one, &b_one] {
        let pattern = format!("payloom:*{}*", merchant.key.merchant_id);
        crate::redis_backends::forget_matching(conn.clone(), &pattern).await;
    }
}

/// Two counter stores on one Redis prefix see each other's events, and count exactly
/// as the in-memory store does for every window.
#[tokio::test]
async fn redis_counter_stores_on_one_prefix_share_counts() {
    let Some(mut conn) = redis().await else {
        return;
    };
    let prefix = format!("payloom-test:{}:", payloom_platform::ids::random_hex(6));
    let one = RedisCounters::new(conn.clone(), &prefix);
    let two = RedisCounters::new(conn.clone(), &prefix);
    let memory = MemoryCounters::default();
    let key = |merchant: &str, email: &str| CounterKey::new(merchant, "payments-by-email", email);
    let now_ms = payloom_host::state::unix_now_ms();
    let events: [(&RedisCounters, &str, i64, i64); 5] = [
        (&one, "victim@example.com", now_ms - 7_200_000, 1),
        (&one, "Victim@Example.com", now_ms - 60_000, 100),
        (&two, " VICTIM@example.com", now_ms - 1_000, 250),
        (&two, "victim@example.com", now_ms, 50),
        (&two, "victim@example.com", now_ms + 1, 7),
    ];
    for (store, email, at_ms, amount) in events {
        store
            .record(&key("mch_a", email), at_ms, amount)
            .await
            .unwrap();
        memory
            .record(&key("mch_a", email), at_ms, amount)
            .await
            .unwrap();
    }
    for window_ms in [1, 1_000, 60_000, 3_600_000, COUNTER_WINDOW_MS_MAX] {
        let victim = key("mch_a", "victim@example.com");
        let from_one = one.get(&victim, window_ms, now_ms).await.unwrap();
        let from_two = two.get(&victim, window_ms, now_ms).await.unwrap();
        let in_memory = memory.get(&victim, window_ms, now_ms).await.unwrap();
        assert_eq!(from_one, from_two, "window {window_ms}");
        assert_eq!(from_one, in_memory, "window {window_ms}");
    }
    let hour = two
        .get(&key("mch_a", "VICTIM@EXAMPLE.COM"), 3_600_000, now_ms)
        .await
        .unwrap();
    assert_eq!((hour.count, hour.sum_minor), (3, 400));
    let elsewhere = one
        .get(&key("mch_b", "victim@example.com"), 3_600_000, now_ms)
        .await
        .unwrap();
    assert_eq!(elsewhere.count, 0, "another merchant's counter is its own");

    let stored = format!(
        "{prefix}counter:{}",
        key("mch_a", "victim@example.com").storage_key()
    );
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&stored)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= COUNTER_WINDOW_MS_MAX,
        "the counter expires: {ttl_ms}"
    );
    let _: () = redis::cmd("DEL")
        .arg(&stored)
        .query_async(&mut conn)
        .await
        .unwrap();
}
