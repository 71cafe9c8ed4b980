//! `payloom bench topology`: the payments benchmark against `dev` (every service in one
//! process, calls in memory, events on the in-process bus) and against the split topology
//! (every registered service its own `serve` process, mutual TLS between them, events
//! through Kafka, counters in Redis, a database per service as the origin deploys them),
//! back to back on the same PostgreSQL server, each on fresh databases, beside the
//! 5-insert baseline. The ratio is what the split costs a payment.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use payloom_channel_adapter::ChannelHttp;
use payloom_merchant_auth::MerchantAuthHttp;
use payloom_platform::Db;
use payloom_platform::client::ServiceClient;
use payloom_platform::db::PoolOptions;
use payloom_platform::ids::random_hex;
use payloom_platform::tls::ServiceIdentity;

use super::{Run, baseline, header, report, run_payments};
use crate::dev::{CREDENTIALS_FILE, DevAdmin, DevCredentials, new_merchant};

#[derive(clap::Args)]
pub struct TopologyArgs {
    /// A PostgreSQL server (any database on it): each topology gets a fresh database
    /// there, dropped afterwards.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// The Kafka bootstrap servers of the split topology.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Seconds of measured load per topology (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 24)]
    pub concurrency: usize,
    /// Times each topology is measured, alternating (dev, split, dev, split, …).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
}

/// Child processes, killed when dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn run(args: TopologyArgs) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let result = rounds(&args, work.path()).await;
    if result.is_err() {
        // The processes' logs say why; keep them.
        eprintln!("logs kept in {}", work.keep().display());
    }
    result
}

