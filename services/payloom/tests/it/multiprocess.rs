//! The production topology: the gateway in one process, risk and channel-adapter in
//! another, on PostgreSQL, talking HTTP. The merchant must not be able to tell.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::payments::assert_sandbox_outcomes;
use crate::support::{Key, Merchant, TestDatabase, free_port, spawn_and_wait};

const LOCAL_A: [&str; 5] = [
    "merchant-auth",
    "order",
    "merchant-quota",
    "merchant-policy",
    "payment-gateway",
];
const LOCAL_B: [&str; 2] = ["risk", "channel-adapter"];

pub(crate) fn serve(
    config: &std::path::Path,
    data: &std::path::Path,
    db: &str,
    services: &[&str],
    last: &str,
) -> crate::support::Process {
    spawn_and_wait(serve_command(config, data, db, services), &listening(last)).0
}

/// The line `serve` prints when `service` is up.
pub(crate) fn listening(service: &str) -> String {
    format!("payloom serve: {service} listening on ")
}

/// `payloom serve <services>` on `config`, `data` and `db`, with the certificates beside
/// the config.
pub(crate) fn serve_command(
    config: &std::path::Path,
    data: &std::path::Path,
    db: &str,
    services: &[&str],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payloom"));
    let certs = config.parent().expect("a config in a folder").join("certs");
    command
        .arg("serve")
        .args(services)
        .arg("--certs")
        .arg(certs)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--database-url", db]);
    command
}

/// The merchant-facing services in one process and notification in another, as deployed,
/// on `db` with `extra` configuration; the processes live as long as the returned pair.
pub(crate) fn notification_apart(
    dir: &std::path::Path,
    db: &str,
    extra: &str,
) -> ([crate::support::Process; 2], Urls) {
    let (config, urls) = serve_config(dir, extra);
    let notification = serve(
        &config,
        &dir.join("n"),
        db,
        &["notification"],
        "notification",
    );
    let gateway_side = ["merchant-auth", "channel-adapter", "payment-gateway"];
    let gateway = serve(
        &config,
        &dir.join("g"),
        db,
        &gateway_side,
        "payment-gateway",
    );
    ([notification, gateway], urls)
}

/// Where each service of a `serve` topology answers: `urls[service]` is its public
/// listener, [`Urls::internal`] its mutual-TLS one.
pub(crate) struct Urls {
    public: HashMap<&'static str, String>,
    internal: HashMap<&'static str, String>,
    pub certs: PathBuf,
}

impl std::ops::Index<&str> for Urls {
    type Output = String;

    fn index(&self, service: &str) -> &String {
        &self.public[service]
    }
}

impl Urls {
    pub(crate) fn internal(&self, service: &str) -> &str {
        &self.internal[service]
    }

    /// An HTTP client that presents `service`'s certificate, as that service would.
    pub(crate) fn client_as(&self, service: &str) -> reqwest::Client {
        payloom_platform::tls::ServiceIdentity::load(&self.certs, service)
            .unwrap()
            .client_builder()
            .unwrap()
            .build()
            .unwrap()
    }
}

/// Issues a CA and every service's certificate into `dir` with `payloom certs init`.
pub(crate) fn certs_init(dir: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(["certs", "init", "--dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "payloom certs init: {status}");
}

/// A `serve` configuration in `dir`: fresh secrets and certificates, two free ports for
/// every service, and `extra` (TOML) at the end.
pub(crate) fn serve_config(dir: &Path, extra: &str) -> (PathBuf, Urls) {
    let mut config = format!(
        "[security]\nmaster_key = \"{}\"\nadmin_jwt_secret = \"{}\"\n",
        payloom_platform::ids::random_hex(32),
        payloom_platform::ids::random_hex(32)
    );
    let mut urls = Urls {
        public: HashMap::new(),
        internal: HashMap::new(),
        certs: dir.join("certs"),
    };
    certs_init(&urls.certs);
    for service in [
        "admin-bff",
        "payment-gateway",
        "order",
        "channel-adapter",
        "risk",
        "merchant-auth",
        "merchant-policy",
        "merchant-quota",
        "accounting",
        "notification",
        "plugin-registry",
    ] {
        let (port, internal) = (free_port(), free_port());
        config.push_str(&format!(
            "[services.{service}]\nlisten = \"127.0.0.1:{port}\"\n\
             internal_listen = \"127.0.0.1:{internal}\"\nurl = \"https://127.0.0.1:{internal}\"\n"
        ));
        urls.public
            .insert(service, format!("http://127.0.0.1:{port}"));
        urls.internal
            .insert(service, format!("https://127.0.0.1:{internal}"));
    }
    config.push_str(extra);
    let path = dir.join("serve.toml");
    std::fs::write(&path, config).unwrap();
    (path, urls)
}

/// A merchant with an API key and sandbox credentials (notify secret `k`), made through
/// the services' own internal APIs with the admin console's certificate, as an
/// operator's tooling would.
pub(crate) async fn bootstrap_merchant(urls: &Urls) -> Merchant {
    let http = urls.client_as("admin-bff");
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };
    let merchant = post(
        format!("{}/internal/v1/merchants", urls.internal("merchant-auth")),
        json!({"name": "Split Shop"}),
    )
    .await;
    let id = merchant["id"].as_str().unwrap();
    let key = post(
        format!(
            "{}/internal/v1/merchants/{id}/api-keys",
            urls.internal("merchant-auth")
        ),
        json!({}),
    )
    .await;
    post(
        format!(
            "{}/internal/v1/merchants/{id}/channels/sandbox/credentials",
            urls.internal("channel-adapter")
        ),
        json!({"notify_secret": "k"}),
    )
    .await;
    Merchant {
        base: urls["payment-gateway"].clone(),
        key: Key {
            merchant_id: id.to_owned(),
            key_id: key["key_id"].as_str().unwrap().to_owned(),
            secret: key["secret"].as_str().unwrap().to_owned(),
        },
        http: reqwest::Client::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reaches_risk_and_channels_in_another_process() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config_path, urls) = serve_config(dir.path(), "");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let _b = serve(&config_path, &data_b, &db.url, &LOCAL_B, "channel-adapter");
    let _a = serve(&config_path, &data_a, &db.url, &LOCAL_A, "payment-gateway");
    let m = bootstrap_merchant(&urls).await;
    let http = reqwest::Client::new();
    assert_sandbox_outcomes(&m).await;

    // The risk service kept every rule's result of the decision that blocked a payment.
    let blocked = m
        .pay(1_000, json!({"customer": {"email": "blocked@example.com"}}))
        .await;
    let decision_id = blocked.json["risk_decision_id"].as_str().unwrap();
    let decision: Value = urls
        .client_as("payment-gateway")
        .get(format!(
            "{}/internal/v1/risk/decisions/{decision_id}",
            urls.internal("risk")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(decision["payment_id"], blocked.json["id"]);
    assert_eq!(decision["action"], "block");
    let rules: Vec<&str> = decision["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["blocklist", "amount-limit", "velocity"]);
    assert_eq!(decision["rules"][0]["action"], "block");
    assert!(
        decision["rules"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("email"),
        "{decision}"
    );

    // Each process answers for itself.
    for (service, url) in [
        ("payment-gateway", &urls["payment-gateway"]),
        ("risk", &urls["risk"]),
    ] {
        let ready = http.get(format!("{url}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{service}");
    }
    // Risk ran in process B: its decision endpoint is there, and not on the gateway's port.
    let on_gateway = http
        .post(format!(
            "{}/internal/v1/risk/evaluate",
            urls["payment-gateway"]
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(on_gateway.status(), 404);
}
