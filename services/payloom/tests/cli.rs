//! The `payloom plugin` commands as a plugin author runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use payloom_reference_plugins::{AMOUNT_LIMIT, SANDBOX, testing::HOSTILE};

fn payloom(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payloom"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Scaffolds share one target directory, so the SDK compiles once per machine.
fn scaffold_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/scaffold-test")
}

fn assert_ok(output: &Output, what: &str) {
    assert!(output.status.success(), "{what} failed:\n{}", text(output));
}

#[test]
fn scaffolds_build_pass_their_tests_and_check_clean() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["channel", "risk", "policy"] {
        let name = format!("demo-{kind}");
        assert_ok(
            &payloom(&["plugin", "new", kind, &name], dir.path()),
            "plugin new",
        );
        let crate_dir = dir.path().join(&name);
        let test = Command::new(env!("CARGO"))
            .arg("test")
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", scaffold_target())
            .output()
            .unwrap();
        assert_ok(&test, &format!("cargo test of the {kind} scaffold"));
        assert!(text(&test).contains("test result: ok. "), "{}", text(&test));
        assert_ok(&payloom(&["plugin", "build"], &crate_dir), "plugin build");
        let wasm = format!("dist/{name}.wasm");
        let check = payloom(&["plugin", "check", &wasm], &crate_dir);
        assert_ok(&check, "plugin check");
        assert!(
            text(&check).contains(&format!("ok: {name}@0.1.0")),
            "{}",
            text(&check)
        );
        assert!(text(&check).contains("no WASI imports"), "{}", text(&check));
        let mut run = vec!["plugin", "run", wasm.as_str(), "--fixture", "fixture.json"];
        if kind == "channel" {
            run.extend(["--exchanges", "exchanges.json"]);
            let conformance = payloom(
                &[
                    "plugin",
                    "conformance",
                    &wasm,
                    "--scenarios",
                    "conformance.json",
                    "--exchanges",
                    "exchanges.json",
                ],
                &crate_dir,
            );
            assert_ok(&conformance, "plugin conformance");
            assert!(
                text(&conformance).contains(" passed, 0 failed"),
                "{}",
                text(&conformance)
            );
        }
        let run = payloom(&run, &crate_dir);
        assert_ok(&run, "plugin run");
        let report: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&run.stdout).lines().next().unwrap())
                .unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert!(report["peak_memory_bytes"].as_u64().unwrap() > 0);
    }
    // Names that cannot be plugin ids are refused.
    let bad = payloom(&["plugin", "new", "risk", "Bad_Name"], dir.path());
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("not a valid plugin id"),
        "{}",
        text(&bad)
    );
}

#[test]
fn check_exits_non_zero_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm at all").unwrap();
    let output = payloom(
        &["plugin", "check", "junk.wasm", "--manifest", "junk.toml"],
        dir.path(),
    );
    assert!(!output.status.success());
    std::fs::write(dir.path().join("junk.toml"), AMOUNT_LIMIT.manifest).unwrap();
    let output = payloom(&["plugin", "check", "junk.wasm"], dir.path());
    assert!(!output.status.success());
    assert!(
        text(&output).contains("invalid: not a WebAssembly component"),
        "{}",
        text(&output)
    );

    let http =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#)
            .unwrap();
    std::fs::write(dir.path().join("http.wasm"), http).unwrap();
    std::fs::write(
        dir.path().join("http.toml"),
        "id = \"http\"\nworld = \"risk-rule\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let output = payloom(&["plugin", "check", "http.wasm"], dir.path());
    assert!(!output.status.success());
    assert!(
        text(&output).contains("wasi:http/outgoing-handler@0.2.0"),
        "{}",
        text(&output)
    );
}

#[test]
fn check_infers_the_manifest_and_verifies_signatures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sandbox.wasm"), SANDBOX.wasm).unwrap();
    // No manifest beside it: world from the exports, identity from describe.
    let output = payloom(&["plugin", "check", "sandbox.wasm"], dir.path());
    assert_ok(&output, "check without a manifest");
    assert!(
        text(&output).contains("ok: sandbox@0.1.0 (channel-adapter)"),
        "{}",
        text(&output)
    );

    AMOUNT_LIMIT.write_to(dir.path()).unwrap();
    let keygen = payloom(&["plugin", "keygen", "--out", "signing.key"], dir.path());
    assert_ok(&keygen, "keygen");
    let public = String::from_utf8_lossy(&keygen.stdout).trim().to_owned();
    assert_eq!(public.len(), 64);
    let check_trusted = || {
        payloom(
            &[
                "plugin",
                "check",
                "amount-limit.wasm",
                "--trusted-key",
                &public,
            ],
            dir.path(),
        )
    };
    let unsigned = check_trusted();
    assert!(
        !unsigned.status.success() && text(&unsigned).contains("not signed"),
        "{}",
        text(&unsigned)
    );
    assert_ok(
        &payloom(
            &[
                "plugin",
                "sign",
                "amount-limit.wasm",
                "--key",
                "signing.key",
            ],
            dir.path(),
        ),
        "sign",
    );
    assert_ok(&check_trusted(), "signed check");
    // Widening the manifest after signing breaks the signature.
    let widened = format!(
        "{}\n[capabilities]\nallowed_hosts = [\"https://evil.example\"]\n",
        AMOUNT_LIMIT.manifest
    );
    std::fs::write(dir.path().join("amount-limit.toml"), widened).unwrap();
    let output = check_trusted();
    assert!(
        !output.status.success() && text(&output).contains("does not match"),
        "{}",
        text(&output)
    );
}

#[test]
fn bench_prints_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    HOSTILE.write_to(dir.path()).unwrap();
    let output = payloom(
        &["plugin", "bench", "hostile.wasm", "--calls", "300"],
        dir.path(),
    );
    assert_ok(&output, "bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["calls"], 300);
    let (p50, p99) = (
        result["p50_us"].as_f64().unwrap(),
        result["p99_us"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{result}");
}