async fn rounds(args: &TopologyArgs, work: &Path) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.duration_secs);
    println!(
        "payloom bench topology: {}s at concurrency {}, {} round(s)",
        args.duration_secs, args.concurrency, args.rounds
    );
    header();
    let mut rates = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let dir = work.join(format!("round-{round}"));
        let database = Database::create(&args.postgres).await?;
        let mut dev = run_dev(args, &dir.join("dev"), &database.url, duration).await?;
        report(&format!("dev, round {round}"), &mut dev);
        database.drop().await?;
        let database = Database::create(&args.postgres).await?;
        let mut split = run_split(args, &dir.join("split"), &database.url, duration).await?;
        report(&format!("split, round {round}"), &mut split);
        let mut base = baseline(&database.url, args.concurrency, duration, 5).await?;
        report("5-insert transaction", &mut base);
        database.drop().await?;
        rates.0.push(dev.rate());
        rates.1.push(split.rate());
        let base = base.rate().max(f64::MIN_POSITIVE);
        println!(
            "round {round}: split / dev {:.2}; per raw 5-insert transaction: dev {:.3}, split {:.3}",
            split.rate() / dev.rate().max(f64::MIN_POSITIVE),
            dev.rate() / base,
            split.rate() / base
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "split / dev, mean payments/s: {:.0} / {:.0} = {:.2}",
        mean(&rates.1),
        mean(&rates.0),
        mean(&rates.1) / mean(&rates.0).max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// `payloom dev` on `database`, measured.
async fn run_dev(
    args: &TopologyArgs,
    dir: &Path,
    database: &str,
    duration: Duration,
) -> anyhow::Result<Run> {
    let listen = free_port()?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("dev")
        .args(["--listen", &listen.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .args(["--database-url", database, "--redis-url", &args.redis_url]);
    let _dev = Processes(vec![start(command, "payloom dev listening on ", dir)?]);
    let credentials = crate::demo::load_credentials(dir)?;
    run_payments(&Arc::new(credentials), args.concurrency, duration).await
}

/// Every registered service as its own `serve` process on a database of its own on the
/// server of `database`, measured.
async fn run_split(
    args: &TopologyArgs,
    dir: &Path,
    database: &str,
    duration: Duration,
) -> anyhow::Result<Run> {
    let certs = dir.join("certs");
    crate::certs::run(crate::certs::CertsCommand::Init(crate::certs::InitArgs {
        dir: certs.clone(),
        force: false,
        days: 1,
    }))?;
    let mut own = Vec::new();
    for name in crate::services::registered().names() {
        own.push((name, Database::create(database).await?));
    }
    let run = measure_split(args, dir, database, &own, duration).await;
    for (_, db) in own {
        db.drop().await?;
    }
    run
}

async fn measure_split(
    args: &TopologyArgs,
    dir: &Path,
    database: &str,
    own: &[(&str, Database)],
    duration: Duration,
) -> anyhow::Result<Run> {
    let (_processes, endpoints) = start_split(args, dir, database, own)?;
    let credentials = bootstrap(&dir.join("certs"), &endpoints).await?;
    std::fs::write(
        dir.join(CREDENTIALS_FILE),
        serde_json::to_vec_pretty(&credentials)?,
    )?;
    run_payments(&Arc::new(credentials), args.concurrency, duration).await
}

/// Starts every service in its own process. A free port can be taken by another process
/// between being chosen and being bound; then the services start again on new ports.
fn start_split(
    args: &TopologyArgs,
    dir: &Path,
    database: &str,
    own: &[(&str, Database)],
) -> anyhow::Result<(Processes, Endpoints)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (config, endpoints) = split_config(args, dir, own)?;
        match start_services(dir, database, &config) {
            Ok(processes) => return Ok((processes, endpoints)),
            Err(e) if attempts < 3 => eprintln!("starting the split again: {e:#}"),
            Err(e) => return Err(e),
        }
    }
}

/// The registered services, callees first, each waited for before the next.
fn start_services(dir: &Path, database: &str, config: &Path) -> anyhow::Result<Processes> {
    let certs = dir.join("certs");
    let services = crate::services::registered();
    let mut processes = Processes(Vec::new());
    for service in services.start_order(&services.names())? {
        let name = service.manifest().name;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve", name, "--certs"])
            .arg(&certs)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(dir.join(name))
            .args(["--database-url", database]);
        let marker = format!("payloom serve: {name} listening on ");
        processes.0.push(start(command, &marker, &dir.join(name))?);
    }
    Ok(processes)
}

/// Each service's public and internal address, by name.
struct Endpoints(Vec<(&'static str, SocketAddr, SocketAddr)>);

impl Endpoints {
    fn of(&self, name: &str) -> (SocketAddr, SocketAddr) {
        let (_, public, internal) = self
            .0
            .iter()
            .find(|(n, _, _)| *n == name)
            .expect("registered");
        (*public, *internal)
    }

    fn public(&self, name: &str) -> String {
        format!("http://{}", self.of(name).0)
    }

    fn internal(&self, name: &str) -> String {
        format!("https://{}", self.of(name).1)
    }
}

/// The split topology's configuration: fresh secrets, two free ports and a database per
/// service, Kafka with a consumer group of this run, Redis. Ten processes on one
/// PostgreSQL server share its connections (100 by default), so each pool gets nine where
/// `dev`'s one pool has 32.
fn split_config(
    args: &TopologyArgs,
    dir: &Path,
    databases: &[(&str, Database)],
) -> anyhow::Result<(PathBuf, Endpoints)> {
    let mut config = format!(
        "[plugins]\nallow_unsigned = true\n[security]\nmaster_key = \"{}\"\n\
         admin_jwt_secret = \"{}\"\n[database]\nmax_connections = 9\n[redis]\nurl = \"{}\"\n\
         [events]\nkafka_brokers = \"{}\"\n\
         consumer_group = \"bench-{}\"\n",
        random_hex(32),
        random_hex(32),
        args.redis_url,
        args.kafka_brokers,
        random_hex(6)
    );
    let mut endpoints = Endpoints(Vec::new());
    for name in crate::services::registered().names() {
        let (public, internal) = (free_port()?, free_port()?);
        let (_, database) = databases
            .iter()
            .find(|(n, _)| *n == name)
            .context("a database per service")?;
        config.push_str(&format!(
            "[services.{name}]\nlisten = \"{public}\"\ninternal_listen = \"{internal}\"\n\
             url = \"https://{internal}\"\ndatabase_url = \"{}\"\n",
            database.url
        ));
        endpoints.0.push((name, public, internal));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, config)?;
    Ok((path, endpoints))
}

/// A merchant with a key and sandbox credentials, made through the internal APIs with
/// the admin console's certificate (the service that may make them).
async fn bootstrap(certs: &Path, endpoints: &Endpoints) -> anyhow::Result<DevCredentials> {
    let identity = ServiceIdentity::load(certs, "admin-bff")?;
    let auth = MerchantAuthHttp(ServiceClient::with_identity(
        &endpoints.internal("merchant-auth"),
        &identity,
    )?);
    let channels = ChannelHttp(ServiceClient::with_identity(
        &endpoints.internal("channel-adapter"),
        &identity,
    )?);
    Ok(DevCredentials {
        merchant: new_merchant(&auth, &channels, "Bench Shop").await?,
        admin: DevAdmin {
            username: String::new(),
            password: String::new(),
        },
        base_url: endpoints.public("payment-gateway"),
    })
}

/// Starts `command` and waits for the line starting with `marker` on its stdout. Its
/// warnings go to `stderr.log` in its data directory, not into the results.
fn start(mut command: Command, marker: &str, dir: &Path) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::File::create(dir.join("stderr.log"))?;
    let mut child = command
        .env("PAYLOOM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting a payloom process")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with(marker) => break,
            Some(Ok(_)) => continue,
            _ => {
                let _ = child.kill();
                anyhow::bail!("a payloom process exited before printing {marker:?}");
            }
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(child)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A database of its own on the benchmark's PostgreSQL server.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(server: &str) -> anyhow::Result<Self> {
        let name = format!("payloom_bench_{}", random_hex(6));
        let admin = Db::connect(server, &PoolOptions::default()).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(admin.pool())
            .await?;
        let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
        Ok(Self {
            server: server.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    async fn drop(self) -> anyhow::Result<()> {
        let admin = Db::connect(&self.server, &PoolOptions::default()).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(admin.pool())
        .await?;
        Ok(())
    }
}
