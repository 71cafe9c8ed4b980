//! The admin API: login, tokens, merchants and keys; login throttling, the bootstrap
//! operator, and TOTP refused until it exists.

use serde_json::json;

use crate::in_every_topology;
use crate::support::{Answer, Backend, Platform, answer};

#[tokio::test]
async fn admin_login_tokens_and_merchant_keys() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let client = reqwest::Client::new();
    let login = |body: serde_json::Value| {
        client
            .post(format!("{}/admin/v1/login", p.admin_base))
            .json(&body)
            .send()
    };
    let wrong = answer(
        login(json!({"username": "admin", "password": "wrong-password"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (401, "credentials_invalid")
    );
    let nobody = answer(
        login(json!({"username": "nobody", "password": "x"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(nobody.status, 401);
    let create = |token: Option<String>| {
        let mut r = client
            .post(format!("{}/admin/v1/merchants", p.admin_base))
            .json(&json!({"name": "Shop"}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(create(None).await.unwrap().status(), 401);
    assert_eq!(create(Some("garbage".into())).await.unwrap().status(), 401);
    // A token that names no algorithm ("none") is refused: HS256 is pinned.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6InN1cGVyX2FkbWluIiwiaXNzIjoicGF5bG9vbS1hZG1pbiIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxfQ.";
    assert_eq!(create(Some(unsigned.into())).await.unwrap().status(), 401);
    let token = p.admin_token().await;
    let merchant = answer(create(Some(token.clone())).await.unwrap()).await;
    assert_eq!(merchant.status, 201, "{}", merchant.text);
    assert!(merchant.json["id"].as_str().unwrap().starts_with("mch_"));
    let empty = p
        .admin("POST", "/admin/v1/merchants", json!({"name": " "}))
        .await;
    assert_eq!(
        (empty.status, empty.json["error"]["param"].as_str()),
        (400, Some("name"))
    );
    let missing = p
        .admin("POST", "/admin/v1/merchants/mch_nope/api-keys", json!({}))
        .await;
    assert_eq!(missing.status, 404);
    let other = p.another_merchant().await;
    assert!(other.key.secret.starts_with("sk_") && other.key.secret.len() > 64);
    assert_eq!(
        other.pay(1_000, json!({})).await.json["status"],
        "succeeded"
    );
    // The secret is not stored: nothing in the data directory contains it.
    for entry in std::fs::read_dir(p.data.path().join("db")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(other.key.secret.len())
                .any(|w| w == other.key.secret.as_bytes())
        );
        assert!(
            !bytes.windows(6).any(|w| w == b"s3cret"),
            "channel credentials are sealed"
        );
    }
}

/// A login from `client`: the answer and its Retry-After header.
async fn login(
    client: &reqwest::Client,
    p: &Platform,
    username: &str,
    password: &str,
) -> (Answer, Option<u64>) {
    let response = client
        .post(format!("{}/admin/v1/login", p.admin_base))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (answer(response).await, retry_after)
}

fn status_code(login: &(Answer, Option<u64>)) -> (u16, &str) {
    (login.0.status, login.0.error_code())
}

const OPS: &str = "ops";
const OPS_PASSWORD: &str = "ops-password-0001";

/// A client whose requests come from another loopback address than the default one.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username_and_per_source() {
    let config = format!(
        "[admin]\nbootstrap_username = \"{OPS}\"\nbootstrap_password = \"{OPS_PASSWORD}\"\n\
         login_failures_per_username_max = 3\nlogin_failures_per_source_max = 6\n"
    );
    let Some(p) = Platform::start_with(Backend::Sqlite, &config).await else {
        return;
    };
    let admin_password = p.credentials["admin"]["password"].as_str().unwrap();
    let here = client_from([127, 0, 0, 1]);
    for _ in 0..3 {
        let wrong = login(&here, &p, "admin", "wrong-password").await;
        assert_eq!(status_code(&wrong), (401, "credentials_invalid"));
    }
    let throttled = login(&here, &p, "admin", "wrong-password").await;
    assert_eq!(status_code(&throttled), (429, "login_throttled"));
    assert!(throttled.1.is_some_and(|secs| (1..=900).contains(&secs)));
    let right = login(&here, &p, "admin", admin_password).await;
    assert_eq!(
        status_code(&right),
        (429, "login_throttled"),
        "a locked username refuses the right password too"
    );
    // Three more failures from this address, each for another username, lock the address.
    for ghost in ["ghost-1", "ghost-2", "ghost-3"] {
        let wrong = login(&here, &p, ghost, "wrong-password").await;
        assert_eq!(status_code(&wrong), (401, "credentials_invalid"));
    }
    let from_here = login(&here, &p, "ghost-4", "wrong-password").await;
    assert_eq!(status_code(&from_here), (429, "login_throttled"));
    let ops_here = login(&here, &p, OPS, OPS_PASSWORD).await;
    assert_eq!(status_code(&ops_here), (429, "login_throttled"));
    // Another address is not locked by these failures, only through the locked username.
    let elsewhere = client_from([127, 0, 0, 2]);
    let ops_elsewhere = login(&elsewhere, &p, OPS, OPS_PASSWORD).await;
    assert_eq!(ops_elsewhere.0.status, 200, "{}", ops_elsewhere.0.text);
    let admin_elsewhere = login(&elsewhere, &p, "admin", admin_password).await;
    assert_eq!(status_code(&admin_elsewhere), (429, "login_throttled"));
}

#[tokio::test]
async fn a_login_flood_is_throttled_while_signed_requests_go_on() {
    const LIMIT: usize = 5;
    let config = format!("[admin]\nlogin_failures_per_username_max = {LIMIT}\n");
    let Some(p) = Platform::start_with(Backend::Sqlite, &config).await else {
        return;
    };
    let client = reqwest::Client::new();
    let flood: Vec<_> = (0..30)
        .map(|i| {
            let (client, base) = (client.clone(), p.admin_base.clone());
            tokio::spawn(async move {
                let body = json!({"username": "admin", "password": format!("wrong-password-{i}")});
                let response = client
                    .post(format!("{base}/admin/v1/login"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                answer(response).await
            })
        })
        .collect();
    for _ in 0..5 {
        let balance = p.merchant.get("/v1/balance").await;
        assert_eq!(balance.status, 200, "{}", balance.text);
    }
    let mut refused = Vec::new();
    for login in flood {
        let login = login.await.unwrap();
        refused.push((login.status, login.error_code().to_owned()));
    }
    // Sequential attempts after the burst: the username locks at the limit.
    let mut last = login(&client, &p, "admin", "wrong-password").await;
    for _ in 0..LIMIT {
        if last.0.status != 401 {
            break;
        }
        refused.push((401, "credentials_invalid".into()));
        last = login(&client, &p, "admin", "wrong-password").await;
    }
    assert_eq!(
        status_code(&last),
        (429, "login_throttled"),
        "{}",
        last.0.text
    );
    let unauthorized = refused.iter().filter(|(status, _)| *status == 401).count();
    assert_eq!(
        unauthorized, LIMIT,
        "failures answered 401 up to the limit: {refused:?}"
    );
    for (status, code) in &refused {
        assert!(
            matches!(
                (*status, code.as_str()),
                (401, "credentials_invalid") | (429, "login_throttled") | (503, "login_busy")
            ),
            "{status} {code}"
        );
    }
    let balance = p.merchant.get("/v1/balance").await;
    assert_eq!(balance.status, 200, "{}", balance.text);
}

in_every_topology!(the_bootstrap_password_makes_the_first_operator_once);

async fn the_bootstrap_password_makes_the_first_operator_once(backend: Backend) {
    let bootstrap = |password: &str| {
        format!("[admin]\nbootstrap_username = \"{OPS}\"\nbootstrap_password = \"{password}\"\n")
    };
    let Some(mut p) = Platform::start_with(backend, &bootstrap(OPS_PASSWORD)).await else {
        return;
    };
    let client = reqwest::Client::new();
    let first = login(&client, &p, OPS, OPS_PASSWORD).await;
    assert_eq!(first.0.status, 200, "{}", first.0.text);
    // A later start with another bootstrap password: operators exist, so it is not applied.
    let second_password = "second-password-0002";
    std::fs::write(p.data.path().join("test.toml"), bootstrap(second_password)).unwrap();
    p.restart();
    let second = login(&client, &p, OPS, second_password).await;
    assert_eq!(status_code(&second), (401, "credentials_invalid"));
    let still_first = login(&client, &p, OPS, OPS_PASSWORD).await;
    assert_eq!(still_first.0.status, 200, "{}", still_first.0.text);
}

#[tokio::test]
async fn totp_sent_to_an_operator_without_it_is_refused() {
    let Some(p) = Platform::start(Backend::Sqlite).await else {
        return;
    };
    let password = p.credentials["admin"]["password"].as_str().unwrap();
    let client = reqwest::Client::new();
    let send = |password: &str| {
        let body = json!({"username": "admin", "password": password, "totp": "123456"});
        client
            .post(format!("{}/admin/v1/login", p.admin_base))
            .json(&body)
            .send()
    };
    let refused = answer(send(password).await.unwrap()).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (400, "totp_not_enabled"),
        "{}",
        refused.text
    );
    assert_eq!(refused.json["error"]["param"], "totp");
    assert!(refused.json.get("token").is_none());
    // A wrong password with a code is a wrong password: nothing about TOTP is revealed.
    let wrong = answer(send("wrong-password").await.unwrap()).await;
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (401, "credentials_invalid")
    );
    assert_eq!(login(&client, &p, "admin", password).await.0.status, 200);
}
