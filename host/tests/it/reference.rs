//! The reference risk rules and merchant policy, through the host.

use payloom_host::bindings::policy_types::{
    ChannelOption, Context as PolicyContext, Verdict as PolicyVerdict,
};
use std::sync::Arc;

use payloom_host::bindings::imports::payloom::plugin::counters::Counter;
use payloom_host::bindings::risk_types::Action;
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::{CounterKey, Counters};
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::{Call, CallContext, HostConfig, PolicyCall, Registry, Reply, RiskCall, Runtime};
use payloom_reference_plugins::{AMOUNT_LIMIT, BLOCKLIST, STANDARD, VELOCITY};
use prometheus_client::registry::Registry as Metrics;

use crate::support::*;

#[tokio::test]
async fn amount_limit_blocks_reviews_and_allows() {
    let host = TestHost::with(&[AMOUNT_LIMIT]).await;
    let config = [
        ("block_above_minor", "100000"),
        ("review_above_minor", "50000"),
        ("block_above_minor.JPY", "1000000"),
    ];
    assert_eq!(
        host.verdict("amount-limit", risk_ctx(100_001), &config)
            .await
            .action,
        Action::Block
    );
    assert_eq!(
        host.verdict("amount-limit", risk_ctx(60_000), &config)
            .await
            .action,
        Action::Review
    );
    assert_eq!(
        host.verdict("amount-limit", risk_ctx(50_000), &config)
            .await
            .action,
        Action::Allow
    );
    let mut yen = risk_ctx(500_000);
    yen.payment.amount.currency = "JPY".into();
    assert_eq!(
        host.verdict("amount-limit", yen, &config).await.action,
        Action::Review
    );
    // A bad configuration is the rule's answer, not a trap.
    let report = host
        .evaluate("amount-limit", risk_ctx(1), &[("block_above_minor", "ten")])
        .await
        .unwrap();
    assert!(
        matches!(&report.reply, Reply::Verdict(Err(e)) if e.contains("block_above_minor")),
        "{:?}",
        report.reply
    );
    let report = host
        .evaluate(
            "amount-limit",
            risk_ctx(1),
            &[("block_above_minor", "10"), ("review_above_minor", "20")],
        )
        .await
        .unwrap();
    assert!(matches!(report.reply, Reply::Verdict(Err(_))));
}

#[tokio::test]
async fn velocity_reads_host_counters_in_the_window() {
    let host = TestHost::with(&[VELOCITY]).await;
    let config = [
        ("key", "email"),
        ("window_seconds", "3600"),
        ("max_count", "3"),
        ("max_sum_minor", "100000"),
    ];
    // The payment's merchant is mch_test; the e-mail is spelled as the payment spells it.
    let email = CounterKey::new("mch_test", "payments-by-email", "Payer@Example.com");
    let elsewhere = CounterKey::new("mch_other", "payments-by-email", "payer@example.com");
    let record = |key: &CounterKey, at_ms: i64| {
        let (counters, key) = (host.counters.clone(), key.clone());
        async move { counters.record(&key, at_ms, 1_000).await.unwrap() }
    };
    record(&email, NOW_MS - 7_200_000).await; // outside the window
    for _ in 0..2 {
        record(&email, NOW_MS - 60_000).await;
    }
    for _ in 0..10 {
        record(&elsewhere, NOW_MS - 60_000).await; // another merchant's customer
    }
    assert_eq!(
        host.verdict("velocity", risk_ctx(1_000), &config)
            .await
            .action,
        Action::Allow
    );
    record(&email, NOW_MS - 1_000).await;
    let verdict = host.verdict("velocity", risk_ctx(1_000), &config).await;
    assert_eq!(verdict.action, Action::Block);
    assert!(
        verdict.reasons[0].contains("4 payments"),
        "{:?}",
        verdict.reasons
    );
    let verdict = host
        .verdict(
            "velocity",
            risk_ctx(99_000),
            &[("max_sum_minor", "100000"), ("action", "review")],
        )
        .await;
    assert_eq!(verdict.action, Action::Review);
    // A call made for no merchant reads nothing, rather than somebody's counters.
    let unscoped = host
        .registry
        .call(
            "velocity",
            CallContext::default().at(NOW_MS),
            Call::Risk(RiskCall::Evaluate {
                ctx: risk_ctx(1_000),
                config: kvs(&config),
            }),
        )
        .await
        .unwrap();
    assert_eq!(unscoped.verdict().unwrap().action, Action::Allow);
    let report = host
        .evaluate(
            "velocity",
            risk_ctx(1),
            &[("key", "shoe_size"), ("max_count", "1")],
        )
        .await
        .unwrap();
    assert!(matches!(report.reply, Reply::Verdict(Err(_))));
}

