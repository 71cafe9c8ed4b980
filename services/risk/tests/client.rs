//! The HTTP client against risk's own router, over the reference blocklist rule: a payment
//! is evaluated over HTTP as in process, its stored decision reads back through the same
//! declared operation, and a decision id stays one path segment.

use std::collections::BTreeMap;
use std::sync::Arc;

use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::{Counters, MemoryCounters};
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::{HostConfig, Registry, Runtime};
use payloom_payment_facts as types;
use payloom_platform::client::ServiceClient;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::{Db, SystemClock};
use payloom_risk::{Action, EvaluateIn, Risk, RiskApi, RiskConfig, RiskHttp, RuleConfig};

/// The plugin host with the reference blocklist rule, and `blocked@example.com` listed.
async fn plugins() -> (Arc<Registry>, Arc<dyn Counters>) {
    let config = HostConfig {
        allow_unsigned: true,
        ..HostConfig::default()
    };
    let lists = Arc::new(MemoryLists::default());
    lists.add("blocked-emails", "blocked@example.com");
    let counters: Arc<dyn Counters> = Arc::new(MemoryCounters::default());
    let services = HostServices {
        http: Arc::new(HttpClient::from_config(&config).unwrap()),
        counters: counters.clone(),
        lists,
    };
    let mut metrics = prometheus_client::registry::Registry::default();
    let registry = Registry::new(Runtime::new(config, services, &mut metrics).unwrap());
    let blocklist = payloom_reference_plugins::BLOCKLIST;
    registry
        .install(blocklist.wasm, blocklist.manifest, None)
        .await
        .unwrap();
    (registry, counters)
}

async fn served() -> (RiskHttp, Arc<Risk>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&sqlite_url(dir.path(), "risk"), &PoolOptions::default())
        .await
        .unwrap();
    let (registry, counters) = plugins().await;
    let config = RiskConfig {
        rules: vec![RuleConfig {
            plugin: "blocklist".into(),
            config: BTreeMap::new(),
        }],
        lists: BTreeMap::new(),
    };
    let risk = Risk::new(
        db,
        registry,
        counters,
        config,
        Arc::new(SystemClock),
        Default::default(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = payloom_risk::router(risk.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (RiskHttp(ServiceClient::new(&url)), risk, dir)
}

fn payment(id: &str, email: &str) -> EvaluateIn {
    EvaluateIn {
        payment: types::Payment {
            id: id.into(),
            merchant_id: "mch_1".into(),
            order_no: format!("order-{id}"),
            amount: types::Money {
                amount_minor: 1_000,
                currency: "USD".into(),
            },
            method: "card".into(),
            capture: types::CaptureMode::Automatic,
            customer: types::Customer {
                email: Some(email.into()),
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
        channel: Some("sandbox".into()),
    }
}

#[tokio::test]
async fn evaluations_and_decisions_answer_over_http_as_in_process() {
    let (client, risk, _dir) = served().await;
    let allowed = client
        .evaluate(payment("pay_1", "ok@example.com"))
        .await
        .unwrap();
    assert_eq!(allowed.action, Action::Allow);
    let blocked = client
        .evaluate(payment("pay_2", "blocked@example.com"))
        .await
        .unwrap();
    assert_eq!(blocked.action, Action::Block);
    assert_eq!(blocked.rules[0].rule, "blocklist");

    // The stored decision, over HTTP through the declared operation, as in process.
    let decision = payloom_risk::operations::DECISION;
    let stored = decision.call(&client.0, &[&blocked.id], &()).await.unwrap();
    let here = risk.decision(&blocked.id).await.unwrap();
    assert_eq!(
        (stored.payment_id.as_str(), stored.decision.action),
        ("pay_2", Action::Block)
    );
    assert_eq!(stored.decision.id, here.decision.id);
    for id in [format!("{}/x", blocked.id), format!("{}?y=1", blocked.id)] {
        let missing = decision.call(&client.0, &[&id], &()).await.unwrap_err();
        assert_eq!(missing.status, 404, "{id}");
    }
}
