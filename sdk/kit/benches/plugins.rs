//! Fresh-instance call benchmark of every reference plugin, beside two baselines measured
//! in the same run: an empty component (store + instantiate + drop on the same engine)
//! and a minimal SDK risk rule through the full call path.
//!
//! Run: `cargo bench -p payloom-plugin-kit --bench plugins` (optionally
//! `-- --calls N --threads N`; the default is 20,000 calls on 2 threads).
//! Prints a table, then one JSON line per measurement.

use std::sync::Arc;

use payloom_host::bindings::channel_types::CreateRequest;
use payloom_host::bindings::policy_types::{ChannelOption, Context as PolicyContext};
use payloom_host::bindings::risk_types::Context as RiskContext;
use payloom_host::bindings::types::KeyValue;
use payloom_host::{Call, CallContext, ChannelCall, PolicyCall, RiskCall};
use payloom_plugin_kit::Runner;
use payloom_plugin_kit::bench::{self, BenchResult};
use payloom_plugin_kit::conformance::sample_payment;
use payloom_reference_plugins::{
    AMOUNT_LIMIT, BLOCKLIST, Bundled, SANDBOX, STANDARD, VELOCITY, testing::HOSTILE,
};

/// Concurrent callers by default: this project's reference machine has two cores.
const THREADS_DEFAULT: usize = 2;

fn kv(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).into(),
            value: (*v).into(),
        })
        .collect()
}

fn risk(config: &[(&str, &str)]) -> Call {
    let ctx = RiskContext {
        payment: sample_payment("pay_bench", 12_345, "USD", "card", false),
        channel: None,
    };
    Call::Risk(RiskCall::Evaluate {
        ctx,
        config: kv(config),
    })
}

fn cases() -> Vec<(Bundled, &'static str, Call)> {
    let create = CreateRequest {
        payment: sample_payment("pay_bench", 12_345, "USD", "card", false),
        method_data: kv(&[("card.number", "4242424242424242")]),
        notify_url: "https://payloom.test/v1/notify/sandbox".into(),
    };
    let channels = vec![
        ChannelOption {
            id: "sandbox".into(),
            methods: vec!["card".into()],
            currencies: vec!["USD".into()],
            countries: vec![],
        },
        ChannelOption {
            id: "other".into(),
            methods: vec!["card".into()],
            currencies: vec!["USD".into(), "EUR".into()],
            countries: vec!["US".into()],
        },
    ];
    let decide = PolicyContext {
        payment: sample_payment("pay_bench", 12_345, "USD", "card", false),
        merchant_tier: "standard".into(),
        config: kv(&[
            ("fee.bps", "290"),
            ("fee.fixed_minor", "30"),
            ("route.USD", "sandbox"),
        ]),
        channels,
    };
    vec![
        (
            HOSTILE,
            "baseline: minimal SDK risk rule, evaluate",
            risk(&[]),
        ),
        (
            AMOUNT_LIMIT,
            "risk/amount-limit evaluate",
            risk(&[
                ("block_above_minor", "100000"),
                ("review_above_minor", "50000"),
            ]),
        ),
        (
            VELOCITY,
            "risk/velocity evaluate",
            risk(&[("max_count", "5"), ("window_seconds", "3600")]),
        ),
        (BLOCKLIST, "risk/blocklist evaluate", risk(&[])),
        (
            STANDARD,
            "policies/standard decide",
            Call::Policy(PolicyCall::Decide(decide)),
        ),
        (
            SANDBOX,
            "channels/sandbox create-payment",
            Call::Channel(ChannelCall::CreatePayment(create)),
        ),
    ]
}

fn print(result: &BenchResult, floor_p50: f64, size: Option<usize>) {
    let size = size.map_or("-".to_owned(), |s| format!("{:.1} KB", s as f64 / 1000.0));
    println!(
        "{:<48} {:>9.2} {:>9.2} {:>11.0} {:>8.1}x {:>10}",
        result.name,
        result.p50_us,
        result.p99_us,
        result.calls_per_sec,
        result.p50_us / floor_p50,
        size
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let calls = flag("--calls", 20_000);
    let threads = flag("--threads", THREADS_DEFAULT);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let runner = Runner::new(vec![])?;
        let runtime = runner.runtime().clone();
        let floor = bench::empty_component_floor(&runtime, calls, threads)?;
        println!("fresh-instance calls, {calls} per row, {threads} threads (µs; ratio = p50 / empty-component p50)");
        println!("{:<48} {:>9} {:>9} {:>11} {:>9} {:>10}", "call", "p50", "p99", "calls/s", "ratio", "size");
        print(&floor, floor.p50_us, None);
        let mut results = vec![floor.clone()];
        for (plugin, name, call) in cases() {
            let loaded = runner.load(plugin.wasm, plugin.manifest).await?;
            let result = bench::fresh_instance(&runtime, &Arc::clone(&loaded), name, CallContext::default(), call, calls, threads).await?;
            print(&result, floor.p50_us, Some(plugin.wasm.len()));
            results.push(result);
        }
        for result in &results {
            println!("{}", serde_json::to_string(result)?);
        }
        anyhow::Ok(())
    })
}
