//! Every registered service as its own `serve` process on loopback, as the origin deploys
//! them: mutual TLS between every pair, a PostgreSQL database per service, Redis, and
//! events through a real
//! Kafka-protocol broker process. The merchant's journey (a payment held and captured, one
//! paid and partly refunded, webhooks received, the balance) works end to end, and every
//! internal listener refuses a caller with no certificate and a caller whose certificate
//! names a service not allowed to call it, changing nothing. A payment's spans reach an
//! OTLP receiver as one trace across the gateway, risk, channel-adapter and accounting.

use serde_json::json;

use crate::kafka::{ledger_kinds, pay_and_refund, poll};
use crate::money::available;
use crate::mtls::{anonymous, merchant_count, status_of};
use crate::multiprocess::{Urls, bootstrap_merchant, serve, serve_config};
use crate::otlp::OtlpReceiver;
use crate::receiver::Receiver;
use crate::support::{Merchant, REDIS_URL, TestDatabase, kafka_brokers, redis};

/// Every registered service, callees before their callers.
const EVERY_SERVICE: [&str; 11] = [
    "plugin-registry",
    "merchant-auth",
    "order",
    "merchant-quota",
    "merchant-policy",
    "risk",
    "channel-adapter",
    "accounting",
    "notification",
    "admin-bff",
    "payment-gateway",
];

/// The two tests here each start a dozen processes; one at a time, so two cores serve them.
pub(crate) static ONE_TOPOLOGY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_in_its_own_process_over_mtls_kafka_and_redis() {
    let _one = ONE_TOPOLOGY.lock().await;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (Some(_redis), Some(brokers)) = (redis().await, kafka_brokers()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A consumer group of this run's own: the broker outlives test runs, and what earlier
    // runs wrote is signed by certificates of another CA, which the consumers refuse.
    let group = format!("topology-{}", payloom_platform::ids::random_hex(6));
    let traces = OtlpReceiver::start().await;
    let extra = format!(
        "[events]\nkafka_brokers = \"{brokers}\"\nconsumer_group = \"{group}\"\n\
         topic_partitions = 3\n[redis]\nurl = \"{REDIS_URL}\"\n\
         [notification]\nallow_loopback = true\n\
         [telemetry]\notlp_endpoint = \"{}\"\n",
        traces.endpoint
    );
    let (config, urls) = serve_config(dir.path(), &extra);
    let own = own_databases(&config).await;
    let _processes: Vec<_> = EVERY_SERVICE
        .iter()
        .map(|service| {
            serve(
                &config,
                &dir.path().join(service),
                &db.url,
                &[service],
                service,
            )
        })
        .collect();

    let m = bootstrap_merchant(&urls).await;
    let receiver = Receiver::start().await;
    let captured = hold_and_capture(&m, 3_000).await;
    let refunded = pay_and_refund(&m, &receiver).await;
    assert_eq!(
        ledger_kinds(&urls, &captured.0, 2).await,
        ["authorization", "capture"]
    );
    assert_eq!(
        ledger_kinds(&urls, &refunded, 2).await,
        ["capture", "refund"]
    );
    let paid = m.get(&format!("/v1/payments/{refunded}")).await;
    let fee = paid.json["fee"].as_i64().unwrap();
    let fee_back = fee * 1_000 / 5_000;
    let expected = (3_000 - captured.1) + (5_000 - fee) - (1_000 - fee_back);
    let balance = poll(|| async {
        let now = available(&m).await;
        (now == expected).then_some(now)
    })
    .await;
    assert_eq!(balance, Some(expected), "the balance after both payments");

    one_trace_across_processes(&traces).await;
    refusals(&urls, &own["merchant-auth"].url).await;
    // Each service's tables are in its database and nowhere else.
    assert_eq!(
        tables(&db.url).await,
        Vec::<String>::new(),
        "the shared database"
    );
    assert!(
        tables(&own["accounting"].url)
            .await
            .contains(&"journal_entries".into())
    );
    assert!(
        !tables(&own["payment-gateway"].url)
            .await
            .contains(&"journal_entries".into())
    );
}

/// A database of its own for every service, named in `config` as its `database_url`.
async fn own_databases(
    config: &std::path::Path,
) -> std::collections::HashMap<&'static str, TestDatabase> {
    let mut text = std::fs::read_to_string(config).unwrap();
    let mut own = std::collections::HashMap::new();
    for service in EVERY_SERVICE {
        let db = TestDatabase::create().await.expect("PostgreSQL is up");
        let header = format!("[services.{service}]\n");
        text = text.replace(&header, &format!("{header}database_url = \"{}\"\n", db.url));
        own.insert(service, db);
    }
    std::fs::write(config, text).unwrap();
    own
}

/// The tables a service created in the database at `url` (not the platform's own
/// bookkeeping of migrations and events).
async fn tables(url: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let names = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name NOT LIKE 'payloom\\_%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    names
}

/// The services a payment's creation reaches, each in its own process.
const TRACED: [&str; 4] = ["payment-gateway", "risk", "channel-adapter", "accounting"];

