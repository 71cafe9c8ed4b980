//! Components that misbehave get stopped, and get nothing from the host.

use std::time::{Duration, Instant};

use payloom_host::bindings::channel_types::Notification;
use payloom_host::bindings::risk_types::Action;
use payloom_host::metrics::ErrorKind;
use payloom_host::{Call, CallContext, ChannelCall};
use payloom_host::{CallFailure, policy::FailurePolicy};
use payloom_reference_plugins::testing::{FETCHER, HOSTILE, SNOOP};

use crate::support::*;

fn closed_error(result: Result<payloom_host::CallReport, CallFailure>) -> payloom_host::CallError {
    match result {
        Err(CallFailure::Closed { error, .. }) => error,
        other => panic!("expected a closed failure, got {other:?}"),
    }
}

#[tokio::test]
async fn infinite_loop_is_killed_at_its_deadline() {
    let host = TestHost::with(&[HOSTILE]).await;
    let started = Instant::now();
    let error = closed_error(
        host.evaluate("hostile", risk_ctx(100), &[("mode", "loop")])
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    // The deadline is 200 ms; allow generous scheduling slack, but not "forever".
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The engine is fine afterwards.
    let verdict = host.verdict("hostile", risk_ctx(100), &[]).await;
    assert_eq!(verdict.action, Action::Allow);
}

#[tokio::test]
async fn memory_bomb_traps_at_the_cap() {
    let host = TestHost::builder()
        .config(|c| c.memory_bytes_max = 16 << 20)
        .build();
    host.install(&HOSTILE).await;
    let error = closed_error(
        host.evaluate("hostile", risk_ctx(100), &[("mode", "memory")])
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Memory, "{error}");
    assert!(error.message.contains("memory cap"), "{error}");
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let host = TestHost::with(&[HOSTILE]).await;
    let error = closed_error(
        host.evaluate("hostile", risk_ctx(100), &[("mode", "output")])
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Denied);
    assert!(error.message.contains("output of"), "{error}");
}

#[tokio::test]
async fn oversized_input_is_refused_before_the_call() {
    let host = TestHost::with(&[HOSTILE]).await;
    let big = "x".repeat(200 * 1024);
    let error = closed_error(
        host.evaluate("hostile", risk_ctx(100), &[("mode", &big)])
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Refused);
    assert!(error.message.contains("input of"), "{error}");
}

#[tokio::test]
async fn panicking_guests_yield_a_clean_trap_error() {
    let host = TestHost::with(&[HOSTILE, SNOOP]).await;
    let error = closed_error(
        host.evaluate("hostile", risk_ctx(100), &[("mode", "panic")])
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Trap, "{error}");
    let error = closed_error(
        host.evaluate("snoop", risk_ctx(100), &[("panic", "yes")])
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Trap, "{error}");
    // Fresh stores: the next call is unaffected.
    assert_eq!(
        host.verdict("hostile", risk_ctx(100), &[]).await.action,
        Action::Allow
    );
}

#[tokio::test]
async fn wasi_guest_gets_no_files_sockets_or_environment() {
    let host = TestHost::with(&[SNOOP]).await;
    let report = host.evaluate("snoop", risk_ctx(100), &[]).await.unwrap();
    let reasons = report.verdict().unwrap().reasons.join("\n");
    for expected in [
        "read_file=err",
        "read_dir=err",
        "write_file=err",
        "env_vars=0",
        "args=0",
        "tcp_connect=err",
        "dns=err",
        "udp_bind=err",
    ] {
        assert!(
            reasons.contains(expected),
            "missing {expected} in:\n{reasons}"
        );
    }
    // stdin is empty (reads zero bytes or is closed), never host data.
    assert!(
        reasons.contains("stdin=ok:0") || reasons.contains("stdin=err"),
        "{reasons}"
    );
    // Risk rules see the call's fixed clock through WASI too.
    assert!(reasons.contains(&format!("now_ms={NOW_MS}")), "{reasons}");
    // stdout and stderr went into the plugin's capped log.
    let logs: Vec<&str> = report.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        logs.contains(&"snoop writes to stdout") && logs.contains(&"snoop writes to stderr"),
        "{logs:?}"
    );
}

#[tokio::test]
async fn logs_are_capped_per_call() {
    let host = TestHost::with(&[HOSTILE]).await;
    let report = host
        .evaluate("hostile", risk_ctx(100), &[("mode", "log")])
        .await
        .unwrap();
    let logged: usize = report.logs.iter().map(|l| l.message.len()).sum();
    assert!(logged <= 4 * 1024, "kept {logged} bytes");
    assert!(!report.logs.is_empty());
}

