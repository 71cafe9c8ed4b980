//! Property: whatever sequence of payments, captures, cancels, refunds and redeliveries
//! the ledger consumes, and even when refunds arrive before the payments they refund
//! (they travel on another topic), every currency's debits equal its credits, no merchant
//! or fee account goes below zero, and consuming every event again changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use payloom_accounting::{AccountingApi, Ledger};
use payloom_gateway_contract::{
    PaymentEvent, PaymentOut, PaymentStatus, RefundEvent, RefundOut, RefundStatus,
};
use payloom_platform::db::{PoolOptions, sqlite_url};
use payloom_platform::events::{Envelope, Subscription};
use payloom_platform::{Db, SystemClock};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Pay {
        merchant: u8,
        currency: u8,
        amount: i64,
        fee_bps: i64,
        manual: bool,
    },
    Capture {
        payment: usize,
        percent: i64,
    },
    Cancel {
        payment: usize,
    },
    Refund {
        payment: usize,
        percent: i64,
    },
    Redeliver {
        event: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..3, 1i64..200_000, 0i64..1_500, any::<bool>()).prop_map(
            |(merchant, currency, amount, fee_bps, manual)| Op::Pay { merchant, currency, amount, fee_bps, manual }
        ),
        2 => (any::<usize>(), 1i64..=100).prop_map(|(payment, percent)| Op::Capture { payment, percent }),
        1 => any::<usize>().prop_map(|payment| Op::Cancel { payment }),
        3 => (any::<usize>(), 1i64..=100).prop_map(|(payment, percent)| Op::Refund { payment, percent }),
        2 => any::<usize>().prop_map(|event| Op::Redeliver { event }),
    ]
}

/// A payment as the gateway would have it.
#[derive(Debug, Clone)]
struct Payment {
    id: String,
    merchant: String,
    currency: &'static str,
    amount: i64,
    fee: i64,
    status: &'static str,
    captured: i64,
    refunded: i64,
}

impl Payment {
    /// The event of its current status, as the gateway emits it.
    fn event(&self, at: i64) -> Envelope {
        let payment = PaymentOut {
            id: self.id.clone(),
            amount: self.amount,
            currency: self.currency.to_owned(),
            status: PaymentStatus::parse(self.status).unwrap(),
            channel: Some("sandbox".into()),
            amount_captured: self.captured,
            fee: self.fee,
            updated_at_ms: at,
            ..PaymentOut::default()
        };
        let event = PaymentEvent::of(payment).unwrap();
        event.envelope(&self.merchant)
    }

    /// A refund of `amount` that succeeded.
    fn refund(&self, id: String, amount: i64, at: i64) -> Envelope {
        let refund = RefundOut {
            id,
            payment_id: self.id.clone(),
            amount,
            currency: self.currency.to_owned(),
            status: RefundStatus::Succeeded,
            updated_at_ms: at,
            ..RefundOut::default()
        };
        RefundEvent::of(refund).envelope(&self.merchant)
    }
}

