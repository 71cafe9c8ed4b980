//! Hot swap under load: zero failed calls, old versions drain, rollback is instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use payloom_reference_plugins::testing::HOSTILE;

use crate::support::*;

fn version_of(report: &payloom_host::CallReport) -> String {
    report.verdict().unwrap().reasons[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_during_concurrent_calls_fails_nothing_and_drains_the_old_version() {
    let host = Arc::new(TestHost::with(&[HOSTILE]).await);
    let v1 = Arc::downgrade(&host.registry.get("hostile").unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (host, stop, calls) = (host.clone(), stop.clone(), calls.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let report = host
                    .evaluate(
                        "hostile",
                        risk_ctx(100),
                        &[("mode", "spin"), ("iterations", "20000")],
                    )
                    .await
                    .expect("no call may fail during a swap");
                seen.push(version_of(&report));
                calls.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    while calls.load(Ordering::Relaxed) < 50 {
        tokio::task::yield_now().await;
    }
    let (wasm, manifest) = patched(&HOSTILE, "9.1.0", "9.2.0");
    let installed = host.registry.install(&wasm, &manifest, None).await.unwrap();
    assert_eq!(installed.replaced.as_deref(), Some("9.1.0"));
    let at_swap = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < at_swap + 50 {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut versions = Vec::new();
    for worker in workers {
        versions.extend(worker.await.unwrap());
    }
    assert!(versions.iter().any(|v| v == "version=9.1.0"));
    assert!(versions.iter().any(|v| v == "version=9.2.0"));
    // Every worker moved to the new version and never went back.
    assert_eq!(
        version_of(&host.evaluate("hostile", risk_ctx(100), &[]).await.unwrap()),
        "version=9.2.0"
    );

    // v1 is still held for rollback; a third version pushes it out, and with no calls
    // in flight nothing keeps it alive.
    assert!(v1.upgrade().is_some());
    let (wasm, manifest) = patched(&HOSTILE, "9.1.0", "9.3.0");
    host.registry.install(&wasm, &manifest, None).await.unwrap();
    assert!(v1.upgrade().is_none(), "the old version did not drain");
}

#[tokio::test]
async fn in_flight_call_finishes_on_the_version_it_started_on() {
    // The spinning call must outlast the install beside it, which compiles a component:
    // on a loaded machine that takes longer than the usual 200 ms deadline, so this call
    // gets five seconds, and what it shows is which version finished it, not how fast.
    let host = TestHost::builder()
        .config(|config| config.risk.deadline_ms = 5_000)
        .build();
    host.install(&HOSTILE).await;
    let host = Arc::new(host);
    let slow = {
        let host = host.clone();
        tokio::spawn(async move {
            host.evaluate(
                "hostile",
                risk_ctx(100),
                &[("mode", "spin"), ("iterations", "30000000")],
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (wasm, manifest) = patched(&HOSTILE, "9.1.0", "9.2.0");
    host.registry.install(&wasm, &manifest, None).await.unwrap();
    let report = slow.await.unwrap().expect("the in-flight call completes");
    assert_eq!(version_of(&report), "version=9.1.0");
}

#[tokio::test]
async fn bad_upload_keeps_the_good_version_and_rollback_restores_the_previous() {
    let host = TestHost::with(&[HOSTILE]).await;
    let broken = host
        .registry
        .install(b"\0asm garbage", HOSTILE.manifest, None)
        .await;
    assert!(broken.is_err());
    assert_eq!(host.registry.get("hostile").unwrap().version(), "9.1.0");

    let (wasm, manifest) = patched(&HOSTILE, "9.1.0", "9.2.0");
    host.registry.install(&wasm, &manifest, None).await.unwrap();
    let rolled = host.registry.rollback("hostile").unwrap();
    assert_eq!(
        (rolled.version.as_str(), rolled.replaced.as_deref()),
        ("9.1.0", Some("9.2.0"))
    );
    assert_eq!(
        version_of(&host.evaluate("hostile", risk_ctx(100), &[]).await.unwrap()),
        "version=9.1.0"
    );
    assert!(host.registry.rollback("nope").is_err());
}

#[tokio::test]
async fn a_manifest_cannot_relabel_another_component() {
    let host = TestHost::with(&[HOSTILE]).await;
    let sandbox = payloom_reference_plugins::SANDBOX;
    let manifest = sandbox
        .manifest
        .replace("id = \"sandbox\"", "id = \"hostile\"");
    // describe still says "sandbox": the smoke test refuses it before any swap.
    let error = host
        .registry
        .install(sandbox.wasm, &manifest, None)
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("describe says sandbox@0.1.0"),
        "{error:#}"
    );
    assert_eq!(host.registry.get("hostile").unwrap().version(), "9.1.0");
}

#[tokio::test]
async fn a_canary_takes_its_share_of_keys_and_the_same_key_always_reaches_the_same_version() {
    use payloom_host::registry::in_canary;
    let host = TestHost::with(&[HOSTILE]).await;
    let (wasm, manifest) = patched(&HOSTILE, "9.1.0", "9.2.0");
    let runtime = host.registry.runtime();
    let candidate = runtime.load(&wasm, &manifest, None).await.unwrap();
    host.registry.set_canary(candidate.clone(), 10).unwrap();
    assert!(host.registry.set_canary(candidate.clone(), 100).is_err());

    let keys: Vec<String> = (0..2_000).map(|i| format!("pay_{i:05}")).collect();
    let reached = |key: &str| {
        host.registry
            .get_for("hostile", None, Some(key))
            .unwrap()
            .version()
            .to_owned()
    };
    let to_canary = keys.iter().filter(|k| reached(k) == "9.2.0").count();
    // 10 % of 2,000 keys is 200; three standard deviations (13.4) either side.
    assert!((160..=240).contains(&to_canary), "{to_canary} of 2000 keys");
    for key in &keys {
        assert_eq!(reached(key) == "9.2.0", in_canary(key, 10), "{key}");
        assert_eq!(reached(key), reached(key));
    }
    // A call is served by the version its key reaches; no key means the active version.
    let key = keys.iter().find(|k| in_canary(k, 10)).unwrap();
    let ctx = payloom_host::CallContext::default()
        .at(crate::support::NOW_MS)
        .routed_by(key);
    let call = payloom_host::Call::Risk(payloom_host::RiskCall::Evaluate {
        ctx: risk_ctx(100),
        config: vec![],
    });
    let report = host.registry.call("hostile", ctx, call).await.unwrap();
    assert_eq!(version_of(&report), "version=9.2.0");
    assert_eq!(
        host.registry
            .get_for("hostile", None, None)
            .unwrap()
            .version(),
        "9.1.0"
    );

    // Promotion ends the canary; clearing one sends everything back to the active.
    host.registry.activate(candidate).unwrap();
    assert!(host.registry.canary("hostile").is_none());
    assert!(keys.iter().all(|k| reached(k) == "9.2.0"));
}
