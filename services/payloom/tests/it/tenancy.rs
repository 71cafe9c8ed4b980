//! One merchant never sees or touches another's payments.

use serde_json::json;

use crate::on_both_databases;
use crate::support::{Backend, Platform};

on_both_databases!(merchants_only_see_their_own_payments);

async fn merchants_only_see_their_own_payments(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let a = &p.merchant;
    let b = p.another_merchant().await;
    let paid = a.pay(1_000, json!({})).await;
    let manual = a.pay(1_000, json!({"capture": "manual"})).await;
    let refund = a
        .post(
            &format!("/v1/payments/{}/refunds", paid.json["id"].as_str().unwrap()),
            json!({"amount": 100}),
        )
        .await;
    let (paid_id, manual_id) = (
        paid.json["id"].as_str().unwrap(),
        manual.json["id"].as_str().unwrap(),
    );
    for (method, path, body) in [
        ("GET", format!("/v1/payments/{paid_id}"), String::new()),
        (
            "POST",
            format!("/v1/payments/{paid_id}/refunds"),
            json!({"amount": 100}).to_string(),
        ),
        (
            "POST",
            format!("/v1/payments/{manual_id}/capture"),
            "{}".into(),
        ),
        (
            "POST",
            format!("/v1/payments/{manual_id}/cancel"),
            "{}".into(),
        ),
        (
            "GET",
            format!("/v1/refunds/{}", refund.json["id"].as_str().unwrap()),
            String::new(),
        ),
    ] {
        let answer = b.send(method, &path, &body, &[]).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (404, "resource_missing"),
            "{method} {path}: {}",
            answer.text
        );
    }
    assert_eq!(b.count().await, 0);
    let same_order = b
        .get(&format!(
            "/v1/payments?order_no={}",
            paid.json["order_no"].as_str().unwrap()
        ))
        .await;
    assert_eq!(same_order.json["data"].as_array().unwrap().len(), 0);
    let after = a.get(&format!("/v1/payments/{manual_id}")).await;
    assert_eq!(
        after.json["status"], "authorized",
        "B's capture and cancel changed nothing"
    );
    let paid_after = a.get(&format!("/v1/payments/{paid_id}")).await;
    assert_eq!(paid_after.json["amount_refunded"], 100);
    // The same order number is free for another merchant.
    let theirs = b
        .post(
            "/v1/payments",
            json!({"order_no": paid.json["order_no"], "amount": 500, "currency": "USD"}),
        )
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    let dup = a
        .post(
            "/v1/payments",
            json!({"order_no": paid.json["order_no"], "amount": 500, "currency": "USD"}),
        )
        .await;
    assert_eq!((dup.status, dup.error_code()), (409, "order_no_taken"));
}
