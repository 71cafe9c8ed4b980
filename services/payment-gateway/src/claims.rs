//! Capture and cancel. The move is claimed on the payment row first (`capturing`,
//! `canceling`, an update only one request can win), then the channel is called, then
//! the claim is settled by its answer. Concurrent captures and cancels therefore reach
//! the PSP once between them, and a lost claim answers 409. A claim whose answer never
//! came (a crash, a timeout) is settled by the janitor asking the PSP, once the claim's
//! lease has passed.

use axum::http::StatusCode;
use payloom_channel_contract as ch;
use payloom_channel_contract::ChannelCall;
use payloom_channel_contract::{CHANNEL_UNAVAILABLE, CHANNEL_UNKNOWN, ChannelIn, ChannelOut};
use payloom_payment_facts as types;
use payloom_platform::{ApiError, ApiResult};

use crate::Gateway;
use crate::api::model::{PaymentOut, PaymentStatus, check_amount};
use crate::db::{PAYMENT_COLUMNS, PaymentRow, payment_from_row};
use crate::flow::{Applied, Opening};
use crate::idempotency::{CLAIMED, KeyScope};

/// The moves made through a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Capture,
    Cancel,
}

impl Op {
    /// The state a payment holds while its move is claimed.
    pub(crate) fn claimed(self) -> PaymentStatus {
        match self {
            Op::Capture => PaymentStatus::Capturing,
            Op::Cancel => PaymentStatus::Canceling,
        }
    }

    /// Which claim a payment in `status` holds, if any.
    pub(crate) fn holding(status: PaymentStatus) -> Option<Op> {
        match status {
            PaymentStatus::Capturing => Some(Op::Capture),
            PaymentStatus::Canceling => Some(Op::Cancel),
            _ => None,
        }
    }

    fn done(self) -> PaymentStatus {
        match self {
            Op::Capture => PaymentStatus::Succeeded,
            Op::Cancel => PaymentStatus::Canceled,
        }
    }

    fn claimable_from(self) -> &'static [PaymentStatus] {
        use PaymentStatus::*;
        match self {
            Op::Capture => &[Authorized],
            Op::Cancel => &[Pending, RequiresAction, Authorized],
        }
    }

    fn refused(self, status: PaymentStatus) -> ApiError {
        match self {
            Op::Capture => ApiError::conflict(
                "payment_not_capturable",
                format!("a {} payment cannot be captured", status.as_str()),
            ),
            Op::Cancel => ApiError::conflict(
                "payment_not_cancelable",
                format!("a {} payment cannot be canceled", status.as_str()),
            ),
        }
    }
}

/// How a claim ends.
#[derive(Debug)]
pub(crate) enum Settle {
    /// The PSP made a move (usually the claimed one): the payment takes it, with its event.
    To(PaymentStatus),
    /// The PSP did not make the move: the payment goes back to where it was claimed from.
    Back,
    /// Nobody knows yet: the claim stays and the janitor asks the PSP.
    Open,
}

impl Gateway {
    /// Captures `amount` (the whole authorization when unset). 200 when captured, 202 when
    /// the channel has not confirmed it yet (the payment stays `capturing`).
    pub(crate) async fn capture(
        &self,
        merchant_id: &str,
        id: &str,
        amount: Option<i64>,
        key: Option<&KeyScope>,
    ) -> ApiResult<(StatusCode, PaymentOut)> {
        if let Some(resumed) = self.resume_claim(merchant_id, id, Op::Capture, key).await? {
            return Ok(resumed);
        }
        let row = self.claimable(merchant_id, id, Op::Capture).await?;
        let amount = amount.unwrap_or(row.out.amount);
        check_amount("amount", amount)?;
        if amount > row.out.amount {
            // Well-formed, but more than this payment's authorization: its state decides.
            return Err(ApiError::conflict(
                "amount_too_large",
                format!("amount is more than was authorized ({})", row.out.amount),
            )
            .with_param("amount"));
        }
        let claimed = self.claim(&row, Op::Capture, Some(amount), key).await?;
        let answer = self
            .at_channel(&claimed, ChannelCall::Capture, amount)
            .await;
        let (settle, error) = capture_answer(answer);
        self.settle_request(&claimed, Op::Capture, settle, amount, error)
            .await
    }

