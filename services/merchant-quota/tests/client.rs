//! The HTTP client against merchant-quota's own router: a reservation over HTTP counts as
//! one in process, going over answers 429 `quota_exceeded`, a release gives the volume
//! back (twice is a no-op), and a reservation id is one path segment.

use std::collections::BTreeMap;
use std::sync::Arc;

use payloom_merchant_quota::{QuotaApi, QuotaConfig, QuotaHttp, Quotas, ReserveIn};
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::{Db, SystemClock};

async fn served() -> (QuotaHttp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(
        &sqlite_url(dir.path(), "merchant-quota"),
        &PoolOptions::default(),
    )
    .await
    .unwrap();
    let config = QuotaConfig {
        daily_minor: 1_000,
        monthly_minor: 5_000,
        currencies: BTreeMap::new(),
    };
    let quotas = Quotas::new(db, Arc::new(SystemClock), config, None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = payloom_merchant_quota::router(quotas);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (QuotaHttp(ServiceClient::new(&url)), dir)
}

fn reserve(amount_minor: i64) -> ReserveIn {
    ReserveIn {
        merchant_id: "mch_1".into(),
        currency: "USD".into(),
        amount_minor,
    }
}

#[tokio::test]
async fn reservations_and_releases_answer_over_http_as_in_process() {
    let (client, _dir) = served().await;
    let first = client.reserve(reserve(600)).await.unwrap();
    let over = client.reserve(reserve(600)).await.unwrap_err();
    assert_eq!((over.status, over.code.as_str()), (429, "quota_exceeded"));

    // An id that climbs out of its segment releases nothing (an unknown id is a no-op or
    // an error, either way): the merchant is still over.
    let climbing = format!("{}/release/../../{}", first.id, first.id);
    let _ = client.release(&climbing).await;
    assert_eq!(client.reserve(reserve(600)).await.unwrap_err().status, 429);

    client.release(&first.id).await.unwrap();
    client.release(&first.id).await.unwrap();
    let second = client.reserve(reserve(600)).await.unwrap();
    assert_ne!(second.id, first.id);
    // Another merchant has its own volume.
    let other = ReserveIn {
        merchant_id: "mch_2".into(),
        ..reserve(900)
    };
    client.reserve(other).await.unwrap();
}
