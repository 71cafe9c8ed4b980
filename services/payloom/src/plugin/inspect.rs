//! Subcommands that load a component: check, run, conformance, bench, sign.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use payloom_host::{Call, Plugin, PluginKind, Reply, Runtime};
use payloom_plugin_kit::{Fixture, bench, conformance};

use super::PluginCommand;

/// A component and the files beside it.
#[derive(Args)]
pub struct Target {
    /// The component (`.wasm`).
    pub component: PathBuf,
    /// Its manifest; default: `<component>.toml` beside it, else inferred from the
    /// component's exports and `describe`.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Signature file; default: `<component>.sig` beside it, when present.
    #[arg(long)]
    pub signature: Option<PathBuf>,
    /// Require a valid signature by this ed25519 public key (hex); repeatable.
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<String>,
}

/// A component read from disk, with its manifest text.
struct Loaded {
    wasm: Vec<u8>,
    manifest: String,
    signature: Option<String>,
}

impl Target {
    async fn read(&self, runtime: &Runtime) -> anyhow::Result<Loaded> {
        let wasm = std::fs::read(&self.component)
            .with_context(|| format!("reading {}", self.component.display()))?;
        let beside = self.component.with_extension("toml");
        let manifest = match (&self.manifest, beside.exists()) {
            (Some(path), _) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            (None, true) => std::fs::read_to_string(&beside)?,
            (None, false) => infer_manifest(runtime, &wasm).await?,
        };
        let sig_path = self
            .signature
            .clone()
            .unwrap_or_else(|| self.component.with_extension("sig"));
        let signature = match (self.signature.is_some(), sig_path.exists()) {
            (true, _) | (false, true) => Some(
                std::fs::read_to_string(&sig_path)
                    .with_context(|| format!("reading {}", sig_path.display()))?,
            ),
            _ => None,
        };
        Ok(Loaded {
            wasm,
            manifest,
            signature,
        })
    }

    fn runtime_config(&self) -> payloom_host::HostConfig {
        payloom_host::HostConfig {
            allow_unsigned: self.trusted_keys.is_empty(),
            trusted_keys: self.trusted_keys.clone(),
            ..Default::default()
        }
    }
}

/// The world a component exports, from its export names.
fn exported_world(runtime: &Runtime, wasm: &[u8]) -> anyhow::Result<PluginKind> {
    let component = wasmtime::component::Component::new(runtime.engine(), wasm)?;
    let exports: Vec<String> = component
        .component_type()
        .exports(runtime.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    let has = |interface: &str| {
        exports
            .iter()
            .any(|e| e.starts_with(&format!("payloom:plugin/{interface}@")))
    };
    match (has("channel"), has("rule"), has("policy")) {
        (true, false, false) => Ok(PluginKind::Channel),
        (false, true, false) => Ok(PluginKind::Risk),
        (false, false, true) => Ok(PluginKind::Policy),
        _ => {
            anyhow::bail!("component exports {exports:?}, not exactly one payloom plugin interface")
        }
    }
}

/// A manifest with the identity `describe` reports and no capabilities.
async fn infer_manifest(runtime: &Runtime, wasm: &[u8]) -> anyhow::Result<String> {
    let world = exported_world(runtime, wasm)?;
    let probe = format!(
        "id = \"probe\"\nworld = \"{}\"\nversion = \"0.0.0\"\n",
        world.world()
    );
    let plugin = runtime.prepare(wasm, &probe, None).await?;
    let report = runtime
        .call(&plugin, Default::default(), Call::describe(world))
        .await?;
    let (id, version) = match report.reply {
        Reply::ChannelDescriptor(d) => (d.id, d.version),
        Reply::RiskDescriptor(d) => (d.id, d.version),
        Reply::PolicyDescriptor(d) => (d.id, d.version),
        other => anyhow::bail!("describe answered {other:?}"),
    };
    Ok(format!(
        "id = \"{id}\"\nworld = \"{}\"\nversion = \"{version}\"\n",
        world.world()
    ))
}

async fn load(runtime: &Runtime, target: &Target) -> anyhow::Result<Arc<Plugin>> {
    let loaded = target.read(runtime).await?;
    runtime
        .load(&loaded.wasm, &loaded.manifest, loaded.signature.as_deref())
        .await
}

pub async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check(target) => check(&target).await,
        PluginCommand::Run {
            target,
            fixture,
            exchanges,
        } => run_fixtures(&target, &fixture, exchanges.as_deref()).await,
        PluginCommand::Conformance {
            target,
            scenarios,
            exchanges,
        } => run_conformance(&target, &scenarios, exchanges.as_deref()).await,
        PluginCommand::Bench {
            target,
            fixture,
            calls,
            threads,
        } => run_bench(&target, fixture.as_deref(), calls, threads).await,
        PluginCommand::Sign { target, key } => sign(&target, &key).await,
        PluginCommand::New { .. }
        | PluginCommand::Build { .. }
        | PluginCommand::Keygen { .. }
        | PluginCommand::Ops(_) => unreachable!("handled before"),
    }
}

