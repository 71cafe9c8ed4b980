//! The conformance suite against the reference sandbox channel, and against adapters
//! that break the contract.

use payloom_plugin_kit::conformance::{self, Scenarios};
use payloom_plugin_kit::{Fixture, Runner};
use payloom_reference_plugins::{SANDBOX, testing::FETCHER};

fn sandbox_scenarios() -> Scenarios {
    let text = include_str!("../../../plugins/channels/sandbox/conformance.json");
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn sandbox_passes_the_conformance_suite() {
    let runner = Runner::new(vec![]).unwrap();
    let plugin = runner.load(SANDBOX.wasm, SANDBOX.manifest).await.unwrap();
    let report = conformance::run(&runner, &plugin, &sandbox_scenarios())
        .await
        .unwrap();
    assert!(report.passed(), "{:#?}", report.failures());
    assert!(
        report.checks.len() >= 30,
        "only {} checks ran",
        report.checks.len()
    );
}

#[tokio::test]
async fn suite_catches_wrong_expectations() {
    // The same adapter against scenarios that claim other outcomes must fail, so the
    // suite is really comparing.
    let runner = Runner::new(vec![]).unwrap();
    let plugin = runner.load(SANDBOX.wasm, SANDBOX.manifest).await.unwrap();
    let mut scenarios = sandbox_scenarios();
    scenarios.payments[0].expect = "declined".into();
    scenarios.notification.as_mut().unwrap().body.push('x');
    let report = conformance::run(&runner, &plugin, &scenarios)
        .await
        .unwrap();
    let failed: Vec<&str> = report.failures().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().any(|n| n.contains("-> declined")));
    assert!(
        failed
            .iter()
            .any(|n| n.contains("correctly signed notification"))
    );
}

#[tokio::test]
async fn suite_fails_an_adapter_that_breaks_the_contract() {
    // The fetcher test channel answers every payment with `unknown`, echoes nothing
    // useful and supports nothing else.
    let runner = Runner::new(vec![]).unwrap();
    let plugin = runner.load(FETCHER.wasm, FETCHER.manifest).await.unwrap();
    let report = conformance::run(&runner, &plugin, &sandbox_scenarios())
        .await
        .unwrap();
    let failed: Vec<&str> = report.failures().iter().map(|c| c.name.as_str()).collect();
    assert!(
        failed.contains(&"create-payment refuses zero amount"),
        "{failed:?}"
    );
    assert!(
        failed.contains(&"notification without a signature is rejected"),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|n| n.contains("payment: plain card succeeds -> succeeded")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn runner_reports_usage_against_limits_and_answers_http_from_recordings() {
    let exchanges = serde_json::from_str(
        r#"[{"request": {"method": "GET", "url": "http://api.payloom.test/ping"},
             "response": {"status": 200, "body": "pong"}}]"#,
    )
    .unwrap();
    let runner = Runner::new(exchanges).unwrap();
    let plugin = runner.load(FETCHER.wasm, FETCHER.manifest).await.unwrap();
    let fixture: Fixture = serde_json::from_str(
        r#"{"call": "create-payment", "input": {
              "payment": {"id": "pay_1", "merchant_id": "mch_1", "order_no": "o1",
                          "amount": {"amount_minor": 100, "currency": "USD"}, "method": "card",
                          "capture": "Automatic",
                          "customer": {"email": null, "ip": null, "country": null, "device_id": null, "phone": null},
                          "description": null, "return_url": null, "metadata": [], "created_at_ms": 0},
              "method_data": [{"key": "op", "value": "fetch"}, {"key": "url", "value": "http://api.payloom.test/ping"}],
              "notify_url": ""}}"#,
    )
    .unwrap();
    let report = runner.run(&plugin, &fixture).await.unwrap();
    assert!(report.ok, "{report:?}");
    let json = serde_json::to_string(&report.reply).unwrap();
    assert!(json.contains("status=200 body=pong"), "{json}");
    assert!(
        report.peak_memory_bytes > 0
            && (report.peak_memory_bytes as u64) < report.memory_limit_bytes
    );
    assert!(report.input_bytes > 0 && report.input_bytes < report.input_limit_bytes);
    assert!(report.output_bytes > 0 && report.output_bytes < report.output_limit_bytes);
    assert_eq!(runner.http.sent.lock().unwrap().len(), 1);

    // Unrecorded requests get a transport error, never the network.
    let mut other = fixture.clone();
    other.input["method_data"][1]["value"] = "http://api.payloom.test/other".into();
    let report = runner.run(&plugin, &other).await.unwrap();
    assert!(
        serde_json::to_string(&report.reply)
            .unwrap()
            .contains("no recorded exchange")
    );

    // A fixture that does not fit the world is refused with a reason.
    let bad: Fixture = serde_json::from_str(r#"{"call": "evaluate", "input": {}}"#).unwrap();
    assert!(runner.run(&plugin, &bad).await.is_err());
}
