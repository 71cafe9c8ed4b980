//! Under `serve`, internal routes live on a mutual-TLS listener of their own: a caller
//! without a certificate from the deployment's CA is not answered at all, and one whose
//! certificate names a service not allowed to call the route gets 403 and changes nothing.

use serde_json::{Value, json};

use crate::multiprocess::{Urls, certs_init, serve, serve_config};
use crate::support::TestDatabase;

pub(crate) async fn status_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A client that trusts the deployment's CA but presents no certificate.
pub(crate) fn anonymous(urls: &Urls) -> reqwest::Client {
    let ca = std::fs::read(urls.certs.join("ca.pem")).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

/// merchant-auth and order in one `serve` process on a fresh PostgreSQL database, for as
/// long as this lives; `None` where PostgreSQL is not reachable.
struct AuthAndOrder {
    db: TestDatabase,
    urls: Urls,
    /// merchant-auth's internal route that creates a merchant.
    merchants: String,
    _process: crate::support::Process,
    _dir: tempfile::TempDir,
}

impl AuthAndOrder {
    async fn start() -> Option<Self> {
        let db = TestDatabase::create().await?;
        let dir = tempfile::tempdir().unwrap();
        let (config, urls) = serve_config(dir.path(), "");
        let data = dir.path().join("a");
        let process = serve(
            &config,
            &data,
            &db.url,
            &["merchant-auth", "order"],
            "order",
        );
        let merchants = format!("{}/internal/v1/merchants", urls.internal("merchant-auth"));
        Some(Self {
            db,
            urls,
            merchants,
            _process: process,
            _dir: dir,
        })
    }
}

pub(crate) async fn merchant_count(db: &str) -> i64 {
    let pool = sqlx::PgPool::connect(db).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM merchants")
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_answer_only_the_services_allowed_to_call_them() {
    // Bound whole: the process and its folder live until the test ends.
    let Some(topology) = AuthAndOrder::start().await else {
        return;
    };
    let (db, urls, merchants) = (&topology.db, &topology.urls, topology.merchants.as_str());
    let shop = json!({"name": "Mutual Shop"});

    // The admin console may create merchants.
    let created = urls.client_as("admin-bff").post(merchants).json(&shop);
    let (status, merchant) = status_of(created.send().await.unwrap()).await;
    assert_eq!(status, 200, "{merchant}");
    let id = merchant["id"].as_str().unwrap();

    // Risk holds a valid certificate from the same CA, but does not call merchant-auth.
    let as_risk = urls.client_as("risk").post(merchants).json(&shop);
    let (status, body) = status_of(as_risk.send().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "caller_not_allowed", "{body}");
    // Only the gateway calls order: the admin console is refused, the gateway let through.
    let order = format!("{}/internal/v1/orders/ord_missing", urls.internal("order"));
    let as_admin = urls
        .client_as("admin-bff")
        .get(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), 403);
    let as_gateway = urls.client_as("payment-gateway").get(&order).send();
    let as_gateway = as_gateway.await.unwrap();
    assert_eq!(
        as_gateway.status(),
        404,
        "past the gate, the order is simply missing"
    );

    // The public listener serves health, never internal routes.
    let public = reqwest::Client::new();
    let health = public.get(format!("{}/health", urls["merchant-auth"]));
    assert_eq!(health.send().await.unwrap().status(), 200);
    let hidden = format!("{}/internal/v1/merchants/{id}", urls["merchant-auth"]);
    assert_eq!(public.get(&hidden).send().await.unwrap().status(), 404);
    // The refused call created nothing: the one merchant is still the only one.
    assert_eq!(merchant_count(&db.url).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_the_deployments_certificate_is_not_answered() {
    // Bound whole: the process and its folder live until the test ends.
    let Some(topology) = AuthAndOrder::start().await else {
        return;
    };
    let (db, urls, merchants) = (&topology.db, &topology.urls, topology.merchants.as_str());
    let shop = json!({"name": "Mutual Shop"});

    // No certificate at all: the handshake fails and nothing is answered.
    let refused = anonymous(urls).post(merchants).json(&shop).send().await;
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP to the internal port is not spoken there.
    let plain = merchants.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new().post(&plain).json(&shop).send().await;
    assert!(
        refused.as_ref().map_or(true, |r| !r.status().is_success()),
        "{refused:?}"
    );
    // A certificate naming the admin console, from another CA, is refused at the handshake.
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_dir.path().join("other-ca");
    certs_init(&other);
    // Keys are for their owner's eyes only, and a second init does not replace the CA.
    let key = std::fs::metadata(other.join("admin-bff.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(["certs", "init", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "an existing CA was replaced without --force"
    );
    let forged = payloom_platform::tls::ServiceIdentity::load(&other, "admin-bff").unwrap();
    let ca = std::fs::read(urls.certs.join("ca.pem")).unwrap();
    let forger = forged
        .client_builder()
        .unwrap()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    assert!(forger.post(merchants).json(&shop).send().await.is_err());
    assert_eq!(merchant_count(&db.url).await, 0);
}