#[tokio::test]
async fn risk_rules_run_on_a_fixed_clock() {
    let host = TestHost::with(&[HOSTILE]).await;
    let verdict = host
        .verdict("hostile", risk_ctx(100), &[("mode", "clock")])
        .await;
    assert!(
        verdict.reasons.contains(&format!("now_ms={NOW_MS}")),
        "{:?}",
        verdict.reasons
    );
}

#[tokio::test]
async fn breaker_opens_after_repeated_failures_and_risk_fails_closed() {
    let host = TestHost::builder()
        .config(|c| c.breaker_failures_max = 3)
        .build();
    host.install(&HOSTILE).await;
    for _ in 0..3 {
        let failure = host
            .evaluate("hostile", risk_ctx(100), &[("mode", "panic")])
            .await
            .unwrap_err();
        assert_eq!(failure.risk_verdict().unwrap().action, Action::Block);
    }
    // Open: even a good call is refused without running.
    let error = closed_error(host.evaluate("hostile", risk_ctx(100), &[]).await);
    assert!(error.message.contains("circuit breaker"), "{error}");
    assert!(host.registry.list()[0].breaker_open);
    let metrics = host.metrics_text();
    let open = r#"payloom_plugin_breaker_open{plugin="hostile",version="9.1.0",breaker="calls"} 1"#;
    assert!(metrics.contains(open), "{metrics}");
    let trapped = r#"payloom_plugin_errors_total{plugin="hostile",version="9.1.0",kind="trap"} 3"#;
    assert!(metrics.contains(trapped), "{metrics}");
    // Kinds that never happened read zero rather than missing.
    let none = r#"payloom_plugin_errors_total{plugin="hostile",version="9.1.0",kind="memory"} 0"#;
    assert!(metrics.contains(none), "{metrics}");
}

/// A notification for the `fetcher` channel with `body`.
fn notification(body: &[u8]) -> Call {
    Call::Channel(ChannelCall::HandleNotification(Notification {
        method: "POST".into(),
        path: "/v1/notify/fetcher".into(),
        headers: vec![],
        body: body.to_vec(),
    }))
}

