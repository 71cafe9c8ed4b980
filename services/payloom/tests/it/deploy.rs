//! The deployment files under `compose/`: what the service registry generates, accepted
//! by a compose implementation and by promtool, with a health check, limits and a
//! certificate per service and no secret written down; the real Prometheus scraping
//! every service of a split; and the image building a profile the workspace defines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{Backend, Platform, Process, required};

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compose")
}

fn payloom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(args)
        .output()
        .expect("payloom runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_committed_deployment_files_are_what_the_registry_generates() {
    let committed = compose_dir();
    let checked = payloom(&["deploy", "generate", "--check", "--dir", path(&committed)]);
    assert!(checked.status.success(), "{}", text(&checked));

    // A file edited by hand, or one gone, is named.
    let dir = tempfile::tempdir().unwrap();
    let written = payloom(&["deploy", "generate", "--dir", path(dir.path())]);
    assert!(written.status.success(), "{}", text(&written));
    let services = dir.path().join("docker-compose.services.yml");
    let edited = std::fs::read_to_string(&services)
        .unwrap()
        .replace("memory: 256M", "memory: 8G");
    std::fs::write(&services, edited).unwrap();
    std::fs::remove_file(dir.path().join("kong/kong.yml")).unwrap();
    let refused = payloom(&["deploy", "generate", "--check", "--dir", path(dir.path())]);
    assert!(!refused.status.success());
    let said = text(&refused);
    assert!(said.contains("docker-compose.services.yml"), "{said}");
    assert!(said.contains("kong.yml"), "{said}");
    assert!(!said.contains("prometheus.yml"), "{said}");
}

/// The registered services, as the generated (and checked) settings name them.
/// The image's builder cooks and builds one cargo profile that the workspace defines, and
/// the runtime stage copies the binary from that profile's directory.
#[test]
fn the_dockerfile_builds_a_profile_the_workspace_defines() {
    let root = compose_dir().join("..");
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let profiles: Vec<&str> = dockerfile
        .split("--profile ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(profiles.len(), 2, "cook and build: {profiles:?}");
    assert!(profiles.iter().all(|p| *p == profiles[0]), "{profiles:?}");
    let profile = profiles[0];
    assert!(
        manifest.contains(&format!("[profile.{profile}]")),
        "Cargo.toml defines no profile `{profile}`"
    );
    let copied =
        format!("COPY --from=builder /src/target/{profile}/payloom /usr/local/bin/payloom");
    assert!(
        dockerfile.contains(&copied),
        "the runtime stage copies from elsewhere"
    );
}

fn registered() -> Vec<String> {
    let settings: toml::Table =
        toml::from_str(&std::fs::read_to_string(compose_dir().join("payloom.toml")).unwrap())
            .unwrap();
    settings["services"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// `tool` on PATH, or a skip (a failure where CI requires it).
fn available(tool: &str, requirement: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        assert!(
            !required(requirement),
            "{tool} is required ({requirement}=1)"
        );
        eprintln!("skipping: no {tool}; set {requirement}=1 to fail instead");
    }
    found
}

#[test]
fn the_compose_files_validate_and_hold_no_secret() {
    if !available("docker-compose", "PAYLOOM_REQUIRE_COMPOSE") {
        return;
    }
    let files = [
        "docker-compose.yml",
        "docker-compose.services.yml",
        "docker-compose.bff.yml",
    ];
    let config = |env: &[(&str, &str)]| {
        let mut command = Command::new("docker-compose");
        command.current_dir(compose_dir()).env_clear();
        command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for file in files {
            command.args(["-f", file]);
        }
        command
            .arg("config")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    // The secrets come from the environment (.env) or the deployment does not start.
    let without = config(&[]);
    assert!(!without.status.success());
    assert!(
        text(&without).contains("POSTGRES_PASSWORD"),
        "{}",
        text(&without)
    );

    let merged = config(&[
        ("POSTGRES_PASSWORD", "pg-secret"),
        ("PAYLOOM_MASTER_KEY", "ab".repeat(32).as_str()),
        (
            "PAYLOOM_ADMIN_JWT_SECRET",
            "jwt-secret-jwt-secret-jwt-secret",
        ),
        ("GRAFANA_ADMIN_PASSWORD", "grafana-secret"),
    ]);
    assert!(merged.status.success(), "{}", text(&merged));
    let dir = tempfile::tempdir().unwrap();
    let merged_path = dir.path().join("merged.yml");
    std::fs::write(&merged_path, &merged.stdout).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_compose.py");
    let mut check = Command::new("python3");
    check.arg(&script).arg(&merged_path);
    for file in files {
        check.arg(compose_dir().join(file));
    }
    check.arg("--").args(registered());
    let checked = check.output().unwrap();
    assert!(checked.status.success(), "{}", text(&checked));
}

/// Every query of every provisioned Grafana dashboard.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = compose_dir().join("grafana/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let title = format!("{} / {}", board["title"], panel["title"]);
                queries.push((title, target["expr"].as_str().unwrap().to_owned()));
            }
        }
    }
    assert!(!queries.is_empty());
    queries
}

