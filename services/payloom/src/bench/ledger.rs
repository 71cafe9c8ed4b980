//! `payloom bench ledger`: books `payment.succeeded` events through the ledger's consumer
//! exactly as the relay delivers them (event-id record, balanced entry, three postings,
//! balances, the payment's book, the `ledger.entry_booked` outbox row: one transaction),
//! beside raw one-row insert transactions on the same database.

use std::sync::Arc;
use std::time::Duration;

use payloom_accounting::Ledger;
use payloom_gateway_contract::{PaymentEvent, PaymentOut, PaymentStatus};
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::{Envelope, Processed, Subscription};
use payloom_platform::{Clock, Db, SystemClock};

use super::{baseline, header, measure, report};

#[derive(clap::Args)]
pub struct LedgerArgs {
    /// The database to book into (use a scratch one). Unset: SQLite files in a temporary
    /// directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Seconds of measured load (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Events booked at once. The relay and a Kafka partition feed one consumer in order,
    /// so 1 is what a deployment sees per consumer.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Merchants the payments are spread over (their balances are separate rows).
    #[arg(long, default_value_t = 16)]
    pub merchants: usize,
    /// Events per consumer transaction. 1 is one event at a time; the relay hands the
    /// ledger up to `[events] relay_batch` at once when events queue up.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

pub async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| sqlite_url(scratch.path(), "accounting"));
    let options = PoolOptions {
        max_connections: args.concurrency.max(1) as u32 + 1,
        ..PoolOptions::default()
    };
    let db = Db::connect(&url, &options).await?;
    let ledger = Ledger::new(db.clone(), Arc::new(SystemClock)).await?;
    let subscription = Arc::new(Subscription::new(db.clone(), ledger.clone()));
    let run_id = payloom_platform::ids::random_hex(4);
    let batch = args.batch.max(1);
    println!(
        "payloom bench ledger: {} for {}s at concurrency {}, {} merchants, {} events per transaction",
        payloom_platform::registry::redact(&url),
        args.duration_secs,
        args.concurrency,
        args.merchants,
        batch
    );
    let book = |duration: Duration| {
        let (subscription, run_id, merchants) =
            (subscription.clone(), run_id.clone(), args.merchants.max(1));
        measure(args.concurrency, duration, move |worker, n| {
            let subscription = subscription.clone();
            let events: Vec<Envelope> = (0..batch as u64)
                .map(|i| succeeded(&run_id, worker, n * batch as u64 + i, merchants))
                .collect();
            async move {
                if batch == 1 {
                    let outcome = subscription.process(&events[0]).await?;
                    anyhow::ensure!(outcome == Processed::Handled, "{outcome:?}");
                } else {
                    subscription
                        .process_batch(&events.iter().collect::<Vec<_>>())
                        .await?;
                }
                Ok(())
            }
        })
    };
    book(Duration::from_secs(1)).await?;
    let mut booked = book(Duration::from_secs(args.duration_secs)).await?;
    // Rates count entries; latencies stay per transaction.
    booked.ok *= batch as u64;
    check_books(&db, ledger.as_ref(), booked.ok).await?;
    let mut raw = baseline(
        &url,
        args.concurrency,
        Duration::from_secs(args.duration_secs),
        1,
    )
    .await?;
    header();
    report(&format!("ledger entries ({batch} per tx)"), &mut booked);
    println!("{:<32} {:>10.0}", "ledger postings", booked.rate() * 3.0);
    report("raw 1-row insert transaction", &mut raw);
    println!(
        "postings per raw insert: {:.2}; entries per raw insert: {:.2}",
        booked.rate() * 3.0 / raw.rate().max(f64::MIN_POSITIVE),
        booked.rate() / raw.rate().max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// Every event booked left its entry, the outbox is emptied as a relay would, and every
/// currency balances.
async fn check_books(db: &Db, ledger: &Ledger, booked: u64) -> anyhow::Result<()> {
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries")
        .fetch_one(db.pool())
        .await?;
    anyhow::ensure!(
        entries as u64 >= booked,
        "only {entries} entries for {} events",
        booked
    );
    // The relay deletes what it publishes; here nobody relays, so the bench does.
    sqlx::query("DELETE FROM payloom_outbox WHERE service = 'accounting'")
        .execute(db.pool())
        .await?;
    let accounts = payloom_accounting::AccountingApi::accounts(ledger).await?;
    for total in &accounts.totals {
        anyhow::ensure!(
            total.debits == total.credits,
            "{} does not balance",
            total.currency
        );
    }
    Ok(())
}

/// A captured payment of a rotating merchant and amount, as the gateway emits it.
fn succeeded(run_id: &str, worker: usize, n: u64, merchants: usize) -> Envelope {
    let id = format!("pay_bench{run_id}w{worker}n{n}");
    let amount = 1_000 + (n % 50) as i64 * 100;
    let payment = PaymentOut {
        id,
        amount,
        currency: "USD".into(),
        status: PaymentStatus::Succeeded,
        channel: Some("sandbox".into()),
        amount_captured: amount,
        fee: amount * 29 / 1_000 + 30,
        updated_at_ms: SystemClock.now_ms(),
        ..PaymentOut::default()
    };
    PaymentEvent::Succeeded(payment)
        .envelope(&format!("mch_bench{}", (n as usize + worker) % merchants))
}
