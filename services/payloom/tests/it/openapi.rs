//! The OpenAPI document is served without a signature and describes the API as built.

use serde_json::{Value, json};

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
    assert_eq!(
        payment_in["properties"]["amount"]["maximum"],
        1_000_000_000_000_i64
    );
    // The operator's limit, not a constant.
    assert_eq!(payment_in["properties"]["expires_in"]["maximum"], 604_800);
    let currencies = payment_in["properties"]["currency"]["enum"]
        .as_array()
        .unwrap();
    for (code, listed) in [
        ("USD", true),
        ("usd", true),
        ("XCG", true),
        ("Usd", false),
        ("BGN", false),
    ] {
        assert_eq!(currencies.contains(&json!(code)), listed, "{code}");
    }
    let statuses = &doc["components"]["schemas"]["PaymentStatus"]["enum"];
    assert_eq!(statuses.as_array().unwrap().len(), 10, "{statuses}");
    assert!(statuses.as_array().unwrap().contains(&json!("capturing")));
    list_filters_are_optional_query_parameters(&doc["paths"]["/v1/payments"]["get"]);
    every_signed_operation_requires_the_signature(&doc);
    capture_and_notify_list_what_they_answer(&doc);
}

fn list_filters_are_optional_query_parameters(list: &Value) {
    let parameters = list["parameters"].as_array().unwrap();
    let names: Vec<&str> = parameters
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["order_no", "status", "limit", "starting_after"]);
    for parameter in parameters {
        assert_eq!(
            (&parameter["in"], &parameter["required"]),
            (&json!("query"), &json!(false)),
            "{parameter}"
        );
    }
    let limit = &parameters[2]["schema"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"], &limit["default"]),
        (&json!(1), &json!(100), &json!(10))
    );
    assert_eq!(
        parameters[1]["schema"]["$ref"],
        "#/components/schemas/PaymentStatus"
    );
}

/// The four signature headers are apiKey schemes, required together by one requirement
/// on every operation but the PSP ingress, which the channel verifies.
fn every_signed_operation_requires_the_signature(doc: &Value) {
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    let mut headers: Vec<&str> = schemes
        .values()
        .map(|s| {
            assert_eq!(
                (&s["type"], &s["in"]),
                (&json!("apiKey"), &json!("header")),
                "{s}"
            );
            s["name"].as_str().unwrap()
        })
        .collect();
    headers.sort_unstable();
    assert_eq!(
        headers,
        ["X-Api-Key", "X-Nonce", "X-Signature", "X-Timestamp"]
    );
    let signature = schemes
        .values()
        .find(|s| s["name"] == "X-Signature")
        .unwrap();
    assert!(
        signature["description"]
            .as_str()
            .unwrap()
            .contains("PATH_AND_QUERY"),
        "the string to sign is described: {signature}"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let requirements = operation["security"].as_array();
            if path == "/v1/notify/{channel}" {
                assert!(requirements.is_none(), "{method} {path} is not signed");
                continue;
            }
            let requirements = requirements.unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!(requirements.len(), 1, "one requirement: {method} {path}");
            assert_eq!(
                requirements[0].as_object().unwrap().len(),
                4,
                "{method} {path}"
            );
            for status in ["401", "413", "429", "503"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} documents {status}"
                );
            }
        }
    }
}

fn capture_and_notify_list_what_they_answer(doc: &Value) {
    let capture = &doc["paths"]["/v1/payments/{id}/capture"]["post"];
    for status in ["200", "202", "400", "402", "404", "409", "502", "503"] {
        assert!(
            capture["responses"].get(status).is_some(),
            "capture {status}"
        );
    }
    assert_eq!(
        capture["requestBody"]["required"], false,
        "the body may be left out"
    );
    let cancel = &doc["paths"]["/v1/payments/{id}/cancel"]["post"];
    for status in ["200", "202", "402", "409", "502", "503"] {
        assert!(cancel["responses"].get(status).is_some(), "cancel {status}");
    }
    let notify = &doc["paths"]["/v1/notify/{channel}"]["post"];
    for status in ["401", "404", "413", "429", "503"] {
        assert!(notify["responses"].get(status).is_some(), "notify {status}");
    }
    let endpoints = &doc["paths"]["/v1/webhook_endpoints"]["post"];
    for status in ["415", "422"] {
        assert!(
            endpoints["responses"].get(status).is_some(),
            "endpoints {status}"
        );
    }
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
