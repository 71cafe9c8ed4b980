//! Webhook delivery: retries on the schedule with the same event id, exhaustion, manual
//! resend with its log, 410 disabling an endpoint (and the operator's email), and targets
//! that are refused.

use std::time::Duration;

use serde_json::{Value, json};

use crate::on_both_databases;
use crate::receiver::Receiver;
use crate::support::{Backend, Platform};

on_both_databases!(
    deliveries_retry_with_one_event_id_and_410_disables_the_endpoint,
    webhook_endpoints_refuse_bad_and_private_targets,
    an_endpoint_that_only_fails_is_disabled_after_the_window,
);

/// Three retries a second apart, no jitter: the schedule runs in seconds.
const FAST: &str =
    "[notification]\nretry_schedule_secs = [1, 1, 1]\njitter = 0.0\noverload_floor_secs = 0\n";

async fn deliveries_of(p: &Platform, query: &str) -> Vec<Value> {
    let got = p
        .admin(
            "GET",
            &format!("/admin/v1/webhook_deliveries?{query}"),
            Value::Null,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    got.json.as_array().unwrap().clone()
}

/// Waits until the endpoint's deliveries satisfy `pred` (at most 20 s).
async fn wait_deliveries(
    p: &Platform,
    endpoint: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..100 {
        let got = deliveries_of(p, &format!("endpoint_id={endpoint}")).await;
        if pred(&got) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "deliveries of {endpoint} never settled: {:#?}",
        deliveries_of(p, &format!("endpoint_id={endpoint}")).await
    );
}

async fn deliveries_retry_with_one_event_id_and_410_disables_the_endpoint(backend: Backend) {
    let Some(p) = Platform::start_with(backend, FAST).await else {
        return;
    };
    let m = &p.merchant;
    let (flaky, broken) = (Receiver::start().await, Receiver::start().await);
    // A redirect is a failure like any other: it is not followed.
    flaky.answer_with(&[500, 302]);
    broken.answer_with(&[500, 500, 500, 500]);
    let a = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": flaky.url, "events": ["payment.succeeded"], "alert_email": "ops@example.com"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let b = m
        .post("/v1/webhook_endpoints", json!({"url": broken.url}))
        .await;
    let (a, b) = (
        a.json["id"].as_str().unwrap().to_owned(),
        b.json["id"].as_str().unwrap().to_owned(),
    );

    let paid = m.pay(2_000, json!({})).await;
    assert_eq!(paid.json["status"], "succeeded");

    // Two failures, then delivered on the third attempt, always with the same id.
    let got = flaky.wait_for("three attempts", |r| r.len() >= 3).await;
    assert!(got.iter().all(|r| r.id() == got[0].id()), "{got:#?}");
    let settled = wait_deliveries(&p, &a, |d| {
        d.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(settled[0]["event_id"], got[0].id());
    assert_eq!(settled[0]["attempts"], 3);
    let statuses: Vec<i64> = settled[0]["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["response_status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 302, 200]);

    // Four failures spend the schedule: the delivery has failed.
    let failed = wait_deliveries(&p, &b, |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(failed[0]["attempts"], 4);
    assert_eq!(broken.received().len(), 4);
    assert!(broken.received().iter().all(|r| r.id() == got[0].id()));

    // An operator resends it: delivered now, logged as manual.
    let delivery = failed[0]["id"].as_str().unwrap();
    let resent = p
        .admin(
            "POST",
            &format!("/admin/v1/webhook_deliveries/{delivery}/resend"),
            Value::Null,
        )
        .await;
    assert_eq!(resent.status, 200, "{}", resent.text);
    assert_eq!(resent.json["status"], "delivered");
    let last = resent.json["log"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["trigger"].as_str(), last["response_status"].as_i64()),
        (Some("manual"), Some(200))
    );
    assert_eq!(broken.received().last().unwrap().id(), got[0].id());

    // 410 Gone disables the endpoint at once, and the operator hears of it.
    flaky.answer_with(&[410]);
    m.pay(2_000, json!({})).await;
    flaky.wait_for("the 410", |r| r.len() >= 4).await;
    let mut disabled = Value::Null;
    for _ in 0..50 {
        let listed = m.get("/v1/webhook_endpoints").await;
        disabled = listed.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == a.as_str())
            .unwrap()
            .clone();
        if disabled["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(disabled["status"], "disabled", "{disabled}");
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    let emails = std::fs::read_to_string(p.data.path().join("emails.jsonl")).unwrap();
    assert!(
        emails.contains("ops@example.com") && emails.contains(&a),
        "{emails}"
    );
    m.pay(2_000, json!({})).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        flaky.received().len(),
        4,
        "a disabled endpoint receives nothing"
    );

    // Deleting an endpoint stops it too.
    let deleted = m
        .send("DELETE", &format!("/v1/webhook_endpoints/{b}"), "", &[])
        .await;
    assert_eq!(
        (deleted.status, deleted.json["status"].as_str()),
        (200, Some("deleted"))
    );
    let missing = m
        .send("DELETE", &format!("/v1/webhook_endpoints/{b}"), "", &[])
        .await;
    assert_eq!(missing.status, 404);
}

async fn an_endpoint_that_only_fails_is_disabled_after_the_window(backend: Backend) {
    let config = "[notification]\nretry_schedule_secs = [1, 1, 1, 1, 1, 1]\njitter = 0.0\noverload_floor_secs = 0\ndisable_after_secs = 2\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let m = &p.merchant;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500; 20]);
    let created = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "alert_email": "oncall@example.com"}),
        )
        .await;
    let endpoint = created.json["id"].as_str().unwrap().to_owned();
    m.pay(1_500, json!({})).await;

    let mut listed = Value::Null;
    let mut backlog_seen = 0.0f64;
    for _ in 0..100 {
        listed = m.get("/v1/webhook_endpoints").await.json["data"][0].clone();
        if listed["status"] == "disabled" {
            break;
        }
        let pending = p.metric("payloom_webhook_deliveries_pending", &[]).await;
        backlog_seen = backlog_seen.max(pending);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(listed["status"], "disabled", "{listed}");
    assert_eq!(
        backlog_seen, 1.0,
        "the retried delivery waits in the backlog"
    );
    assert!(
        listed["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed for"),
        "{listed}"
    );
    // Three failures span the two-second window: the third disables it.
    assert_eq!(receiver.received().len(), 3);
    let deliveries = wait_deliveries(&p, &endpoint, |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    // The operators' view: three failed attempts, one endpoint disabled, nothing waiting.
    let failed = p
        .metric("payloom_webhook_attempts_total", &["result=\"failed\""])
        .await;
    assert_eq!(failed, 3.0);
    let mut disabled = 0.0;
    for _ in 0..50 {
        disabled = p.metric("payloom_webhook_endpoints_disabled", &[]).await;
        let pending = p.metric("payloom_webhook_deliveries_pending", &[]).await;
        if disabled == 1.0 && pending == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(disabled, 1.0);
    let emails = std::fs::read_to_string(p.data.path().join("emails.jsonl")).unwrap();
    assert!(
        emails.contains("oncall@example.com") && emails.contains(&endpoint),
        "{emails}"
    );
    let delivery = deliveries[0]["id"].as_str().unwrap();
    let resend = p
        .admin(
            "POST",
            &format!("/admin/v1/webhook_deliveries/{delivery}/resend"),
            Value::Null,
        )
        .await;
    assert_eq!(
        (resend.status, resend.error_code()),
        (409, "endpoint_not_enabled")
    );
}

async fn webhook_endpoints_refuse_bad_and_private_targets(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    for (body, param) in [
        (json!({"url": "ftp://example.com/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://10.0.0.7/hook"}), "url"),
        (json!({"url": "http://169.254.169.254/latest"}), "url"),
        (json!({"url": "http://[fd00::1]/hook"}), "url"),
        // IPv4 carried in IPv6 is the IPv4 it carries: NAT64, 6to4, compatible, mapped.
        (json!({"url": "http://[64:ff9b::a00:5]/hook"}), "url"),
        (json!({"url": "http://[64:ff9b:1::a00:5]/hook"}), "url"),
        (json!({"url": "http://[2002:a00:5::1]/hook"}), "url"),
        (json!({"url": "http://[::10.0.0.5]/hook"}), "url"),
        (
            json!({"url": "http://[::ffff:169.254.169.254]/hook"}),
            "url",
        ),
        (json!({"url": "http://[fec0::1]/hook"}), "url"),
        (json!({"url": "http://[fd00:ec2::254]/latest"}), "url"),
        (json!({"url": "http://100.100.100.200/latest"}), "url"),
        (json!({"url": "http://198.18.0.1/hook"}), "url"),
        (json!({"url": "http://240.0.0.1/hook"}), "url"),
        (json!({"url": "http://0.0.0.0:9/hook"}), "url"),
        (
            json!({"url": "http://127.0.0.1:9/hook", "events": ["payment.exploded"]}),
            "events",
        ),
        (
            json!({"url": "http://127.0.0.1:9/hook", "alert_email": "nobody"}),
            "alert_email",
        ),
    ] {
        let refused = m.post("/v1/webhook_endpoints", body.clone()).await;
        // A well-formed http URL refused for where it leads is 422; a malformed one 400.
        let well_formed = param == "url" && body["url"].as_str().unwrap().starts_with("http://");
        let expected = if well_formed { 422 } else { 400 };
        assert_eq!(refused.status, expected, "{body}: {}", refused.text);
        assert_eq!(refused.json["error"]["param"], param, "{body}");
    }
    let unknown_field = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "http://127.0.0.1:9/", "colour": "red"}),
        )
        .await;
    assert_eq!(unknown_field.status, 400);
    assert_eq!(m.get("/v1/webhook_endpoints").await.json["data"], json!([]));
    for n in 0..16 {
        let made = m
            .post(
                "/v1/webhook_endpoints",
                json!({"url": format!("http://127.0.0.1:9/{n}")}),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
    }
    let seventeenth = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "http://127.0.0.1:9/17"}),
        )
        .await;
    assert_eq!(
        (seventeenth.status, seventeenth.error_code()),
        (409, "too_many_endpoints")
    );
}

/// SIGTERM while a webhook is on its way: the platform lets the attempt finish and
/// records the receiver's answer before it exits, so the receiver is not told again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_platform_finishes_the_webhook_under_way() {
    let Some(mut p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.hold_answers(Duration::from_millis(1_500));
    p.merchant.subscribe_to_payments(&receiver.url).await;
    let paid = p.merchant.pay(1_000, json!({})).await;
    assert_eq!(paid.json["status"], "succeeded", "{}", paid.text);
    receiver
        .wait_for("the payment's webhook", |r| !r.is_empty())
        .await;
    // The receiver holds its answer: the attempt is under way as the stop begins.
    let exit = p.terminate();
    assert!(exit.success(), "{exit}");
    let db = payloom_platform::Db::connect(
        &p.database_of("notification"),
        &payloom_platform::db::PoolOptions::default(),
    )
    .await
    .unwrap();
    let row: (String, Option<i64>, i64) =
        sqlx::query_as("SELECT status, last_status, attempts FROM webhook_deliveries")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(row, ("delivered".to_owned(), Some(200), 1));
}
