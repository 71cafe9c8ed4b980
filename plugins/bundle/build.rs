//! Builds every reference plugin (and the test guests) to components when this crate is
//! built, so `cargo build` needs no manual step.

use std::path::{Path, PathBuf};

use payloom_plugin_build::{Build, Target};

/// (package, source dir, component file name)
const PLUGINS: &[(&str, &str, &str)] = &[
    ("payloom-channel-sandbox", "channels/sandbox", "sandbox"),
    (
        "payloom-risk-amount-limit",
        "risk/amount-limit",
        "amount-limit",
    ),
    ("payloom-risk-velocity", "risk/velocity", "velocity"),
    ("payloom-risk-blocklist", "risk/blocklist", "blocklist"),
    ("payloom-policy-standard", "policies/standard", "standard"),
];

/// Guests for the host's tests, built the SDK way.
const TEST_GUESTS: &[(&str, &str, &str)] = &[
    ("payloom-test-hostile", "testing/hostile", "hostile"),
    ("payloom-test-fetcher", "testing/fetcher", "fetcher"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let plugins_dir = manifest_dir.parent().unwrap().to_owned();
    let root = plugins_dir.parent().unwrap().to_owned();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugin-build");
    for dir in [
        "plugins/channels",
        "plugins/risk",
        "plugins/policies",
        "plugins/testing",
        "sdk/guest",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let manifest_path = root.join("Cargo.toml");
    let packages: Vec<&str> = PLUGINS.iter().map(|p| p.0).collect();
    let built = Build {
        manifest_path: &manifest_path,
        packages: &packages,
        target_dir: &target_dir,
        target: Target::Component,
    }
    .run()
    .unwrap_or_else(|e| panic!("building the reference plugins: {e:#}"));
    for ((_, dir, name), component) in PLUGINS.iter().zip(built) {
        write(
            &out,
            name,
            &component,
            &plugins_dir.join(dir).join("plugin.toml"),
        );
    }

    let tests: Vec<&str> = TEST_GUESTS.iter().map(|p| p.0).collect();
    let built = Build {
        manifest_path: &manifest_path,
        packages: &tests,
        target_dir: &target_dir,
        target: Target::Component,
    }
    .run()
    .unwrap_or_else(|e| panic!("building the test guests: {e:#}"));
    for ((_, dir, name), component) in TEST_GUESTS.iter().zip(built) {
        write(
            &out,
            name,
            &component,
            &plugins_dir.join(dir).join("plugin.toml"),
        );
    }

    let snoop = Build {
        manifest_path: &manifest_path,
        packages: &["payloom-test-snoop"],
        target_dir: &target_dir,
        target: Target::Wasip2,
    }
    .run()
    .unwrap_or_else(|e| panic!("building the test guests: {e:#}"));
    write(
        &out,
        "snoop",
        &snoop[0],
        &plugins_dir.join("testing/snoop/plugin.toml"),
    );
}

fn write(out: &Path, name: &str, component: &[u8], manifest: &Path) {
    std::fs::write(out.join(format!("{name}.wasm")), component).unwrap();
    std::fs::copy(manifest, out.join(format!("{name}.toml"))).unwrap();
}
