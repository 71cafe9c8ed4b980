//! What each business event books, as plain data: no database here, so the rules can be
//! read in one place and tested by themselves.
//!
//! Accounts (per currency):
//! - `merchant:<id>:pending`: authorized, not yet captured (owed to the merchant if
//!   captured);
//! - `merchant:<id>:available`: captured, net of the platform fee, owed to the merchant;
//! - `merchant:<id>:reserve`: held back from the merchant (rolling reserves, disputes);
//! - `platform:fees`: the platform's revenue;
//! - `channel:<name>:clearing`: what the channel owes us; it nets to zero as the channel
//!   settles.
//!
//! Merchant and fee accounts are credit-normal (balance = credits − debits) and may never
//! go below zero; clearing accounts are debit-normal.

use std::collections::BTreeMap;

pub use payloom_accounting_contract::{Posting, Side};

/// The kinds of account, stored beside each so balances can be grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    MerchantPending,
    MerchantAvailable,
    MerchantReserve,
    PlatformFees,
    ChannelClearing,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MerchantPending => "merchant_pending",
            Self::MerchantAvailable => "merchant_available",
            Self::MerchantReserve => "merchant_reserve",
            Self::PlatformFees => "platform_fees",
            Self::ChannelClearing => "channel_clearing",
        }
    }

    /// Reads an account name back into its kind and merchant.
    pub fn of(account: &str) -> Option<(Self, Option<&str>)> {
        let parts: Vec<&str> = account.split(':').collect();
        match parts[..] {
            ["merchant", id, "pending"] => Some((Self::MerchantPending, Some(id))),
            ["merchant", id, "available"] => Some((Self::MerchantAvailable, Some(id))),
            ["merchant", id, "reserve"] => Some((Self::MerchantReserve, Some(id))),
            ["platform", "fees"] => Some((Self::PlatformFees, None)),
            ["channel", _, "clearing"] => Some((Self::ChannelClearing, None)),
            _ => None,
        }
    }

    /// Whether the account's balance is credits − debits and must stay at or above zero.
    pub fn credit_normal(self) -> bool {
        !matches!(self, Self::ChannelClearing)
    }
}

pub fn merchant_account(merchant_id: &str, which: &str) -> String {
    format!("merchant:{merchant_id}:{which}")
}

pub const PLATFORM_FEES: &str = "platform:fees";

pub fn clearing_account(channel: &str) -> String {
    format!("channel:{channel}:clearing")
}

/// Why an entry cannot be booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Unbalanced(String),
    NonPositive,
    TooFewPostings,
    UnknownAccount(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unbalanced(currency) => write!(f, "postings in {currency} do not balance"),
            Self::NonPositive => write!(f, "every posting amount must be positive"),
            Self::TooFewPostings => write!(f, "an entry needs at least two postings"),
            Self::UnknownAccount(a) => write!(f, "unknown account {a}"),
        }
    }
}

/// Checks that an entry can exist: positive amounts, known accounts, and per currency the
/// debits equal the credits.
pub fn check(postings: &[Posting]) -> Result<(), Refused> {
    if postings.len() < 2 {
        return Err(Refused::TooFewPostings);
    }
    let mut net: BTreeMap<&str, i128> = BTreeMap::new();
    for p in postings {
        if p.amount_minor <= 0 {
            return Err(Refused::NonPositive);
        }
        if AccountKind::of(&p.account).is_none() {
            return Err(Refused::UnknownAccount(p.account.clone()));
        }
        let signed = match p.side {
            Side::Debit => p.amount_minor as i128,
            Side::Credit => -(p.amount_minor as i128),
        };
        *net.entry(p.currency.as_str()).or_default() += signed;
    }
    match net.into_iter().find(|(_, n)| *n != 0) {
        Some((currency, _)) => Err(Refused::Unbalanced(currency.to_owned())),
        None => Ok(()),
    }
}

/// Postings with zero amounts dropped (a zero fee books nothing).
fn lines(items: &[(&str, &str, Side, i64)]) -> Vec<Posting> {
    items
        .iter()
        .filter(|(_, _, _, amount)| *amount != 0)
        .map(|(account, currency, side, amount)| Posting {
            account: (*account).to_owned(),
            currency: (*currency).to_owned(),
            side: *side,
            amount_minor: *amount,
        })
        .collect()
}

/// The ledger's memory of one payment, which later events book against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentBook {
    pub payment_id: String,
    pub merchant_id: String,
    pub currency: String,
    pub channel: String,
    /// Held in the merchant's pending account (authorized, not captured or released).
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub fee_minor: i64,
    pub refunded_minor: i64,
    pub fee_returned_minor: i64,
}

