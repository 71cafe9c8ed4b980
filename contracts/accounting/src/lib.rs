//! The ledger's contract: balances, accounts, journal entries and their postings, the
//! accounting service's internal API with its HTTP client, and the typed event of
//! `ledger.events`. Callers (the gateway, the admin console) depend on this crate, not on
//! the ledger.

use async_trait::async_trait;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use payloom_platform::events::Envelope;
use serde::{Deserialize, Serialize};

/// The service that produces `ledger.events`; consumers believe no one else.
pub const PRODUCER: &str = "accounting";
pub const TOPIC: &str = "ledger.events";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debit => "debit",
            Self::Credit => "credit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "debit" => Some(Self::Debit),
            "credit" => Some(Self::Credit),
            _ => None,
        }
    }

    pub fn opposite(self) -> Self {
        match self {
            Self::Debit => Self::Credit,
            Self::Credit => Self::Debit,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: String,
    pub currency: String,
    pub side: Side,
    pub amount_minor: i64,
}

/// A merchant's balances in one currency, in minor units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrencyBalance {
    pub currency: String,
    pub available: i64,
    pub pending: i64,
    pub reserve: i64,
}

/// What the ledger owes a merchant, per currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Balance {
    pub object: String,
    pub merchant_id: String,
    pub balances: Vec<CurrencyBalance>,
}

/// One account as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOut {
    pub account: String,
    pub currency: String,
    pub kind: String,
    pub merchant_id: Option<String>,
    pub debits: i64,
    pub credits: i64,
    /// Credits − debits for credit-normal accounts, debits − credits for clearing.
    pub balance: i64,
}

/// Debits and credits over every account of one currency: equal, always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialBalance {
    pub currency: String,
    pub debits: i64,
    pub credits: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    pub accounts: Vec<AccountOut>,
    pub totals: Vec<TrialBalance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryOut {
    pub id: String,
    /// The event (or reversal) that made it; unique.
    pub source: String,
    pub kind: String,
    pub merchant_id: Option<String>,
    pub payment_id: Option<String>,
    pub reverses_entry_id: Option<String>,
    pub description: String,
    pub created_at_ms: i64,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntryQuery {
    pub payment_id: Option<String>,
    pub merchant_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseIn {
    pub reason: String,
}

#[async_trait]
pub trait AccountingApi: Send + Sync {
    async fn balance(&self, merchant_id: &str) -> ApiResult<Balance>;
    async fn accounts(&self) -> ApiResult<Accounts>;
    async fn entries(&self, query: EntryQuery) -> ApiResult<Vec<EntryOut>>;
    async fn reverse(&self, entry_id: &str, input: ReverseIn) -> ApiResult<EntryOut>;
}

/// [`AccountingApi`] over HTTP.
pub struct AccountingHttp(pub ServiceClient);

#[async_trait]
impl AccountingApi for AccountingHttp {
    async fn balance(&self, merchant_id: &str) -> ApiResult<Balance> {
        operations::BALANCE.call(&self.0, &[merchant_id], &()).await
    }
    async fn accounts(&self) -> ApiResult<Accounts> {
        operations::ACCOUNTS.call(&self.0, &[], &()).await
    }
    async fn entries(&self, query: EntryQuery) -> ApiResult<Vec<EntryOut>> {
        let filter = match (&query.payment_id, &query.merchant_id) {
            (Some(p), _) => ("payment_id", p.as_str()),
            (None, Some(m)) => ("merchant_id", m.as_str()),
            (None, None) => ("payment_id", ""),
        };
        operations::ENTRIES
            .call_with_query(&self.0, &[], &[filter], &())
            .await
    }
    async fn reverse(&self, entry_id: &str, input: ReverseIn) -> ApiResult<EntryOut> {
        operations::REVERSE.call(&self.0, &[entry_id], &input).await
    }
}

/// The ledger's internal operations, each declared once for its client and its router.
pub mod operations {
    use payloom_platform::operation::Operation;

    use super::{Accounts, Balance, EntryOut, ReverseIn};

    pub const BALANCE: Operation<(), Balance> =
        Operation::get("/internal/v1/balances/{merchant_id}");
    pub const ACCOUNTS: Operation<(), Accounts> = Operation::get("/internal/v1/ledger/accounts");
    /// Filtered by `?payment_id=` or `?merchant_id=`.
    pub const ENTRIES: Operation<(), Vec<EntryOut>> = Operation::get("/internal/v1/ledger/entries");
    pub const REVERSE: Operation<ReverseIn, EntryOut> =
        Operation::post("/internal/v1/ledger/entries/{id}/reversals");
}

/// `ledger.entry_booked` on `ledger.events`, keyed by the entry's payment (or the entry
/// when it has none): a journal entry as booked, never changed afterwards.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerEvent {
    EntryBooked(EntryOut),
}

impl LedgerEvent {
    pub const ENTRY_BOOKED: &str = "ledger.entry_booked";

    pub fn envelope(&self) -> Envelope {
        let Self::EntryBooked(entry) = self;
        let data = serde_json::to_value(entry).expect("an entry serialises");
        let envelope = Envelope::new(
            Self::ENTRY_BOOKED,
            "journal_entry",
            &entry.id,
            entry.created_at_ms,
            data,
        );
        match &entry.merchant_id {
            Some(merchant) => envelope.for_merchant(merchant),
            None => envelope,
        }
    }

    pub fn key(&self) -> &str {
        let Self::EntryBooked(entry) = self;
        entry.payment_id.as_deref().unwrap_or(&entry.id)
    }

    /// The ledger event in `envelope`; `None` when it is not one.
    pub fn read(envelope: &Envelope) -> anyhow::Result<Option<Self>> {
        if !envelope.kind.starts_with("ledger.") {
            return Ok(None);
        }
        anyhow::ensure!(
            envelope.kind == Self::ENTRY_BOOKED,
            "{} is not a ledger event this contract knows",
            envelope.kind
        );
        let entry = serde_json::from_value(envelope.data.clone())?;
        Ok(Some(Self::EntryBooked(entry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_booked_entry_reads_back_keyed_by_its_payment() {
        let entry = EntryOut {
            id: "je_1".into(),
            source: "evt_1".into(),
            kind: "capture".into(),
            merchant_id: Some("mch_1".into()),
            payment_id: Some("pay_1".into()),
            reverses_entry_id: None,
            description: "capture of pay_1".into(),
            created_at_ms: 7,
            postings: vec![Posting {
                account: "platform:fees".into(),
                currency: "USD".into(),
                side: Side::Credit,
                amount_minor: 30,
            }],
        };
        let event = LedgerEvent::EntryBooked(entry.clone());
        let envelope = event.envelope();
        assert_eq!((envelope.topic().as_str(), event.key()), (TOPIC, "pay_1"));
        assert_eq!(envelope.merchant_id.as_deref(), Some("mch_1"));
        assert_eq!(LedgerEvent::read(&envelope).unwrap(), Some(event));

        let unpaid = LedgerEvent::EntryBooked(EntryOut {
            payment_id: None,
            ..entry
        });
        assert_eq!(unpaid.key(), "je_1");
        let mut other = unpaid.envelope();
        other.kind = "ledger.entry_erased".into();
        assert!(LedgerEvent::read(&other).is_err());
    }
}