    /// Cancels a payment that has not completed. 200 when canceled, 202 when the channel
    /// has not confirmed it yet (the payment stays `canceling`).
    pub(crate) async fn cancel(
        &self,
        merchant_id: &str,
        id: &str,
        key: Option<&KeyScope>,
    ) -> ApiResult<(StatusCode, PaymentOut)> {
        if let Some(resumed) = self.resume_claim(merchant_id, id, Op::Cancel, key).await? {
            return Ok(resumed);
        }
        let row = self.claimable(merchant_id, id, Op::Cancel).await?;
        let claimed = self.claim(&row, Op::Cancel, None, key).await?;
        let amount = claimed.out.amount;
        let answer = self.at_channel(&claimed, ChannelCall::Cancel, amount).await;
        let (settle, error) = cancel_answer(answer);
        self.settle_request(&claimed, Op::Cancel, settle, amount, error)
            .await
    }

    /// A retry that took over a key whose holder claimed the move answers with where the
    /// claim stands, and never calls the channel again: 202 while claimed, 200 once done,
    /// and 409 when the PSP did not make the move (a new key may try again).
    async fn resume_claim(
        &self,
        merchant_id: &str,
        id: &str,
        op: Op,
        key: Option<&KeyScope>,
    ) -> ApiResult<Option<(StatusCode, PaymentOut)>> {
        if !key.is_some_and(|k| k.resumes(CLAIMED)) {
            return Ok(None);
        }
        let payment = self.load(merchant_id, id).await?;
        match payment.status {
            s if s == op.claimed() => Ok(Some((StatusCode::ACCEPTED, payment))),
            s if s == op.done() => Ok(Some((StatusCode::OK, payment))),
            other => Err(op.refused(other)),
        }
    }

    async fn claimable(&self, merchant_id: &str, id: &str, op: Op) -> ApiResult<PaymentRow> {
        let row = self.load_row(merchant_id, id).await?;
        if !op.claimable_from().contains(&row.out.status) {
            return Err(op.refused(row.out.status));
        }
        if row.out.channel.is_none() {
            return Err(ApiError::conflict(
                "payment_without_channel",
                "this payment never reached a channel",
            ));
        }
        Ok(row)
    }

    /// Claims the move; with an Idempotency-Key, the key records the claim in the same
    /// transaction. The claim's lease keeps the janitor away while the request runs.
    async fn claim(
        &self,
        row: &PaymentRow,
        op: Op,
        amount: Option<i64>,
        key: Option<&KeyScope>,
    ) -> ApiResult<PaymentRow> {
        let now = self.clock.now_ms();
        let from: Vec<String> = op
            .claimable_from()
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let sql = format!(
            "UPDATE payments SET status = $1, claimed_from = status, claim_amount_minor = $2, updated_at_ms = $3,
             next_requery_at_ms = $4, requery_attempts = 0
             WHERE id = $5 AND status IN ({}) RETURNING {PAYMENT_COLUMNS}",
            from.join(", ")
        );
        let query = sqlx::query(&sql)
            .bind(op.claimed().as_str())
            .bind(amount)
            .bind(now)
            .bind(now + self.lease_ms())
            .bind(&row.out.id);
        let claimed = match key {
            None => query.fetch_optional(self.db.pool()).await?,
            Some(key) => {
                let mut tx = self.db.pool().begin().await?;
                let claimed = query.fetch_optional(&mut *tx).await?;
                if claimed.is_some() {
                    key.record(&mut tx, CLAIMED).await?;
                }
                tx.commit().await?;
                claimed
            }
        };
        match claimed {
            Some(row) => payment_from_row(&row),
            None => {
                let now = self.load(&row.merchant_id, &row.out.id).await?;
                Err(op.refused(now.status))
            }
        }
    }

