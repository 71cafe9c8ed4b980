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

/// The processes of the test: everything but channel-adapter in one, channel-adapter
/// nodes behind a balancer, an operator logged in to the admin API.
struct Fleet {
    dir: tempfile::TempDir,
    db: String,
    config: std::path::PathBuf,
    urls: Urls,
    publisher: SigningKey,
    ops: Ops,
    _balancer: Balancer,
    _processes: Vec<crate::support::Process>,
}

impl Fleet {
    /// The rest, and channel-adapter nodes `a` and `b` behind one address; their metrics.
    async fn start(db: &str) -> (Self, Vec<String>) {
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
        let channel = ["channel-adapter"];
        let processes = vec![
            serve(
                &config,
                &dir.path().join("rest"),
                db,
                &THE_REST,
                "payment-gateway",
            ),
            serve(
                &config,
                &dir.path().join("a"),
                db,
                &channel,
                "channel-adapter",
            ),
            serve(
                &config_b,
                &dir.path().join("b"),
                db,
                &channel,
                "channel-adapter",
            ),
        ];
        let nodes = vec![format!("{}/metrics", urls["channel-adapter"]), metrics_b];
        let ops = Ops::login(&urls["admin-bff"]).await;
        let fleet = Self {
            dir,
            db: db.to_owned(),
            config,
            urls,
            publisher,
            ops,
            _balancer: balancer,
            _processes: processes,
        };
        (fleet, nodes)
    }

    /// Another channel-adapter node, trusting the publisher or not; its metrics URL.
    fn late_node(&self, name: &str, trusting: bool) -> (String, crate::support::Process) {
        let (config, metrics) = another_channel_node(&self.config, name, free_port());
        if !trusting {
            let text = std::fs::read_to_string(&config).unwrap();
            let trusted = hex::encode(self.publisher.verifying_key().as_bytes());
            let untrusting = text.replace(&format!("[\"{trusted}\"]"), "[]");
            assert_ne!(untrusting, text);
            std::fs::write(&config, untrusting).unwrap();
        }
        let data = self.dir.path().join(name);
        let node = serve(
            &config,
            &data,
            &self.db,
            &["channel-adapter"],
            "channel-adapter",
        );
        (metrics, node)
    }

    /// Pushes sandbox 0.2.0, signed by the trusted publisher.
    async fn push_sandbox_v2(&self) {
        let wasm = SANDBOX.bytes_replaced("sandbox0.1.0", "sandbox0.2.0");
        let manifest = SANDBOX
            .manifest
            .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
        let body = json!({
            "component_base64": base64::engine::general_purpose::STANDARD.encode(&wasm),
            "manifest": manifest,
            "signature": signing::sign(&self.publisher, &wasm, manifest.as_bytes()),
        });
        let pushed = self.ops.post("", body).await;
        let key = hex::encode(self.publisher.verifying_key().as_bytes());
        assert_eq!(pushed["publisher"], format!("ed25519:{key}"));
    }

    /// Waits until `plugin status` shows nodes for which `wanted` holds; returns them.
    async fn reported(&self, wanted: impl Fn(&Value) -> bool, count: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let status = self.ops.get("/sandbox").await;
            let nodes: Vec<Value> = status["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| wanted(n))
                .cloned()
                .collect();
            if nodes.len() == count {
                return nodes;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// About 10 % of the channel calls made while a 10 % canary runs reach it.
async fn canary_share(nodes: &[String], stream: &Stream) {
    let (v1, v2) = (calls(nodes, "0.1.0").await, calls(nodes, "0.2.0").await);
    stream.more(300).await;
    let (v1, v2) = (
        calls(nodes, "0.1.0").await - v1,
        calls(nodes, "0.2.0").await - v2,
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

/// Canary, promote and roll back `cycles` times, each swap followed by every node;
/// returns the slowest a swap took to reach both.
async fn swap_cycles(ops: &Ops, nodes: &[String], stream: &Stream, cycles: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for cycle in 0..cycles {
        let canary = json!({"version": "0.2.0", "percent": 10, "reason": "canary"});
        ops.post("/sandbox/canary", canary).await;
        slowest = slowest.max(every_node(nodes, &canary_line(10)).await);
        if cycle == 0 {
            canary_share(nodes, stream).await;
        }
        ops.post("/sandbox/promote", json!({"reason": "healthy"}))
            .await;
        slowest = slowest.max(every_node(nodes, &serving_line("0.2.0")).await);
        every_node(nodes, &canary_line(0)).await;
        stream.more(20).await;
        ops.post("/sandbox/rollback", json!({"reason": "drill"}))
            .await;
        slowest = slowest.max(every_node(nodes, &serving_line("0.1.0")).await);
        stream.more(20).await;
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_promote_and_roll_back_across_two_channel_nodes_under_a_stream_of_payments() {
    let _one = crate::topology::ONE_TOPOLOGY.lock().await;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (fleet, nodes) = Fleet::start(&db.url).await;
    let merchant = bootstrap_merchant(&fleet.urls).await;
    fleet.push_sandbox_v2().await;

    let stream = Stream::start(&merchant, 3);
    stream.more(30).await;
    // Seven cycles of canary, promote and rollback: 21 swaps.
    let slowest = swap_cycles(&fleet.ops, &nodes, &stream, 7).await;
    let (payments, failed) = stream.stop().await;
    eprintln!("21 swaps, {payments} payments, slowest convergence of both nodes {slowest:?}");
    assert!(
        failed.is_empty(),
        "{} of {payments} payments failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    // plugin status: each channel node's version, with the calls it took there (nodes
    // report every second, so the last rollback shows within one).
    let on_v1 = |n: &Value| {
        n["node"].as_str().unwrap().starts_with("channel-adapter@")
            && n["versions"][0]["version"] == "0.1.0"
    };
    for node in fleet.reported(on_v1, 2).await {
        let serving = &node["versions"][0];
        assert!(serving["calls"].as_u64().unwrap() > 0, "{node}");
        assert!(serving["p99_ms"].as_f64().unwrap() > 0.0, "{node}");
        assert_eq!(serving["errors"]["trap"], 0);
    }

    // A node that starts later serves what is active; one that does not trust the
    // publisher keeps what it has and says why in plugin status.
    let again = json!({"version": "0.2.0", "percent": 50, "reason": "again"});
    fleet.ops.post("/sandbox/canary", again).await;
    fleet
        .ops
        .post("/sandbox/promote", json!({"reason": "late nodes"}))
        .await;
    let (metrics_c, _c) = fleet.late_node("c", true);
    every_node(std::slice::from_ref(&metrics_c), &serving_line("0.2.0")).await;
    assert_eq!(serving(&metrics_c, "sandbox", "0.1.0").await, Some(0));
    let (_, d) = fleet.late_node("d", false);
    let suffix = format!(":{}", d.0.id());
    let refusing = |n: &Value| {
        n["node"].as_str().unwrap().ends_with(&suffix)
            && !n["refused"].as_array().unwrap().is_empty()
    };
    let refused = fleet.reported(refusing, 1).await.remove(0);
    assert_eq!(refused["versions"][0]["version"], "0.1.0", "{refused}");
    assert_eq!(refused["refused"][0]["version"], "0.2.0");
    let reason = refused["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("untrusted key"), "{reason}");
}