/// The events a gateway would emit for `ops`, in order (redeliveries included).
fn events_of(ops: &[Op]) -> Vec<Envelope> {
    let currencies = ["USD", "EUR", "JPY"];
    let mut payments: Vec<Payment> = Vec::new();
    let mut events: Vec<Envelope> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let at = 1_700_000_000_000 + n as i64;
        match *op {
            Op::Pay {
                merchant,
                currency,
                amount,
                fee_bps,
                manual,
            } => {
                let mut p = Payment {
                    id: format!("pay_{n}"),
                    merchant: format!("mch_{merchant}"),
                    currency: currencies[currency as usize],
                    amount,
                    fee: (amount * fee_bps / 10_000 + 30).min(amount),
                    status: "authorized",
                    captured: 0,
                    refunded: 0,
                };
                if !manual {
                    p.status = "succeeded";
                    p.captured = amount;
                }
                events.push(p.event(at));
                payments.push(p);
            }
            Op::Capture { payment, percent } if !payments.is_empty() => {
                let i = payment % payments.len();
                let p = &mut payments[i];
                if p.status == "authorized" {
                    p.status = "succeeded";
                    p.captured = (p.amount * percent / 100).max(1);
                    events.push(p.event(at));
                }
            }
            Op::Cancel { payment } if !payments.is_empty() => {
                let i = payment % payments.len();
                let p = &mut payments[i];
                if p.status == "authorized" {
                    p.status = "canceled";
                    events.push(p.event(at));
                }
            }
            Op::Refund { payment, percent } if !payments.is_empty() => {
                let i = payment % payments.len();
                let p = &mut payments[i];
                let left = p.captured - p.refunded;
                if p.status == "succeeded" && left > 0 {
                    let amount = (left * percent / 100).max(1);
                    p.refunded += amount;
                    events.push(p.refund(format!("re_{n}"), amount, at));
                }
            }
            Op::Redeliver { event } if !events.is_empty() => {
                let again = events[event % events.len()].clone();
                events.push(again);
            }
            _ => {}
        }
    }
    events
}

/// Every account's (debits, credits), and how many entries exist.
async fn snapshot(ledger: &Ledger, db: &Db) -> (BTreeMap<(String, String), (i64, i64)>, i64) {
    let accounts = ledger.accounts().await.unwrap();
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries")
        .fetch_one(db.pool())
        .await
        .unwrap();
    (
        accounts
            .accounts
            .into_iter()
            .map(|a| ((a.account, a.currency), (a.debits, a.credits)))
            .collect(),
        entries,
    )
}

fn check(ops: Vec<Op>, refunds_first: bool) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&sqlite_url(dir.path(), "accounting"), &PoolOptions::default())
            .await
            .unwrap();
        let ledger = Ledger::new(db.clone(), Arc::new(SystemClock)).await.unwrap();
        let subscription = Subscription::new(db.clone(), ledger.clone());
        let mut events = events_of(&ops);
        if refunds_first {
            events.sort_by_key(|e| e.kind != "refund.succeeded");
        }
        // First delivery in runs of up to seven, as the relay hands them over (a payment
        // and its refund can share one transaction).
        for run in events.chunks(7) {
            subscription
                .process_batch(&run.iter().collect::<Vec<_>>())
                .await
                .unwrap();
        }
        let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payloom_dead_letters")
            .fetch_one(db.pool())
            .await
            .unwrap();
        prop_assert_eq!(dead, 0, "every generated event is bookable");
        let parked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_parked")
            .fetch_one(db.pool())
            .await
            .unwrap();
        prop_assert_eq!(parked, 0, "every early refund was booked with its capture");

        let (accounts, entries) = snapshot(&ledger, &db).await;
        let mut per_currency: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for ((account, currency), (debits, credits)) in &accounts {
            let t = per_currency.entry(currency).or_default();
            t.0 += debits;
            t.1 += credits;
            if !account.starts_with("channel:") {
                prop_assert!(credits >= debits, "{} {} went below zero", account, currency);
            }
        }
        for (currency, (debits, credits)) in &per_currency {
            prop_assert_eq!(debits, credits, "{} does not balance", currency);
        }
        // The postings themselves balance too, not only the running totals.
        let sums: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT currency, side, SUM(amount_minor) FROM postings GROUP BY currency, side ORDER BY currency, side",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        for pair in sums.chunks(2) {
            prop_assert_eq!(pair.len(), 2);
            prop_assert_eq!(pair[0].2, pair[1].2, "postings in {} do not balance", pair[0].0);
        }

        // Every event delivered twice more: nothing changes.
        for _ in 0..2 {
            for event in &events {
                subscription.process(event).await.unwrap();
            }
        }
        prop_assert_eq!(snapshot(&ledger, &db).await, (accounts, entries));
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_books_balance_and_redelivery_changes_nothing(
        ops in prop::collection::vec(op(), 1..40),
        refunds_first in any::<bool>(),
    ) {
        check(ops, refunds_first)?;
    }
}
