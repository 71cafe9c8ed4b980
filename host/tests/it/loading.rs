//! Loading refuses what it must, naming the reason.

use ed25519_dalek::SigningKey;
use payloom_host::signing;
use payloom_reference_plugins::{AMOUNT_LIMIT, SANDBOX};

use crate::support::*;

const RISK_MANIFEST: &str = "id = \"evil\"\nworld = \"risk-rule\"\nversion = \"0.1.0\"\n";

async fn load_error(host: &TestHost, wasm: &[u8], manifest: &str, sig: Option<&str>) -> String {
    match host.registry.install(wasm, manifest, sig).await {
        Ok(installed) => panic!("installed {installed:?}"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test]
async fn wasi_http_import_is_refused_by_name() {
    let host = TestHost::builder().build();
    let wasm =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#)
            .unwrap();
    let error = load_error(&host, &wasm, RISK_MANIFEST, None).await;
    assert!(
        error.contains("wasi:http/outgoing-handler@0.2.0"),
        "{error}"
    );
}

#[tokio::test]
async fn unknown_import_is_refused_by_name() {
    let host = TestHost::builder().build();
    let wasm =
        wat::parse_str(r#"(component (import "evil:backdoor/shell@1.0.0" (instance)))"#).unwrap();
    let error = load_error(&host, &wasm, RISK_MANIFEST, None).await;
    assert!(error.contains("evil:backdoor/shell@1.0.0"), "{error}");
}

#[tokio::test]
async fn import_outside_the_world_is_refused() {
    let host = TestHost::builder().build();
    let wasm =
        wat::parse_str(r#"(component (import "payloom:plugin/http@0.1.0" (instance)))"#).unwrap();
    let error = load_error(&host, &wasm, RISK_MANIFEST, None).await;
    assert!(
        error.contains("payloom:plugin/http@0.1.0") && error.contains("does not provide"),
        "{error}"
    );
}

#[tokio::test]
async fn components_must_implement_their_world() {
    let host = TestHost::builder().build();
    let error = load_error(
        &host,
        &wat::parse_str("(component)").unwrap(),
        RISK_MANIFEST,
        None,
    )
    .await;
    assert!(error.contains("risk-rule"), "{error}");
    // A channel component under a risk manifest.
    let manifest = SANDBOX.manifest.replace("channel-adapter", "risk-rule");
    let error = load_error(&host, SANDBOX.wasm, &manifest, None).await;
    assert!(error.contains("risk-rule"), "{error}");
}

#[tokio::test]
async fn core_modules_text_and_precompiled_bytes_are_refused() {
    let host = TestHost::builder().build();
    let core = wat::parse_str("(module)").unwrap();
    assert!(
        load_error(&host, &core, RISK_MANIFEST, None)
            .await
            .contains("not a WebAssembly component")
    );
    let text = b"(component)";
    assert!(
        load_error(&host, text, RISK_MANIFEST, None)
            .await
            .contains("not a WebAssembly component")
    );
    let precompiled = host
        .registry
        .runtime()
        .engine()
        .precompile_component(AMOUNT_LIMIT.wasm)
        .unwrap();
    assert!(
        load_error(&host, &precompiled, AMOUNT_LIMIT.manifest, None)
            .await
            .contains("precompiled")
    );
}

#[tokio::test]
async fn describe_must_match_the_manifest() {
    let host = TestHost::builder().build();
    let manifest = AMOUNT_LIMIT.manifest.replace("0.1.0", "0.2.0");
    let error = load_error(&host, AMOUNT_LIMIT.wasm, &manifest, None).await;
    assert!(
        error.contains("describe says amount-limit@0.1.0"),
        "{error}"
    );
}

#[tokio::test]
async fn signatures_are_required_and_verified() {
    let key = SigningKey::from_bytes(&[42; 32]);
    let public = hex::encode(key.verifying_key().as_bytes());
    let host = TestHost::builder()
        .config(|c| {
            c.allow_unsigned = false;
            c.trusted_keys = vec![public];
        })
        .build();
    let (wasm, manifest) = (AMOUNT_LIMIT.wasm, AMOUNT_LIMIT.manifest);
    assert!(
        load_error(&host, wasm, manifest, None)
            .await
            .contains("not signed")
    );

    let good = signing::sign(&key, wasm, manifest.as_bytes());
    let mut tampered = wasm.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(
        load_error(&host, &tampered, manifest, Some(&good))
            .await
            .contains("does not match")
    );
    let widened =
        format!("{manifest}\n[capabilities]\nallowed_hosts = [\"https://evil.example\"]\n");
    assert!(
        load_error(&host, wasm, &widened, Some(&good))
            .await
            .contains("does not match")
    );
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let foreign = signing::sign(&stranger, wasm, manifest.as_bytes());
    assert!(
        load_error(&host, wasm, manifest, Some(&foreign))
            .await
            .contains("untrusted key")
    );

    let installed = host
        .registry
        .install(wasm, manifest, Some(&good))
        .await
        .unwrap();
    assert_eq!(installed.id, "amount-limit");
}

#[tokio::test]
async fn precompiled_cache_is_written_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cached = |c: &mut payloom_host::HostConfig| {
        c.cache_dir = Some(dir.path().to_owned());
        c.cache_key = Some(payloom_host::config::CacheKey([5; 32]));
    };
    let host = TestHost::builder().config(cached).build();
    host.install(&AMOUNT_LIMIT).await;
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let expected = payloom_host::cache::entry_path(
        host.registry.runtime().engine(),
        AMOUNT_LIMIT.wasm,
        dir.path(),
    );
    assert_eq!(entry, &expected);
    let written = std::fs::metadata(entry).unwrap().modified().unwrap();
    // A second host with the same engine configuration and key loads from the cache.
    let again = TestHost::builder().config(cached).build();
    again.install(&AMOUNT_LIMIT).await;
    assert_eq!(
        std::fs::metadata(entry).unwrap().modified().unwrap(),
        written
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(
        again
            .verdict("amount-limit", risk_ctx(10), &[])
            .await
            .action,
        payloom_host::bindings::risk_types::Action::Allow
    );
}

#[test]
fn bad_manifests_are_refused() {
    for bad in [
        "",
        "id = 1",
        "id = \"x\"\nworld = \"risk-rule\"\nversion = \"one\"",
    ] {
        assert!(payloom_host::Manifest::parse(bad).is_err(), "{bad}");
    }
}