/// Every alert's expression in `prometheus/alerts.yml`, one-line or `|` blocks.
fn alert_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(compose_dir().join("prometheus/alerts.yml")).unwrap();
    let (mut queries, mut alert) = (Vec::new(), String::new());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if let Some(name) = line.strip_prefix("- alert: ") {
            alert = name.to_owned();
        } else if line == "expr: |" {
            let mut expr = String::new();
            while let Some(next) = lines.next_if(|l| l.starts_with("          ")) {
                expr += next.trim();
                expr.push(' ');
            }
            queries.push((alert.clone(), expr));
        } else if let Some(expr) = line.strip_prefix("expr: ") {
            queries.push((alert.clone(), expr.to_owned()));
        }
    }
    assert!(queries.len() > 10, "{queries:?}");
    queries
}

/// The metric names a query reads: ours are `payloom_…`; `up` is Prometheus's own.
fn metric_names(query: &str) -> Vec<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("payloom_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn promtool_accepts_the_prometheus_config_and_alerts() {
    if !available("promtool", "PAYLOOM_REQUIRE_PROMTOOL") {
        return;
    }
    // Each dashboard query as a recording rule, so promtool parses it as PromQL.
    let scratch = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, (_, query)) in dashboard_queries().iter().enumerate() {
        rules += &format!("      - record: dashboard:query_{i}\n        expr: {query:?}\n");
    }
    let dashboards = scratch.path().join("dashboards.yml");
    std::fs::write(&dashboards, rules).unwrap();

    let dir = compose_dir().join("prometheus");
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["check", "rules", path(&dashboards)],
    ] {
        let checked = Command::new("promtool")
            .current_dir(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(checked.status.success(), "{}", text(&checked));
    }
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn probe_passes_on_2xx_and_fails_otherwise() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ready", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        for status in ["200 OK", "503 Service Unavailable"] {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).unwrap();
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            stream.write_all(answer.as_bytes()).unwrap();
        }
    });
    assert!(payloom(&["probe", &url]).status.success());
    let unready = payloom(&["probe", &url]);
    assert!(!unready.status.success());
    assert!(text(&unready).contains("503"), "{}", text(&unready));
    server.join().unwrap();
    let closed = Command::new(env!("CARGO_BIN_EXE_payloom"))
        .arg("probe")
        .env("PAYLOOM_PROBE_URL", "http://127.0.0.1:9/health")
        .output()
        .unwrap();
    assert!(!closed.status.success());
}

/// `compose/deploy.sh` makes the certificates as root inside the image and gives each
/// service's key to the image's user.
#[test]
fn certs_init_gives_the_service_keys_to_the_owner() {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: giving files away needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let made = payloom(&[
        "certs",
        "init",
        "--dir",
        path(dir.path()),
        "--owner",
        "65532",
    ]);
    assert!(made.status.success(), "{}", text(&made));
    let key = std::fs::metadata(dir.path().join("order.key")).unwrap();
    assert_eq!((key.uid(), key.mode() & 0o777), (65532, 0o600));
    let ca_key = std::fs::metadata(dir.path().join("ca.key")).unwrap();
    assert_eq!(ca_key.uid(), 0, "the CA's key stays with root");
}

