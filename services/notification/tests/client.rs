//! The HTTP client against notification's own router: endpoints are created, listed and
//! deleted per merchant, deliveries are found by endpoint or event (values that look like
//! query syntax stay values) and resent, as in process; ids stay one path segment.

use std::sync::Arc;

use payloom_gateway_contract::{PaymentEvent, PaymentOut, PaymentStatus};
use payloom_notification::email::LogMailer;
use payloom_notification::targets::TargetPolicy;
use payloom_notification::{
    DeliveryQuery, EndpointIn, NotificationApi, NotificationConfig, NotificationHttp, Notifications,
};
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::Subscription;
use payloom_platform::seal::MasterKey;
use payloom_platform::{Db, SystemClock};

fn config() -> NotificationConfig {
    NotificationConfig {
        retry_schedule_secs: vec![5, 300],
        jitter: 0.0,
        overload_floor_secs: 60,
        request_timeout_ms: 2_000,
        disable_after_secs: 432_000,
        poll_interval_ms: 500,
        batch: 32,
        endpoint_in_flight_max: 8,
        merchant_in_flight_max: 16,
        targets: TargetPolicy {
            allow_loopback: true,
            allow_private: false,
        },
    }
}

/// The service served on a free port (no delivery worker: the test resends by hand), its
/// client, and the service itself.
async fn served() -> (NotificationHttp, Arc<Notifications>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(
        &sqlite_url(dir.path(), "notification"),
        &PoolOptions::default(),
    )
    .await
    .unwrap();
    let (clock, key) = (Arc::new(SystemClock), MasterKey::generate());
    let service = Notifications::new(db, clock, key, config(), Arc::new(LogMailer))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = payloom_notification::router(service.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (NotificationHttp(ServiceClient::new(&url)), service, dir)
}

fn endpoint(url: &str) -> EndpointIn {
    serde_json::from_value(serde_json::json!({ "url": url })).unwrap()
}

#[tokio::test]
async fn every_operation_answers_over_http_as_in_process() {
    let (client, service, _dir) = served().await;
    let merchant = "mch_a&endpoint_id=we_x";
    // Port 9 (discard) on loopback: nothing answers, so a resend is an attempt that fails.
    let created = client
        .create_endpoint(merchant, endpoint("http://127.0.0.1:9/hook"))
        .await
        .unwrap();
    assert!(
        created.secret.is_some(),
        "the secret is shown once, on creation"
    );
    let listed = client.list_endpoints(merchant).await.unwrap();
    assert_eq!(listed, service.list_endpoints(merchant).await.unwrap());
    assert_eq!(listed.len(), 1);
    assert!(client.list_endpoints("mch_a").await.unwrap().is_empty());
    let private = client.create_endpoint(merchant, endpoint("http://10.1.2.3/hook"));
    let refused = private.await.unwrap_err();
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (422, "url_not_allowed")
    );

    // A payment of the merchant becomes a delivery to its endpoint.
    let paid = PaymentOut {
        id: "pay_1".into(),
        amount: 500,
        currency: "USD".into(),
        status: PaymentStatus::Succeeded,
        amount_captured: 500,
        ..PaymentOut::default()
    };
    let event = PaymentEvent::of(paid).unwrap().envelope(merchant);
    let subscription = Subscription::new(service.db().clone(), service.clone());
    subscription.process(&event).await.unwrap();
    let by_endpoint = DeliveryQuery {
        endpoint_id: Some(created.id.clone()),
        event_id: None,
    };
    let deliveries = client.deliveries(by_endpoint.clone()).await.unwrap();
    assert_eq!(deliveries, service.deliveries(by_endpoint).await.unwrap());
    assert_eq!(deliveries.len(), 1);
    let by_event = DeliveryQuery {
        endpoint_id: None,
        event_id: Some(format!("{}&endpoint_id={}", event.id, created.id)),
    };
    assert!(client.deliveries(by_event).await.unwrap().is_empty());

    // A resend is one more attempt in the delivery's log (nothing answers on port 9).
    let resent = client.resend(&deliveries[0].id).await.unwrap();
    assert_eq!(resent.log.len(), deliveries[0].log.len() + 1);
    assert_eq!(resent.log.last().unwrap().trigger, "manual");
    let climbing = format!("{}/resend/../../{}", deliveries[0].id, deliveries[0].id);
    assert_eq!(client.resend(&climbing).await.unwrap_err().status, 404);

    // Another merchant cannot delete it; its own merchant can.
    let elsewhere = client
        .delete_endpoint("mch_a", &created.id)
        .await
        .unwrap_err();
    assert_eq!(elsewhere.status, 404);
    let deleted = client.delete_endpoint(merchant, &created.id).await.unwrap();
    assert_eq!(deleted.status, "deleted");
}
