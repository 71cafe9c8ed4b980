//! Benchmarks, each beside a raw database baseline measured in the same run.
//!
//! `payloom bench payments`: a load generator for `POST /v1/payments` against a running
//! platform, beside the raw rate of a 5-insert transaction on the same database: the
//! ceiling a payment (which writes more than five rows) is compared with.
//! `payloom bench ledger`, `payloom bench webhooks` and `payloom bench topology`: see
//! [`ledger`], [`webhooks`] and [`topology`].

mod ledger;
mod topology;
mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::{Clock, Db, SystemClock};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Drive signed POST /v1/payments and report payments/s and latency percentiles.
    Payments(PaymentsArgs),
    /// Book payment events in the ledger and report entries and postings per second.
    Ledger(ledger::LedgerArgs),
    /// Deliver signed webhooks to a local receiver: deliveries/s and event-to-delivery
    /// latency.
    Webhooks(webhooks::WebhooksArgs),
    /// The payments benchmark against `dev` and against every service in its own process
    /// (mutual TLS, Kafka, Redis), back to back on the same PostgreSQL: the split's cost.
    Topology(topology::TopologyArgs),
}

#[derive(clap::Args)]
pub struct PaymentsArgs {
    /// Where `payloom dev` wrote its credentials (merchant key and base URL).
    #[arg(long, default_value = ".payloom")]
    pub data_dir: PathBuf,
    /// Seconds of measured load (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 24)]
    pub concurrency: usize,
    /// The platform's database, for the baseline. Unset: a SQLite file in the data dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Skip the database baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

/// Latencies of one run, in microseconds.
pub(crate) struct Run {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 * p).ceil() as usize)
            .clamp(1, self.latencies_us.len())
            - 1;
        self.latencies_us[i] as f64 / 1e3
    }
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Payments(args) => crate::app::block_on(payments(args)),
        BenchCommand::Ledger(args) => crate::app::block_on(ledger::run(args)),
        BenchCommand::Webhooks(args) => crate::app::block_on(webhooks::run(args)),
        BenchCommand::Topology(args) => crate::app::block_on(topology::run(args)),
    }
}

/// One row of a result table.
pub(crate) fn report(name: &str, run: &mut Run) {
    let (p50, p99) = (run.percentile_ms(0.50), run.percentile_ms(0.99));
    println!(
        "{:<32} {:>10.0} {:>9.2} {:>9.2} {:>8}",
        name,
        run.rate(),
        p50,
        p99,
        run.failed
    );
}

pub(crate) fn header() {
    println!(
        "{:<32} {:>10} {:>9} {:>9} {:>8}",
        "", "per second", "p50 ms", "p99 ms", "failed"
    );
}

