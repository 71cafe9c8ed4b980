//! Partial refunds, over-refunds and concurrent refunds. A refund larger than what is left
//! is well-formed but conflicts with the payment's state: 409 `amount_too_large`.

use serde_json::json;

use crate::on_both_databases;
use crate::support::{Backend, Platform};

on_both_databases!(
    partial_refunds_never_exceed_the_captured_amount,
    concurrent_refunds_stay_within_the_captured_amount
);

async fn partial_refunds_never_exceed_the_captured_amount(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let paid = m.pay(1_000, json!({})).await;
    let id = paid.json["id"].as_str().unwrap();
    let first = m
        .post(
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 300, "reason": "damaged"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(
        (first.json["status"].as_str(), first.json["amount"].as_i64()),
        (Some("succeeded"), Some(300))
    );
    assert!(first.json["id"].as_str().unwrap().starts_with("re_"));
    let fetched = m
        .get(&format!(
            "/v1/refunds/{}",
            first.json["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(fetched.json, first.json);
    let over = m
        .post(
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 701}),
        )
        .await;
    assert_eq!(
        (over.status, over.error_code()),
        (409, "amount_too_large"),
        "{}",
        over.text
    );
    assert_eq!(over.json["error"]["param"], "amount");
    // A whole-number float is the integer JSON Schema says it is; the reason counts
    // characters, not bytes (500 "é" are 1000 bytes).
    let rest = m
        .post(
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 700.0, "reason": "é".repeat(500)}),
        )
        .await;
    assert_eq!(
        (rest.status, rest.json["amount"].as_i64()),
        (201, Some(700)),
        "{}",
        rest.text
    );
    let payment = m.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(payment.json["amount_refunded"], 1_000);
    assert_eq!(payment.json["status"], "succeeded");
    let none_left = m
        .post(&format!("/v1/payments/{id}/refunds"), json!({"amount": 1}))
        .await;
    assert_eq!(
        (none_left.status, none_left.error_code()),
        (409, "amount_too_large")
    );
    for bad in [
        json!({"amount": 0}),
        json!({"amount": -5}),
        json!({"amount": 1.5}),
        json!({"amount": "5"}),
        json!({"amount": 1e13}),
        json!({"amount": 1, "reason": ""}),
        json!({"amount": 1, "reason": "é".repeat(501)}),
        json!({}),
    ] {
        let answer = m
            .post(&format!("/v1/payments/{id}/refunds"), bad.clone())
            .await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text);
    }

    // Only what was captured can be refunded.
    let manual = m.pay(1_000, json!({"capture": "manual"})).await;
    let manual_id = manual.json["id"].as_str().unwrap();
    let early = m
        .post(
            &format!("/v1/payments/{manual_id}/refunds"),
            json!({"amount": 100}),
        )
        .await;
    assert_eq!(
        (early.status, early.error_code()),
        (409, "payment_not_refundable")
    );
    m.post(
        &format!("/v1/payments/{manual_id}/capture"),
        json!({"amount": 400}),
    )
    .await;
    let too_much = m
        .post(
            &format!("/v1/payments/{manual_id}/refunds"),
            json!({"amount": 401}),
        )
        .await;
    assert_eq!(too_much.status, 409, "{}", too_much.text);
    assert_eq!(
        m.post(
            &format!("/v1/payments/{manual_id}/refunds"),
            json!({"amount": 400})
        )
        .await
        .status,
        201
    );

    // A refund the channel declines gives the amount back.
    let declined_refund = m.pay(2_000, json!({})).await;
    let did = declined_refund.json["id"].as_str().unwrap();
    let refused = m
        .post(
            &format!("/v1/payments/{did}/refunds"),
            json!({"amount": 1_052}),
        )
        .await;
    assert_eq!(refused.json["status"], "failed", "{}", refused.text);
    let after = m.get(&format!("/v1/payments/{did}")).await;
    assert_eq!(after.json["amount_refunded"], 0);

    let failed = m
        .pay(
            1_000,
            json!({"method_data": {"card.number": "4000000000000002"}}),
        )
        .await;
    let fid = failed.json["id"].as_str().unwrap();
    let refund_failed = m
        .post(
            &format!("/v1/payments/{fid}/refunds"),
            json!({"amount": 100}),
        )
        .await;
    assert_eq!(refund_failed.status, 409);
    let missing = m
        .post(
            "/v1/payments/pay_00000000000000000000000000/refunds",
            json!({"amount": 100}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

async fn concurrent_refunds_stay_within_the_captured_amount(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = p.merchant.clone();
    let paid = m.pay(1_000, json!({})).await;
    let id = paid.json["id"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (m, id) = (m.clone(), id.clone());
            tokio::spawn(async move {
                m.post(
                    &format!("/v1/payments/{id}/refunds"),
                    json!({"amount": 150}),
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        4,
        "{statuses:?}"
    );
    let payment = m.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(payment.json["amount_refunded"], 900);
}