/// An authorization: the amount waits in the merchant's pending account.
pub fn authorize(book: &mut PaymentBook, amount: i64) -> Vec<Posting> {
    book.authorized_minor = amount;
    let pending = merchant_account(&book.merchant_id, "pending");
    let clearing = clearing_account(&book.channel);
    lines(&[
        (&clearing, &book.currency, Side::Debit, amount),
        (&pending, &book.currency, Side::Credit, amount),
    ])
}

/// Releases what an authorization held (cancel, or before booking its capture).
pub fn release(book: &mut PaymentBook) -> Vec<Posting> {
    let held = std::mem::take(&mut book.authorized_minor);
    let pending = merchant_account(&book.merchant_id, "pending");
    let clearing = clearing_account(&book.channel);
    lines(&[
        (&pending, &book.currency, Side::Debit, held),
        (&clearing, &book.currency, Side::Credit, held),
    ])
}

/// Money captured: the channel owes it, the merchant is owed it less the fee, the fee is
/// the platform's. `fee_for_full` is the policy's fee on the whole amount; a partial
/// capture pays its share, rounded down.
pub fn capture(
    book: &mut PaymentBook,
    amount: i64,
    captured: i64,
    fee_for_full: i64,
) -> Vec<Posting> {
    let mut postings = release(book);
    let fee = if amount <= 0 {
        0
    } else {
        ((fee_for_full.clamp(0, amount) as i128 * captured as i128) / amount as i128) as i64
    };
    book.captured_minor = captured;
    book.fee_minor = fee;
    let available = merchant_account(&book.merchant_id, "available");
    let clearing = clearing_account(&book.channel);
    postings.extend(lines(&[
        (&clearing, &book.currency, Side::Debit, captured),
        (&available, &book.currency, Side::Credit, captured - fee),
        (PLATFORM_FEES, &book.currency, Side::Credit, fee),
    ]));
    postings
}

/// A refund paid back to the customer. The platform returns the same share of its fee as
/// the refund is of the capture (rounded so the sum over all refunds is exact), so the
/// merchant never gives back more than this payment brought them.
pub fn refund(book: &mut PaymentBook, amount: i64) -> Result<Vec<Posting>, String> {
    if amount <= 0 {
        return Err("refund amount must be positive".into());
    }
    let refunded = book
        .refunded_minor
        .checked_add(amount)
        .filter(|total| *total <= book.captured_minor)
        .ok_or_else(|| {
            format!(
                "a refund of {amount} on {} refunded would pass the {} captured",
                book.refunded_minor, book.captured_minor
            )
        })?;
    let fee_returned_total =
        ((book.fee_minor as i128 * refunded as i128) / book.captured_minor as i128) as i64;
    let fee_back = fee_returned_total - book.fee_returned_minor;
    book.refunded_minor = refunded;
    book.fee_returned_minor = fee_returned_total;
    let available = merchant_account(&book.merchant_id, "available");
    let clearing = clearing_account(&book.channel);
    Ok(lines(&[
        (&available, &book.currency, Side::Debit, amount - fee_back),
        (PLATFORM_FEES, &book.currency, Side::Debit, fee_back),
        (&clearing, &book.currency, Side::Credit, amount),
    ]))
}

/// The entry that undoes `postings`: every line on the other side.
pub fn reverse(postings: &[Posting]) -> Vec<Posting> {
    postings
        .iter()
        .rev()
        .map(|p| Posting {
            side: p.side.opposite(),
            ..p.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> PaymentBook {
        PaymentBook {
            payment_id: "pay_1".into(),
            merchant_id: "mch_1".into(),
            currency: "USD".into(),
            channel: "sandbox".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_unbalanced_entry_is_refused() {
        let mut postings = capture(&mut book(), 1000, 1000, 30);
        check(&postings).unwrap();
        postings[0].amount_minor += 1;
        assert_eq!(check(&postings), Err(Refused::Unbalanced("USD".into())));
        assert_eq!(check(&postings[..1]), Err(Refused::TooFewPostings));
    }

    #[test]
    fn full_refunds_return_the_whole_fee_exactly() {
        let mut b = book();
        capture(&mut b, 1000, 1000, 33);
        let mut merchant_debits = 0;
        for amount in [333, 333, 334] {
            let postings = refund(&mut b, amount).unwrap();
            check(&postings).unwrap();
            merchant_debits += postings
                .iter()
                .filter(|p| p.account.ends_with(":available"))
                .map(|p| p.amount_minor)
                .sum::<i64>();
        }
        assert_eq!(b.fee_returned_minor, 33);
        assert_eq!(merchant_debits, 1000 - 33);
        assert!(refund(&mut b, 1).is_err());
        assert!(refund(&mut b, i64::MAX).is_err(), "refused, not wrapped");
    }
}
