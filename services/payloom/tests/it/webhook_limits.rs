//! Webhook delivery against hostile receivers and networks: endpoints that accept and
//! never answer delay only their own merchant, an endless response body is cut at the
//! cap while it streams, proxy variables are not followed, and a refused name does not
//! say where it points.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::in_every_topology;
use crate::multiprocess::{bootstrap_merchant, notification_apart};
use crate::receiver::Receiver;
use crate::support::{Backend, Key, Merchant, Platform, TestDatabase, spawn_and_wait};

in_every_topology!(
    a_merchant_whose_endpoints_never_answer_does_not_delay_another_merchant,
    an_endless_response_body_is_cut_at_the_cap_while_it_streams,
);

/// Receivers get a minute (the most allowed), so nothing here is released by a timeout.
const PATIENT: &str = "[notification]\nrequest_timeout_ms = 60000\nbatch = 32\nendpoint_in_flight_max = 8\nmerchant_in_flight_max = 16\n";

/// Polls `done` every 100 ms, at most 20 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// A listener that accepts connections and never reads or answers them; returns its
/// address and how many connections it holds.
async fn tarpit() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let held = Arc::new(AtomicUsize::new(0));
    let count = held.clone();
    tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
            count.store(sockets.len(), Ordering::SeqCst);
        }
    });
    (address, held)
}

async fn deliveries_of(p: &Platform, endpoint: &str) -> Vec<Value> {
    let got = p
        .admin(
            "GET",
            &format!("/admin/v1/webhook_deliveries?endpoint_id={endpoint}"),
            Value::Null,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    got.json.as_array().unwrap().clone()
}

async fn a_merchant_whose_endpoints_never_answer_does_not_delay_another_merchant(backend: Backend) {
    let Some(p) = Platform::start_with(backend, PATIENT).await else {
        return;
    };
    let a = &p.merchant;
    let (tarpit, held) = tarpit().await;
    let mut a_endpoints = Vec::new();
    for n in 0..16 {
        let url = format!("http://{tarpit}/hook{n}");
        let made = a.post("/v1/webhook_endpoints", json!({"url": url})).await;
        assert_eq!(made.status, 201, "{}", made.text);
        a_endpoints.push(made.json["id"].as_str().unwrap().to_owned());
    }
    // Four payments: 64 deliveries into the tarpit, twice the platform's slots.
    for _ in 0..4 {
        assert_eq!(a.pay(1_000, json!({})).await.json["status"], "succeeded");
    }
    eventually("A's deliveries hang in the tarpit", || {
        held.load(Ordering::SeqCst) >= 16
    })
    .await;

    let b = p.another_merchant().await;
    let receiver = Receiver::start().await;
    let made = b
        .post("/v1/webhook_endpoints", json!({"url": receiver.url}))
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let paid = b.pay(2_500, json!({})).await;
    assert_eq!(paid.json["status"], "succeeded", "{}", paid.text);
    let got = receiver
        .wait_for("B's payment.succeeded", |r| {
            r.iter().any(|r| r.kind() == "payment.succeeded")
        })
        .await;
    assert_eq!(got[0].json()["data"]["id"], paid.json["id"]);

    // A's deliveries were still hanging: none has an attempt recorded yet, and A never
    // held more than its merchant cap of connections.
    for endpoint in &a_endpoints {
        for delivery in deliveries_of(&p, endpoint).await {
            assert_eq!(delivery["status"], "pending", "{delivery}");
            assert_eq!(delivery["log"], json!([]), "{delivery}");
        }
    }
    assert_eq!(
        held.load(Ordering::SeqCst),
        16,
        "A holds its 16 slots, no more"
    );
}

/// What the endless receiver sends, over and over.
const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// The endless receiver stops sending after this much and holds the connection open, so
/// a platform that read everything would sit there until its timeout.
const STREAM_MAX: usize = 64 << 20;

/// What the endless receiver saw: bytes of body written, and whether the platform hung up.
#[derive(Default)]
struct Stream {
    written: AtomicUsize,
    hung_up: AtomicBool,
}

/// A receiver that answers 200 with a 4 GB Content-Length and streams [`PATTERN`].
async fn endless_receiver() -> (String, Arc<Stream>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let stream = Arc::new(Stream::default());
    let seen = stream.clone();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut request = [0u8; 8192];
        let _ = socket.read(&mut request).await;
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4000000000\r\n\r\n";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk: Vec<u8> = PATTERN
            .iter()
            .copied()
            .cycle()
            .take(PATTERN.len() * 1820)
            .collect();
        while seen.written.load(Ordering::SeqCst) < STREAM_MAX {
            if socket.write_all(&chunk).await.is_err() {
                seen.hung_up.store(true, Ordering::SeqCst);
                return;
            }
            seen.written.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        // Sent enough: wait for the platform to hang up (a read returns 0 or fails).
        let mut rest = [0u8; 64];
        while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
        seen.hung_up.store(true, Ordering::SeqCst);
    });
    (url, stream)
}

