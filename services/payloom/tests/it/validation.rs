//! Bad input: a 4xx in the error shape, nothing persisted, never a 500.

use serde_json::{Value, json};

use crate::in_every_topology;
use crate::support::{Backend, Platform};

in_every_topology!(
    bad_input_is_refused_with_the_error_shape,
    currencies_follow_the_current_iso_4217_list,
    payments_are_judged_as_the_openapi_document_states,
    webhook_endpoints_and_notifications_are_judged_as_documented,
);

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

/// XCG replaced ANG in 2025 and Bulgaria moved from BGN to EUR: the API takes the current
/// codes and refuses the withdrawn ones before anything is written.
async fn currencies_follow_the_current_iso_4217_list(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    for withdrawn in ["BGN", "ANG"] {
        let refused = m
            .post(
                "/v1/payments",
                json!({"order_no": format!("cur-{withdrawn}"), "amount": 1000, "currency": withdrawn}),
            )
            .await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (400, "currency_invalid"),
            "{withdrawn}: {}",
            refused.text
        );
        assert_eq!(refused.json["error"]["param"], "currency");
    }
    assert_eq!(m.count().await, 0, "a refused currency wrote nothing");
    for current in ["XCG", "VED"] {
        let accepted = m
            .post(
                "/v1/payments",
                json!({"order_no": format!("cur-{current}"), "amount": 1000, "currency": current}),
            )
            .await;
        assert_eq!(accepted.status, 201, "{current}: {}", accepted.text);
        assert_eq!(accepted.json["currency"], current);
        // The sandbox channel settles none of them, so routing (not validation) fails it.
        assert_eq!(
            accepted.json["failure_code"], "policy_denied",
            "{}",
            accepted.text
        );
    }
    assert_eq!(m.count().await, 2);
}

/// JSON Schema counts `1000.0` as an integer and lengths in characters; the API judges
/// input the same way, with messages that say what the field counts.
async fn payments_are_judged_as_the_openapi_document_states(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let accepted = m
        .post(
            "/v1/payments",
            json!({
                "order_no": "doc-1",
                "amount": 1000.0,
                "currency": "usd",
                "expires_in": 60.0,
                // 1000 characters, 2000 bytes.
                "description": "é".repeat(1_000),
                "metadata": {"é".repeat(40): "é".repeat(500)},
                "customer": {"device_id": "é".repeat(128), "email": "ü@é"},
            }),
        )
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.text);
    assert_eq!(
        (&accepted.json["amount"], &accepted.json["currency"]),
        (&json!(1000), &json!("USD"))
    );
    let cases = [
        (
            with("amount", json!(10.5)),
            "amount",
            "amount must be a whole number of minor units",
        ),
        (
            with("expires_in", json!(1.5)),
            "expires_in",
            "expires_in must be a whole number of seconds",
        ),
        (
            with("amount", json!(1e30)),
            "amount",
            "amount must be 1 to 1000000000000 minor units",
        ),
        (
            with("expires_in", json!(-1e30)),
            "expires_in",
            "expires_in must be 1 to ",
        ),
        (
            with("expires_in", json!("60")),
            "expires_in",
            "expires_in must be a JSON number",
        ),
        (
            with("description", json!("é".repeat(1_001))),
            "description",
            "description must be 1 to 1000 characters",
        ),
        (
            with("currency", json!("Usd")),
            "currency",
            "'Usd' is not a supported ISO 4217 currency",
        ),
    ];
    // U+0000 fits no text column (PostgreSQL refuses it), so free text refuses it.
    let nul = [
        (
            with("description", json!("a\u{0}b")),
            "description",
            "description cannot contain",
        ),
        (
            with("return_url", json!("https://x/\u{0}")),
            "return_url",
            "return_url must be",
        ),
        (
            with("customer", json!({"email": "a@\u{0}"})),
            "customer.email",
            "customer.email is",
        ),
    ];
    for (body, param, message) in cases.into_iter().chain(nul) {
        let refused = m.post("/v1/payments", body.clone()).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        assert_eq!(refused.json["error"]["param"], param, "{body}");
        let said = refused.json["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(said.starts_with(message), "{body}: {said}");
    }
    // A well-formed channel the merchant's policy does not route this payment to depends
    // on what runs and how it is configured: a conflict, not bad input.
    let unrouted = m
        .post(
            "/v1/payments",
            json!({"order_no": "doc-2", "amount": 100, "currency": "USD", "channel": "elsewhere"}),
        )
        .await;
    assert_eq!(
        (unrouted.status, unrouted.error_code()),
        (409, "channel_unavailable"),
        "{}",
        unrouted.text
    );
    assert_eq!(m.count().await, 1, "only the valid payment was written");
    let id = accepted.json["id"].as_str().unwrap();
    let reason = m
        .post(
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 1, "reason": "\u{0}"}),
        )
        .await;
    assert_eq!(
        (reason.status, &reason.json["error"]["param"]),
        (400, &json!("reason")),
        "{}",
        reason.text
    );
    // No payment has such an order number: an empty page, not a database error.
    let none = m.get("/v1/payments?order_no=%00").await;
    assert_eq!(
        (none.status, &none.json["data"]),
        (200, &json!([])),
        "{}",
        none.text
    );
}

/// Webhook endpoints: a wrong type is reported at its field (never as the value it had),
/// lengths count characters, a URL outside the documented shape is a 400, and one of that
/// shape that leads somewhere refused is a 422. An unknown channel on the PSP ingress is
/// a 404.
async fn webhook_endpoints_and_notifications_are_judged_as_documented(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let target = "http://127.0.0.1:9/hook";
    let wrong_type = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": target, "events": -3137}),
        )
        .await;
    assert_eq!(
        (wrong_type.status, &wrong_type.json["error"]["param"]),
        (400, &json!("events")),
        "{}",
        wrong_type.text
    );
    for url in [
        "http://a.1/hook",
        "http://x/ y",
        "HTTP://example.com",
        "http://a:65536/",
    ] {
        let refused = m.post("/v1/webhook_endpoints", json!({"url": url})).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (400, "parameter_invalid"),
            "{url}: {}",
            refused.text
        );
    }
    for url in ["http://10.0.0.7/hook", "http://nowhere.invalid/hook"] {
        let refused = m.post("/v1/webhook_endpoints", json!({"url": url})).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (422, "url_not_allowed"),
            "{url}: {}",
            refused.text
        );
        assert_eq!(refused.json["error"]["param"], "url");
    }
    let made = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": target, "description": "é".repeat(500), "alert_email": "ops@é"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let too_long = m
        .post(
            "/v1/webhook_endpoints",
            json!({"url": target, "description": "é".repeat(501)}),
        )
        .await;
    assert_eq!(too_long.status, 400, "{}", too_long.text);
    for (field, value) in [("description", "\u{0}"), ("alert_email", "a@\u{0}")] {
        let refused = m
            .post(
                "/v1/webhook_endpoints",
                json!({"url": target, field: value}),
            )
            .await;
        assert_eq!(
            (refused.status, &refused.json["error"]["param"]),
            (400, &json!(field)),
            "{}",
            refused.text
        );
    }
    let merchant = &m.key.merchant_id;
    let unknown = reqwest::Client::new()
        .post(format!("{}/v1/notify/nope?merchant={merchant}", p.base))
        .body("anything")
        .send()
        .await
        .unwrap();
    let unknown = crate::support::answer(unknown).await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "channel_unknown"),
        "{}",
        unknown.text
    );
}