    /// Capture, cancel or query at the channel, for `amount`.
    pub(crate) async fn at_channel(
        &self,
        row: &PaymentRow,
        op: fn(ch::PaymentRef) -> ChannelCall,
        amount: i64,
    ) -> ApiResult<ChannelOut> {
        let p = &row.out;
        let reference = ch::PaymentRef {
            payment_id: p.id.clone(),
            reference: p.channel_reference.clone(),
            amount: types::Money {
                amount_minor: amount,
                currency: p.currency.clone(),
            },
        };
        let channel = p.channel.clone().unwrap_or_default();
        self.deps
            .channels
            .call(ChannelIn {
                merchant_id: row.merchant_id.clone(),
                channel,
                call: op(reference),
            })
            .await
    }

    /// Settles the claim a request made and answers it.
    async fn settle_request(
        &self,
        claimed: &PaymentRow,
        op: Op,
        settle: Settle,
        amount: i64,
        error: Option<ApiError>,
    ) -> ApiResult<(StatusCode, PaymentOut)> {
        let written = self.settle(claimed, settle, amount, 0).await?;
        if let Some(error) = error {
            return Err(error);
        }
        let payment = match written {
            Some(payment) => payment,
            None => self.load(&claimed.merchant_id, &claimed.out.id).await?,
        };
        let status = match payment.status == op.claimed() {
            true => StatusCode::ACCEPTED,
            false => StatusCode::OK,
        };
        Ok((status, payment))
    }

