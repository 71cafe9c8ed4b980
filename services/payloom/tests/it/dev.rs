//! `payloom dev` as an operator meets it: a running process, HTTP, and a watched folder.

use std::process::Command;
use std::time::{Duration, Instant};

use payloom_reference_plugins::testing::HOSTILE;

use crate::support::{Process, spawn_and_wait};

fn start(data_dir: &std::path::Path) -> (Process, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payloom"));
    command
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir);
    let (process, base) = spawn_and_wait(command, "payloom dev listening on ");
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    (process, base)
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

async fn plugins(client: &reqwest::Client, base: &str) -> Vec<serde_json::Value> {
    let text = get_text(client, &format!("{base}/v1/plugins")).await;
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn dev_serves_reference_plugins_and_hot_swaps_the_folder() {
    let data = tempfile::tempdir().unwrap();
    let (_server, base) = start(data.path());
    let client = reqwest::Client::new();

    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ids: Vec<String> = plugins(&client, &base)
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
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

    // Smoke tests ran under the metrics.
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"payloom_plugin_calls_total{plugin="sandbox",version="0.1.0"} 1"#),
        "{metrics}"
    );

    // A plugin dropped into the folder goes live without a restart.
    HOSTILE.write_to(&data.path().join("plugins")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = plugins(&client, &base)
            .await
            .into_iter()
            .find(|p| p["id"] == "hostile");
        if let Some(plugin) = found {
            assert_eq!(plugin["version"], "9.1.0");
            assert_eq!(plugin["kind"], "risk-rule");
            break;
        }
        assert!(Instant::now() < deadline, "hostile never went live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It went through the plugin registry, as a push would: checked, stored, recorded.
    let status = Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(["plugin", "status", "hostile", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["active"], "9.1.0");
    let latest = &status["history"][0];
    assert!(
        latest["actor"]
            .as_str()
            .unwrap()
            .starts_with("watched folder "),
        "{status}"
    );
    assert_eq!(latest["reason"], "dropped into the watched folder");
}

#[test]
fn dev_refuses_an_address_it_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(["dev", "--listen", &addr, "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("binding"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Kafka messages are signed with the service certificates, which only `serve` has: `dev`
/// does not send unsigned events to a broker.
#[test]
fn dev_refuses_kafka_without_certificates() {
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(["dev", "--listen", &addr, "--data-dir"])
        .arg(data.path())
        .env("PAYLOOM_EVENTS__KAFKA_BROKERS", "127.0.0.1:9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("signed with the service certificates"),
        "{stderr}"
    );
}

#[tokio::test]
async fn demo_pay_makes_a_signed_payment_against_dev() {
    let Some(p) = crate::support::Platform::start(crate::support::Backend::Sqlite).await else {
        return;
    };
    let demo = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_payloom"))
            .args(["demo", "pay", "--data-dir"])
            .arg(p.data.path())
            .args(extra)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (ok, stdout) = demo(&[]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("201 Created")
            && stdout.contains("\"status\": \"succeeded\"")
            && stdout.contains(" 10.99 USD: succeeded"),
        "{stdout}"
    );
    let (ok, stdout) = demo(&["--card", "4000000000000002"]);
    assert!(
        ok && stdout.contains("\"failure_code\": \"card_declined\""),
        "{stdout}"
    );
    assert_eq!(p.merchant.count().await, 2);
    let missing = Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(["demo", "pay", "--data-dir", "/nonexistent-payloom"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("dev-credentials.json"));
}
