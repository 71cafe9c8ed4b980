//! The HTTP client against merchant-auth's own router: every operation of
//! `MerchantAuthApi` answers over HTTP as it does in process, refusals keep their status
//! and code, and ids are one path segment however they are spelled.

use std::sync::Arc;

use payloom_merchant_auth::{
    MerchantAuth, MerchantAuthApi, MerchantAuthHttp, MerchantIn, VerifyIn,
};
use payloom_platform::cache::MemoryKeyStore;
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::seal::MasterKey;
use payloom_platform::{Clock, Db, SystemClock};

async fn served() -> (MerchantAuthHttp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(
        &sqlite_url(dir.path(), "merchant-auth"),
        &PoolOptions::default(),
    )
    .await
    .unwrap();
    let clock = Arc::new(SystemClock);
    let nonces = Arc::new(MemoryKeyStore::new(clock.clone()));
    let auth = MerchantAuth::new(db, clock, MasterKey::generate(), nonces)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = payloom_merchant_auth::api::router(auth);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (MerchantAuthHttp(ServiceClient::new(&url)), dir)
}

/// A request signed with `secret`, as a merchant's client signs it.
fn signed(key_id: &str, secret: &str, nonce: &str) -> VerifyIn {
    let timestamp = (SystemClock.now_ms() / 1000).to_string();
    let (method, path, body) = ("POST", "/v1/payments?x=1&y=%2F", r#"{"amount":100}"#);
    VerifyIn {
        key_id: key_id.into(),
        signature: payloom_merchant_auth::sign(secret, method, path, &timestamp, nonce, body),
        timestamp,
        nonce: nonce.into(),
        method: method.into(),
        path_and_query: path.into(),
        body: body.into(),
    }
}

#[tokio::test]
async fn every_operation_answers_over_http_as_in_process() {
    let (client, _dir) = served().await;
    let shop = MerchantIn {
        name: "Shop / with ? odd # name".into(),
        tier: Some("premium".into()),
    };
    let merchant = client.create_merchant(shop).await.unwrap();
    assert_eq!(merchant.name, "Shop / with ? odd # name");
    let fetched = client.get_merchant(&merchant.id).await.unwrap();
    assert_eq!(
        (fetched.id.as_str(), fetched.tier.as_str()),
        (merchant.id.as_str(), "premium")
    );

    let key = client.create_api_key(&merchant.id).await.unwrap();
    assert_eq!(key.merchant_id, merchant.id);
    let verified = client
        .verify(signed(&key.key_id, &key.secret, "n1"))
        .await
        .unwrap();
    assert_eq!(
        (verified.merchant_id.as_str(), verified.tier.as_str()),
        (merchant.id.as_str(), "premium")
    );

    // Refusals cross the wire with their status and code.
    let replayed = client
        .verify(signed(&key.key_id, &key.secret, "n1"))
        .await
        .unwrap_err();
    assert_eq!(replayed.status, 401, "{replayed:?}");
    let forged = client
        .verify(signed(&key.key_id, "sk_wrong", "n2"))
        .await
        .unwrap_err();
    assert_eq!(
        (forged.status, forged.code.as_str()),
        (401, "signature_invalid")
    );
    let invalid = client
        .create_merchant(MerchantIn {
            name: " ".into(),
            tier: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (invalid.status, invalid.code.as_str()),
        (400, "parameter_invalid")
    );

    client
        .revoke_api_key(&merchant.id, &key.key_id)
        .await
        .unwrap();
    let revoked = client
        .verify(signed(&key.key_id, &key.secret, "n3"))
        .await
        .unwrap_err();
    assert_eq!(
        (revoked.status, revoked.code.as_str()),
        (401, "api_key_invalid")
    );
}

#[tokio::test]
async fn ids_stay_one_path_segment() {
    let (client, _dir) = served().await;
    let merchant = client
        .create_merchant(MerchantIn {
            name: "Shop".into(),
            tier: None,
        })
        .await
        .unwrap();
    let key = client.create_api_key(&merchant.id).await.unwrap();
    for id in [
        format!("{}/api-keys", merchant.id),
        format!("{}?x=1", merchant.id),
        "../merchants".to_owned(),
    ] {
        assert_eq!(
            client.get_merchant(&id).await.unwrap_err().status,
            404,
            "{id}"
        );
        assert!(client.create_api_key(&id).await.is_err(), "{id}");
    }
    // A key id that climbs out of its segment revokes nothing.
    let climbing = format!("{}/revoke/../../{}", key.key_id, key.key_id);
    let refused = client
        .revoke_api_key(&merchant.id, &climbing)
        .await
        .unwrap_err();
    assert_eq!(refused.status, 404, "{climbing}");
    let still = client.verify(signed(&key.key_id, &key.secret, "n1")).await;
    assert!(still.is_ok(), "the key was never revoked: {still:?}");
}