    /// Ends a claim (or keeps it open for re-query `attempt`); `amount` is what a capture
    /// moves. Returns the payment when the move was written. A move lands on the claim,
    /// or on the state it came from when the janitor put it back meanwhile (a late
    /// answer); a notification that settled it first wins.
    pub(crate) async fn settle(
        &self,
        claimed: &PaymentRow,
        settle: Settle,
        amount: i64,
        attempt: i64,
    ) -> ApiResult<Option<PaymentOut>> {
        let Some(op) = Op::holding(claimed.out.status) else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        match settle {
            Settle::To(status) => {
                let applied = Applied {
                    status,
                    reference: None,
                    next_action: None,
                    failure: None,
                };
                let Some(order_id) = &claimed.order_id else {
                    return Ok(None);
                };
                let reservation = claimed.quota_reservation_id.as_deref();
                let opening = Opening::Claimed;
                let id = &claimed.out.id;
                return self
                    .apply(id, order_id, reservation, amount, applied, opening)
                    .await;
            }
            Settle::Back => {
                // Back where it was, which the merchant never saw change: no event.
                sqlx::query("UPDATE payments SET status = claimed_from, claimed_from = NULL, claim_amount_minor = NULL, updated_at_ms = $1, next_requery_at_ms = $1
                     WHERE id = $2 AND status = $3")
                    .bind(now)
                    .bind(&claimed.out.id)
                    .bind(op.claimed().as_str())
                    .execute(self.db.pool())
                    .await?;
            }
            Settle::Open => {
                sqlx::query("UPDATE payments SET requery_attempts = $1, next_requery_at_ms = $2 WHERE id = $3 AND status = $4")
                    .bind(attempt)
                    .bind(self.requery_at(attempt, now))
                    .bind(&claimed.out.id)
                    .bind(op.claimed().as_str())
                    .execute(self.db.pool())
                    .await?;
            }
        }
        Ok(None)
    }
}

/// What a channel's answer to `capture` means for the claim, and the error to answer
/// with if the capture did not happen.
pub(crate) fn capture_answer(answer: ApiResult<ChannelOut>) -> (Settle, Option<ApiError>) {
    let response = match answer {
        Ok(ChannelOut::Payment(Ok(response))) => response,
        other => return unanswered(other),
    };
    match response.outcome {
        ch::Outcome::Succeeded => (Settle::To(PaymentStatus::Succeeded), None),
        ch::Outcome::Declined(d) => (
            Settle::Back,
            Some(ApiError::new(402, "channel_error", &d.code, d.message)),
        ),
        ch::Outcome::Authorized => (
            Settle::Back,
            Some(ApiError::new(
                502,
                "api_error",
                "capture_unconfirmed",
                "the channel says the payment is still authorized; it stays authorized",
            )),
        ),
        // Accepted for later, unknown, or an answer only the janitor's query can sort out.
        ch::Outcome::Pending
        | ch::Outcome::Unknown(_)
        | ch::Outcome::Canceled
        | ch::Outcome::RequiresAction(_) => (Settle::Open, None),
    }
}

/// What a channel's answer to `cancel` means for the claim.
pub(crate) fn cancel_answer(answer: ApiResult<ChannelOut>) -> (Settle, Option<ApiError>) {
    let response = match answer {
        Ok(ChannelOut::Payment(Ok(response))) => response,
        other => return unanswered(other),
    };
    match response.outcome {
        ch::Outcome::Canceled => (Settle::To(PaymentStatus::Canceled), None),
        ch::Outcome::Declined(d) => (
            Settle::Back,
            Some(ApiError::new(402, "channel_error", &d.code, d.message)),
        ),
        ch::Outcome::Authorized | ch::Outcome::RequiresAction(_) => (
            Settle::Back,
            Some(ApiError::new(
                502,
                "api_error",
                "cancel_unconfirmed",
                "the channel did not cancel the payment; it stays as it was",
            )),
        ),
        // Accepted for later (`pending`), unknown, or settled otherwise: the janitor asks.
        ch::Outcome::Pending | ch::Outcome::Unknown(_) | ch::Outcome::Succeeded => {
            (Settle::Open, None)
        }
    }
}

/// A call that brought no outcome: a refusal by the component or the host means nothing
/// happened at the PSP; anything else (a timeout, a crash) may hide a move.
fn unanswered(answer: ApiResult<ChannelOut>) -> (Settle, Option<ApiError>) {
    match answer {
        Ok(ChannelOut::Payment(Err(ch::ChannelError::Upstream(_)))) => (Settle::Open, None),
        Ok(ChannelOut::Payment(Err(e))) => (
            Settle::Back,
            Some(ApiError::new(
                402,
                "channel_error",
                "channel_refused",
                format!("{e:?}"),
            )),
        ),
        Err(e) if e.code == CHANNEL_UNAVAILABLE || e.code == CHANNEL_UNKNOWN => {
            (Settle::Back, Some(e))
        }
        Ok(_) | Err(_) => (Settle::Open, None),
    }
}

/// What the PSP's answer to the janitor's `query-payment` means for a claim left open.
pub(crate) fn settle_from_query(op: Op, answer: ApiResult<ChannelOut>) -> Settle {
    let Ok(ChannelOut::Payment(Ok(response))) = answer else {
        return Settle::Open;
    };
    use ch::Outcome::*;
    match (op, response.outcome) {
        (_, Succeeded) => Settle::To(PaymentStatus::Succeeded),
        (_, Canceled) => Settle::To(PaymentStatus::Canceled),
        // Past the claim's lease the PSP still shows no capture: it did not make one.
        (Op::Capture, Authorized) => Settle::Back,
        (Op::Cancel, Authorized | Pending | RequiresAction(_)) => Settle::Back,
        (Op::Cancel, Declined(_)) => Settle::To(PaymentStatus::Failed),
        (Op::Capture, Pending | RequiresAction(_) | Declined(_) | Unknown(_))
        | (Op::Cancel, Unknown(_)) => Settle::Open,
    }
}
