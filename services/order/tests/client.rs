//! The contract's HTTP client against the service's own router: every operation of
//! `OrderApi` answers over HTTP as it does in process, errors keep their code, and an id
//! is one path segment however it is spelled.

use std::sync::Arc;

use payloom_order::{OrderApi, OrderHttp, OrderIn, OrderStatus, Orders, router};
use payloom_platform::client::ServiceClient;
use payloom_platform::db::sqlite_url;
use payloom_platform::{Db, SystemClock};

async fn served() -> (OrderHttp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = payloom_platform::db::PoolOptions::default();
    let db = Db::connect(&sqlite_url(dir.path(), "order"), &options)
        .await
        .unwrap();
    let orders = Orders::new(db, Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(orders)).await });
    (OrderHttp(ServiceClient::new(&url)), dir)
}

#[tokio::test]
async fn every_operation_answers_over_http_as_in_process() {
    let (client, _dir) = served().await;
    let input = OrderIn {
        merchant_id: "mch_1".into(),
        order_no: "A/1?x=1#y".into(),
        amount_minor: 990,
        currency: "USD".into(),
        payment_id: "pay_1".into(),
    };
    let created = client.create(input.clone()).await.unwrap();
    assert_eq!(
        (created.status, created.order_no.as_str()),
        (OrderStatus::Created, "A/1?x=1#y")
    );
    assert_eq!(client.get(&created.id).await.unwrap(), created);
    let paid = client
        .transition(&created.id, OrderStatus::Paid)
        .await
        .unwrap();
    assert_eq!(paid.status, OrderStatus::Paid);

    // The same number for another payment is taken; a move the machine forbids is a 409.
    let taken = client
        .create(OrderIn {
            payment_id: "pay_2".into(),
            ..input
        })
        .await
        .unwrap_err();
    assert_eq!((taken.status, taken.code.as_str()), (409, "order_no_taken"));
    let refused = client
        .transition(&created.id, OrderStatus::Created)
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (409, "order_transition_invalid")
    );

    // An id that looks like a path or a query stays one segment: not found, nothing moved.
    for id in [
        format!("{}/transitions", created.id),
        format!("{}?to=refunded", created.id),
        "../orders".to_owned(),
    ] {
        let missing = client.get(&id).await.unwrap_err();
        assert_eq!(missing.status, 404, "{id}");
    }
    assert_eq!(
        client.get(&created.id).await.unwrap().status,
        OrderStatus::Paid
    );
}
