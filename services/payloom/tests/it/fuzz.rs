//! The running API judged against its own OpenAPI document by an independent fuzzer:
//! schemathesis (from PyPI) reads `/v1/openapi.json`, sends valid and invalid requests to
//! every operation, signed like a merchant's client (`tests/schemathesis/hooks.py`), and
//! checks each answer against the document, including that a signed operation refuses a
//! request whose signature headers are missing or wrong. Skipped with a message when
//! python3 or the package cannot be had here, unless PAYLOOM_REQUIRE_SCHEMATHESIS=1 (CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::{Value, json};

use crate::receiver::Receiver;
use crate::support::{Answer, Backend, Platform};

/// Every check that judges a single answer by the document, and `ignored_auth`, which
/// sends a signed operation's request again without its signature headers (and with a
/// wrong one) and wants it refused. The others probe beyond the document (methods it
/// does not list, another merchant's objects, resources after deletion).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,response_headers_conformance,negative_data_rejection,\
positive_data_acceptance,ignored_auth";
/// Fixed, so a failure comes back with the same generated requests.
const SEED: &str = "20260101";
/// Cases per operation and phase: well under a minute on two cores.
const EXAMPLES_PER_OPERATION: &str = "100";
/// The major version whose command line and hooks API `tests/schemathesis` is written for.
const PACKAGE: &str = "schemathesis>=4,<5";
const FOLDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    if !schemathesis_available() {
        return;
    }
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let hook = Receiver::start().await;
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &existing_ids(&p, &hook).await, &p);
    let events = work.path().join("events.ndjson");
    let args = arguments(&config, &events, &p.base);
    let command = format!(
        "SCHEMATHESIS_HOOKS={FOLDER}/hooks.py PAYLOOM_FUZZ_BASE_URL={} PAYLOOM_FUZZ_KEY_ID={} \
         PAYLOOM_FUZZ_SECRET=<its secret> python3 {}",
        p.base,
        p.merchant.key.key_id,
        args.join(" ")
    );
    let (output, took) = run_schemathesis(args, work.path(), &p).await;
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("schemathesis ran for {took:.1?}: {command}");

    let exchanges = exchanges(&events);
    let documented = documented_operations(&p).await;
    let tested: BTreeSet<String> = exchanges.iter().map(|e| e.operation.clone()).collect();
    let missed: Vec<&String> = documented.difference(&tested).collect();
    assert!(
        missed.is_empty(),
        "operations never called: {missed:?}\n{report}"
    );
    // A signer that disagreed with the server would make every answer a 401, which the
    // checks let pass: no request the hooks signed may be refused for its signature.
    // (Requests schemathesis sent without the signature, to see them refused, are not.)
    let refused: Vec<String> = exchanges
        .iter()
        .filter(|e| e.status == 401 && e.signed && !e.operation.ends_with("/v1/notify/{channel}"))
        .map(|e| format!("{} {}", e.operation, e.uri))
        .collect();
    assert!(refused.is_empty(), "signed requests refused: {refused:#?}");
    assert!(
        exchanges.iter().filter(|e| e.signed).count() > exchanges.len() / 2,
        "most requests go out signed"
    );
    assert!(
        output.status.success(),
        "schemathesis found answers the OpenAPI document does not describe \
         (exit {:?}; seed {SEED}).\ncommand: {command}\n{report}",
        output.status.code()
    );
    // Its summary (operations, phases, cases), for whoever runs this with --nocapture.
    eprintln!("{report}");
}

