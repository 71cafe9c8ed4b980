//! Idempotency-Key: replay, conflict, and concurrent duplicates.

use serde_json::json;

use crate::on_both_databases;
use crate::support::{Backend, Platform};

on_both_databases!(
    idempotency_keys_replay_conflict_and_serialize_duplicates,
    idempotency_keys_are_forgotten_after_the_retention
);

async fn idempotency_keys_replay_conflict_and_serialize_duplicates(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = p.merchant.clone();
    let body = json!({"order_no": "idem-1", "amount": 1234, "currency": "USD"}).to_string();
    let first = m
        .send("POST", "/v1/payments", &body, &[("idempotency-key", "k-1")])
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(!first.replayed);
    let again = m
        .send("POST", "/v1/payments", &body, &[("idempotency-key", "k-1")])
        .await;
    assert_eq!(again.status, 201);
    assert!(again.replayed);
    assert_eq!(again.text, first.text, "the stored response, byte for byte");
    let other = json!({"order_no": "idem-1", "amount": 999, "currency": "USD"}).to_string();
    let conflict = m
        .send(
            "POST",
            "/v1/payments",
            &other,
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(
        (conflict.status, conflict.error_code()),
        (409, "idempotency_key_reused"),
        "{}",
        conflict.text
    );
    // A refused request is stored too: the retry gets the same refusal.
    let bad = json!({"order_no": "idem-bad", "amount": -1, "currency": "USD"}).to_string();
    let refused = m
        .send(
            "POST",
            "/v1/payments",
            &bad,
            &[("idempotency-key", "k-bad")],
        )
        .await;
    let refused_again = m
        .send(
            "POST",
            "/v1/payments",
            &bad,
            &[("idempotency-key", "k-bad")],
        )
        .await;
    assert_eq!(
        (refused.status, refused_again.status, refused_again.replayed),
        (400, 400, true)
    );
    assert_eq!(m.count().await, 1);

    // Twenty concurrent duplicates: one payment, twenty identical answers.
    let body = json!({"order_no": "idem-race", "amount": 4321, "currency": "USD"}).to_string();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (m, body) = (m.clone(), body.clone());
            tokio::spawn(async move {
                m.send(
                    "POST",
                    "/v1/payments",
                    &body,
                    &[("idempotency-key", "k-race")],
                )
                .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    for a in &answers {
        assert_eq!(a.status, 201, "{}", a.text);
        assert_eq!(a.text, answers[0].text);
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert_eq!(m.count().await, 2);

    // The same key on a refund of another merchant's scope is independent; on a refund
    // it replays like a payment.
    let paid_id = first.json["id"].as_str().unwrap();
    let refund_body = json!({"amount": 100}).to_string();
    let path = format!("/v1/payments/{paid_id}/refunds");
    let r1 = m
        .send("POST", &path, &refund_body, &[("idempotency-key", "r-1")])
        .await;
    let r2 = m
        .send("POST", &path, &refund_body, &[("idempotency-key", "r-1")])
        .await;
    assert_eq!((r1.status, r2.text == r1.text), (201, true), "{}", r1.text);
    let payment = m.get(&format!("/v1/payments/{paid_id}")).await;
    assert_eq!(payment.json["amount_refunded"], 100, "one refund, not two");
    let other_merchant = p.another_merchant().await;
    let theirs = other_merchant
        .send(
            "POST",
            "/v1/payments",
            &json!({"order_no": "idem-1", "amount": 1, "currency": "USD"}).to_string(),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(
        (theirs.status, theirs.replayed),
        (201, false),
        "keys are per merchant: {}",
        theirs.text
    );
}

async fn idempotency_keys_are_forgotten_after_the_retention(backend: Backend) {
    let config = "[gateway]\nidempotency_retention_secs = 1\nexpiry_sweep_interval_ms = 200\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let m = &p.merchant;
    let first = json!({"order_no": "keep-1", "amount": 100, "currency": "USD"}).to_string();
    let second = json!({"order_no": "keep-2", "amount": 200, "currency": "USD"}).to_string();
    assert_eq!(
        m.send(
            "POST",
            "/v1/payments",
            &first,
            &[("idempotency-key", "k-old")]
        )
        .await
        .status,
        201
    );
    let conflict = m
        .send(
            "POST",
            "/v1/payments",
            &second,
            &[("idempotency-key", "k-old")],
        )
        .await;
    assert_eq!(
        conflict.status, 409,
        "within the retention the key is bound to its first body"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let reused = loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let answer = m
            .send(
                "POST",
                "/v1/payments",
                &second,
                &[("idempotency-key", "k-old")],
            )
            .await;
        if answer.status != 409 || std::time::Instant::now() > deadline {
            break answer;
        }
    };
    assert_eq!(
        (reused.status, reused.replayed),
        (201, false),
        "after the retention the key is free: {}",
        reused.text
    );
    assert_eq!(reused.json["order_no"], "keep-2");
    assert_eq!(m.count().await, 2);
}
