//! Signed requests: every refusal is a 401 in the error shape and persists nothing.

use serde_json::json;

use crate::in_every_topology;
use crate::support::{Backend, Merchant, Platform};

in_every_topology!(signature_failures_are_refused_and_change_nothing);

fn body() -> String {
    json!({"order_no": "sig-1", "amount": 1000, "currency": "USD"}).to_string()
}

fn set(headers: &mut [(&'static str, String)], name: &str, value: String) {
    headers.iter_mut().find(|(n, _)| *n == name).unwrap().1 = value;
}

async fn refused(m: &Merchant, code: &str, tweak: impl FnOnce(&mut Vec<(&'static str, String)>)) {
    let answer = m
        .send_with("POST", "/v1/payments", &body(), &[], tweak)
        .await;
    assert_eq!(answer.status, 401, "{code}: {}", answer.text);
    assert_eq!(answer.json["error"]["type"], "authentication_error");
    assert_eq!(answer.error_code(), code, "{}", answer.text);
}

async fn signature_failures_are_refused_and_change_nothing(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    refused(m, "signature_invalid", |h| {
        set(h, "x-signature", "00".repeat(32))
    })
    .await;
    refused(m, "signature_invalid", |h| {
        set(h, "x-signature", "not hex".into())
    })
    .await;
    // Signed for another body.
    let other = json!({"order_no": "sig-1", "amount": 1, "currency": "USD"}).to_string();
    let forged = payloom_payment_gateway::sign_request(
        &m.key.key_id,
        &m.key.secret,
        "POST",
        "/v1/payments",
        &other,
        now(),
    );
    refused(m, "signature_invalid", |h| *h = forged).await;
    let stale = (now() - 301).to_string();
    refused(m, "timestamp_out_of_window", |h| {
        let resigned = payloom_merchant_auth::sign(
            &m.key.secret,
            "POST",
            "/v1/payments",
            &stale,
            "n-stale",
            &body(),
        );
        set(h, "x-timestamp", stale.clone());
        set(h, "x-nonce", "n-stale".into());
        set(h, "x-signature", resigned);
    })
    .await;
    // The extremes of i64 are out of the window, not an overflow (debug builds panicked).
    for extreme in [i64::MIN, i64::MAX] {
        let timestamp = extreme.to_string();
        refused(m, "timestamp_out_of_window", |h| {
            let resigned = payloom_merchant_auth::sign(
                &m.key.secret,
                "POST",
                "/v1/payments",
                &timestamp,
                "n-extreme",
                &body(),
            );
            set(h, "x-timestamp", timestamp.clone());
            set(h, "x-nonce", "n-extreme".into());
            set(h, "x-signature", resigned);
        })
        .await;
    }
    refused(m, "api_key_invalid", |h| {
        set(h, "x-api-key", "key_01ZZZZZZZZZZZZZZZZZZZZZZZZ".into())
    })
    .await;
    refused(m, "signature_missing", |h| {
        h.retain(|(n, _)| *n != "x-nonce")
    })
    .await;
    let wrong_secret = Merchant {
        key: crate::support::Key {
            secret: "sk_wrong".into(),
            ..m.key.clone()
        },
        ..m.clone()
    };
    refused(&wrong_secret, "signature_invalid", |_| {}).await;

    // A replayed nonce: the first request goes through, the identical second one does not.
    let headers = payloom_payment_gateway::sign_request(
        &m.key.key_id,
        &m.key.secret,
        "POST",
        "/v1/payments",
        &body(),
        now(),
    );
    let first = m
        .send_with("POST", "/v1/payments", &body(), &[], |h| {
            *h = headers.clone()
        })
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let replay_body = json!({"order_no": "sig-2", "amount": 1000, "currency": "USD"}).to_string();
    let replay = m
        .send_with("POST", "/v1/payments", &replay_body, &[], |h| {
            let signature = payloom_merchant_auth::sign(
                &m.key.secret,
                "POST",
                "/v1/payments",
                &headers[1].1,
                &headers[2].1,
                &replay_body,
            );
            *h = headers.clone();
            set(h, "x-signature", signature);
        })
        .await;
    assert_eq!(
        (replay.status, replay.error_code()),
        (401, "nonce_replayed"),
        "{}",
        replay.text
    );
    assert_eq!(
        m.count().await,
        1,
        "only the first signed request created a payment"
    );

    // A revoked key stops working at once.
    let other = p.another_merchant().await;
    assert_eq!(other.pay(1_000, json!({})).await.status, 201);
    let revoke = p
        .admin(
            "POST",
            &format!(
                "/admin/v1/merchants/{}/api-keys/{}/revoke",
                other.key.merchant_id, other.key.key_id
            ),
            json!({}),
        )
        .await;
    assert_eq!(revoke.status, 200, "{}", revoke.text);
    let after = other.pay(1_000, json!({})).await;
    assert_eq!((after.status, after.error_code()), (401, "api_key_invalid"));

    // GET is signed too, over the path and query.
    let unsigned = reqwest::get(format!("{}/v1/payments", p.base))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn one_merchant_filling_its_nonce_share_leaves_the_others_working() {
    let config = "[auth]\nnonces_memory_max = 12\nnonces_memory_per_merchant_max = 5\n";
    let Some(p) = Platform::start_with(Backend::Sqlite, config).await else {
        return;
    };
    let (a, b, c) = (
        &p.merchant,
        p.another_merchant().await,
        p.another_merchant().await,
    );
    for _ in 0..5 {
        assert_eq!(a.get("/v1/balance").await.status, 200);
    }
    let full = a.get("/v1/balance").await;
    assert_eq!(
        (full.status, full.error_code()),
        (429, "nonce_store_full"),
        "{}",
        full.text
    );
    for _ in 0..5 {
        let balance = b.get("/v1/balance").await;
        assert_eq!(balance.status, 200, "{}", balance.text);
    }
    assert_eq!(a.get("/v1/balance").await.error_code(), "nonce_store_full");
    // Twelve nonces are live now: the whole store is full, which is a 503, never a 500.
    for _ in 0..2 {
        assert_eq!(c.get("/v1/balance").await.status, 200);
    }
    let store_full = c.get("/v1/balance").await;
    assert_eq!(
        (store_full.status, store_full.error_code()),
        (503, "nonce_store_full"),
        "{}",
        store_full.text
    );
}
