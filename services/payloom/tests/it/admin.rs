//! The admin API: login, tokens, merchants and keys.

use serde_json::json;

use crate::support::{Backend, Platform, answer};

#[tokio::test]
async fn admin_login_tokens_and_merchant_keys() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let client = reqwest::Client::new();
    let login = |body: serde_json::Value| {
        client
            .post(format!("{}/admin/v1/login", p.base))
            .json(&body)
            .send()
    };
    let wrong = answer(
        login(json!({"username": "admin", "password": "wrong-password"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (401, "credentials_invalid")
    );
    let nobody = answer(
        login(json!({"username": "nobody", "password": "x"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(nobody.status, 401);
    let create = |token: Option<String>| {
        let mut r = client
            .post(format!("{}/admin/v1/merchants", p.base))
            .json(&json!({"name": "Shop"}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(create(None).await.unwrap().status(), 401);
    assert_eq!(create(Some("garbage".into())).await.unwrap().status(), 401);
    // A token that names no algorithm ("none") is refused: HS256 is pinned.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6InN1cGVyX2FkbWluIiwiaXNzIjoicGF5bG9vbS1hZG1pbiIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxfQ.";
    assert_eq!(create(Some(unsigned.into())).await.unwrap().status(), 401);
    let token = p.admin_token().await;
    let merchant = answer(create(Some(token.clone())).await.unwrap()).await;
    assert_eq!(merchant.status, 201, "{}", merchant.text);
    assert!(merchant.json["id"].as_str().unwrap().starts_with("mch_"));
    let empty = p
        .admin("POST", "/admin/v1/merchants", json!({"name": " "}))
        .await;
    assert_eq!(
        (empty.status, empty.json["error"]["param"].as_str()),
        (400, Some("name"))
    );
    let missing = p
        .admin("POST", "/admin/v1/merchants/mch_nope/api-keys", json!({}))
        .await;
    assert_eq!(missing.status, 404);
    let other = p.another_merchant().await;
    assert!(other.key.secret.starts_with("sk_") && other.key.secret.len() > 64);
    assert_eq!(
        other.pay(1_000, json!({})).await.json["status"],
        "succeeded"
    );
    // The secret is not stored: nothing in the data directory contains it.
    for entry in std::fs::read_dir(p.data.path().join("db")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(other.key.secret.len())
                .any(|w| w == other.key.secret.as_bytes())
        );
        assert!(
            !bytes.windows(6).any(|w| w == b"s3cret"),
            "channel credentials are sealed"
        );
    }
}
