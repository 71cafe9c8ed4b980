//! The double-entry ledger. It books what `payment.events` and `refund.events` report,
//! once per event id, as journal entries whose postings balance per currency; entries are
//! never changed (a correction is a reversing entry), and merchant and fee accounts never
//! go below zero. Every booked entry is announced on `ledger.events`.

pub mod book;
pub mod service;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::{Json, Router};
use payloom_gateway_contract::{PaymentEvent, RefundEvent, RefundOut};
use payloom_platform::clock::SharedClock;
use payloom_platform::db::{Migration, is_unique_violation};
use payloom_platform::events::{self, Consumer, Envelope, Outbox};
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use sqlx::{AnyConnection, Row};

use crate::book::{AccountKind, PaymentBook};

pub use payloom_accounting_contract::{
    AccountOut, AccountingApi, AccountingHttp, Accounts, Balance, CurrencyBalance, EntryOut,
    EntryQuery, LedgerEvent, Posting, ReverseIn, Side, TrialBalance,
};

pub const SERVICE: &str = "accounting";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts, journal entries, postings, payments as booked",
        sql: include_str!("../migrations/0001_ledger.sql"),
    },
    Migration {
        version: 2,
        name: "refunds waiting for their capture",
        sql: include_str!("../migrations/0002_parked_refunds.sql"),
    },
];

pub struct Ledger {
    db: Db,
    clock: SharedClock,
    outbox: Outbox,
}

impl Ledger {
    pub async fn new(db: Db, clock: SharedClock) -> anyhow::Result<Arc<Self>> {
        db.migrate(SERVICE, MIGRATIONS).await?;
        events::install(&db).await?;
        Ok(Arc::new(Self {
            db,
            clock,
            outbox: Outbox::new(SERVICE),
        }))
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Books what `event` means for the ledger, if anything.
    async fn book_event(&self, tx: &mut AnyConnection, event: &Envelope) -> anyhow::Result<()> {
        if let Some(payment) = PaymentEvent::read(event)? {
            let merchant_id = event
                .merchant_id
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("payment event without a merchant"))?;
            return self
                .book_payment(tx, &event.id, merchant_id, &payment)
                .await;
        }
        match RefundEvent::read(event)? {
            Some(RefundEvent::Succeeded(refund)) => {
                self.book_refund_event(tx, event, &refund).await
            }
            _ => Ok(()),
        }
    }

    /// An authorization, a capture or a release, each once per payment.
    async fn book_payment(
        &self,
        tx: &mut AnyConnection,
        source: &str,
        merchant_id: &str,
        event: &PaymentEvent,
    ) -> anyhow::Result<()> {
        let p = event.payment();
        let Some(channel) = p.channel.clone() else {
            anyhow::bail!("payment {} has no channel", p.id);
        };
        let mut book = load_book(tx, &p.id).await?.unwrap_or(PaymentBook {
            payment_id: p.id.clone(),
            merchant_id: merchant_id.to_owned(),
            currency: p.currency.clone(),
            channel,
            ..Default::default()
        });
        let (kind, postings) = match event {
            PaymentEvent::Authorized(_)
                if book.authorized_minor == 0 && book.captured_minor == 0 =>
            {
                ("authorization", book::authorize(&mut book, p.amount))
            }
            PaymentEvent::Succeeded(_) if book.captured_minor == 0 => (
                "capture",
                book::capture(&mut book, p.amount, p.amount_captured, p.fee),
            ),
            PaymentEvent::Canceled(_) if book.authorized_minor > 0 => {
                ("release", book::release(&mut book))
            }
            // Nothing to book, or booked already by an earlier state of the same payment.
            _ => return Ok(()),
        };
        let description = format!("{kind} of {}", p.id);
        self.post(
            tx,
            source,
            kind,
            Some(merchant_id),
            Some(&p.id),
            None,
            &description,
            &postings,
        )
        .await?;
        if kind == "capture" {
            self.book_parked_refunds(tx, &mut book).await?;
        }
        save_book(tx, &book).await
    }

