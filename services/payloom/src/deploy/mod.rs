//! `payloom deploy`: the deployment files that follow from the service registry. Every
//! registered service gets its container, its database, its certificate mounts, its
//! Prometheus scrape job and, when it serves public routes, its Kong route; a service
//! appears everywhere by being registered. `--check` compares the committed files with
//! what the registry generates, so a change to either that forgets the other fails.

mod compose;
mod kong;
mod prometheus;

use std::path::{Path, PathBuf};

use anyhow::Context;
use payloom_platform::registry::{INTERNAL_PORT_OFFSET, Manifest};

#[derive(clap::Subcommand)]
pub enum DeployCommand {
    /// Write the generated files under `compose/` (or check them with `--check`).
    Generate(GenerateArgs),
    /// Print a Prometheus configuration scraping registered services where they run,
    /// e.g. the listeners of `dev --split`.
    Prometheus(PrometheusArgs),
}

#[derive(clap::Args)]
pub struct PrometheusArgs {
    /// `<service>=<host:port>` of a service's public listener, once per service.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// How often each target is scraped.
    #[arg(long, default_value = "15s")]
    pub scrape_interval: String,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The folder the files go under (the repository's `compose/`).
    #[arg(long, default_value = "compose")]
    pub dir: PathBuf,
    /// Write nothing; fail, naming each file, when one differs from what is generated.
    #[arg(long)]
    pub check: bool,
}

/// The generated files: their path under the folder, and their contents.
pub fn generated() -> Vec<(&'static str, String)> {
    let services = crate::services::registered();
    let manifests: Vec<&Manifest> = services.manifests().collect();
    vec![
        ("payloom.toml", compose::settings(&manifests)),
        (
            "docker-compose.services.yml",
            compose::services(&services, false),
        ),
        ("docker-compose.bff.yml", compose::services(&services, true)),
        ("postgres/init.sql", compose::databases(&manifests)),
        ("prometheus/prometheus.yml", prometheus::config(&manifests)),
        ("kong/kong.yml", kong::config(&manifests)),
    ]
}

pub fn run(command: DeployCommand) -> anyhow::Result<()> {
    let args = match command {
        DeployCommand::Generate(args) => args,
        DeployCommand::Prometheus(args) => return scrape_elsewhere(&args),
    };
    let files = generated();
    if args.check {
        return check(&args.dir, &files);
    }
    for (name, contents) in &files {
        let path = args.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn scrape_elsewhere(args: &PrometheusArgs) -> anyhow::Result<()> {
    let services = crate::services::registered();
    let mut jobs = Vec::new();
    for target in &args.targets {
        let (name, address) = target
            .split_once('=')
            .with_context(|| format!("--target {target}: expected <service>=<host:port>"))?;
        let manifest = services.manifest(name)?;
        anyhow::ensure!(
            address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
            "--target {target}: {address} is not host:port"
        );
        jobs.push((manifest.name.to_owned(), address.to_owned()));
    }
    print!("{}", prometheus::render(&jobs, &args.scrape_interval, None));
    Ok(())
}

fn check(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    let stale: Vec<String> = files
        .iter()
        .filter(|(name, contents)| {
            std::fs::read_to_string(dir.join(name)).ok().as_ref() != Some(contents)
        })
        .map(|(name, _)| dir.join(name).display().to_string())
        .collect();
    anyhow::ensure!(
        stale.is_empty(),
        "not what the service registry generates: {} (run `payloom deploy generate`)",
        stale.join(", ")
    );
    println!("{} files match the service registry", files.len());
    Ok(())
}

/// The network every container joins; a service is `<name>.payment-network` on it, the
/// name its certificate carries.
pub const NETWORK: &str = payloom_platform::tls::NETWORK_DOMAIN;

/// `name`'s address on the deployment's network.
pub fn host(name: &str) -> String {
    format!("{name}.{NETWORK}")
}

/// Where a service's internal (mutual TLS) listener is.
pub fn internal_port(manifest: &Manifest) -> u16 {
    manifest.port + INTERNAL_PORT_OFFSET
}

/// The service's database on the deployment's PostgreSQL.
pub fn database(name: &str) -> String {
    format!("payloom_{}", name.replace('-', "_"))
}
