//! Builds plugin crates into WebAssembly components.
//!
//! Rust plugins are compiled for `wasm32-unknown-unknown` and encoded as components
//! with `wit-component`: no WASI imports, smaller, and cheaper per call than
//! `wasm32-wasip2` builds (there a reachable panic pulls in 13 WASI interfaces).
//! `wasm32-wasip2` stays available for guests that want std's I/O.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// Which target a guest is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `wasm32-unknown-unknown`, then encoded as a component. The SDK default.
    Component,
    /// `wasm32-wasip2`: rustc emits a component that imports WASI.
    Wasip2,
}

impl Target {
    fn triple(self) -> &'static str {
        match self {
            Self::Component => "wasm32-unknown-unknown",
            Self::Wasip2 => "wasm32-wasip2",
        }
    }
}

/// The cargo profile guests build with (small, `panic = "abort"`); every plugin
/// workspace defines it.
pub const PROFILE: &str = "plugin";

/// Memory layout of SDK components: a 256 KiB stack (Rust's default is 1 MiB; plugins
/// recurse little) and 1 MiB of initial memory, so a typical call allocates from memory
/// the component already has and never grows it (see the SDK's allocator).
const LINK_ARGS: &[&str] = &[
    "-C",
    "link-arg=-zstack-size=262144",
    "-C",
    "link-arg=--initial-memory=1048576",
];

/// One cargo invocation building several packages of one workspace.
pub struct Build<'a> {
    /// The workspace (or package) `Cargo.toml`.
    pub manifest_path: &'a Path,
    /// Packages to build.
    pub packages: &'a [&'a str],
    /// Cargo target directory for the guest build (keep it apart from the host's, so a
    /// build script can run this without waiting on its own build's lock).
    pub target_dir: &'a Path,
    /// Target.
    pub target: Target,
}

impl Build<'_> {
    /// Builds the packages; returns each one's component bytes, in order.
    ///
    /// Guest crates are plain libraries (so `cargo test` works natively); the cdylib
    /// that becomes the component is requested here with `cargo rustc --crate-type`.
    pub fn run(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        ensure_target(self.target)?;
        for package in self.packages {
            let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            scrub_cargo_env(&mut cmd);
            cmd.arg("rustc")
                .arg("--manifest-path")
                .arg(self.manifest_path)
                .args(["-p", package, "--lib", "--crate-type", "cdylib"])
                .args(["--target", self.target.triple(), "--profile", PROFILE])
                .arg("--target-dir")
                .arg(self.target_dir);
            if self.target == Target::Component {
                cmd.arg("--").args(LINK_ARGS);
            }
            let status = cmd.status().context("running cargo for the plugin build")?;
            anyhow::ensure!(status.success(), "cargo build of {package} failed");
        }
        self.packages
            .iter()
            .map(|package| self.component(package))
            .collect()
    }

    fn component(&self, package: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.artifact(package);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        match self.target {
            Target::Wasip2 => Ok(bytes),
            Target::Component => {
                encode_component(&bytes).with_context(|| format!("encoding {package}"))
            }
        }
    }

    /// Where cargo puts the core module (or wasip2 component) of `package`.
    pub fn artifact(&self, package: &str) -> PathBuf {
        self.target_dir
            .join(self.target.triple())
            .join(PROFILE)
            .join(format!("{}.wasm", package.replace('-', "_")))
    }
}

/// Encodes a core module carrying wit-bindgen's component-type section as a component.
pub fn encode_component(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}

/// Installs the rustup target if this toolchain lacks it.
pub fn ensure_target(target: Target) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target.triple()])
        .output();
    if let Ok(out) = libdir {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.is_dir() {
            return Ok(());
        }
    }
    let status = Command::new("rustup")
        .args(["target", "add", target.triple()])
        .status()
        .context("installing the wasm target needs rustup")?;
    anyhow::ensure!(
        status.success(),
        "rustup target add {} failed",
        target.triple()
    );
    Ok(())
}

/// Drops the variables an outer cargo (or clippy) sets for build scripts, so the inner
/// build is an ordinary one for the wasm target.
fn scrub_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = (key.starts_with("CARGO_")
            && !matches!(key, "CARGO_HOME" | "CARGO_NET_OFFLINE"))
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
            );
        if outer {
            cmd.env_remove(key);
        }
    }
}
