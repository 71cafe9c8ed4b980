//! The contract's HTTP client against the ledger's own router: balances, the chart of
//! accounts, entries by payment or merchant (values that look like query syntax stay
//! values) and reversals answer over HTTP as they do in process.

use std::sync::Arc;

use payloom_accounting::{AccountingApi, AccountingHttp, EntryQuery, Ledger, ReverseIn};
use payloom_gateway_contract::{PaymentEvent, PaymentOut, PaymentStatus};
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::Subscription;
use payloom_platform::{Db, SystemClock};

/// The ledger served on a free port, the client of it, and the ledger itself.
async fn served() -> (AccountingHttp, Arc<Ledger>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(
        &sqlite_url(dir.path(), "accounting"),
        &PoolOptions::default(),
    )
    .await
    .unwrap();
    let ledger = Ledger::new(db, Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = payloom_accounting::router(ledger.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (AccountingHttp(ServiceClient::new(&url)), ledger, dir)
}

/// Books a captured payment of `amount` (fee 30) for `merchant`, as the gateway's event.
async fn book(ledger: &Arc<Ledger>, merchant: &str, payment: &str, amount: i64) {
    let paid = PaymentOut {
        id: payment.into(),
        amount,
        currency: "USD".into(),
        status: PaymentStatus::Succeeded,
        channel: Some("sandbox".into()),
        amount_captured: amount,
        fee: 30,
        updated_at_ms: 1_700_000_000_000,
        ..PaymentOut::default()
    };
    let event = PaymentEvent::of(paid).unwrap().envelope(merchant);
    let subscription = Subscription::new(ledger.db().clone(), ledger.clone());
    subscription.process(&event).await.unwrap();
}

#[tokio::test]
async fn every_operation_answers_over_http_as_in_process() {
    let (client, ledger, _dir) = served().await;
    let merchant = "mch_a&payment_id=pay_b";
    book(&ledger, merchant, "pay_a", 1_000).await;
    book(&ledger, "mch_b", "pay_b", 2_000).await;

    let balance = client.balance(merchant).await.unwrap();
    assert_eq!(balance, ledger.balance(merchant).await.unwrap());
    assert_eq!(balance.balances[0].available, 970);
    assert_eq!(
        client.accounts().await.unwrap(),
        ledger.accounts().await.unwrap()
    );

    // A merchant id carrying query syntax is one value: only its own entries come back.
    let by_merchant = EntryQuery {
        payment_id: None,
        merchant_id: Some(merchant.into()),
    };
    let entries = client.entries(by_merchant.clone()).await.unwrap();
    assert_eq!(entries, ledger.entries(by_merchant).await.unwrap());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].payment_id.as_deref(), Some("pay_a"));
    let by_payment = EntryQuery {
        payment_id: Some("pay_b".into()),
        merchant_id: None,
    };
    let entry = client.entries(by_payment).await.unwrap().remove(0);

    let reason = ReverseIn {
        reason: "booked twice".into(),
    };
    let reversal = client.reverse(&entry.id, reason.clone()).await.unwrap();
    assert_eq!(
        reversal.reverses_entry_id.as_deref(),
        Some(entry.id.as_str())
    );
    assert_eq!(
        client.balance("mch_b").await.unwrap().balances[0].available,
        0
    );
    // Refusals keep their status and code; an id is one path segment.
    let again = client
        .reverse(&reversal.id, reason.clone())
        .await
        .unwrap_err();
    assert_eq!(
        (again.status, again.code.as_str()),
        (409, "entry_is_reversal")
    );
    let blank = ReverseIn { reason: " ".into() };
    assert_eq!(
        client.reverse(&entry.id, blank).await.unwrap_err().status,
        400
    );
    let climbing = format!("{}/reversals/../../{}", entry.id, reversal.id);
    assert_eq!(
        client.reverse(&climbing, reason).await.unwrap_err().status,
        404
    );
}
