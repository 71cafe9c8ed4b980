//! The HTTP client against merchant-policy's own router, over the reference policy
//! component: a decision over HTTP is the one made in process, a merchant's own policy
//! applies to that merchant only, and a merchant id stays one path segment.

use std::collections::BTreeMap;
use std::sync::Arc;

use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::MemoryCounters;
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::{HostConfig, Registry, Runtime};
use payloom_merchant_policy::{
    DecideIn, MerchantPolicy, PolicyApi, PolicyConfig, PolicyHttp, PolicyIn,
};
use payloom_payment_facts as types;
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::{Db, SystemClock};

/// The plugin host with the reference policy component and sandbox channel.
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
    // The policy routes to the channels the host has loaded: the sandbox.
    use payloom_reference_plugins::{SANDBOX, STANDARD};
    for plugin in [STANDARD, SANDBOX] {
        let installed = registry.install(plugin.wasm, plugin.manifest, None).await;
        installed.unwrap();
    }
    registry
}

async fn served() -> (PolicyHttp, Arc<MerchantPolicy>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(
        &sqlite_url(dir.path(), "merchant-policy"),
        &PoolOptions::default(),
    )
    .await
    .unwrap();
    let config = PolicyConfig {
        plugin: "standard".into(),
        config: fees("290", "30"),
    };
    let policy = MerchantPolicy::new(db, plugins().await, config, Arc::new(SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = payloom_merchant_policy::router(policy.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (PolicyHttp(ServiceClient::new(&url)), policy, dir)
}

fn fees(bps: &str, fixed: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("fee.bps".to_owned(), bps.to_owned()),
        ("fee.fixed_minor".to_owned(), fixed.to_owned()),
    ])
}

fn decide(merchant: &str, amount_minor: i64) -> DecideIn {
    DecideIn {
        tier: "standard".into(),
        payment: types::Payment {
            id: "pay_1".into(),
            merchant_id: merchant.into(),
            order_no: "order-1".into(),
            amount: types::Money {
                amount_minor,
                currency: "USD".into(),
            },
            method: "card".into(),
            capture: types::CaptureMode::Automatic,
            customer: types::Customer {
                email: None,
                ip: None,
                country: None,
                device_id: None,
                phone: None,
            },
            description: None,
            return_url: None,
            metadata: Vec::new(),
            created_at_ms: 1_700_000_000_000,
        },
    }
}

#[tokio::test]
async fn decisions_and_policies_answer_over_http_as_in_process() {
    let (client, policy, _dir) = served().await;
    let merchant = "mch_1/policy";
    let standard = client.decide(decide(merchant, 10_000)).await.unwrap();
    assert_eq!(
        standard,
        policy.decide(decide(merchant, 10_000)).await.unwrap()
    );
    assert_eq!(
        (standard.denied.as_deref(), standard.fee_minor),
        (None, 290 + 30)
    );

    // The merchant's own fees, set over HTTP, apply to it and to no other.
    let own = PolicyIn {
        plugin: "standard".into(),
        config: fees("100", "0"),
    };
    client.set_policy(merchant, own).await.unwrap();
    assert_eq!(
        client
            .decide(decide(merchant, 10_000))
            .await
            .unwrap()
            .fee_minor,
        100
    );
    assert_eq!(
        client
            .decide(decide("mch_1", 10_000))
            .await
            .unwrap()
            .fee_minor,
        320
    );

    // A component that is not loaded is refused, and the policy stays as it was.
    let missing = PolicyIn {
        plugin: "no-such-policy".into(),
        config: BTreeMap::new(),
    };
    let refused = client.set_policy(merchant, missing).await.unwrap_err();
    assert!((400..500).contains(&refused.status), "{refused:?}");
    assert_eq!(
        client
            .decide(decide(merchant, 10_000))
            .await
            .unwrap()
            .fee_minor,
        100
    );
}
