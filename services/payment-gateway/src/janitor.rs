//! The janitor: payments whose outcome is open (`processing` after an unknown answer, a
//! timeout or a crash before the answer was written; `pending` at the PSP; a capture or
//! cancel claimed and never settled, once its lease has passed) are asked again through
//! the channel's `query-payment` on a backoff schedule, and refunds left `pending` through
//! `query-refund`; the answer is applied like any other, with its event.

use payloom_channel_contract as ch;
use payloom_channel_contract::ChannelCall;
use payloom_channel_contract::{ChannelIn, ChannelOut};
use payloom_payment_facts as types;
use payloom_platform::ApiResult;
use sqlx::Row;

use crate::Gateway;
use crate::claims::{Op, Settle, settle_from_query};
use crate::db::{PAYMENT_COLUMNS, REFUND_COLUMNS, payment_from_row, refund_from_row};
use crate::flow::{Opening, applied_from};

/// Payments re-queried per round.
const ROUND: i64 = 50;

impl Gateway {
    /// Re-queries every open payment that is due; returns how many were asked.
    pub(crate) async fn requery_due(&self) -> ApiResult<usize> {
        let now = self.clock.now_ms();
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS}, requery_attempts FROM payments
             WHERE status IN ('processing', 'pending', 'capturing', 'canceling') AND next_requery_at_ms <= $1
             ORDER BY next_requery_at_ms LIMIT {ROUND}"
        ))
        .bind(now)
        .fetch_all(self.db.pool())
        .await?;
        for row in &rows {
            let payment = payment_from_row(row)?;
            let attempts: i64 = row.try_get("requery_attempts")?;
            if let Err(e) = self.requery(payment, attempts + 1).await {
                tracing::warn!("re-query failed: {e}");
            }
        }
        let refunds = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS}, requery_attempts FROM refunds
             WHERE status = 'pending' AND next_requery_at_ms <= $1
             ORDER BY next_requery_at_ms LIMIT {ROUND}"
        ))
        .bind(now)
        .fetch_all(self.db.pool())
        .await?;
        for row in &refunds {
            let merchant_id: String = row.try_get("merchant_id")?;
            let attempts: i64 = row.try_get("requery_attempts")?;
            let refund = refund_from_row(row)?;
            if let Err(e) = self
                .requery_refund(&merchant_id, refund, attempts + 1)
                .await
            {
                tracing::warn!("refund re-query failed: {e}");
            }
        }
        Ok(rows.len() + refunds.len())
    }

    async fn requery_refund(
        &self,
        merchant_id: &str,
        refund: crate::api::model::RefundOut,
        attempt: i64,
    ) -> ApiResult<()> {
        let now = self.clock.now_ms();
        let payment = self.load_row(merchant_id, &refund.payment_id).await?;
        let Some(channel) = payment.out.channel.clone() else {
            return Ok(());
        };
        let answer = self
            .deps
            .channels
            .call(ChannelIn {
                merchant_id: merchant_id.to_owned(),
                channel,
                call: ChannelCall::QueryRefund(ch::RefundRef {
                    refund_id: refund.id.clone(),
                    reference: refund.channel_reference.clone(),
                    amount: types::Money {
                        amount_minor: refund.amount,
                        currency: refund.currency.clone(),
                    },
                }),
            })
            .await;
        tracing::info!(refund_id = refund.id, attempt, "refund re-queried");
        match answer {
            // Only the PSP's word on the refund settles it; an error keeps it open.
            Ok(answer @ ChannelOut::Refund(Ok(_))) => {
                self.apply_refund(
                    &refund.id,
                    &refund.payment_id,
                    refund.amount,
                    Ok(answer),
                    attempt,
                )
                .await?;
                if let Some(order_id) = &payment.order_id {
                    self.move_order_after_refund(merchant_id, &refund.payment_id, order_id)
                        .await;
                }
            }
            _ => {
                sqlx::query("UPDATE refunds SET requery_attempts = $1, next_requery_at_ms = $2 WHERE id = $3 AND status = 'pending'")
                    .bind(attempt)
                    .bind(self.requery_at(attempt, now))
                    .bind(&refund.id)
                    .execute(self.db.pool())
                    .await?;
            }
        }
        Ok(())
    }

    async fn requery(&self, row: crate::db::PaymentRow, attempt: i64) -> ApiResult<()> {
        let p = &row.out;
        let now = self.clock.now_ms();
        if p.channel.is_none() {
            return Ok(());
        }
        let answer = self
            .at_channel(&row, ChannelCall::QueryPayment, p.amount)
            .await;
        if let Some(op) = Op::holding(p.status) {
            let settle = settle_from_query(op, answer);
            tracing::info!(payment_id = p.id, attempt, ?settle, "claim re-queried");
            if matches!(settle, Settle::Open) && self.requery_at(attempt, now).is_none() {
                tracing::warn!(
                    payment_id = p.id,
                    "claim still open with no re-query left: an operator must settle it"
                );
            }
            self.settle(&row, settle, p.amount, attempt).await?;
            return Ok(());
        }
        let mut applied = applied_from(answer);
        // A PSP that cannot find or read the payment has not settled it: keep asking.
        if applied
            .failure
            .as_ref()
            .is_some_and(|(code, _)| code.starts_with("channel_") && applied.reference.is_none())
        {
            applied.status = crate::api::model::PaymentStatus::Processing;
        }
        tracing::info!(
            payment_id = p.id,
            attempt,
            status = applied.status.as_str(),
            "payment re-queried"
        );
        let moved = self
            .apply_to_row(&row, applied, Opening::Requery(attempt))
            .await?;
        if moved.is_none() {
            // Still open (or moved by someone else meanwhile): only the schedule advances.
            sqlx::query("UPDATE payments SET requery_attempts = $1, next_requery_at_ms = $2 WHERE id = $3 AND status IN ('processing', 'pending')")
                .bind(attempt)
                .bind(self.requery_at(attempt, now))
                .bind(&p.id)
                .execute(self.db.pool())
                .await?;
        }
        Ok(())
    }
}
