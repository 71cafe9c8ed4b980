//! The dead-letter client against its own router, over real HTTP: an operator's tool
//! lists what a consumer gave up on and replays it once the cause is fixed, an unknown
//! event is 404, and an id that tries to climb out of its path segment stays one segment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use payloom_platform::Db;
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::{
    self, Consumer, DeadLetterApi, DeadLetterHttp, Envelope, Processed, Subscription,
    dead_letter_router,
};
use sqlx::AnyConnection;

/// Refuses every event until it is fixed.
#[derive(Default)]
struct Broken {
    fixed: AtomicBool,
}

#[async_trait]
impl Consumer for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn topics(&self) -> &'static [&'static str] {
        &["payment.events"]
    }
    async fn handle(&self, _tx: &mut AnyConnection, _event: &Envelope) -> anyhow::Result<()> {
        anyhow::ensure!(self.fixed.load(Ordering::SeqCst), "the ledger is broken");
        Ok(())
    }
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&sqlite_url(dir.path(), "letters"), &PoolOptions::default())
        .await
        .unwrap();
    events::install(&db).await.unwrap();
    let consumer = Arc::new(Broken::default());
    let mut subscription = Subscription::new(db, consumer.clone());
    subscription.max_attempts = 2;
    subscription.retry_base = std::time::Duration::from_millis(1);
    let subscription = Arc::new(subscription);
    let event = Envelope::new(
        "payment.succeeded",
        "payment",
        "pay_1",
        1_700_000_000_000,
        serde_json::json!({"id": "pay_1"}),
    );
    assert!(matches!(
        subscription.process(&event).await.unwrap(),
        Processed::DeadLettered
    ));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = dead_letter_router(subscription.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = DeadLetterHttp(ServiceClient::new(&base));

    let letters = client.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_id, event.id);
    assert_eq!(letters[0].consumer, "broken");
    assert_eq!(letters[0].attempts, 2);
    assert!(
        letters[0].error.contains("the ledger is broken"),
        "{letters:?}"
    );
    assert_eq!(letters[0].event, event);

    let climbing = client
        .replay(&format!("../{}", event.id))
        .await
        .unwrap_err();
    assert_eq!(climbing.status, 404, "{climbing:?}");
    assert_eq!(
        client.dead_letters().await.unwrap().len(),
        1,
        "nothing replayed"
    );

    consumer.fixed.store(true, Ordering::SeqCst);
    let replayed = client.replay(&event.id).await.unwrap();
    assert_eq!(replayed.outcome, "handled");
    assert_eq!(replayed.event_id, event.id);
    assert!(client.dead_letters().await.unwrap().is_empty());
    let again = client.replay(&event.id).await.unwrap_err();
    assert_eq!(
        again.status, 404,
        "a replayed event is no longer a dead letter"
    );
}
