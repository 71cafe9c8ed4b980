//! Plugin operations through the admin API: a push is checked and staged or refused with
//! its reason, activation and rollback are one call each with who and why in the
//! history, and every node that runs plugins follows the active version.

use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use payloom_host::signing;
use payloom_reference_plugins::Bundled;
use payloom_reference_plugins::SANDBOX;
use payloom_reference_plugins::testing::HOSTILE;
use serde_json::{Value, json};

use crate::support::{Answer, Backend, Platform};

fn push_body(wasm: &[u8], manifest: &str, signature: Option<String>) -> Value {
    json!({
        "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        "manifest": manifest,
        "signature": signature,
    })
}

fn version(plugin: &Bundled, to: &str) -> (Vec<u8>, String) {
    plugin.relabelled("9.1.0", to)
}

async fn push(p: &Platform, wasm: &[u8], manifest: &str) -> Answer {
    p.admin("POST", "/admin/v1/plugins", push_body(wasm, manifest, None))
        .await
}

/// Waits until `version` of hostile serves on every node; returns how long it took.
async fn serves(p: &Platform, version: &str) -> Duration {
    let start = Instant::now();
    let labels = [
        "plugin=\"hostile\"".to_owned(),
        format!("version=\"{version}\""),
    ];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    while p.metric("payloom_plugin_serving", &labels).await < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{version} never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_activate_and_roll_back_through_the_admin_api() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let operator = p.credentials["admin"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let staged = push(&p, HOSTILE.wasm, HOSTILE.manifest).await;
    assert_eq!(staged.status, 201, "{}", staged.text);
    assert_eq!(staged.json["status"], "staged");
    assert_eq!(staged.json["publisher"], "unsigned", "dev allows unsigned");
    let uploader = staged.json["uploaded_by"].as_str().unwrap().to_owned();
    assert!(
        uploader.starts_with(&format!("{operator} (adm_")),
        "{uploader}"
    );
    let again = push(&p, HOSTILE.wasm, HOSTILE.manifest).await;
    assert_eq!(
        again.json["digest"], staged.json["digest"],
        "a second push of one build is the same version"
    );

    let activate = |version: &str, rollback: bool| {
        let body =
            json!({"version": version, "reason": format!("to {version}"), "rollback": rollback});
        p.admin("POST", "/admin/v1/plugins/hostile/activate", body)
    };
    let first = activate("9.1.0", false).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let took = serves(&p, "9.1.0").await;
    eprintln!("9.1.0 served {took:?} after its activation answered");

    let (v2, m2) = version(&HOSTILE, "9.2.0");
    assert_eq!(push(&p, &v2, &m2).await.status, 201);
    assert_eq!(activate("9.2.0", false).await.status, 200);
    serves(&p, "9.2.0").await;
    assert_eq!(
        p.metric(
            "payloom_plugin_serving",
            &["plugin=\"hostile\"", "version=\"9.1.0\""]
        )
        .await,
        0.0
    );

    // An older version needs the rollback flag; rollback puts back the one before.
    let (v0, m0) = version(&HOSTILE, "9.0.0");
    assert_eq!(push(&p, &v0, &m0).await.status, 201);
    let downgrade = activate("9.0.0", false).await;
    assert_eq!(
        (downgrade.status, downgrade.error_code()),
        (409, "downgrade_needs_rollback")
    );
    let same = activate("9.2.0", false).await;
    assert_eq!((same.status, same.error_code()), (409, "already_active"));
    let rolled = p
        .admin(
            "POST",
            "/admin/v1/plugins/hostile/rollback",
            json!({"reason": "errors up"}),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    assert_eq!(
        (
            rolled.json["version"].as_str(),
            rolled.json["action"].as_str()
        ),
        (Some("9.1.0"), Some("rollback"))
    );
    serves(&p, "9.1.0").await;
    assert_eq!(activate("9.0.0", true).await.status, 200);
    serves(&p, "9.0.0").await;

    recorded_what_happened(&p, &uploader).await;
}

/// The history says who did what and why, latest first; each version has its status.
async fn recorded_what_happened(p: &Platform, operator: &str) {
    let plugin = p
        .admin("GET", "/admin/v1/plugins/hostile", json!(null))
        .await;
    assert_eq!(plugin.json["active"], "9.0.0");
    let rows = |list: &str, fields: [&str; 2]| -> Vec<(String, String)> {
        plugin.json[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[fields[0]].as_str().unwrap().into(),
                    r[fields[1]].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let history = rows("history", ["version", "reason"]);
    let expected = [
        pair("9.0.0", "to 9.0.0"),
        pair("9.1.0", "errors up"),
        pair("9.2.0", "to 9.2.0"),
        pair("9.1.0", "to 9.1.0"),
    ];
    assert_eq!(history, expected);
    let actors = rows("history", ["actor", "action"]);
    assert!(
        actors.iter().all(|(actor, _)| actor == operator),
        "{actors:?}"
    );
    let statuses = rows("versions", ["version", "status"]);
    let expected = [
        pair("9.2.0", "retired"),
        pair("9.1.0", "retired"),
        pair("9.0.0", "active"),
    ];
    assert_eq!(statuses, expected);
}

/// A component whose only import is `name`.
fn importing(name: &str) -> Vec<u8> {
    wat::parse_str(format!("(component (import \"{name}\" (instance)))")).unwrap()
}

/// The publisher this test's platform trusts.
const TRUSTED: [u8; 32] = [9; 32];

/// Pushes that must be refused: what each is, its body, the status and what it says.
fn bad_pushes() -> Vec<(&'static str, Value, u16, &'static str)> {
    let (v2, m2) = version(&HOSTILE, "9.2.0");
    let trusted = SigningKey::from_bytes(&TRUSTED);
    let stranger = SigningKey::from_bytes(&[10; 32]);
    let mut tampered = signing::sign(&trusted, &v2, m2.as_bytes());
    let flipped = if &tampered[70..72] == "00" {
        "11"
    } else {
        "00"
    };
    tampered.replace_range(70..72, flipped);
    let as_channel = m2.replace("risk-rule", "channel-adapter");
    let under_sandbox = m2.replace("id = \"hostile\"", "id = \"sandbox\"");
    let (trapping, trapping_manifest) = version(&HOSTILE, "9.9.9");
    let http = importing("wasi:http/outgoing-handler@0.2.0");
    let unknown = importing("evil:net/raw@1.0.0");
    vec![
        (
            "not wasm",
            push_body(b"MZ\x90\x00 not a component", &m2, None),
            422,
            "not a WebAssembly component",
        ),
        (
            "wrong world",
            push_body(&v2, &as_channel, None),
            422,
            "does not implement world",
        ),
        (
            "a WASI interface plugins may not use",
            push_body(&http, &m2, None),
            422,
            "which plugins may not use",
        ),
        (
            "an unknown import",
            push_body(&unknown, &m2, None),
            422,
            "which plugins may not use",
        ),
        (
            "an untrusted key",
            push_body(&v2, &m2, Some(signing::sign(&stranger, &v2, m2.as_bytes()))),
            422,
            "signed by untrusted key",
        ),
        (
            "a bad signature",
            push_body(&v2, &m2, Some(tampered)),
            422,
            "does not match the component and manifest",
        ),
        (
            "an id the signature does not cover",
            push_body(
                &v2,
                &under_sandbox,
                Some(signing::sign(&trusted, &v2, m2.as_bytes())),
            ),
            422,
            "does not match",
        ),
        (
            "a manifest the component's describe contradicts",
            push_body(&v2, &under_sandbox, None),
            422,
            "describe says hostile@9.2.0",
        ),
        (
            "a component that traps in its smoke test",
            push_body(&trapping, &trapping_manifest, None),
            422,
            "smoke test (describe) failed",
        ),
        (
            "not base64",
            json!({"component_base64": "%%%", "manifest": m2}),
            400,
            "base64",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_are_refused_with_their_reason_and_change_nothing() {
    let key = hex::encode(SigningKey::from_bytes(&TRUSTED).verifying_key().as_bytes());
    let trust = format!("[plugins]\ntrusted_keys = [\"{key}\"]\n");
    let Some(p) = Platform::start_with(Backend::Sqlite, &trust).await else {
        return;
    };
    for (what, body, status, says) in bad_pushes() {
        let answer = p.admin("POST", "/admin/v1/plugins", body).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.text);
        assert!(answer.text.contains(says), "{what}: {}", answer.text);
    }
    // Larger than any component may be.
    let (v2, m2) = version(&HOSTILE, "9.2.0");
    let huge = vec![0u8; (64 << 20) + 1];
    let answer = p
        .admin("POST", "/admin/v1/plugins", push_body(&huge, &m2, None))
        .await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (413, "component_too_large")
    );
    // Without a token nothing is read.
    let anonymous = reqwest::Client::new()
        .post(format!("{}/admin/v1/plugins", p.admin_base))
        .json(&push_body(&v2, &m2, None))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Only the binary's built-in plugins are there: nothing bad was stored.
    let listed = p.admin("GET", "/admin/v1/plugins", json!(null)).await;
    let ids: Vec<&str> = listed.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plugin_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "amount-limit",
            "blocklist",
            "sandbox",
            "standard",
            "velocity"
        ]
    );
    let sandbox = p
        .admin("GET", "/admin/v1/plugins/sandbox", json!(null))
        .await;
    assert_eq!(sandbox.json["versions"][0]["publisher"], "built-in");
    assert_eq!(sandbox.json["active"], "0.1.0");
}

/// hostile relabelled as `v`, written as `hostile-<v>.wasm` and `.toml` into `dir`; the
/// component's path.
fn built(dir: &std::path::Path, v: &str) -> String {
    let (wasm, manifest) = version(&HOSTILE, v);
    std::fs::write(dir.join(format!("hostile-{v}.toml")), manifest).unwrap();
    let path = dir.join(format!("hostile-{v}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path.display().to_string()
}

/// `payloom plugin <args>` against the platform in `data`; exit success, stdout, stderr.
fn cli(data: &std::path::Path, args: &[&str]) -> (bool, Value, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_payloom"))
        .arg("plugin")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("PAYLOOM_ADMIN_URL")
        .env_remove("PAYLOOM_ADMIN_USERNAME")
        .env_remove("PAYLOOM_ADMIN_PASSWORD")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        output.status.success(),
        json,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pushes_canaries_promotes_and_rolls_back() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let data = p.data.path();
    let dist = tempfile::tempdir().unwrap();
    let file = |v: &str| built(dist.path(), v);
    let (ok, pushed, _) = cli(data, &["push", &file("9.2.0")]);
    assert!(ok && pushed["status"] == "staged", "{pushed}");
    assert!(cli(data, &["push", &file("9.3.0")]).0);
    let (ok, _, said) = cli(data, &["activate", "hostile", "9.2.0", "--reason", "first"]);
    assert!(ok, "{said}");
    serves(&p, "9.2.0").await;

    let canary_25 = "canary hostile 9.3.0 --percent 25 --reason try";
    let (ok, canary, said) = cli(data, &canary_25.split(' ').collect::<Vec<_>>());
    assert!(
        ok && canary["action"] == "canary" && canary["percent"] == 25,
        "{canary} {said}"
    );
    let (_, status, _) = cli(data, &["status", "hostile"]);
    let by_version = |v: &str| {
        status["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["version"] == v)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            by_version("9.3.0")["status"].as_str(),
            by_version("9.3.0")["canary_percent"].as_i64()
        ),
        (Some("canary"), Some(25))
    );
    let canary_line = ["plugin=\"hostile\"", "version=\"9.3.0\""];
    while p
        .metric("payloom_plugin_canary_percent", &canary_line)
        .await
        != 25.0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cli(data, &["promote", "hostile", "--reason", "good"]).0);
    serves(&p, "9.3.0").await;
    assert_eq!(
        p.metric("payloom_plugin_canary_percent", &canary_line)
            .await,
        0.0
    );
    let (ok, rolled, _) = cli(data, &["rollback", "hostile", "--reason", "bad"]);
    assert!(ok && rolled["version"] == "9.2.0", "{rolled}");
    serves(&p, "9.2.0").await;

    // Refusals exit non-zero with the API's reason.
    let (ok, _, said) = cli(data, &["activate", "hostile", "9.9.9", "--reason", "x"]);
    assert!(!ok && said.contains("refused: 404"), "{said}");
    let (ok, _, said) = cli(
        data,
        &[
            "canary",
            "hostile",
            "9.3.0",
            "--percent",
            "100",
            "--reason",
            "x",
        ],
    );
    assert!(!ok && said.contains("100 is a promotion"), "{said}");
    let (_, listed, _) = cli(data, &["list"]);
    let hostile = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin_id"] == "hostile")
        .unwrap();
    assert_eq!(hostile["active"], "9.2.0");
    assert_eq!(hostile["history"].as_array().unwrap().len(), 4);
}

/// The sandbox as version 0.2.0 whose decline code reads `card_declinXd`.
fn sandbox_candidate() -> (Vec<u8>, String) {
    let relabelled = payloom_reference_plugins::Bundled {
        wasm: Box::leak(
            SANDBOX
                .bytes_replaced("sandbox0.1.0", "sandbox0.2.0")
                .into_boxed_slice(),
        ),
        ..SANDBOX
    };
    let wasm = relabelled.bytes_replaced("card_declined", "card_declinXd");
    let manifest = SANDBOX
        .manifest
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    (wasm, manifest)
}

/// This node's shadow report for sandbox 0.2.0 once it has compared `calls` calls.
async fn shadow_report(p: &Platform, calls: u64) -> Value {
    for _ in 0..100 {
        let status = p
            .admin("GET", "/admin/v1/plugins/sandbox", json!(null))
            .await;
        let shadow = status.json["nodes"][0]["shadows"][0].clone();
        if shadow["compared"].as_u64().is_some_and(|n| n >= calls) {
            return shadow;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the shadow never compared {calls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_channel_runs_beside_real_payments_and_reports_where_it_differs() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let (wasm, manifest) = sandbox_candidate();
    assert_eq!(push(&p, &wasm, &manifest).await.status, 201);
    let body = json!({"version": "0.2.0", "reason": "new decline codes"});
    let started = p
        .admin("POST", "/admin/v1/plugins/sandbox/shadow", body)
        .await;
    assert_eq!(started.status, 200, "{}", started.text);
    shadow_report(&p, 0).await;

    let ok = p.merchant.pay(1_000, json!({})).await;
    let card = json!({"method_data": {"card.number": "4000000000000002"}});
    let declined = p.merchant.pay(1_000, card).await;
    // The live version decided both; the shadow changed nothing.
    assert_eq!(ok.json["status"], "succeeded", "{}", ok.text);
    assert_eq!(
        declined.json["failure_code"], "card_declined",
        "{}",
        declined.text
    );

    let shadow = shadow_report(&p, 2).await;
    assert_eq!(
        (shadow["version"].as_str(), shadow["differing"].as_u64()),
        (Some("0.2.0"), Some(1)),
        "{shadow}"
    );
    let differences = shadow["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{shadow}");
    let only = differences[0].as_str().unwrap();
    assert!(only.starts_with("create-payment: outcome "), "{only}");
    assert!(
        only.contains("card_declined") && only.contains("card_declinXd"),
        "{only}"
    );
    // The shadow serves nobody: the active version is still the built-in.
    assert_eq!(
        p.metric(
            "payloom_plugin_serving",
            &["plugin=\"sandbox\"", "version=\"0.1.0\""]
        )
        .await,
        1.0
    );

    let ended = p
        .admin(
            "POST",
            "/admin/v1/plugins/sandbox/rollback",
            json!({"reason": "seen enough"}),
        )
        .await;
    assert_eq!(ended.json["action"], "shadow_end", "{}", ended.text);
    let status = p
        .admin("GET", "/admin/v1/plugins/sandbox", json!(null))
        .await;
    assert_eq!(status.json["active"], "0.1.0");
}

/// Declines on `merchant` until its failure code is `code` (the node follows bindings
/// within a second).
async fn declines_with(merchant: &crate::support::Merchant, code: &str) {
    let card = json!({"method_data": {"card.number": "4000000000000002"}});
    for _ in 0..50 {
        let declined = merchant.pay(1_000, card.clone()).await;
        if declined.json["failure_code"] == code {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never declined with {code}", merchant.key.merchant_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_bound_to_a_version_gets_it_and_the_others_keep_the_active_one() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let other = p.another_merchant().await;
    let (wasm, manifest) = sandbox_candidate();
    assert_eq!(push(&p, &wasm, &manifest).await.status, 201);
    let bind = |merchant: &str, version: &str| {
        let body = json!({"merchant_id": merchant, "version": version, "reason": "pilot"});
        p.admin("POST", "/admin/v1/plugins/sandbox/bindings", body)
    };
    let unknown = bind("mch_nobody", "0.2.0").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let missing = bind(&other.key.merchant_id, "9.9.9").await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    let bound = bind(&other.key.merchant_id, "0.2.0").await;
    assert_eq!(bound.status, 200, "{}", bound.text);
    assert_eq!(bound.json["merchant_id"], other.key.merchant_id.as_str());

    declines_with(&other, "card_declinXd").await;
    declines_with(&p.merchant, "card_declined").await;
    let status = p
        .admin("GET", "/admin/v1/plugins/sandbox", json!(null))
        .await;
    assert_eq!(status.json["active"], "0.1.0");
    assert_eq!(status.json["bindings"][0]["version"], "0.2.0");

    let body = json!({"merchant_id": other.key.merchant_id, "reason": "pilot over"});
    let unbound = p
        .admin("POST", "/admin/v1/plugins/sandbox/unbind", body.clone())
        .await;
    assert_eq!(unbound.json["action"], "unbind", "{}", unbound.text);
    declines_with(&other, "card_declined").await;
    let again = p
        .admin("POST", "/admin/v1/plugins/sandbox/unbind", body)
        .await;
    assert_eq!((again.status, again.error_code()), (409, "not_bound"));
}
