//! Implementations depend on contracts, never on each other: a service's crate may name
//! the platform, the plugin host, the egress guard and contract crates, but not another
//! service's implementation; a contract names only the platform, the payment facts and
//! other contracts. Only the `payloom` binary, which composes them, sees every service.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Shared libraries any implementation may use.
const LIBRARIES: [&str; 3] = ["payloom-platform", "payloom-host", "payloom-egress"];
/// The crates a contract may name besides other contracts.
const CONTRACT_LIBRARIES: [&str; 1] = ["payloom-platform"];

struct Package {
    name: String,
    dir: PathBuf,
    /// Normal (not dev, not build) dependencies on workspace crates.
    uses: Vec<String>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn packages() -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = workspace();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let dir = manifest
                .parent()
                .unwrap()
                .strip_prefix(&root)
                .unwrap()
                .to_owned();
            let uses = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null() && d["path"].is_string())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            Package {
                name: p["name"].as_str().unwrap().to_owned(),
                dir,
                uses,
            }
        })
        .collect()
}

fn is_contract(p: &Package) -> bool {
    p.dir.starts_with("contracts")
}

/// A service implementation: a crate under `services/` or `bff/` that is not a shared
/// library or the binary that composes them.
fn is_implementation(p: &Package) -> bool {
    (p.dir.starts_with("services") || p.dir.starts_with("bff"))
        && !LIBRARIES.contains(&p.name.as_str())
        && p.name != "payloom"
}

#[test]
fn implementations_depend_on_contracts_never_on_each_other() {
    let all = packages();
    let contracts: Vec<&str> = all
        .iter()
        .filter(|p| is_contract(p))
        .map(|p| p.name.as_str())
        .collect();
    let implementations: Vec<&Package> = all.iter().filter(|p| is_implementation(p)).collect();
    assert!(implementations.len() >= 10, "every service is seen");
    assert!(contracts.len() >= 9, "every contract is seen");
    let mut wrong = Vec::new();
    for p in &implementations {
        for dep in &p.uses {
            if !(LIBRARIES.contains(&dep.as_str()) || contracts.contains(&dep.as_str())) {
                wrong.push(format!("{} depends on {dep}", p.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "implementations naming implementations: {wrong:#?}"
    );
}

#[test]
fn contracts_name_no_implementation_and_no_plugin_runtime() {
    let all = packages();
    let contracts: Vec<&Package> = all.iter().filter(|p| is_contract(p)).collect();
    let names: Vec<&str> = contracts.iter().map(|p| p.name.as_str()).collect();
    let mut wrong = Vec::new();
    for p in &contracts {
        for dep in &p.uses {
            if !(CONTRACT_LIBRARIES.contains(&dep.as_str()) || names.contains(&dep.as_str())) {
                wrong.push(format!("{} depends on {dep}", p.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "contracts naming more than contracts: {wrong:#?}"
    );
}