#[tokio::test]
async fn host_refusals_never_open_a_breaker() {
    let host = TestHost::builder()
        .config(|c| c.breaker_failures_max = 2)
        .build();
    host.install(&HOSTILE).await;
    let big = "x".repeat(200 * 1024);
    for _ in 0..5 {
        let error = closed_error(
            host.evaluate("hostile", risk_ctx(100), &[("mode", &big)])
                .await,
        );
        assert_eq!(error.kind, ErrorKind::Refused, "{error}");
    }
    assert!(!host.registry.list()[0].breaker_open);
    host.verdict("hostile", risk_ctx(100), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_finds_no_free_slot_is_refused_and_opens_no_breaker() {
    let host = TestHost::builder()
        .config(|c| {
            c.concurrent_calls_max = 1;
            c.breaker_failures_max = 1;
            c.risk.deadline_ms = 400;
            c.channel.deadline_ms = 50;
        })
        .build();
    host.install(&HOSTILE).await;
    host.install(&FETCHER).await;
    // The only slot is held by a rule spinning to its deadline.
    let registry = host.registry.clone();
    let spinning = tokio::spawn(async move {
        let call = payloom_host::RiskCall::Evaluate {
            ctx: risk_ctx(100),
            config: kvs(&[("mode", "loop")]),
        };
        registry
            .call("hostile", CallContext::default(), Call::Risk(call))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let call = ChannelCall::CreatePayment(payloom_host::bindings::channel_types::CreateRequest {
        payment: payment(100, "USD"),
        method_data: kvs(&[("op", "sha256"), ("data", "00")]),
        notify_url: String::new(),
    });
    let error = closed_error(
        host.registry
            .call(
                "fetcher",
                CallContext::default(),
                Call::Channel(call.clone()),
            )
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Refused, "{error}");
    assert!(error.message.contains("no free call slot"), "{error}");
    spinning.await.unwrap().unwrap_err();
    let fetcher = host.registry.list().into_iter().find(|p| p.id == "fetcher");
    assert!(!fetcher.unwrap().breaker_open, "a refusal is not a failure");
    host.registry
        .call("fetcher", CallContext::default(), Call::Channel(call))
        .await
        .unwrap();
}

#[tokio::test]
async fn failing_notifications_open_their_own_breaker_not_the_payments_one() {
    let host = TestHost::builder()
        .config(|c| c.breaker_failures_max = 3)
        .build();
    host.install(&FETCHER).await;
    let ctx = || CallContext::default().at(NOW_MS);
    for _ in 0..5 {
        let failure = host
            .registry
            .call("fetcher", ctx(), notification(b"trap"))
            .await
            .unwrap_err();
        assert!(matches!(failure, CallFailure::Closed { .. }), "{failure}");
    }
    let status = &host.registry.list()[0];
    assert!(
        status.notify_breaker_open && !status.breaker_open,
        "{status:?}"
    );
    // Even a harmless notification waits out the cool-down ...
    let refused = closed_error(
        host.registry
            .call("fetcher", ctx(), notification(b"hello"))
            .await,
    );
    assert_eq!(refused.kind, ErrorKind::Refused);
    // ... while payments go through the channel as before.
    let call = ChannelCall::CreatePayment(payloom_host::bindings::channel_types::CreateRequest {
        payment: payment(100, "USD"),
        method_data: kvs(&[("op", "sha256"), ("data", "00")]),
        notify_url: String::new(),
    });
    host.registry
        .call("fetcher", ctx(), Call::Channel(call))
        .await
        .unwrap();
}

#[tokio::test]
async fn fail_open_policy_gives_no_opinion() {
    let host = TestHost::builder()
        .config(|c| c.risk.failure = FailurePolicy::FailOpen)
        .build();
    host.install(&HOSTILE).await;
    let failure = host
        .evaluate("hostile", risk_ctx(100), &[("mode", "panic")])
        .await
        .unwrap_err();
    assert!(matches!(failure, CallFailure::Open { .. }), "{failure:?}");
    assert_eq!(failure.risk_verdict().unwrap().action, Action::None);
}

#[tokio::test]
async fn metrics_count_calls_and_errors_by_kind() {
    let host = TestHost::with(&[HOSTILE]).await;
    host.evaluate("hostile", risk_ctx(100), &[]).await.unwrap();
    host.evaluate("hostile", risk_ctx(100), &[("mode", "loop")])
        .await
        .unwrap_err();
    let text = host.metrics_text();
    assert!(
        text.contains(r#"payloom_plugin_calls_total{plugin="hostile",version="9.1.0"} 3"#),
        "{text}"
    ); // + smoke test
    assert!(
        text.contains(
            r#"payloom_plugin_errors_total{plugin="hostile",version="9.1.0",kind="timeout"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("payloom_plugin_call_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn statements_have_their_own_larger_cap() {
    use payloom_host::{Call, CallContext, ChannelCall, Reply};
    let host = TestHost::builder()
        .config(|c| c.bytes.statement_max = 512 * 1024)
        .build();
    host.install(&payloom_reference_plugins::SANDBOX).await;
    let mut csv =
        String::from("reference,host_id,kind,amount_minor,currency,fee_minor,booked_at_ms\n");
    while csv.len() < 200 * 1024 {
        csv.push_str("sbx_a_pay_1,pay_1,payment,1000,USD,30,1767225600000\n");
    }
    let lines = csv.lines().count() - 1;
    let call = |content: String| Call::Channel(ChannelCall::ParseStatement(content.into_bytes()));
    // Well above the 128 KiB message cap, within the statement cap.
    let report = host
        .registry
        .call("sandbox", CallContext::default(), call(csv.clone()))
        .await
        .unwrap();
    assert!(
        matches!(&report.reply, Reply::Statement(Ok(parsed)) if parsed.len() == lines),
        "{:?}",
        report.reply
    );
    while csv.len() < 600 * 1024 {
        csv.push_str("sbx_a_pay_1,pay_1,payment,1000,USD,30,1767225600000\n");
    }
    let error = closed_error(
        host.registry
            .call("sandbox", CallContext::default(), call(csv))
            .await,
    );
    assert_eq!(error.kind, ErrorKind::Refused);
}

#[tokio::test]
async fn fallback_policy_asks_another_plugin_of_the_kind() {
    let host = TestHost::builder()
        .config(|c| c.risk.failure = FailurePolicy::Fallback("amount-limit".into()))
        .build();
    host.install(&HOSTILE).await;
    host.install(&payloom_reference_plugins::AMOUNT_LIMIT).await;
    // hostile panics; amount-limit answers with the same context and config.
    let report = host
        .evaluate(
            "hostile",
            risk_ctx(5_000),
            &[("mode", "panic"), ("block_above_minor", "1000")],
        )
        .await
        .unwrap();
    assert_eq!(report.verdict().unwrap().action, Action::Block);
    // A failing fallback does not fall back again; the failure stands, closed.
    let host = TestHost::builder()
        .config(|c| c.risk.failure = FailurePolicy::Fallback("missing".into()))
        .build();
    host.install(&HOSTILE).await;
    let failure = host
        .evaluate("hostile", risk_ctx(5_000), &[("mode", "panic")])
        .await
        .unwrap_err();
    assert_eq!(
        failure.risk_verdict().unwrap().action,
        Action::Block,
        "{failure:?}"
    );
}
