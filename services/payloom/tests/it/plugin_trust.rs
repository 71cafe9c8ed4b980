//! Which plugins `serve` runs: the ones built into the binary, what a trusted publisher
//! signed, and nothing else unless unsigned plugins are allowed, which it says at start.
//! File names mean nothing; versions only move forward through the folder.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use payloom_host::signing;
use payloom_reference_plugins::testing::{FETCHER, HOSTILE};

use crate::multiprocess::{listening, serve_command, serve_config};
use crate::support::{TestDatabase, spawn_logging_to};

/// Writes a component, its manifest and (when `key` is given) its signature under `name`.
fn drop_in(dir: &Path, name: &str, wasm: &[u8], manifest: &str, key: Option<&SigningKey>) {
    if let Some(key) = key {
        let signature = signing::sign(key, wasm, manifest.as_bytes());
        std::fs::write(dir.join(format!("{name}.sig")), signature).unwrap();
    }
    std::fs::write(dir.join(format!("{name}.toml")), manifest).unwrap();
    std::fs::write(dir.join(format!("{name}.wasm")), wasm).unwrap();
}

/// `payloom_plugin_serving` for one version on this node: 1 serving, 0 replaced, `None`
/// never loaded.
pub(crate) async fn serving(metrics_url: &str, plugin: &str, version: &str) -> Option<u8> {
    let text = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("payloom_plugin_serving{{plugin=\"{plugin}\",version=\"{version}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.parse().unwrap())
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting: {what}");
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

struct Node {
    _process: crate::support::Process,
    metrics: String,
    log: std::path::PathBuf,
}

/// `serve risk` in `dir`, with `plugins` (TOML lines for `[plugins]`); its log in a file.
fn start_risk(dir: &Path, db: &str, plugins: &str) -> Node {
    let (config, urls) = serve_config(dir, &format!("[plugins]\n{plugins}"));
    let log = dir.join("risk.log");
    let command = serve_command(&config, &dir.join("data"), db, &["risk"]);
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    let (process, _) = spawn_logging_to(command, &listening("risk"), stderr);
    Node {
        _process: process,
        metrics: format!("{}/metrics", urls["risk"]),
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_built_in_and_trusted_plugins_and_refuses_the_rest() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("drop");
    std::fs::create_dir_all(&folder).unwrap();
    let publisher = SigningKey::from_bytes(&[21; 32]);
    let stranger = SigningKey::from_bytes(&[22; 32]);
    let trusted = hex::encode(publisher.verifying_key().as_bytes());

    // Before start: a trusted build under a file name that is not its id, a newer build
    // signed by a stranger, and an unsigned channel.
    drop_in(
        &folder,
        "any-name",
        HOSTILE.wasm,
        HOSTILE.manifest,
        Some(&publisher),
    );
    let (v95, m95) = HOSTILE.relabelled("9.1.0", "9.5.0");
    drop_in(&folder, "hostile-next", &v95, &m95, Some(&stranger));
    drop_in(&folder, "fetcher", FETCHER.wasm, FETCHER.manifest, None);
    let plugins = format!(
        "dir = {:?}\ntrusted_keys = [\"{trusted}\"]\n",
        folder.display().to_string()
    );
    let node = start_risk(dir.path(), &db.url, &plugins);
    let m = node.metrics.as_str();

    assert_eq!(
        serving(m, "amount-limit", "0.1.0").await,
        Some(1),
        "built in"
    );
    assert_eq!(
        serving(m, "hostile", "9.1.0").await,
        Some(1),
        "signed by a trusted key"
    );
    assert_eq!(serving(m, "hostile", "9.5.0").await, None);
    assert_eq!(serving(m, "fetcher", "0.1.0").await, None);
    let log = log_of(&node.log);
    assert!(log.contains("signed by untrusted key"), "{log}");
    assert!(log.contains("unsigned plugins are not allowed"), "{log}");
    assert!(!log.contains("allow_unsigned is on"), "{log}");

    // While it runs: an older build, even signed, needs an explicit rollback.
    let (v90, m90) = HOSTILE.relabelled("9.1.0", "9.0.0");
    drop_in(&folder, "older", &v90, &m90, Some(&publisher));
    eventually("the downgrade is refused", async || {
        log_of(&node.log).contains("needs an explicit rollback")
    })
    .await;
    assert_eq!(serving(m, "hostile", "9.1.0").await, Some(1));
    // A manifest edited after signing (another id, wider reach) matches no signature.
    let (v93, m93) = HOSTILE.relabelled("9.1.0", "9.3.0");
    let signature = signing::sign(&publisher, &v93, m93.as_bytes());
    let relabelled = m93.replace("id = \"hostile\"", "id = \"amount-limit\"");
    std::fs::write(folder.join("edited.sig"), signature).unwrap();
    std::fs::write(folder.join("edited.toml"), &relabelled).unwrap();
    std::fs::write(folder.join("edited.wasm"), &v93).unwrap();
    eventually("the edited manifest is refused", async || {
        log_of(&node.log).contains("does not match the component and manifest")
    })
    .await;
    // A newer trusted build goes live without a restart.
    let (v92, m92) = HOSTILE.relabelled("9.1.0", "9.2.0");
    drop_in(&folder, "newer", &v92, &m92, Some(&publisher));
    eventually("9.2.0 serves", async || {
        serving(m, "hostile", "9.2.0").await == Some(1)
    })
    .await;
    assert_eq!(serving(m, "hostile", "9.1.0").await, Some(0));
    assert_eq!(serving(m, "amount-limit", "9.3.0").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_allowing_unsigned_plugins_says_so_at_start() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("drop");
    std::fs::create_dir_all(&folder).unwrap();
    drop_in(&folder, "fetcher", FETCHER.wasm, FETCHER.manifest, None);
    let plugins = format!(
        "dir = {:?}\nallow_unsigned = true\n",
        folder.display().to_string()
    );
    let node = start_risk(dir.path(), &db.url, &plugins);
    assert_eq!(serving(&node.metrics, "fetcher", "0.1.0").await, Some(1));
    let log = log_of(&node.log);
    assert!(log.contains("allow_unsigned is on"), "{log}");
}
