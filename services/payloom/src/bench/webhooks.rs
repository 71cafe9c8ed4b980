//! `payloom bench webhooks`: the notification service as deployed (consumer fan-out,
//! leased delivery worker, signing, the attempt log) sending to a local receiver that
//! answers 200. A backlog measures each half alone: the consumer turning events into
//! deliveries, then the worker sending them all. A paced stream at half the slower rate
//! measures event-to-delivery latency (the event's time to the receiver's clock). Beside
//! them, raw one-row insert transactions on the same database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use payloom_notification::email::LogMailer;
use payloom_notification::{EndpointIn, NotificationApi, NotificationConfig, Notifications};
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::{Envelope, Subscription};
use payloom_platform::seal::MasterKey;
use payloom_platform::{Clock, Db, SystemClock};

use super::{Run, baseline, header, report};

#[derive(clap::Args)]
pub struct WebhooksArgs {
    /// The database of the notification service (use a scratch one). Unset: SQLite files
    /// in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Events in the burst.
    #[arg(long, default_value_t = 5_000)]
    pub events: usize,
    /// Seconds of the paced stream.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Deliveries the worker sends at once.
    #[arg(long, default_value_t = 32)]
    pub batch: i64,
    /// Deliveries in flight to the one endpoint (and so to its merchant). Unset: the
    /// shipped `notification.endpoint_in_flight_max`, the most one receiver gets.
    #[arg(long)]
    pub endpoint_in_flight: Option<i64>,
}

/// When each webhook id first reached the receiver, in Unix ms.
type Arrivals = Arc<Mutex<HashMap<String, i64>>>;

pub async fn run(args: WebhooksArgs) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| sqlite_url(scratch.path(), "notification"));
    let db = Db::connect(&url, &PoolOptions::default()).await?;
    let arrivals: Arrivals = Arc::default();
    let receiver = receiver(arrivals.clone()).await?;
    let service = notifications(&args, &db).await?;
    let merchant = format!("mch_bench{}", payloom_platform::ids::random_hex(4));
    let endpoint = EndpointIn {
        url: receiver,
        ..EndpointIn::default()
    };
    service.create_endpoint(&merchant, endpoint).await?;
    let subscription = Subscription::new(db.clone(), service.clone());
    println!(
        "payloom bench webhooks: {}, backlog of {}, then {}s paced, {} sent at once",
        payloom_platform::registry::redact(&url),
        args.events,
        args.duration_secs,
        args.batch
    );

    // A backlog: the consumer fans every event out while no worker runs, then the worker
    // starts and sends them all.
    let started = Instant::now();
    let backlog = fan_out(&subscription, &merchant, 0..args.events).await?;
    let fan_out_rate = args.events as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    service.spawn_worker();
    wait_for(&arrivals, &backlog).await?;
    let delivery_rate = args.events as f64 / started.elapsed().as_secs_f64();

    // The paced stream, at half the slower of the two.
    let rate = (fan_out_rate.min(delivery_rate) / 2.0).max(1.0);
    let stream = Paced {
        subscription: &subscription,
        merchant: &merchant,
        first: args.events,
        rate,
        duration: Duration::from_secs(args.duration_secs),
    };
    let mut paced_run = stream.run(&arrivals).await?;

    let mut raw = baseline(&url, 1, Duration::from_secs(args.duration_secs), 1).await?;
    header();
    println!(
        "{:<32} {:>10.0}",
        "backlog: events fanned out", fan_out_rate
    );
    println!(
        "{:<32} {:>10.0}",
        "backlog: webhooks delivered", delivery_rate
    );
    report(
        &format!("paced at {rate:.0}/s: event -> delivered"),
        &mut paced_run,
    );
    report("raw 1-row insert transaction", &mut raw);
    println!(
        "deliveries per raw insert: {:.2}; fan-out per raw insert: {:.2}",
        delivery_rate / raw.rate().max(f64::MIN_POSITIVE),
        fan_out_rate / raw.rate().max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// The notification service on `db`: the shipped defaults, with the receiver on loopback
/// allowed as under `dev`, and the bench's batch and per-endpoint cap.
async fn notifications(args: &WebhooksArgs, db: &Db) -> anyhow::Result<Arc<Notifications>> {
    let mut config: NotificationConfig =
        crate::app::load_config(None, None, None)?.section("notification")?;
    config.batch = args.batch;
    if let Some(n) = args.endpoint_in_flight {
        config.endpoint_in_flight_max = n;
        config.merchant_in_flight_max = config.merchant_in_flight_max.max(n);
    }
    config.targets.allow_loopback = true;
    let (clock, key) = (Arc::new(SystemClock), MasterKey::generate());
    Notifications::new(db.clone(), clock, key, config, Arc::new(LogMailer)).await
}

/// Hands the events numbered `range` to the consumer, as the relay would.
async fn fan_out(
    subscription: &Subscription,
    merchant: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<Envelope>> {
    let mut events = Vec::with_capacity(range.len());
    for n in range {
        let event = event(merchant, n);
        subscription.process(&event).await?;
        events.push(event);
    }
    Ok(events)
}

/// Events at a steady `rate` for `duration`, numbered from `first`.
struct Paced<'a> {
    subscription: &'a Subscription,
    merchant: &'a str,
    first: usize,
    rate: f64,
    duration: Duration,
}

impl Paced<'_> {
    /// Sends the stream, waits for every webhook, and times each event to its delivery.
    async fn run(&self, arrivals: &Arrivals) -> anyhow::Result<Run> {
        let gap = Duration::from_secs_f64(1.0 / self.rate);
        let started = Instant::now();
        let mut paced = Vec::new();
        let mut next = Instant::now();
        while started.elapsed() < self.duration {
            let event = event(self.merchant, self.first + paced.len());
            self.subscription.process(&event).await?;
            paced.push(event);
            next += gap;
            tokio::time::sleep_until(next.into()).await;
        }
        wait_for(arrivals, &paced).await?;
        Ok(latencies(arrivals, &paced, started.elapsed()))
    }
}

fn event(merchant: &str, n: usize) -> Envelope {
    let id = format!("pay_bench{n}");
    Envelope::new(
        "payment.succeeded",
        "payment",
        &id,
        SystemClock.now_ms(),
        serde_json::json!({"id": id, "object": "payment", "amount": 1_000, "currency": "USD", "status": "succeeded"}),
    )
    .for_merchant(merchant)
}

/// A receiver that answers 200 and notes when each webhook id first arrived.
async fn receiver(arrivals: Arrivals) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let arrivals = arrivals.clone();
            async move {
                let now = SystemClock.now_ms();
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    arrivals.lock().unwrap().entry(id.to_owned()).or_insert(now);
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Waits until every event arrived (at most five minutes).
async fn wait_for(arrivals: &Arrivals, events: &[Envelope]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let missing = {
            let seen = arrivals.lock().unwrap();
            events.iter().filter(|e| !seen.contains_key(&e.id)).count()
        };
        if missing == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{missing} webhooks never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event time to arrival, per event.
fn latencies(arrivals: &Arrivals, events: &[Envelope], elapsed: Duration) -> Run {
    let seen = arrivals.lock().unwrap();
    Run {
        ok: events.len() as u64,
        failed: 0,
        elapsed,
        latencies_us: events
            .iter()
            .map(|e| ((seen[&e.id] - e.occurred_at_ms).max(0) * 1_000) as u64)
            .collect(),
    }
}