async fn payments(args: PaymentsArgs) -> anyhow::Result<()> {
    let credentials = crate::demo::load_credentials(&args.data_dir)?;
    let duration = Duration::from_secs(args.duration_secs);
    println!(
        "payloom bench payments: {} for {}s at concurrency {}",
        credentials.base_url, args.duration_secs, args.concurrency
    );
    let mut api = run_payments(&Arc::new(credentials), args.concurrency, duration).await?;
    header();
    report("POST /v1/payments", &mut api);
    if args.no_baseline {
        return Ok(());
    }
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => sqlite_url(&args.data_dir.join("db"), "bench-baseline"),
    };
    let mut base = baseline(&url, args.concurrency, duration, 5).await?;
    report("5-insert transaction", &mut base);
    println!(
        "payments per raw 5-insert transaction: {:.2}",
        api.rate() / base.rate().max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// Signed payments for `duration` after a one-second warm-up.
pub(crate) async fn run_payments(
    credentials: &Arc<crate::dev::DevCredentials>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    drive(&client, credentials, concurrency, Duration::from_secs(1)).await?;
    drive(&client, credentials, concurrency, duration).await
}

/// Runs `concurrency` workers calling `op(worker, n)` until `duration` is up and
/// collects the latencies of the calls that succeeded.
pub(crate) async fn measure<F, Fut>(
    concurrency: usize,
    duration: Duration,
    op: F,
) -> anyhow::Result<Run>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let op = op.clone();
        workers.spawn(async move {
            let mut run = Run {
                ok: 0,
                failed: 0,
                elapsed: Duration::ZERO,
                latencies_us: Vec::new(),
            };
            let mut n = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match op(worker, n).await {
                    Ok(()) => {
                        run.ok += 1;
                        run.latencies_us.push(sent.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        if run.failed == 0 {
                            eprintln!("worker {worker}: first failure: {e:#}");
                        }
                        run.failed += 1;
                    }
                }
                n += 1;
            }
            run
        });
    }
    let mut total = Run {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    while let Some(run) = workers.join_next().await {
        let run = run?;
        total.ok += run.ok;
        total.failed += run.failed;
        total.latencies_us.extend(run.latencies_us);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn drive(
    client: &reqwest::Client,
    credentials: &Arc<crate::dev::DevCredentials>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let run_id = payloom_platform::ids::random_hex(4);
    let (client, credentials) = (client.clone(), credentials.clone());
    measure(concurrency, duration, move |worker, n| {
        let (client, credentials) = (client.clone(), credentials.clone());
        let order_no = format!("bench-{run_id}-{worker}-{n}");
        async move {
            pay(
                &client,
                &credentials,
                &order_no,
                1_000 + (n % 50) as i64 * 100,
            )
            .await
        }
    })
    .await
}

/// One signed payment; succeeds only on `201` with status `succeeded`.
async fn pay(
    client: &reqwest::Client,
    credentials: &crate::dev::DevCredentials,
    order_no: &str,
    amount: i64,
) -> anyhow::Result<()> {
    let body =
        serde_json::json!({"order_no": order_no, "amount": amount, "currency": "USD"}).to_string();
    let key = &credentials.merchant.api_key;
    let now_secs = SystemClock.now_ms() / 1_000;
    let mut request = client
        .post(format!("{}/v1/payments", credentials.base_url))
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in payloom_payment_gateway::sign_request(
        &key.key_id,
        &key.secret,
        "POST",
        "/v1/payments",
        &body,
        now_secs,
    ) {
        request = request.header(name, value);
    }
    let response = request.send().await?;
    let status = response.status();
    let payment: serde_json::Value = response.json().await?;
    anyhow::ensure!(
        status == 201 && payment["status"] == "succeeded",
        "{status}: {payment}"
    );
    Ok(())
}

/// Transactions of `rows` inserts each (five: a payment-sized write; one: a raw insert)
/// at the same concurrency.
pub(crate) async fn baseline(
    url: &str,
    concurrency: usize,
    duration: Duration,
    rows: usize,
) -> anyhow::Result<Run> {
    let db = Db::connect(
        url,
        &PoolOptions {
            max_connections: concurrency as u32,
            ..PoolOptions::default()
        },
    )
    .await
    .context("baseline database")?;
    sqlx::query("DROP TABLE IF EXISTS bench_baseline")
        .execute(db.pool())
        .await?;
    sqlx::query("CREATE TABLE bench_baseline (id TEXT PRIMARY KEY, parent TEXT NOT NULL, amount_minor BIGINT NOT NULL, body TEXT NOT NULL, created_at_ms BIGINT NOT NULL)")
        .execute(db.pool())
        .await?;
    let run = {
        let db = db.clone();
        measure(concurrency, duration, move |worker, n| {
            let db = db.clone();
            async move { inserts(&db, &format!("{worker}-{n}"), rows).await }
        })
        .await?
    };
    sqlx::query("DROP TABLE bench_baseline")
        .execute(db.pool())
        .await?;
    Ok(run)
}

async fn inserts(db: &Db, key: &str, rows: usize) -> anyhow::Result<()> {
    let mut tx = db.pool().begin().await?;
    let now = SystemClock.now_ms();
    for i in 0..rows {
        sqlx::query("INSERT INTO bench_baseline (id, parent, amount_minor, body, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(format!("{key}-{i}"))
            .bind(key)
            .bind(1_000i64)
            .bind(r#"{"currency":"USD","status":"succeeded","metadata":{}}"#)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
