//! `payloom plugin …`

mod inspect;
mod ops;
mod scaffold;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use payloom_host::PluginKind;
use payloom_plugin_kit::Runner;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin crate that builds and passes its own tests as generated.
    New {
        /// What kind of plugin.
        kind: Kind,
        /// Plugin id: lower-case letters, digits and `-`.
        name: String,
        /// Parent directory of the new crate.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the payloom-sdk crate (defaults to this checkout's `sdk/guest`).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate into a component with no WASI imports.
    Build {
        /// The crate directory (holding Cargo.toml and plugin.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Validate a component: manifest, signature, imports, world, smoke test. Exit 0 when valid.
    Check(inspect::Target),
    /// Run fixture calls under production limits and report each one as JSON.
    Run {
        #[command(flatten)]
        target: inspect::Target,
        /// A fixture (`{"call", "input", "context"}`) or an array of them.
        #[arg(long)]
        fixture: PathBuf,
        /// Recorded HTTP exchanges that answer `http.send`.
        #[arg(long)]
        exchanges: Option<PathBuf>,
    },
    /// Run the channel conformance suite. Exit 0 when every check passes.
    Conformance {
        #[command(flatten)]
        target: inspect::Target,
        /// The adapter's scenarios (`conformance.json`).
        #[arg(long)]
        scenarios: PathBuf,
        /// Recorded HTTP exchanges that answer `http.send`.
        #[arg(long)]
        exchanges: Option<PathBuf>,
    },
    /// Benchmark fresh-instance calls; prints one JSON line with p50/p99 in microseconds.
    Bench {
        #[command(flatten)]
        target: inspect::Target,
        /// The call to benchmark (default: describe).
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// Measured calls.
        #[arg(long, default_value_t = 5000)]
        calls: usize,
        /// Concurrent callers.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Create an ed25519 signing key; prints the public key to trust.
    Keygen {
        /// Where to write the secret key (hex).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component and its manifest; writes `<component>.sig` beside them.
    Sign {
        #[command(flatten)]
        target: inspect::Target,
        /// The secret key file from `payloom plugin keygen`.
        #[arg(long)]
        key: PathBuf,
    },
    /// Operations through the admin API: push, list, status, activate, canary, promote,
    /// rollback.
    #[command(flatten)]
    Ops(ops::OpsCommand),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A payment-channel adapter (`channel-adapter`).
    Channel,
    /// A risk rule (`risk-rule`).
    Risk,
    /// A merchant policy (`merchant-policy`).
    Policy,
}

impl From<Kind> for PluginKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Channel => PluginKind::Channel,
            Kind::Risk => PluginKind::Risk,
            Kind::Policy => PluginKind::Policy,
        }
    }
}

pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New {
            kind,
            name,
            dir,
            sdk,
        } => {
            let created = scaffold::create(kind.into(), &name, &dir, sdk.as_deref())?;
            println!("created {}", created.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { dir } => {
            let (wasm, manifest) = build(&dir)?;
            println!("{}\n{}", wasm.display(), manifest.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Keygen { out } => keygen(&out),
        PluginCommand::Ops(command) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ops::run(command)),
        command => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(inspect::run(command)),
    }
}

/// Builds the crate in `dir`; returns the component and manifest paths.
pub fn build(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let manifest_text =
        std::fs::read_to_string(dir.join("plugin.toml")).context("reading plugin.toml")?;
    let manifest = payloom_host::Manifest::parse(&manifest_text)?;
    let cargo_toml =
        std::fs::read_to_string(dir.join("Cargo.toml")).context("reading Cargo.toml")?;
    let package = cargo_toml
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("name = ")
                .map(|n| n.trim_matches('"').to_owned())
        })
        .context("Cargo.toml has no package name")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let build = payloom_plugin_build::Build {
        manifest_path: &dir.join("Cargo.toml"),
        packages: &[&package],
        target_dir: &target_dir,
        target: payloom_plugin_build::Target::Component,
    };
    let component = build.run()?.remove(0);
    let out = dir.join("dist");
    std::fs::create_dir_all(&out)?;
    let wasm = out.join(format!("{}.wasm", manifest.id));
    let toml = out.join(format!("{}.toml", manifest.id));
    std::fs::write(&wasm, component)?;
    std::fs::write(&toml, manifest_text)?;
    Ok((wasm, toml))
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    std::fs::write(out, hex::encode(seed))?;
    println!("{}", hex::encode(key.verifying_key().as_bytes()));
    Ok(ExitCode::SUCCESS)
}

/// Used by `run`, `conformance` and `bench`.
fn runner(exchanges: Option<&Path>) -> anyhow::Result<Runner> {
    let exchanges = match exchanges {
        Some(path) => serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("parsing {}", path.display()))?,
        None => Vec::new(),
    };
    Runner::new(exchanges)
}