    /// A refund is booked against its payment's capture, or parked until the capture is.
    async fn book_refund_event(
        &self,
        tx: &mut AnyConnection,
        event: &Envelope,
        r: &RefundOut,
    ) -> anyhow::Result<()> {
        match load_book(tx, &r.payment_id).await? {
            Some(mut book) if book.captured_minor > 0 => {
                self.book_refund(tx, &event.id, r, &mut book).await?;
                save_book(tx, &book).await
            }
            // Refunds and payments travel on different topics: this one came first. It
            // waits for the capture, which books it.
            _ => {
                tracing::info!(
                    refund_id = r.id,
                    "refund parked until its capture is booked"
                );
                sqlx::query(
                    "INSERT INTO ledger_parked (event_id, payment_id, envelope, parked_at_ms) VALUES ($1, $2, $3, $4)",
                )
                .bind(&event.id)
                .bind(&r.payment_id)
                .bind(serde_json::to_string(event)?)
                .bind(self.clock.now_ms())
                .execute(&mut *tx)
                .await?;
                Ok(())
            }
        }
    }

    async fn book_refund(
        &self,
        tx: &mut AnyConnection,
        source: &str,
        r: &RefundOut,
        book: &mut PaymentBook,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            book.currency == r.currency,
            "refund currency differs from the payment's"
        );
        let postings = book::refund(book, r.amount).map_err(anyhow::Error::msg)?;
        let merchant_id = book.merchant_id.clone();
        let description = format!("refund {} of {}", r.id, r.payment_id);
        self.post(
            tx,
            source,
            "refund",
            Some(&merchant_id),
            Some(&r.payment_id),
            None,
            &description,
            &postings,
        )
        .await?;
        Ok(())
    }

    /// Books the refunds that arrived before this payment's capture, in arrival order.
    async fn book_parked_refunds(
        &self,
        tx: &mut AnyConnection,
        book: &mut PaymentBook,
    ) -> anyhow::Result<()> {
        let parked: Vec<String> = sqlx::query_scalar(
            "DELETE FROM ledger_parked WHERE payment_id = $1 RETURNING envelope",
        )
        .bind(&book.payment_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut parked: Vec<Envelope> = parked
            .iter()
            .map(|json| serde_json::from_str(json))
            .collect::<Result<_, _>>()?;
        parked.sort_by(|a, b| (a.occurred_at_ms, &a.id).cmp(&(b.occurred_at_ms, &b.id)));
        for event in parked {
            if let Some(RefundEvent::Succeeded(r)) = RefundEvent::read(&event)? {
                self.book_refund(tx, &event.id, &r, book).await?;
            }
        }
        Ok(())
    }

    /// Writes one balanced entry and moves the balances, inside `tx`. Refused when the
    /// postings do not balance, when `source` was booked before, or when a merchant or fee
    /// account would go below zero.
    #[allow(clippy::too_many_arguments)]
    async fn post(
        &self,
        tx: &mut AnyConnection,
        source: &str,
        kind: &str,
        merchant_id: Option<&str>,
        payment_id: Option<&str>,
        reverses: Option<&str>,
        description: &str,
        postings: &[Posting],
    ) -> anyhow::Result<EntryOut> {
        book::check(postings).map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = self.clock.now_ms();
        let entry_id = ids::new_id("je", now);
        sqlx::query(
            "INSERT INTO journal_entries (id, source, kind, merchant_id, payment_id, reverses_entry_id, description, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&entry_id)
        .bind(source)
        .bind(kind)
        .bind(merchant_id)
        .bind(payment_id)
        .bind(reverses)
        .bind(description)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // All lines in one statement, then all balances in one: an entry is a few round
        // trips whatever its size.
        let values: Vec<String> = (0..postings.len())
            .map(|i| {
                let k = 2 + i * 5;
                format!("($1, ${k}, ${}, ${}, ${}, ${})", k + 1, k + 2, k + 3, k + 4)
            })
            .collect();
        let sql = format!(
            "INSERT INTO postings (entry_id, line, account, currency, side, amount_minor) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql).bind(&entry_id);
        for (line, p) in postings.iter().enumerate() {
            insert = insert
                .bind(line as i64)
                .bind(&p.account)
                .bind(&p.currency)
                .bind(p.side.as_str())
                .bind(p.amount_minor);
        }
        insert.execute(&mut *tx).await?;
        move_balances(tx, postings, now).await?;
        let entry = EntryOut {
            id: entry_id.clone(),
            source: source.to_owned(),
            kind: kind.to_owned(),
            merchant_id: merchant_id.map(str::to_owned),
            payment_id: payment_id.map(str::to_owned),
            reverses_entry_id: reverses.map(str::to_owned),
            description: description.to_owned(),
            created_at_ms: now,
            postings: postings.to_vec(),
        };
        let event = LedgerEvent::EntryBooked(entry);
        self.outbox
            .append(tx, &event.envelope(), event.key())
            .await?;
        let LedgerEvent::EntryBooked(entry) = event;
        Ok(entry)
    }
}

/// Adds an entry's postings to the running totals of its accounts, netted per account and
/// written in one statement (accounts in a fixed order, so concurrent entries lock them
/// in the same order); a credit-normal account that would end below zero refuses the
/// whole entry.
async fn move_balances(
    tx: &mut AnyConnection,
    postings: &[Posting],
    now: i64,
) -> anyhow::Result<()> {
    let moves = net_postings(postings)?;
    let values: Vec<String> = (0..moves.len())
        .map(|i| {
            let k = 2 + i * 6;
            format!(
                "(${k}, ${}, ${}, ${}, ${}, ${}, $1)",
                k + 1,
                k + 2,
                k + 3,
                k + 4,
                k + 5
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO ledger_accounts (account, currency, kind, merchant_id, debits_minor, credits_minor, created_at_ms) VALUES {}
         ON CONFLICT (account, currency) DO UPDATE SET debits_minor = ledger_accounts.debits_minor + excluded.debits_minor,
         credits_minor = ledger_accounts.credits_minor + excluded.credits_minor
         RETURNING account, currency, debits_minor, credits_minor",
        values.join(", ")
    );
    let mut upsert = sqlx::query(&sql).bind(now);
    for ((account, currency), (debits, credits)) in &moves {
        let (kind, merchant) =
            AccountKind::of(account).ok_or_else(|| anyhow::anyhow!("unknown account {account}"))?;
        upsert = upsert
            .bind(*account)
            .bind(*currency)
            .bind(kind.as_str())
            .bind(merchant)
            .bind(*debits)
            .bind(*credits);
    }
    for row in upsert.fetch_all(&mut *tx).await? {
        let account: String = row.try_get("account")?;
        let debits: i64 = row.try_get("debits_minor")?;
        let credits: i64 = row.try_get("credits_minor")?;
        let credit_normal = AccountKind::of(&account).is_some_and(|(k, _)| k.credit_normal());
        anyhow::ensure!(
            !credit_normal || credits >= debits,
            "{account} in {} would go below zero",
            row.try_get::<String, _>("currency")?
        );
    }
    Ok(())
}

/// `(debits, credits)` per `(account, currency)`.
type Moves<'a> = BTreeMap<(&'a str, &'a str), (i64, i64)>;

/// Debits and credits per account and currency. A sum that would pass `i64` refuses the
/// entry rather than wrap or panic.
fn net_postings(postings: &[Posting]) -> anyhow::Result<Moves<'_>> {
    let mut moves = Moves::new();
    for p in postings {
        let totals = moves.entry((&p.account, &p.currency)).or_default();
        let total = match p.side {
            Side::Debit => &mut totals.0,
            Side::Credit => &mut totals.1,
        };
        *total = add_minor(*total, p.amount_minor, || {
            format!("postings to {} in {}", p.account, p.currency)
        })?;
    }
    Ok(moves)
}

/// `total + amount_minor`, or an error naming what overflowed: sums of money never wrap.
fn add_minor(total: i64, amount_minor: i64, what: impl FnOnce() -> String) -> anyhow::Result<i64> {
    total
        .checked_add(amount_minor)
        .ok_or_else(|| anyhow::anyhow!("{} overflow 64-bit minor units", what()))
}

async fn load_book(
    tx: &mut AnyConnection,
    payment_id: &str,
) -> anyhow::Result<Option<PaymentBook>> {
    let row = sqlx::query(
        "SELECT payment_id, merchant_id, currency, channel, authorized_minor, captured_minor, fee_minor, refunded_minor, fee_returned_minor
         FROM ledger_payments WHERE payment_id = $1",
    )
    .bind(payment_id)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|r| {
        Ok(PaymentBook {
            payment_id: r.try_get("payment_id")?,
            merchant_id: r.try_get("merchant_id")?,
            currency: r.try_get("currency")?,
            channel: r.try_get("channel")?,
            authorized_minor: r.try_get("authorized_minor")?,
            captured_minor: r.try_get("captured_minor")?,
            fee_minor: r.try_get("fee_minor")?,
            refunded_minor: r.try_get("refunded_minor")?,
            fee_returned_minor: r.try_get("fee_returned_minor")?,
        })
    })
    .transpose()
}

async fn save_book(tx: &mut AnyConnection, b: &PaymentBook) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ledger_payments (payment_id, merchant_id, currency, channel, authorized_minor, captured_minor, fee_minor, refunded_minor, fee_returned_minor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (payment_id) DO UPDATE SET authorized_minor = excluded.authorized_minor, captured_minor = excluded.captured_minor,
         fee_minor = excluded.fee_minor, refunded_minor = excluded.refunded_minor, fee_returned_minor = excluded.fee_returned_minor",
    )
    .bind(&b.payment_id)
    .bind(&b.merchant_id)
    .bind(&b.currency)
    .bind(&b.channel)
    .bind(b.authorized_minor)
    .bind(b.captured_minor)
    .bind(b.fee_minor)
    .bind(b.refunded_minor)
    .bind(b.fee_returned_minor)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn account_from_row(row: &sqlx::any::AnyRow) -> ApiResult<AccountOut> {
    let account: String = row.try_get("account")?;
    let debits: i64 = row.try_get("debits_minor")?;
    let credits: i64 = row.try_get("credits_minor")?;
    let credit_normal = AccountKind::of(&account).is_none_or(|(k, _)| k.credit_normal());
    let balance = match credit_normal {
        true => credits.checked_sub(debits),
        false => debits.checked_sub(credits),
    }
    .ok_or_else(|| ApiError::internal(format!("the balance of {account} overflows")))?;
    Ok(AccountOut {
        currency: row.try_get("currency")?,
        kind: row.try_get("kind")?,
        merchant_id: row.try_get("merchant_id")?,
        debits,
        credits,
        balance,
        account,
    })
}

const ACCOUNT_COLUMNS: &str = "account, currency, kind, merchant_id, debits_minor, credits_minor";

#[async_trait]
impl Consumer for Ledger {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn topics(&self) -> &'static [&'static str] {
        use payloom_gateway_contract::events::{PAYMENT_TOPIC, REFUND_TOPIC};
        &[PAYMENT_TOPIC, REFUND_TOPIC]
    }

    async fn handle(&self, tx: &mut AnyConnection, event: &Envelope) -> anyhow::Result<()> {
        self.book_event(tx, event).await
    }

    fn committed(&self, _event: &Envelope) {
        self.outbox.wake();
    }
}

#[async_trait]
impl AccountingApi for Ledger {
    async fn balance(&self, merchant_id: &str) -> ApiResult<Balance> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE merchant_id = $1 ORDER BY currency"
        ))
        .bind(merchant_id)
        .fetch_all(self.db.pool())
        .await?;
        let mut by_currency: BTreeMap<String, CurrencyBalance> = BTreeMap::new();
        for row in &rows {
            let a = account_from_row(row)?;
            let entry = by_currency
                .entry(a.currency.clone())
                .or_insert_with(|| CurrencyBalance {
                    currency: a.currency.clone(),
                    ..Default::default()
                });
            let total = match AccountKind::of(&a.account).map(|(k, _)| k) {
                Some(AccountKind::MerchantAvailable) => &mut entry.available,
                Some(AccountKind::MerchantPending) => &mut entry.pending,
                Some(AccountKind::MerchantReserve) => &mut entry.reserve,
                _ => continue,
            };
            *total = add_minor(*total, a.balance, || {
                format!("{merchant_id}'s balances in {}", a.currency)
            })?;
        }
        Ok(Balance {
            object: "balance".into(),
            merchant_id: merchant_id.to_owned(),
            balances: by_currency.into_values().collect(),
        })
    }

    async fn accounts(&self) -> ApiResult<Accounts> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts ORDER BY currency, account"
        ))
        .fetch_all(self.db.pool())
        .await?;
        let accounts = rows
            .iter()
            .map(account_from_row)
            .collect::<ApiResult<Vec<_>>>()?;
        let mut totals: BTreeMap<String, TrialBalance> = BTreeMap::new();
        for a in &accounts {
            let t = totals
                .entry(a.currency.clone())
                .or_insert_with(|| TrialBalance {
                    currency: a.currency.clone(),
                    debits: 0,
                    credits: 0,
                });
            let what = || format!("the trial balance in {}", a.currency);
            t.debits = add_minor(t.debits, a.debits, what)?;
            t.credits = add_minor(t.credits, a.credits, what)?;
        }
        Ok(Accounts {
            accounts,
            totals: totals.into_values().collect(),
        })
    }

    async fn entries(&self, query: EntryQuery) -> ApiResult<Vec<EntryOut>> {
        let (column, value) = match (&query.payment_id, &query.merchant_id) {
            (Some(p), None) => ("payment_id", p),
            (None, Some(m)) => ("merchant_id", m),
            _ => {
                return Err(ApiError::invalid(
                    "payment_id",
                    "give exactly one of payment_id and merchant_id",
                ));
            }
        };
        let rows = sqlx::query(&format!(
            "SELECT e.id, e.source, e.kind, e.merchant_id, e.payment_id, e.reverses_entry_id, e.description, e.created_at_ms,
                    p.account, p.currency, p.side, p.amount_minor
             FROM journal_entries e JOIN postings p ON p.entry_id = e.id
             WHERE e.{column} = $1 ORDER BY e.id, p.line"
        ))
        .bind(value)
        .fetch_all(self.db.pool())
        .await?;
        let mut entries: Vec<EntryOut> = Vec::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            if entries.last().is_none_or(|e| e.id != id) {
                entries.push(EntryOut {
                    id,
                    source: row.try_get("source")?,
                    kind: row.try_get("kind")?,
                    merchant_id: row.try_get("merchant_id")?,
                    payment_id: row.try_get("payment_id")?,
                    reverses_entry_id: row.try_get("reverses_entry_id")?,
                    description: row.try_get("description")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                    postings: Vec::new(),
                });
            }
            let side: String = row.try_get("side")?;
            let entry = entries.last_mut().expect("pushed above");
            entry.postings.push(Posting {
                account: row.try_get("account")?,
                currency: row.try_get("currency")?,
                side: Side::parse(&side)
                    .ok_or_else(|| ApiError::internal(format!("side {side}")))?,
                amount_minor: row.try_get("amount_minor")?,
            });
        }
        Ok(entries)
    }

    async fn reverse(&self, entry_id: &str, input: ReverseIn) -> ApiResult<EntryOut> {
        if input.reason.trim().is_empty() || input.reason.len() > 500 {
            return Err(ApiError::invalid(
                "reason",
                "reason must be 1 to 500 characters",
            ));
        }
        let rows = sqlx::query(
            "SELECT e.merchant_id, e.payment_id, e.reverses_entry_id, p.account, p.currency, p.side, p.amount_minor
             FROM journal_entries e JOIN postings p ON p.entry_id = e.id WHERE e.id = $1 ORDER BY p.line",
        )
        .bind(entry_id)
        .fetch_all(self.db.pool())
        .await?;
        let Some(first) = rows.first() else {
            return Err(ApiError::not_found("journal entry", entry_id));
        };
        if first
            .try_get::<Option<String>, _>("reverses_entry_id")?
            .is_some()
        {
            return Err(ApiError::conflict(
                "entry_is_reversal",
                "a reversal cannot be reversed; book a new entry",
            ));
        }
        let merchant_id: Option<String> = first.try_get("merchant_id")?;
        let payment_id: Option<String> = first.try_get("payment_id")?;
        let original = rows
            .iter()
            .map(|row| {
                let side: String = row.try_get("side")?;
                Ok(Posting {
                    account: row.try_get("account")?,
                    currency: row.try_get("currency")?,
                    side: Side::parse(&side)
                        .ok_or_else(|| ApiError::internal(format!("side {side}")))?,
                    amount_minor: row.try_get("amount_minor")?,
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let mut tx = self.db.pool().begin().await?;
        let booked = self
            .post(
                &mut tx,
                &format!("reversal:{entry_id}"),
                "reversal",
                merchant_id.as_deref(),
                payment_id.as_deref(),
                Some(entry_id),
                &format!("reversal of {entry_id}: {}", input.reason.trim()),
                &book::reverse(&original),
            )
            .await;
        let entry = match booked {
            Ok(entry) => entry,
            Err(e)
                if e.downcast_ref::<sqlx::Error>()
                    .is_some_and(is_unique_violation) =>
            {
                return Err(ApiError::conflict(
                    "entry_already_reversed",
                    format!("{entry_id} was reversed before"),
                ));
            }
            Err(e) => {
                return Err(ApiError::conflict("reversal_refused", format!("{e:#}")));
            }
        };
        tx.commit().await?;
        self.outbox.wake();
        Ok(entry)
    }
}

pub fn router(service: Arc<Ledger>) -> Router {
    use payloom_accounting_contract::operations::{ACCOUNTS, BALANCE, ENTRIES, REVERSE};
    let router = BALANCE.route(Router::new(), balance);
    let router = ACCOUNTS.route(router, accounts);
    let router = ENTRIES.route(router, entries);
    REVERSE.route(router, reverse).with_state(service)
}

async fn balance(
    State(s): State<Arc<Ledger>>,
    Path(merchant_id): Path<String>,
) -> ApiResult<Json<Balance>> {
    s.balance(&merchant_id).await.map(Json)
}

async fn accounts(State(s): State<Arc<Ledger>>) -> ApiResult<Json<Accounts>> {
    s.accounts().await.map(Json)
}

async fn entries(
    State(s): State<Arc<Ledger>>,
    Query(q): Query<EntryQuery>,
) -> ApiResult<Json<Vec<EntryOut>>> {
    s.entries(q).await.map(Json)
}

async fn reverse(
    State(s): State<Arc<Ledger>>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReverseIn>,
) -> ApiResult<Json<EntryOut>> {
    s.reverse(&id, input).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posting(account: &str, side: Side, amount_minor: i64) -> Posting {
        Posting {
            account: account.into(),
            currency: "USD".into(),
            side,
            amount_minor,
        }
    }

    #[test]
    fn postings_net_per_account_and_side() {
        let postings = [
            posting("platform:fees", Side::Credit, 30),
            posting("platform:fees", Side::Credit, 20),
            posting("channel:sandbox:clearing", Side::Debit, 50),
        ];
        let moves = net_postings(&postings).unwrap();
        assert_eq!(moves[&("platform:fees", "USD")], (0, 50));
        assert_eq!(moves[&("channel:sandbox:clearing", "USD")], (50, 0));
    }

    #[test]
    fn sums_past_i64_are_refused_not_wrapped() {
        let postings = [
            posting("platform:fees", Side::Credit, i64::MAX),
            posting("platform:fees", Side::Credit, 1),
        ];
        let refused = net_postings(&postings).unwrap_err().to_string();
        assert!(refused.contains("platform:fees in USD"), "{refused}");
        assert!(add_minor(i64::MIN, -1, || "x".into()).is_err());
        assert_eq!(add_minor(i64::MAX - 1, 1, || "x".into()).unwrap(), i64::MAX);
    }
}