/// Whether schemathesis 4 is importable, installed from PyPI on first use. Missing is a
/// skip with a message, or a failure under PAYLOOM_REQUIRE_SCHEMATHESIS=1 (CI).
fn schemathesis_available() -> bool {
    let importable = || {
        Command::new("python3")
            .args([
                "-c",
                "import sys, schemathesis; sys.exit(schemathesis.__version__.split('.')[0] != '4')",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", PACKAGE])
            .args(extra)
            .status()
            .is_ok_and(|s| s.success())
    };
    let ready = importable() || ((pip(&[]) || pip(&["--break-system-packages"])) && importable());
    if !ready {
        assert!(
            std::env::var("PAYLOOM_REQUIRE_SCHEMATHESIS").as_deref() != Ok("1"),
            "python3 with {PACKAGE} is required (PAYLOOM_REQUIRE_SCHEMATHESIS=1)"
        );
        eprintln!("skipping the OpenAPI fuzz run: python3 with {PACKAGE} is not available here");
    }
    ready
}

/// Objects the fuzzer may name in paths besides the ids it makes up, so that capture,
/// cancel, refunds and deletion reach more than "not found": two authorized payments, a
/// succeeded one with a refund, and a webhook endpoint.
async fn existing_ids(p: &Platform, hook: &Receiver) -> Vec<String> {
    let m = &p.merchant;
    let mut ids = Vec::new();
    for capture in ["manual", "manual", "automatic"] {
        ids.push(id_of(m.pay(5_000, json!({"capture": capture})).await));
    }
    let refunds = format!("/v1/payments/{}/refunds", ids[2]);
    ids.push(id_of(m.post(&refunds, json!({"amount": 1_000})).await));
    ids.push(id_of(
        m.post("/v1/webhook_endpoints", json!({"url": hook.url}))
            .await,
    ));
    ids
}

fn id_of(made: Answer) -> String {
    assert_eq!(made.status, 201, "{}", made.text);
    made.json["id"].as_str().unwrap().to_owned()
}

/// The checked-in settings plus this platform's objects, drawn for half of the `{id}`,
/// `merchant` and `{channel}` values (the rest are generated).
fn write_config(dir: &Path, ids: &[String], p: &Platform) -> PathBuf {
    let base = std::fs::read_to_string(format!("{FOLDER}/schemathesis.toml")).unwrap();
    // A JSON array of plain strings is also a TOML array.
    let values = |v: &[&str]| serde_json::to_string(v).unwrap();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let merchant = p.merchant.key.merchant_id.as_str();
    let seeded = format!(
        "\n[dictionaries.existing]\nvalues = {}\n\n[dictionaries.merchants]\nvalues = {}\n\n\
         [dictionaries.channels]\nvalues = {}\n\n[parameters]\n\
         \"path.id\" = {{ dictionary = \"existing\", probability = 0.5 }}\n\
         \"query.merchant\" = {{ dictionary = \"merchants\", probability = 0.5 }}\n\
         \"path.channel\" = {{ dictionary = \"channels\", probability = 0.5 }}\n",
        values(&ids),
        values(&[merchant]),
        values(&["sandbox"]),
    );
    let path = dir.join("schemathesis.toml");
    std::fs::write(&path, base + &seeded).unwrap();
    path
}

fn arguments(config: &Path, events: &Path, base: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-m", "schemathesis.cli", "--config-file"]
        .map(str::to_owned)
        .into();
    args.push(config.display().to_string());
    args.extend(
        [
            "run",
            "--checks",
            CHECKS,
            "--seed",
            SEED,
            "--max-examples",
            EXAMPLES_PER_OPERATION,
            "--continue-on-failure",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "ndjson",
            "--report-ndjson-path",
        ]
        .map(str::to_owned),
    );
    args.push(events.display().to_string());
    args.push(format!("{base}/v1/openapi.json"));
    args
}

/// Runs the CLI in `work` (whatever it writes stays there) with the hooks that sign.
async fn run_schemathesis(
    args: Vec<String>,
    work: &Path,
    p: &Platform,
) -> (Output, std::time::Duration) {
    let mut command = Command::new("python3");
    command
        .args(args)
        .current_dir(work)
        .env("SCHEMATHESIS_HOOKS", format!("{FOLDER}/hooks.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PAYLOOM_FUZZ_KEY_ID", &p.merchant.key.key_id)
        .env("PAYLOOM_FUZZ_SECRET", &p.merchant.key.secret)
        .env("PAYLOOM_FUZZ_BASE_URL", &p.base);
    // The receiver behind the webhook endpoint keeps answering on this runtime meanwhile.
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command.output().expect("python3 runs");
        (output, started.elapsed())
    })
    .await
    .unwrap()
}

/// One request schemathesis sent and the status it got.
#[derive(Debug)]
struct Exchange {
    /// `METHOD /path/{template}` as the document names it.
    operation: String,
    uri: String,
    status: u64,
    /// Carried the hooks' signature (schemathesis reports the key id filtered, so the
    /// signature's shape, 64 lower-case hex digits, tells).
    signed: bool,
}

/// Every request of the run, from the events it reported.
fn exchanges(events: &Path) -> Vec<Exchange> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let mut found = Vec::new();
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let recorder = &event["ScenarioFinished"]["recorder"];
        let empty = serde_json::Map::new();
        for (id, interaction) in recorder["interactions"].as_object().unwrap_or(&empty) {
            let case = &recorder["cases"][id]["value"];
            let signature = interaction["request"]["headers"]["X-Signature"][0].as_str();
            found.push(Exchange {
                operation: format!(
                    "{} {}",
                    case["method"].as_str().unwrap(),
                    case["path"].as_str().unwrap()
                ),
                uri: interaction["request"]["uri"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                status: interaction["response"]["status_code"].as_u64().unwrap_or(0),
                signed: signature.is_some_and(is_hook_signature),
            });
        }
    }
    found
}

fn is_hook_signature(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `METHOD /path` of every operation the document describes, except the document itself.
async fn documented_operations(p: &Platform) -> BTreeSet<String> {
    let doc: Value = reqwest::get(format!("{}/v1/openapi.json", p.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: BTreeMap<String, Value> = serde_json::from_value(doc["paths"].clone()).unwrap();
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().unwrap().keys();
            methods.map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect()
}