async fn check(target: &Target) -> anyhow::Result<ExitCode> {
    let runner = payloom_plugin_kit::Runner::with_config(target.runtime_config(), vec![])?;
    match load(runner.runtime(), target).await {
        Ok(plugin) => {
            let info = plugin.info();
            let wasi = if info.uses_wasi {
                "imports WASI (served locked down)"
            } else {
                "no WASI imports"
            };
            println!(
                "ok: {}@{} ({}), {} bytes, {wasi}, sha256 {}",
                plugin.id(),
                plugin.version(),
                plugin.kind(),
                info.size_bytes,
                info.digest
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("invalid: {err:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read_fixtures(path: &Path) -> anyhow::Result<Vec<Fixture>> {
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()?,
        single => vec![serde_json::from_value(single)?],
    })
}

async fn run_fixtures(
    target: &Target,
    fixture: &Path,
    exchanges: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let runner = super::runner(exchanges)?;
    let plugin = load(runner.runtime(), target).await?;
    let mut all_ok = true;
    for fixture in read_fixtures(fixture)? {
        let report = runner.run(&plugin, &fixture).await?;
        all_ok &= report.ok;
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_conformance(
    target: &Target,
    scenarios: &Path,
    exchanges: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let runner = super::runner(exchanges)?;
    let plugin = load(runner.runtime(), target).await?;
    anyhow::ensure!(
        plugin.kind() == PluginKind::Channel,
        "the conformance suite is for channel adapters"
    );
    let scenarios =
        serde_json::from_slice(&std::fs::read(scenarios)?).context("parsing the scenarios")?;
    let report = conformance::run(&runner, &plugin, &scenarios).await?;
    for check in &report.checks {
        let mark = if check.passed { "pass" } else { "FAIL" };
        println!(
            "{mark}  {}{}",
            check.name,
            if check.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", check.detail)
            }
        );
    }
    let failed = report.failures().len();
    println!("{} passed, {failed} failed", report.checks.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_bench(
    target: &Target,
    fixture: Option<&Path>,
    calls: usize,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        calls > 0 && threads > 0,
        "--calls and --threads must be positive"
    );
    let runner = super::runner(None)?;
    let plugin = load(runner.runtime(), target).await?;
    let (name, ctx, call) = match fixture {
        Some(path) => {
            let fixture = read_fixtures(path)?.remove(0);
            let call = payloom_plugin_kit::runner::fixture_call(plugin.kind(), &fixture)?;
            (
                fixture.call.clone(),
                fixture.context.to_call_context()?,
                call,
            )
        }
        None => (
            "describe".to_owned(),
            Default::default(),
            Call::describe(plugin.kind()),
        ),
    };
    let label = format!("{}@{} {name}", plugin.id(), plugin.version());
    let result =
        bench::fresh_instance(runner.runtime(), &plugin, &label, ctx, call, calls, threads).await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}

async fn sign(target: &Target, key_path: &Path) -> anyhow::Result<ExitCode> {
    let seed: [u8; 32] = hex::decode(std::fs::read_to_string(key_path)?.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} does not hold a 32-byte hex key", key_path.display()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let wasm = std::fs::read(&target.component)?;
    let manifest_path = target
        .manifest
        .clone()
        .unwrap_or_else(|| target.component.with_extension("toml"));
    let manifest = std::fs::read(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let out = target.component.with_extension("sig");
    std::fs::write(&out, payloom_host::signing::sign(&key, &wasm, &manifest))?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}
