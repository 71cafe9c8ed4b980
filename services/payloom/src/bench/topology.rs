//! `payloom bench topology`: the payments benchmark against `dev` (every service in one
//! process, calls in memory, events on the in-process bus) and against the split topology
//! (every registered service its own `serve` process, mutual TLS between them, events
//! through Kafka, counters in Redis, a database per service as the origin deploys them),
//! back to back on the same PostgreSQL server, each on fresh databases, beside the
//! 5-insert baseline. The ratio is what the split costs a payment.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use payloom_platform::Db;
use payloom_platform::db::PoolOptions;
use payloom_platform::ids::random_hex;

use super::{Run, baseline, header, report, run_payments};

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

/// Asks `processes` to stop (SIGTERM; `dev --split` then stops its services) and waits.
fn stop(mut processes: Processes) {
    for child in &mut processes.0 {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = child.wait();
    }
}

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

/// `payloom dev --split` on `database`'s server (a database per service beside it),
/// measured; its services stop with it.
async fn run_split(
    args: &TopologyArgs,
    dir: &Path,
    database: &str,
    duration: Duration,
) -> anyhow::Result<Run> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["dev", "--split", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--database-url", database, "--redis-url", &args.redis_url])
        .args(["--kafka-brokers", &args.kafka_brokers]);
    let split = Processes(vec![start(command, "payloom dev listening on ", dir)?]);
    let credentials = crate::demo::load_credentials(dir)?;
    let run = run_payments(&Arc::new(credentials), args.concurrency, duration).await;
    stop(split);
    run
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

    /// Drops it and the databases `dev --split` made beside it.
    async fn drop(self) -> anyhow::Result<()> {
        let admin = Db::connect(&self.server, &PoolOptions::default()).await?;
        let mut names = vec![self.name.clone()];
        for service in crate::services::registered().names() {
            names.push(crate::split::service_database(&self.url, service)?.0);
        }
        for name in names {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(admin.pool())
                .await?;
        }
        Ok(())
    }
}
