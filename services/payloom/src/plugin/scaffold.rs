//! `payloom plugin new`: a plugin crate that builds and passes its own tests as generated.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hmac::{Hmac, Mac};
use payloom_host::bindings::channel_types::CreateRequest;
use payloom_host::bindings::policy_types::{ChannelOption, Context as PolicyContext};
use payloom_host::bindings::risk_types::Context as RiskContext;
use payloom_host::bindings::types::KeyValue;
use payloom_host::{ChannelCall, PluginKind, PolicyCall, RiskCall};
use payloom_plugin_kit::conformance::sample_payment;
use serde_json::json;
use sha2::Sha256;

const CARGO_TOML: &str = include_str!("../../templates/Cargo.toml.tmpl");
const README: &str = include_str!("../../templates/README.md.tmpl");
const CHANNEL_LIB: &str = include_str!("../../templates/channel/lib.rs.tmpl");
const RISK_LIB: &str = include_str!("../../templates/risk/lib.rs.tmpl");
const POLICY_LIB: &str = include_str!("../../templates/policy/lib.rs.tmpl");

/// The key scaffolded channels' test notifications are signed with (test material only).
const TEST_NOTIFY_SECRET: &[u8] = b"scaffold-test-notify-secret";
/// The clock scaffold fixtures run at (2026-01-01T00:00:00Z).
const FIXTURE_NOW_MS: i64 = 1_767_225_600_000;

/// Writes `<dir>/<name>/`; returns its path.
pub fn create(
    kind: PluginKind,
    name: &str,
    dir: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let probe = format!(
        "id = \"{name}\"\nworld = \"{}\"\nversion = \"0.1.0\"\n",
        kind.world()
    );
    payloom_host::Manifest::parse(&probe)
        .with_context(|| format!("`{name}` is not a valid plugin id"))?;
    let sdk = sdk_path(sdk)?;
    let root = dir.join(name);
    anyhow::ensure!(!root.exists(), "{} already exists", root.display());
    std::fs::create_dir_all(root.join("src"))?;
    let fill = |template: &str, extra: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{type_name}}", &type_name(name))
            .replace("{{world}}", kind.world())
            .replace("{{sdk}}", &sdk.display().to_string().replace('\\', "/"))
            .replace("{{extra}}", extra)
    };
    let (lib, extra) = match kind {
        PluginKind::Channel => (
            CHANNEL_LIB,
            format!(
                "payloom plugin conformance dist/{name}.wasm --scenarios conformance.json --exchanges exchanges.json"
            ),
        ),
        PluginKind::Risk => (RISK_LIB, String::new()),
        PluginKind::Policy => (POLICY_LIB, String::new()),
    };
    std::fs::write(root.join("Cargo.toml"), fill(CARGO_TOML, ""))?;
    std::fs::write(root.join("README.md"), fill(README, &extra))?;
    std::fs::write(root.join("src/lib.rs"), fill(lib, ""))?;
    std::fs::write(root.join("plugin.toml"), manifest(kind, name))?;
    std::fs::write(root.join(".gitignore"), "target/\ndist/\n")?;
    write_json(&root.join("fixture.json"), &fixture(kind, name)?)?;
    if kind == PluginKind::Channel {
        write_json(&root.join("exchanges.json"), &exchanges(name))?;
        write_json(&root.join("conformance.json"), &scenarios())?;
    }
    Ok(root)
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    Ok(std::fs::write(
        path,
        serde_json::to_string_pretty(value)? + "\n",
    )?)
}

/// The SDK crate: explicit, else this checkout's `sdk/guest`.
fn sdk_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/guest"),
    };
    std::fs::canonicalize(&path).with_context(|| {
        format!(
            "payloom-sdk not found at {}; pass --sdk <path to sdk/guest>",
            path.display()
        )
    })
}

/// `acme-pay` -> `AcmePay`.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split('-')
        .filter(|p| !p.is_empty())
        .map(|p| p[..1].to_uppercase() + &p[1..])
        .collect();
    if camel.starts_with(|c: char| c.is_ascii_digit()) {
        format!("Plugin{camel}")
    } else {
        camel
    }
}

fn manifest(kind: PluginKind, name: &str) -> String {
    let mut text = format!(
        "id = \"{name}\"\nworld = \"{}\"\nversion = \"0.1.0\"\n",
        kind.world()
    );
    if kind == PluginKind::Channel {
        text += &format!(
            "\n[capabilities]\nallowed_hosts = [\"https://api.{name}.example\"]\nsecrets = [\"api_key\"]\nkeys = [\"notify_secret\"]\n"
        );
    }
    text
}

fn test_context() -> serde_json::Value {
    json!({
        "now_ms": FIXTURE_NOW_MS,
        "secrets": {"api_key": "test_api_key"},
        "keys": {"notify_secret": {"hmac": hex::encode(TEST_NOTIFY_SECRET)}},
    })
}

fn call_json<T: serde::Serialize>(call: &T) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(call)?)
}

fn fixture(kind: PluginKind, name: &str) -> anyhow::Result<serde_json::Value> {
    let payment = sample_payment("pay_fixture", 1000, "USD", "card", false);
    let mut value = match kind {
        PluginKind::Channel => call_json(&ChannelCall::CreatePayment(CreateRequest {
            payment,
            method_data: vec![],
            notify_url: format!("https://payloom.test/v1/notify/{name}"),
        }))?,
        PluginKind::Risk => call_json(&RiskCall::Evaluate {
            ctx: RiskContext {
                payment,
                channel: None,
            },
            config: vec![KeyValue {
                key: "max_amount_minor".into(),
                value: "100000".into(),
            }],
        })?,
        PluginKind::Policy => call_json(&PolicyCall::Decide(PolicyContext {
            payment,
            merchant_tier: "standard".into(),
            config: vec![KeyValue {
                key: "fee_bps".into(),
                value: "290".into(),
            }],
            channels: vec![ChannelOption {
                id: "sandbox".into(),
                methods: vec!["card".into()],
                currencies: vec!["USD".into()],
                countries: vec![],
            }],
        }))?,
    };
    value["context"] = test_context();
    Ok(value)
}

fn exchanges(name: &str) -> serde_json::Value {
    let api = format!("https://api.{name}.example");
    json!([
        {"request": {"method": "POST", "url": format!("{api}/v1/payments")}, "response": {"status": 200, "body": "status=succeeded&id=psp_1"}},
        {"request": {"method": "GET", "url": format!("{api}/v1/payments/psp_1")}, "response": {"status": 200, "body": "status=succeeded&id=psp_1"}},
        {"request": {"method": "POST", "url": format!("{api}/v1/refunds")}, "response": {"status": 200, "body": "status=succeeded&id=rf_1"}},
    ])
}

fn scenarios() -> serde_json::Value {
    let body = "type=payment.succeeded&payment_id=pay_1&id=psp_1&amount=1000&currency=USD";
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(TEST_NOTIFY_SECRET).expect("any key length");
    mac.update(body.as_bytes());
    json!({
        "context": test_context(),
        "payments": [{"name": "approved payment", "amount": 1000, "currency": "USD", "expect": "succeeded"}],
        "refunds": [{"name": "full refund", "amount": 1000, "currency": "USD", "expect": "succeeded"}],
        "notification": {"headers": {"Psp-Signature": hex::encode(mac.finalize().into_bytes())}, "body": body},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_rust_identifiers() {
        assert_eq!(type_name("acme"), "Acme");
        assert_eq!(type_name("acme-pay-2"), "AcmePay2");
        assert_eq!(type_name("3ds"), "Plugin3ds");
    }
}
