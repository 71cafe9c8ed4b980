//! Idempotency-Key: replay, conflict, and concurrent duplicates.

use serde_json::json;

use crate::in_every_topology;
use crate::support::{Backend, Platform};

in_every_topology!(
    idempotency_keys_replay_conflict_and_serialize_duplicates,
    idempotency_keys_are_forgotten_after_the_retention,
    a_refund_that_fails_after_the_channel_is_resumed_never_repeated,
    a_key_whose_answer_was_lost_resumes_to_the_same_payment
);

/// Keys held by a request that died are taken over after one second.
const SHORT_LEASE: &str = "[gateway]\nlease_secs = 1\n";

/// A refund whose channel call succeeded but whose answer could not be written answers
/// 5xx. The retry with its key resumes: it answers with that refund and does not go to
/// the channel a second time (today's `main` frees the key and refunds twice).
async fn a_refund_that_fails_after_the_channel_is_resumed_never_repeated(backend: Backend) {
    let Some(p) = Platform::start_with(backend, SHORT_LEASE).await else {
        return;
    };
    let m = &p.merchant;
    let paid = m.pay(1_000, json!({})).await;
    let path = format!("/v1/payments/{}/refunds", paid.json["id"].as_str().unwrap());
    let body = json!({"amount": 100}).to_string();
    let key = [("idempotency-key", "refund-once")];
    let refunds_before = p.channel_calls("refund").await;

    p.break_updates("payment-gateway", "refunds", "NEW.status <> 'pending'")
        .await;
    let failed = m.send("POST", &path, &body, &key).await;
    assert_eq!(failed.status, 500, "{}", failed.text);
    p.mend("payment-gateway", "refunds").await;
    assert_eq!(p.channel_calls("refund").await, refunds_before + 1);

    let retried = m.send("POST", &path, &body, &key).await;
    assert_eq!(retried.status, 201, "{}", retried.text);
    let again = m.send("POST", &path, &body, &key).await;
    assert_eq!(
        (again.replayed, &again.text),
        (true, &retried.text),
        "the resumed answer is the key's answer from now on"
    );
    assert_eq!(
        p.channel_calls("refund").await,
        refunds_before + 1,
        "the retry did not refund again"
    );
    let payment = m
        .get(&format!(
            "/v1/payments/{}",
            paid.json["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        payment.json["amount_refunded"], 100,
        "one refund: {}",
        payment.text
    );
}

/// A payment was made but its answer could not be stored under the key (the key stays
/// `started`, as after a crash). Today's `main` answers every retry `409
/// idempotency_in_progress` for a day; now a retry after the lease resumes to the same
/// payment, and the merchant has exactly one.
async fn a_key_whose_answer_was_lost_resumes_to_the_same_payment(backend: Backend) {
    let Some(p) = Platform::start_with(backend, SHORT_LEASE).await else {
        return;
    };
    let m = &p.merchant;
    let body = json!({"order_no": "lost-1", "amount": 1_000, "currency": "USD"}).to_string();
    let key = [("idempotency-key", "lost-answer")];
    p.break_updates("payment-gateway", "idempotency_keys", "NEW.state = 'done'")
        .await;
    let first = m.send("POST", "/v1/payments", &body, &key).await;
    p.mend("payment-gateway", "idempotency_keys").await;
    let created = m.get("/v1/payments?order_no=lost-1").await;
    let made = created.json["data"].as_array().unwrap().clone();
    assert_eq!(
        made.len(),
        1,
        "the first request made its payment: {}",
        first.text
    );

    // Within the lease the retry waits for the holder, then takes the key over.
    let retried = m.send("POST", "/v1/payments", &body, &key).await;
    assert_eq!(retried.status, 201, "{}", retried.text);
    assert_eq!(retried.json["id"], made[0]["id"], "the same payment");
    let listed = m.get("/v1/payments?order_no=lost-1").await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 1);
    let replay = m.send("POST", "/v1/payments", &body, &key).await;
    assert_eq!(
        (replay.status, replay.replayed),
        (201, true),
        "{}",
        replay.text
    );
}

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

    // A method the route does not have is 405 and leaves the key alone.
    let wrong_method = m
        .send(
            "PUT",
            "/v1/payments",
            &body,
            &[("idempotency-key", "k-405")],
        )
        .await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text);
    let body_405 = json!({"order_no": "idem-405", "amount": 1234, "currency": "USD"}).to_string();
    let after_405 = m
        .send(
            "POST",
            "/v1/payments",
            &body_405,
            &[("idempotency-key", "k-405")],
        )
        .await;
    assert_eq!(after_405.status, 201, "{}", after_405.text);

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
    assert_eq!(m.count().await, 3);

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
