//! Plugin operations across a fleet: two channel-adapter processes behind one address,
//! a gateway and the rest in a third, all over mutual TLS. A signed sandbox 0.2.0 is
//! pushed, run as a 10 % canary, promoted and rolled back, 21 swaps in all, under a
//! continuous stream of payments: every payment succeeds, the canary's share is about
//! what it was given, and every node follows each swap.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use payloom_host::signing;
use payloom_reference_plugins::SANDBOX;
use serde_json::{Value, json};

use crate::balancer::Balancer;
use crate::multiprocess::{Urls, bootstrap_merchant, serve, serve_config};
use crate::plugin_trust::serving;
use crate::support::{Merchant, TestDatabase, answer, free_port};

/// Everything but channel-adapter, callees first.
const THE_REST: [&str; 10] = [
    "plugin-registry",
    "merchant-auth",
    "order",
    "merchant-quota",
    "merchant-policy",
    "risk",
    "accounting",
    "notification",
    "admin-bff",
    "payment-gateway",
];
const PASSWORD: &str = "fleet-operator-password";

/// A copy of `config` where channel-adapter listens on other ports; its public URL.
fn another_channel_node(config: &Path, name: &str, internal: u16) -> (std::path::PathBuf, String) {
    let text = std::fs::read_to_string(config).unwrap();
    let header = "[services.channel-adapter]\n";
    let at = text.find(header).unwrap() + header.len();
    let end = at + text[at..].find("url = ").unwrap();
    let public = free_port();
    let ports =
        format!("listen = \"127.0.0.1:{public}\"\ninternal_listen = \"127.0.0.1:{internal}\"\n");
    let path = config.with_file_name(format!("{name}.toml"));
    std::fs::write(&path, format!("{}{ports}{}", &text[..at], &text[end..])).unwrap();
    (path, format!("http://127.0.0.1:{public}/metrics"))
}

