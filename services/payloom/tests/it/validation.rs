//! Bad input: a 4xx in the error shape, nothing persisted, never a 500.

use serde_json::{Value, json};

use crate::on_both_databases;
use crate::support::{Backend, Platform};

on_both_databases!(bad_input_is_refused_with_the_error_shape);

fn valid() -> Value {
    json!({"order_no": "v-1", "amount": 1000, "currency": "USD"})
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

fn without(field: &str) -> Value {
    let mut body = valid();
    body.as_object_mut().unwrap().remove(field);
    body
}

async fn bad_input_is_refused_with_the_error_shape(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let cases: Vec<(Value, &str)> = vec![
        (with("amount", json!(-100)), "amount"),
        (with("amount", json!(0)), "amount"),
        (with("amount", json!(10.5)), "amount"),
        (with("amount", json!("1000")), "amount"),
        (with("amount", json!(1e30)), "amount"),
        (with("amount", json!(u64::MAX)), "amount"),
        (with("amount", json!(null)), "amount"),
        (with("currency", json!("XYZ")), "currency"),
        (with("currency", json!("")), "currency"),
        (with("currency", json!(840)), "currency"),
        (without("amount"), "amount"),
        (without("currency"), "currency"),
        (without("order_no"), "order_no"),
        (with("order_no", json!("")), "order_no"),
        (with("order_no", json!("has space")), "order_no"),
        (with("capture", json!("later")), ""),
        (
            with("customer", json!({"email": "not-an-email"})),
            "customer.email",
        ),
        (with("customer", json!({"ip": "999.1.1.1"})), "customer.ip"),
        (
            with("customer", json!({"country": "usa"})),
            "customer.country",
        ),
        (with("customer", json!({"shoe_size": "9"})), ""),
        (
            with("return_url", json!("javascript:alert(1)")),
            "return_url",
        ),
        (with("expires_in", json!(0)), "expires_in"),
        (with("expires_in", json!(999999999)), "expires_in"),
        (with("metadata", json!({"k": 1})), ""),
        (with("colour", json!("red")), "colour"),
        (with("channel", json!("nope")), "channel"),
        (json!([1, 2]), ""),
        (json!("text"), ""),
    ];
    for (body, param) in cases {
        let answer = m.post("/v1/payments", body.clone()).await;
        assert!(
            (400..500).contains(&answer.status),
            "{body}: {} {}",
            answer.status,
            answer.text
        );
        let error = &answer.json["error"];
        assert!(
            error["type"].is_string() && error["code"].is_string() && error["message"].is_string(),
            "{body}: {}",
            answer.text
        );
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{body}: {}", answer.text);
        }
    }
    for raw in ["{", "", "null", "{\"amount\": 10,}", "\u{0}"] {
        let answer = m.send("POST", "/v1/payments", raw, &[]).await;
        assert_eq!(answer.status, 400, "{raw:?}: {}", answer.text);
        assert!(answer.json["error"]["code"].is_string());
    }
    let huge = json!({"order_no": "v-big", "amount": 1000, "currency": "USD", "description": "x".repeat(70_000)}).to_string();
    let too_big = m.send("POST", "/v1/payments", &huge, &[]).await;
    assert_eq!(
        (too_big.status, too_big.error_code()),
        (413, "body_too_large"),
        "{}",
        too_big.text
    );
    let accepted = m.post("/v1/payments", valid()).await;
    assert_eq!(
        accepted.status, 201,
        "the valid body goes through: {}",
        accepted.text
    );
    assert_eq!(m.count().await, 1, "no refused request persisted anything");
    let lowercase = m
        .post(
            "/v1/payments",
            json!({"order_no": "v-2", "amount": 100, "currency": "jpy"}),
        )
        .await;
    assert_eq!(lowercase.json["currency"], "JPY", "{}", lowercase.text);
    let unknown = m.get("/v1/payments/pay_nope").await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "resource_missing")
    );
    let no_route = m.get("/v1/nothing-here").await;
    assert_eq!(no_route.status, 404);
}
