//! What the host trusts: built-in components by digest, versions only forward unless
//! rolled back on purpose, and precompiled cache entries only when this host wrote them.

use payloom_host::config::CacheKey;
use payloom_host::signing;
use payloom_host::{HostConfig, Publisher};
use payloom_reference_plugins::testing::HOSTILE;
use payloom_reference_plugins::{AMOUNT_LIMIT, SANDBOX, VELOCITY};

use crate::support::{TestHost, patched, risk_ctx};

async fn load_error(host: &TestHost, wasm: &[u8], manifest: &str) -> String {
    let error = host
        .registry
        .install(wasm, manifest, None)
        .await
        .unwrap_err();
    format!("{error:#}")
}

#[tokio::test]
async fn a_built_in_component_loads_unsigned_and_nothing_else_does() {
    let host = TestHost::builder()
        .config(|c| {
            c.allow_unsigned = false;
            c.builtin_digests = vec![signing::pair_digest(
                SANDBOX.wasm,
                SANDBOX.manifest.as_bytes(),
            )];
        })
        .build();
    host.install(&SANDBOX).await;
    let status = host.registry.list();
    assert_eq!(status[0].publisher, Publisher::BuiltIn);
    assert_eq!(
        serde_json::to_value(&status[0]).unwrap()["publisher"],
        "built-in"
    );

    // The same component under a manifest that widens its reach is not the built-in.
    let widened = SANDBOX.manifest.replace(
        "[capabilities]",
        "[capabilities]\nallowed_hosts = [\"https://evil.example\"]",
    );
    let error = load_error(&host, SANDBOX.wasm, &widened).await;
    assert!(error.contains("not signed"), "{error}");
    // Another component under the built-in's id and a copied manifest: not signed either.
    let (v2, manifest) = patched(&SANDBOX, "0.1.0", "0.2.0");
    assert!(
        load_error(&host, &v2, &manifest)
            .await
            .contains("not signed")
    );
    assert_eq!(host.registry.get("sandbox").unwrap().version(), "0.1.0");
}

#[tokio::test]
async fn versions_move_forward_unless_rolled_back_on_purpose() {
    let host = TestHost::with(&[HOSTILE]).await;
    let serving = || host.registry.get("hostile").unwrap().version().to_owned();

    let (older, older_manifest) = patched(&HOSTILE, "9.1.0", "9.0.0");
    let error = load_error(&host, &older, &older_manifest).await;
    assert!(error.contains("needs an explicit rollback"), "{error}");
    assert_eq!(serving(), "9.1.0");

    // The same version with other bytes is another build under a taken name.
    let relabelled = HOSTILE
        .manifest
        .replace("misbehaves as configured", "same version, new text");
    let error = load_error(&host, HOSTILE.wasm, &relabelled).await;
    assert!(error.contains("already serves other bytes"), "{error}");

    // The same build again changes nothing.
    let again = host
        .registry
        .install(HOSTILE.wasm, HOSTILE.manifest, None)
        .await
        .unwrap();
    assert_eq!((again.version.as_str(), again.replaced), ("9.1.0", None));

    // Newer goes live; an explicit rollback may go to an older build.
    let (newer, newer_manifest) = patched(&HOSTILE, "9.1.0", "9.2.0");
    host.registry
        .install(&newer, &newer_manifest, None)
        .await
        .unwrap();
    assert_eq!(serving(), "9.2.0");
    let runtime = host.registry.runtime();
    let old = runtime.load(&older, &older_manifest, None).await.unwrap();
    let rolled = host.registry.roll_back_to(old).unwrap();
    assert_eq!(rolled.replaced.as_deref(), Some("9.2.0"));
    assert_eq!(serving(), "9.0.0");
    let reasons = host.verdict("hostile", risk_ctx(100), &[]).await.reasons;
    assert_eq!(reasons[0], "version=9.0.0");
}

fn cached(dir: &std::path::Path, key: u8) -> impl FnOnce(&mut HostConfig) {
    let dir = dir.to_owned();
    move |c| {
        c.cache_dir = Some(dir);
        c.cache_key = Some(CacheKey([key; 32]));
    }
}

fn rejected(host: &TestHost) -> String {
    host.metrics_text()
        .lines()
        .find(|l| l.starts_with("payloom_plugin_cache_rejected_total "))
        .expect("the cache rejection counter is exposed")
        .to_owned()
}

#[tokio::test]
async fn a_planted_cache_entry_is_discarded_and_the_signed_component_runs() {
    let dir = tempfile::tempdir().unwrap();
    let writer = TestHost::builder().config(cached(dir.path(), 1)).build();
    writer.install(&AMOUNT_LIMIT).await;
    writer.install(&VELOCITY).await;
    let engine = writer.registry.runtime().engine();
    let victim = payloom_host::cache::entry_path(engine, AMOUNT_LIMIT.wasm, dir.path());
    let planted = payloom_host::cache::entry_path(engine, VELOCITY.wasm, dir.path());

    // Another component's authentic entry, and that component's bare artifact, each put
    // where amount-limit's entry belongs: neither runs in its place.
    let velocity_entry = std::fs::read(&planted).unwrap();
    let bare_artifact = velocity_entry[32..].to_vec();
    for forged in [velocity_entry, bare_artifact] {
        std::fs::write(&victim, &forged).unwrap();
        let host = TestHost::builder().config(cached(dir.path(), 1)).build();
        host.install(&AMOUNT_LIMIT).await;
        assert_eq!(rejected(&host), "payloom_plugin_cache_rejected_total 1");
        let verdict = host.verdict("amount-limit", risk_ctx(10), &[]).await;
        assert_eq!(
            verdict.action,
            payloom_host::bindings::risk_types::Action::Allow
        );
        assert_ne!(
            std::fs::read(&victim).unwrap(),
            forged,
            "the entry was rewritten"
        );
    }

    // The rewritten entry is authentic again; a host with another key trusts none of it.
    let host = TestHost::builder().config(cached(dir.path(), 1)).build();
    host.install(&AMOUNT_LIMIT).await;
    assert_eq!(rejected(&host), "payloom_plugin_cache_rejected_total 0");
    let stranger = TestHost::builder().config(cached(dir.path(), 2)).build();
    stranger.install(&AMOUNT_LIMIT).await;
    assert_eq!(rejected(&stranger), "payloom_plugin_cache_rejected_total 1");
}