/// Some `POST /v1/payments` is one trace whose spans came from the gateway, risk,
/// channel-adapter and accounting processes, each callee's request span a child of a
/// span of that trace (a span's parent is never missing from what was exported).
async fn one_trace_across_processes(traces: &OtlpReceiver) {
    let whole = poll(|| async {
        let spans = traces.spans();
        let roots = spans.iter().filter(|s| {
            s.service == "payment-gateway"
                && s.attribute("route") == Some("/v1/payments")
                && s.attribute("method") == Some("POST")
        });
        for root in roots {
            let trace: Vec<_> = spans
                .iter()
                .filter(|s| s.trace_id == root.trace_id)
                .collect();
            if TRACED
                .iter()
                .all(|svc| trace.iter().any(|s| s.service == *svc))
            {
                return Some(trace.into_iter().cloned().collect::<Vec<_>>());
            }
        }
        None
    })
    .await
    .unwrap_or_else(|| panic!("no payment trace spans {TRACED:?}: {:#?}", traces.spans()));
    for span in whole.iter().filter(|s| s.service != "payment-gateway") {
        assert!(
            whole.iter().any(|p| p.span_id == span.parent_span_id),
            "{span:?} continues a span of the same trace"
        );
    }
}

/// Holds `amount` and captures it whole; its id and fee.
async fn hold_and_capture(m: &Merchant, amount: i64) -> (String, i64) {
    let held = m.pay(amount, json!({"capture": "manual"})).await;
    assert_eq!(held.json["status"], "authorized", "{}", held.text);
    let id = held.json["id"].as_str().unwrap().to_owned();
    let captured = m
        .post(&format!("/v1/payments/{id}/capture"), json!({}))
        .await;
    assert_eq!(captured.json["status"], "succeeded", "{}", captured.text);
    (id, captured.json["fee"].as_i64().unwrap())
}

/// On each service a caller may reach, a route, who is refused it though its certificate
/// is the deployment's, and who may call it (and is answered, if only 404 or 405).
fn guarded(urls: &Urls, merchant: &str) -> Vec<(String, &'static str, &'static str)> {
    vec![
        (
            format!(
                "{}/internal/v1/merchants/{merchant}",
                urls.internal("merchant-auth")
            ),
            "risk",
            "admin-bff",
        ),
        (
            format!("{}/internal/v1/orders/ord_missing", urls.internal("order")),
            "admin-bff",
            "payment-gateway",
        ),
        (
            format!(
                "{}/internal/v1/ledger/entries?payment_id=pay_missing",
                urls.internal("accounting")
            ),
            "notification",
            "admin-bff",
        ),
        (
            format!(
                "{}/internal/v1/merchants/{merchant}/channels/sandbox/credentials",
                urls.internal("channel-adapter")
            ),
            "order",
            "admin-bff",
        ),
    ]
}

/// No certificate: no answer. Another service's certificate: 403 and nothing changes.
async fn refusals(urls: &Urls, db: &str) {
    let shop = json!({"name": "Intruder"});
    let merchants = format!("{}/internal/v1/merchants", urls.internal("merchant-auth"));
    let before = merchant_count(db).await;
    let refused = anonymous(urls).post(&merchants).json(&shop).send().await;
    assert!(refused.is_err(), "no certificate: {refused:?}");
    let as_risk = urls.client_as("risk").post(&merchants).json(&shop);
    let (status, body) = status_of(as_risk.send().await.unwrap()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("caller_not_allowed"))
    );
    assert_eq!(
        merchant_count(db).await,
        before,
        "a refused call creates nothing"
    );

    let merchant = first_merchant(db).await;
    for (route, intruder, caller) in guarded(urls, &merchant) {
        assert!(anonymous(urls).get(&route).send().await.is_err(), "{route}");
        let (status, body) =
            status_of(urls.client_as(intruder).get(&route).send().await.unwrap()).await;
        assert_eq!(status, 403, "{intruder} on {route}: {body}");
        let allowed = urls.client_as(caller).get(&route).send().await.unwrap();
        assert_ne!(allowed.status().as_u16(), 403, "{caller} on {route}");
    }
    // The gateway and the admin console are called by no one: their internal listeners
    // answer no service at all.
    for service in ["payment-gateway", "admin-bff"] {
        let route = format!("{}/internal/v1/anything", urls.internal(service));
        let answer = urls
            .client_as("merchant-auth")
            .get(&route)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(answer.status().as_u16(), 403 | 404),
            "{route}: {}",
            answer.status()
        );
    }
}

async fn first_merchant(db: &str) -> String {
    let pool = sqlx::PgPool::connect(db).await.unwrap();
    sqlx::query_scalar("SELECT id FROM merchants LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap()
}

/// `payloom bench topology` measures `dev` and the split topology back to back on one
/// PostgreSQL server, every payment of both succeeding, and reports their ratio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_benchmark_measures_dev_and_the_split_back_to_back() {
    let _one = ONE_TOPOLOGY.lock().await;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (Some(_redis), Some(brokers)) = (redis().await, kafka_brokers()) else {
        return;
    };
    let mut bench = std::process::Command::new(env!("CARGO_BIN_EXE_payloom"));
    bench
        .args([
            "bench",
            "topology",
            "--duration-secs",
            "1",
            "--concurrency",
            "2",
        ])
        .args(["--postgres", &db.url, "--redis-url", REDIS_URL])
        .args(["--kafka-brokers", &brokers]);
    let output = tokio::task::spawn_blocking(move || bench.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in ["dev, round 1", "split, round 1"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row:?} in {stdout}"));
        let numbers: Vec<f64> = line[row.len()..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(numbers[0] > 0.0, "{row} made payments: {line}");
        assert_eq!(numbers[3], 0.0, "{row} had no failed payment: {line}");
    }
    assert!(stdout.contains("split / dev, mean payments/s"), "{stdout}");
}
