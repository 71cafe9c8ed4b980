//! The reference risk rules and merchant policy, through the host.

use payloom_host::bindings::policy_types::{
    ChannelOption, Context as PolicyContext, Verdict as PolicyVerdict,
};
use payloom_host::bindings::risk_types::Action;
use payloom_host::{Call, CallContext, PolicyCall, Reply};
use payloom_reference_plugins::{AMOUNT_LIMIT, BLOCKLIST, STANDARD, VELOCITY};

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
    let email = "payer@example.com";
    host.counters
        .record("payments-by-email", email, NOW_MS - 7_200_000, 1_000); // outside the window
    for _ in 0..2 {
        host.counters
            .record("payments-by-email", email, NOW_MS - 60_000, 1_000);
    }
    assert_eq!(
        host.verdict("velocity", risk_ctx(1_000), &config)
            .await
            .action,
        Action::Allow
    );
    host.counters
        .record("payments-by-email", email, NOW_MS - 1_000, 1_000);
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