async fn an_endless_response_body_is_cut_at_the_cap_while_it_streams(backend: Backend) {
    let Some(p) = Platform::start_with(backend, PATIENT).await else {
        return;
    };
    let m = &p.merchant;
    let (url, stream) = endless_receiver().await;
    let made = m.post("/v1/webhook_endpoints", json!({"url": url})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let endpoint = made.json["id"].as_str().unwrap().to_owned();
    m.pay(1_000, json!({"description": "one event only"})).await;

    let mut delivery = Value::Null;
    for _ in 0..200 {
        let deliveries = deliveries_of(&p, &endpoint).await;
        if let Some(d) = deliveries.into_iter().find(|d| d["status"] == "delivered") {
            delivery = d;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivery["status"], "delivered", "the delivery completed");
    let attempt = &delivery["log"][0];
    assert_eq!(attempt["response_status"], 200, "{attempt}");
    let kept = attempt["response_body"].as_str().unwrap();
    let expected: Vec<u8> = PATTERN.iter().copied().cycle().take(4096).collect();
    assert_eq!(kept.as_bytes(), expected, "the first 4 KiB, no more");
    eventually("the platform hangs up on the rest", || {
        stream.hung_up.load(Ordering::SeqCst)
    })
    .await;
    assert!(
        stream.written.load(Ordering::SeqCst) < STREAM_MAX,
        "the platform stopped reading long before the body ended"
    );
}

/// A proxy that answers every request itself and counts them.
async fn counting_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let proxied = Arc::new(AtomicUsize::new(0));
    let count = proxied.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (url, proxied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_do_not_route_webhooks() {
    let (proxy, proxied) = counting_proxy().await;
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("test.toml"), "").unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_payloom"));
    command
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--config")
        .arg(data.path().join("test.toml"));
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env(var, &proxy);
    }
    for var in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
        command.env_remove(var);
    }
    let (_platform, base) = spawn_and_wait(command, "payloom dev listening on ");
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("dev-credentials.json")).unwrap())
            .unwrap();
    let key = &credentials["merchant"]["api_key"];
    let m = Merchant {
        base,
        key: Key {
            merchant_id: credentials["merchant"]["id"].as_str().unwrap().to_owned(),
            key_id: key["key_id"].as_str().unwrap().to_owned(),
            secret: key["secret"].as_str().unwrap().to_owned(),
        },
        http: reqwest::Client::new(),
    };
    let receiver = Receiver::start().await;
    let made = m
        .post("/v1/webhook_endpoints", json!({"url": receiver.url}))
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    m.pay(1_000, json!({})).await;
    receiver
        .wait_for("the webhook, sent directly", |r| !r.is_empty())
        .await;
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "nothing went through the proxy"
    );
}

/// The merchant-facing services in one process, notification in another, as deployed:
/// loopback and private targets are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_does_not_say_where_its_name_points() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_processes, urls) = notification_apart(dir.path(), &db.url, "");
    let m = bootstrap_merchant(&urls).await;
    for url in [
        "http://localhost:9/hook",
        "http://127.0.0.1:9/hook",
        "http://[64:ff9b::a00:5]/hook",
        "http://[2002:a00:5::1]/hook",
    ] {
        let refused = m.post("/v1/webhook_endpoints", json!({"url": url})).await;
        // Well-formed, refused for where it leads: 422 `url_not_allowed`.
        assert_eq!(
            (refused.status, refused.json["error"]["param"].as_str()),
            (422, Some("url")),
            "{url}: {}",
            refused.text
        );
        let message = refused.json["error"]["message"].as_str().unwrap();
        for leak in ["127.0.0.1", "::1", "resolves to"] {
            assert!(!message.contains(leak), "{url}: {message}");
        }
    }
    assert_eq!(m.get("/v1/webhook_endpoints").await.json["data"], json!([]));
}
