//! Builds every reference plugin (and the test guests) to components when this crate is
//! built, so `cargo build` needs no manual step.

use std::path::{Path, PathBuf};

use payloom_plugin_build::{Build, Target};

/// (package, source dir under `plugins/`, component file name)
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

    let paths = Paths {
        manifest: root.join("Cargo.toml"),
        target_dir,
        out,
        plugins_dir,
    };
    paths.build(PLUGINS, Target::Component);
    paths.build(TEST_GUESTS, Target::Component);
    paths.build(
        &[("payloom-test-snoop", "testing/snoop", "snoop")],
        Target::Wasip2,
    );
}

struct Paths {
    manifest: PathBuf,
    target_dir: PathBuf,
    out: PathBuf,
    plugins_dir: PathBuf,
}

impl Paths {
    /// Builds `guests` and writes `<name>.wasm` + `<name>.toml` into `OUT_DIR`.
    fn build(&self, guests: &[(&str, &str, &str)], target: Target) {
        let packages: Vec<&str> = guests.iter().map(|g| g.0).collect();
        let built = Build {
            manifest_path: &self.manifest,
            packages: &packages,
            target_dir: &self.target_dir,
            target,
        }
        .run()
        .unwrap_or_else(|e| panic!("building {packages:?}: {e:#}"));
        for ((_, dir, name), component) in guests.iter().zip(built) {
            write(
                &self.out,
                name,
                &component,
                &self.plugins_dir.join(dir).join("plugin.toml"),
            );
        }
    }
}

fn write(out: &Path, name: &str, component: &[u8], manifest: &Path) {
    std::fs::write(out.join(format!("{name}.wasm")), component).unwrap();
    std::fs::copy(manifest, out.join(format!("{name}.toml"))).unwrap();
}
