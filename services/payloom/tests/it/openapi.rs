//! The OpenAPI document is served without a signature and describes the API as built.

use crate::support::{Backend, Platform};

#[tokio::test]
async fn openapi_document_describes_the_merchant_api() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let response = reqwest::get(format!("{}/v1/openapi.json", p.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/payments", "post"),
        ("/v1/payments", "get"),
        ("/v1/payments/{id}", "get"),
        ("/v1/payments/{id}/capture", "post"),
        ("/v1/payments/{id}/cancel", "post"),
        ("/v1/payments/{id}/refunds", "post"),
        ("/v1/refunds/{id}", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let payment_in = &doc["components"]["schemas"]["PaymentIn"];
    let required: Vec<&str> = payment_in["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["order_no", "amount", "currency"]);
    assert_eq!(payment_in["properties"]["amount"]["format"], "int64");
    let statuses = &doc["components"]["schemas"]["PaymentStatus"]["enum"];
    assert_eq!(statuses.as_array().unwrap().len(), 8, "{statuses}");
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_requests_are_counted() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let http = reqwest::Client::new();
    let echoed = http
        .get(format!("{}/v1/openapi.json", p.base))
        .header("x-request-id", "req-from-client")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-from-client");
    let paid = p.merchant.pay(1_000, serde_json::json!({})).await;
    assert_eq!(paid.status, 201);
    let made = http
        .get(format!("{}/v1/payments", p.base))
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("req_"), "{id}");
    let metrics = http
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"payloom_http_requests_total{method="POST",route="/v1/payments",status="201"} 1"#
        ),
        "{metrics}"
    );
    let ready: serde_json::Value = http
        .get(format!("{}/ready", p.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
}