#[tokio::test]
async fn blocklist_blocks_listed_customers() {
    let host = TestHost::with(&[BLOCKLIST]).await;
    assert_eq!(
        host.verdict("blocklist", risk_ctx(100), &[]).await.action,
        Action::Allow
    );
    host.lists.add("blocked-emails", "payer@example.com");
    host.lists.add("blocked-countries", "US");
    let verdict = host.verdict("blocklist", risk_ctx(100), &[]).await;
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(
        verdict.reasons,
        [
            "email is on list blocked-emails",
            "country is on list blocked-countries"
        ]
    );
    // A field can be switched off, and lists renamed.
    let verdict = host
        .verdict(
            "blocklist",
            risk_ctx(100),
            &[("list.email", ""), ("list.country", "vip-countries")],
        )
        .await;
    assert_eq!(verdict.action, Action::Allow);
}

fn channel(id: &str, currencies: &[&str], countries: &[&str]) -> ChannelOption {
    ChannelOption {
        id: id.into(),
        methods: vec!["card".into()],
        currencies: currencies.iter().map(|c| c.to_string()).collect(),
        countries: countries.iter().map(|c| c.to_string()).collect(),
    }
}

async fn decide(
    host: &TestHost,
    amount: i64,
    tier: &str,
    config: &[(&str, &str)],
) -> payloom_host::bindings::policy_types::Decision {
    let ctx = PolicyContext {
        payment: payment(amount, "USD"),
        merchant_tier: tier.into(),
        config: kvs(config),
        channels: vec![
            channel("zeta", &["USD"], &[]),
            channel("alpha", &["USD", "EUR"], &["US"]),
            channel("euro", &["EUR"], &[]),
            channel("gb-only", &["USD"], &["GB"]),
        ],
    };
    let report = host
        .registry
        .call(
            "standard",
            CallContext::default(),
            Call::Policy(PolicyCall::Decide(ctx)),
        )
        .await
        .unwrap();
    match report.reply {
        Reply::Decision(Ok(decision)) => decision,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn standard_policy_prices_limits_and_routes() {
    let host = TestHost::with(&[STANDARD]).await;
    let config = [
        ("fee.bps", "290"),
        ("fee.fixed_minor", "30"),
        ("fee.gold.bps", "150"),
        ("fee.gold.fixed_minor", "0"),
        ("min_minor", "50"),
        ("max_minor", "1000000"),
        ("route.USD", "zeta"),
    ];
    let decision = decide(&host, 10_000, "standard", &config).await;
    assert_eq!(decision.verdict, PolicyVerdict::Allow);
    assert_eq!(decision.fee.amount_minor, 320);
    assert_eq!(
        decision.channels,
        ["zeta", "alpha"],
        "preferred first, then by id; EUR-only and GB-only excluded"
    );
    assert_eq!(
        decide(&host, 10_000, "gold", &config)
            .await
            .fee
            .amount_minor,
        150
    );
    assert!(
        matches!(decide(&host, 49, "standard", &config).await.verdict, PolicyVerdict::Deny(r) if r.contains("minimum"))
    );
    assert!(
        matches!(decide(&host, 1_000_001, "standard", &config).await.verdict, PolicyVerdict::Deny(r) if r.contains("maximum"))
    );
    assert_eq!(
        decide(&host, 10_000, "standard", &[]).await.channels,
        ["alpha", "zeta"]
    );
}

/// A counter store that cannot answer.
struct Unreachable;

#[async_trait::async_trait]
impl Counters for Unreachable {
    async fn record(&self, _: &CounterKey, _: i64, _: i64) -> anyhow::Result<()> {
        anyhow::bail!("connection refused")
    }
    async fn get(&self, _: &CounterKey, _: i64, _: i64) -> anyhow::Result<Counter> {
        anyhow::bail!("connection refused")
    }
}

#[tokio::test]
async fn a_rule_whose_counters_cannot_answer_fails_closed() {
    let config = HostConfig {
        allow_unsigned: true,
        ..HostConfig::default()
    };
    let services = HostServices {
        http: Arc::new(HttpClient::from_config(&config).unwrap()),
        counters: Arc::new(Unreachable),
        lists: Arc::new(MemoryLists::default()),
    };
    let runtime = Runtime::new(config, services, &mut Metrics::default()).unwrap();
    let registry = Registry::new(runtime);
    registry
        .install(VELOCITY.wasm, VELOCITY.manifest, None)
        .await
        .unwrap();
    let failed = registry
        .call(
            "velocity",
            CallContext::default().at(NOW_MS).for_merchant("mch_test"),
            Call::Risk(RiskCall::Evaluate {
                ctx: risk_ctx(1_000),
                config: kvs(&[("max_count", "3")]),
            }),
        )
        .await
        .unwrap_err();
    let verdict = failed.risk_verdict().unwrap();
    assert_eq!(verdict.action, Action::Block, "{failed}");
    assert!(
        verdict.reasons[0].contains("counters unavailable"),
        "{:?}",
        verdict.reasons
    );
}
