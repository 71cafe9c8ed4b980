//! The deployment files under `compose/`: what the service registry generates, accepted
//! by a compose implementation and by promtool, with a health check, limits and a
//! certificate per service and no secret written down.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::required;

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

#[test]
fn promtool_accepts_the_prometheus_config_and_alerts() {
    if !available("promtool", "PAYLOOM_REQUIRE_PROMTOOL") {
        return;
    }
    let dir = compose_dir().join("prometheus");
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
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
