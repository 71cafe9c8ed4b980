//! The HTTP client against channel-adapter's own router, over the reference sandbox: a
//! channel call answers over HTTP with the component's answer, a channel that is not loaded keeps its
//! status and code, credentials are set per merchant, and a merchant id stays one segment.

use std::collections::BTreeMap;
use std::sync::Arc;

use payloom_channel_adapter::{
    ChannelAdapter, ChannelApi, ChannelHttp, ChannelIn, ChannelMetrics, ChannelOut,
};
use payloom_channel_contract as ch;
use payloom_channel_contract::ChannelCall;
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::MemoryCounters;
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::{HostConfig, Registry, Runtime};
use payloom_payment_facts as types;
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::seal::MasterKey;
use payloom_platform::{Db, SystemClock};

/// The plugin host with the reference sandbox channel.
async fn plugins() -> Arc<Registry> {
    let config = HostConfig {
        allow_unsigned: true,
        ..HostConfig::default()
    };
    let services = HostServices {
        http: Arc::new(HttpClient::from_config(&config).unwrap()),
        counters: Arc::new(MemoryCounters::default()),
        lists: Arc::new(MemoryLists::default()),
    };
    let mut metrics = prometheus_client::registry::Registry::default();
    let registry = Registry::new(Runtime::new(config, services, &mut metrics).unwrap());
    let sandbox = payloom_reference_plugins::SANDBOX;
    registry
        .install(sandbox.wasm, sandbox.manifest, None)
        .await
        .unwrap();
    registry
}

async fn served() -> (ChannelHttp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(
        &sqlite_url(dir.path(), "channel-adapter"),
        &PoolOptions::default(),
    )
    .await
    .unwrap();
    let mut metrics = prometheus_client::registry::Registry::default();
    let metrics = ChannelMetrics::register(&mut metrics);
    let (key, clock) = (MasterKey::generate(), Arc::new(SystemClock));
    let adapter = ChannelAdapter::new(db, plugins().await, key, clock, metrics)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = payloom_channel_adapter::router(adapter);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (ChannelHttp(ServiceClient::new(&url)), dir)
}

fn query(merchant: &str, channel: &str) -> ChannelIn {
    ChannelIn {
        merchant_id: merchant.into(),
        channel: channel.into(),
        call: ChannelCall::QueryPayment(ch::PaymentRef {
            payment_id: "pay_1".into(),
            reference: None,
            amount: types::Money {
                amount_minor: 1_000,
                currency: "USD".into(),
            },
        }),
    }
}

#[tokio::test]
async fn calls_and_credentials_answer_over_http_as_in_process() {
    let (client, _dir) = served().await;
    let merchant = "mch_1/channels/sandbox";
    let unknown = client
        .call(query(merchant, "no-such-channel"))
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.status, unknown.code.as_str()),
        (400, "channel_unknown")
    );

    let secret = BTreeMap::from([("notify_secret".to_owned(), "k".to_owned())]);
    client
        .set_credentials(merchant, "sandbox", secret.clone())
        .await
        .unwrap();
    let answer = client.call(query(merchant, "sandbox")).await.unwrap();
    assert!(matches!(answer, ChannelOut::Payment(_)), "{answer:?}");

    // `..` is no segment a URL can carry: refused before anything is sent.
    let climbing = client.set_credentials("..", "sandbox", secret).await;
    assert_eq!(climbing.unwrap_err().status, 404);
}