/// The real Prometheus, configured by `payloom deploy prometheus` for the split's
/// listeners: every service is a target that is up, each one's `/metrics` passes
/// `promtool check metrics`, and the payments counter rises while payments stream in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_of_the_split_and_sees_payments() {
    if !available("prometheus", "PAYLOOM_REQUIRE_PROMTOOL")
        || !available("promtool", "PAYLOOM_REQUIRE_PROMTOOL")
    {
        return;
    }
    let Some(p) = Platform::start(Backend::Split).await else {
        return;
    };
    let services: Vec<(String, String)> = p.credentials["services"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, urls)| (name.clone(), urls["public"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(services.len(), registered().len());

    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["deploy".to_owned(), "prometheus".to_owned()];
    for (name, url) in &services {
        let address = url.trim_start_matches("http://");
        args.extend(["--target".to_owned(), format!("{name}={address}")]);
    }
    args.extend(["--scrape-interval".to_owned(), "1s".to_owned()]);
    let generated = Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(&args)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", text(&generated));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, &generated.stdout).unwrap();
    let prometheus = Prometheus::start(&config, dir.path());

    prometheus
        .wait_until_every_target_is_up(services.len())
        .await;
    let before = prometheus.payments().await;
    for _ in 0..5 {
        let paid = p.merchant.pay(1_500, serde_json::json!({})).await;
        assert_eq!(paid.json["status"], "succeeded", "{}", paid.text);
    }
    let mut after = before;
    for _ in 0..60 {
        after = prometheus.payments().await;
        if after >= before + 5.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        after >= before + 5.0,
        "payments went from {before} to {after}"
    );

    // Every service's exposition passes promtool, and together they name every metric a
    // dashboard or an alert reads.
    let mut exposed = std::collections::BTreeSet::new();
    for (name, url) in &services {
        let text = reqwest::get(format!("{url}/metrics")).await.unwrap();
        let text = text.text().await.unwrap();
        promtool_accepts_metrics(name, &text);
        exposed.extend(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|line| {
                    let end = line.find(['{', ' '])?;
                    Some(line[..end].to_owned())
                }),
        );
    }
    for (reader, query) in dashboard_queries().into_iter().chain(alert_queries()) {
        for metric in metric_names(&query) {
            assert!(
                exposed.contains(&metric),
                "{reader} reads {metric}, which no service exposes"
            );
        }
    }
}

fn promtool_accepts_metrics(service: &str, exposition: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = child.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{service}'s /metrics: {}",
        text(&checked)
    );
}

/// A Prometheus server on a free loopback port, killed when dropped.
struct Prometheus {
    _process: Process,
    url: String,
}

impl Prometheus {
    fn start(config: &Path, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Self {
            _process: Process(child),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let answer = reqwest::get(format!("{}{path}", self.url)).await.ok()?;
        answer.json().await.ok()
    }

    async fn wait_until_every_target_is_up(&self, expected: usize) {
        let mut seen = Value::Null;
        for _ in 0..120 {
            if let Some(targets) = self.get("/api/v1/targets").await {
                let active = targets["data"]["activeTargets"].as_array().cloned();
                let up = active
                    .iter()
                    .flatten()
                    .filter(|t| t["health"] == "up")
                    .count();
                if up == expected {
                    return;
                }
                seen = targets;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        panic!("not every target came up: {seen:#}");
    }

    /// `sum(payloom_payments_total)` as Prometheus has it now (0 before the first).
    async fn payments(&self) -> f64 {
        let query = "/api/v1/query?query=sum(payloom_payments_total)";
        let Some(answer) = self.get(query).await else {
            return 0.0;
        };
        answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}
