//! A merchant's webhook receiver for tests: records every request exactly as it arrived
//! and answers with the statuses it is told to (then 200), and checks signatures with
//! the `standardwebhooks` package from PyPI, an independent verifier.

use std::collections::{BTreeMap, VecDeque};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Statuses to answer with, in order, before answering 200.
    script: VecDeque<u16>,
    /// How long each answer is held back.
    hold: Duration,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Holds back every answer this long (the request is recorded at once).
    pub fn hold_answers(&self, hold: Duration) {
        self.inner.lock().unwrap().hold = hold;
    }

    /// Answers the next requests with these statuses.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().script.extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits until `pred` holds on what was received (at most 20 s).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        self.wait_within(Duration::from_secs(20), what, pred).await
    }

    /// Waits until `pred` holds on what was received, at most `limit`.
    pub async fn wait_within(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        for _ in 0..limit.as_millis() / 100 {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the receiver never got {what}: {:#?}", self.received());
    }

    /// Requests of `kind` received so far.
    pub fn of_kind(&self, kind: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect()
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (status, hold) = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(Received {
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect(),
            body: String::from_utf8(body.to_vec()).unwrap(),
        });
        (inner.script.pop_front().unwrap_or(200), inner.hold)
    };
    tokio::time::sleep(hold).await;
    StatusCode::from_u16(status).unwrap()
}

/// The verifier script, once `standardwebhooks` is importable (installed from PyPI on
/// first use if missing). `None` when Python or the package cannot be had here, unless
/// PAYLOOM_REQUIRE_VERIFIER=1 (CI), which makes that a failure.
fn python_verifier() -> Option<&'static str> {
    static READY: OnceLock<bool> = OnceLock::new();
    let ready = *READY.get_or_init(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import standardwebhooks"])
                .status()
                .is_ok_and(|s| s.success())
        };
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "standardwebhooks"])
                .args(extra)
                .status()
                .is_ok_and(|s| s.success())
        };
        importable() || ((pip(&[]) || pip(&["--break-system-packages"])) && importable())
    });
    if !ready {
        assert!(
            std::env::var("PAYLOOM_REQUIRE_VERIFIER").as_deref() != Ok("1"),
            "python3 with the standardwebhooks package is required (PAYLOOM_REQUIRE_VERIFIER=1)"
        );
        eprintln!(
            "skipping the independent check: python3 with standardwebhooks is not available here"
        );
        return None;
    }
    Some(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/verify_webhooks.py"
    ))
}

/// What the independent verifier says of each request, with `secret`; `None` when it
/// cannot run here (see [`python_verifier`]).
pub fn verify(secret: &str, requests: &[Received]) -> Option<Vec<Value>> {
    let script = python_verifier()?;
    let input: Vec<Value> = requests
        .iter()
        .map(|r| json!({"headers": r.headers, "body": r.body}))
        .collect();
    let mut child = Command::new("python3")
        .arg(script)
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the verifier failed");
    Some(serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap())
}

/// The independent verifier accepts every request with `secret` (when it can run here).
pub fn assert_verified(secret: &str, requests: &[Received]) {
    for result in verify(secret, requests).unwrap_or_default() {
        assert_eq!(result["ok"], true, "{result}");
    }
}

/// The independent verifier refuses every request with `secret` (when it can run here).
pub fn assert_refused(secret: &str, requests: &[Received]) {
    for result in verify(secret, requests).unwrap_or_default() {
        assert_eq!(result["ok"], false, "{result}");
    }
}
