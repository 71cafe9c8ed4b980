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