/// Puts the balancer in front of channel-adapter: every caller reaches it through there.
fn behind(config: &Path, urls: &Urls, balancer: &Balancer) {
    let text = std::fs::read_to_string(config).unwrap();
    let direct = format!("url = \"{}\"", urls.internal("channel-adapter"));
    assert!(text.contains(&direct));
    std::fs::write(
        config,
        text.replace(&direct, &format!("url = \"https://{}\"", balancer.addr)),
    )
    .unwrap();
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

struct Ops {
    http: reqwest::Client,
    admin: String,
    token: String,
}

impl Ops {
    async fn login(admin: &str) -> Self {
        let http = reqwest::Client::new();
        let login = http
            .post(format!("{admin}/admin/v1/login"))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let token = answer(login).await.json["token"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            http,
            admin: admin.to_owned(),
            token,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/admin/v1/plugins{path}", self.admin))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        answer(response).await.json
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/admin/v1/plugins{path}", self.admin))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let answer = answer(response).await;
        assert!(answer.status < 300, "{path}: {}", answer.text);
        answer.json
    }
}

/// Payments in a loop on `streams` tasks until stopped; counts the ones that did not
/// succeed.
struct Stream {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stream {
    fn start(merchant: &Merchant, streams: usize) -> Self {
        let (stop, done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..streams)
            .map(|_| {
                let (m, stop, done, failed) =
                    (merchant.clone(), stop.clone(), done.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let paid = m.pay(100, json!({})).await;
                        if paid.status != 201 || paid.json["status"] != "succeeded" {
                            failed.lock().unwrap().push(paid.text);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self {
            stop,
            done,
            failed,
            tasks,
        }
    }

    async fn more(&self, payments: usize) {
        let until = self.done.load(Ordering::Relaxed) + payments;
        while self.done.load(Ordering::Relaxed) < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.done.load(Ordering::Relaxed), failed)
    }
}

/// The sum of `payloom_plugin_calls_total` for sandbox `version` over `nodes`.
async fn calls(nodes: &[String], version: &str) -> f64 {
    let prefix = format!("payloom_plugin_calls_total{{plugin=\"sandbox\",version=\"{version}\"}} ");
    let mut sum = 0.0;
    for node in nodes {
        let text = reqwest::get(node).await.unwrap().text().await.unwrap();
        sum += text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.parse().unwrap());
    }
    sum
}

/// Waits until every node shows `line` on /metrics; how long that took.
async fn every_node(nodes: &[String], line: &str) -> Duration {
    let start = Instant::now();
    for node in nodes {
        loop {
            let text = reqwest::get(node).await.unwrap().text().await.unwrap();
            if text.lines().any(|l| l == line) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{node} never showed {line}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    start.elapsed()
}

fn canary_line(percent: u8) -> String {
    format!("payloom_plugin_canary_percent{{plugin=\"sandbox\",version=\"0.2.0\"}} {percent}")
}

fn serving_line(version: &str) -> String {
    format!("payloom_plugin_serving{{plugin=\"sandbox\",version=\"{version}\"}} 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_promote_and_roll_back_across_two_channel_nodes_under_a_stream_of_payments() {
    let _one = crate::topology::ONE_TOPOLOGY.lock().await;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let publisher = SigningKey::from_bytes(&[31; 32]);
    let trusted = hex::encode(publisher.verifying_key().as_bytes());
    let extra = format!(
        "[plugins]\ntrusted_keys = [\"{trusted}\"]\n[admin]\nbootstrap_password = \"{PASSWORD}\"\n"
    );
    let (config, urls) = serve_config(dir.path(), &extra);
    let b_internal = free_port();
    let balancer = Balancer::start(vec![
        ([127, 0, 0, 1], port_of(urls.internal("channel-adapter"))).into(),
        ([127, 0, 0, 1], b_internal).into(),
    ])
    .await;
    behind(&config, &urls, &balancer);
    let (config_b, metrics_b) = another_channel_node(&config, "b", b_internal);
    let _rest = serve(
        &config,
        &dir.path().join("rest"),
        &db.url,
        &THE_REST,
        "payment-gateway",
    );
    let _a = serve(
        &config,
        &dir.path().join("a"),
        &db.url,
        &["channel-adapter"],
        "channel-adapter",
    );
    let _b = serve(
        &config_b,
        &dir.path().join("b"),
        &db.url,
        &["channel-adapter"],
        "channel-adapter",
    );
    let nodes = vec![format!("{}/metrics", urls["channel-adapter"]), metrics_b];

    let merchant = bootstrap_merchant(&urls).await;
    let ops = Ops::login(&urls["admin-bff"]).await;
    let wasm = SANDBOX.bytes_replaced("sandbox0.1.0", "sandbox0.2.0");
    let manifest = SANDBOX
        .manifest
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    let pushed = ops
        .post(
            "",
            json!({
                "component_base64": base64::engine::general_purpose::STANDARD.encode(&wasm),
                "manifest": manifest,
                "signature": signing::sign(&publisher, &wasm, manifest.as_bytes()),
            }),
        )
        .await;
    assert_eq!(pushed["publisher"], format!("ed25519:{trusted}"));

    let stream = Stream::start(&merchant, 3);
    stream.more(30).await;
    let mut swaps = 0;
    let mut slowest = Duration::ZERO;
    for cycle in 0..7 {
        ops.post(
            "/sandbox/canary",
            json!({"version": "0.2.0", "percent": 10, "reason": "canary"}),
        )
        .await;
        slowest = slowest.max(every_node(&nodes, &canary_line(10)).await);
        if cycle == 0 {
            // The share: about 10 % of the payments made while the canary ran.
            let (v1, v2) = (calls(&nodes, "0.1.0").await, calls(&nodes, "0.2.0").await);
            stream.more(300).await;
            let (v1, v2) = (
                calls(&nodes, "0.1.0").await - v1,
                calls(&nodes, "0.2.0").await - v2,
            );
            let share = v2 / (v1 + v2);
            eprintln!(
                "canary share: {v2} of {} channel calls ({:.1} %)",
                v1 + v2,
                share * 100.0
            );
            assert!(
                (0.04..=0.18).contains(&share),
                "the canary took {share} of calls"
            );
        }
        ops.post("/sandbox/promote", json!({"reason": "healthy"}))
            .await;
        slowest = slowest.max(every_node(&nodes, &serving_line("0.2.0")).await);
        every_node(&nodes, &canary_line(0)).await;
        stream.more(20).await;
        ops.post("/sandbox/rollback", json!({"reason": "drill"}))
            .await;
        slowest = slowest.max(every_node(&nodes, &serving_line("0.1.0")).await);
        stream.more(20).await;
        swaps += 3;
    }
    let (payments, failed) = stream.stop().await;
    eprintln!("{swaps} swaps, {payments} payments, slowest convergence of both nodes {slowest:?}");
    assert_eq!(swaps, 21);
    assert!(
        failed.is_empty(),
        "{} of {payments} payments failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    // plugin status: each node's version, with the calls it took there (nodes report
    // every second, so the last rollback shows within one).
    let started = Instant::now();
    let channel_nodes = loop {
        let status = ops.get("/sandbox").await;
        let nodes: Vec<Value> = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["node"].as_str().unwrap().starts_with("channel-adapter@"))
            .filter(|n| n["versions"][0]["version"] == "0.1.0")
            .cloned()
            .collect();
        if nodes.len() == 2 {
            break nodes;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for node in channel_nodes {
        let serving = &node["versions"][0];
        assert!(serving["calls"].as_u64().unwrap() > 0, "{node}");
        assert!(serving["p99_ms"].as_f64().unwrap() > 0.0, "{node}");
        assert_eq!(serving["errors"]["trap"], 0);
    }

    // A node that starts later serves what is active; one that does not trust its
    // publisher keeps what it has and says why in plugin status.
    ops.post(
        "/sandbox/canary",
        json!({"version": "0.2.0", "percent": 50, "reason": "again"}),
    )
    .await;
    ops.post("/sandbox/promote", json!({"reason": "for the late node"}))
        .await;
    let late = |name: &str| {
        let (config, metrics) = another_channel_node(&config, name, free_port());
        let node = serve(
            &config,
            &dir.path().join(name),
            &db.url,
            &["channel-adapter"],
            "channel-adapter",
        );
        (config, metrics, node)
    };
    let (_, metrics_c, _c) = late("c");
    every_node(std::slice::from_ref(&metrics_c), &serving_line("0.2.0")).await;
    assert_eq!(serving(&metrics_c, "sandbox", "0.1.0").await, Some(0));

    let (config_d, _, d) = late("d");
    drop(d);
    let text = std::fs::read_to_string(&config_d).unwrap();
    let untrusting = text.replace(
        &format!("trusted_keys = [\"{trusted}\"]"),
        "trusted_keys = []",
    );
    assert_ne!(untrusting, text);
    std::fs::write(&config_d, untrusting).unwrap();
    let d = serve(
        &config_d,
        &dir.path().join("d2"),
        &db.url,
        &["channel-adapter"],
        "channel-adapter",
    );
    let suffix = format!(":{}", d.0.id());
    let refused = loop {
        let status = ops.get("/sandbox").await;
        let found = status["nodes"].as_array().unwrap().iter().find(|n| {
            n["node"].as_str().unwrap().ends_with(&suffix)
                && !n["refused"].as_array().unwrap().is_empty()
        });
        if let Some(node) = found {
            break node.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["versions"][0]["version"], "0.1.0", "{refused}");
    assert_eq!(refused["refused"][0]["version"], "0.2.0");
    let reason = refused["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("untrusted key"), "{reason}");
}
