//! The janitor: payments whose outcome is open (`processing` after an unknown answer, a
//! timeout or a crash before the answer was written; `pending` at the PSP) are asked again
//! through the channel's `query-payment` on a backoff schedule, and the answer is applied
//! like any other, with its event.

use payloom_channel_adapter::ChannelIn;
use payloom_host::ChannelCall;
use payloom_host::bindings::{channel_types as ch, types};
use payloom_platform::ApiResult;
use sqlx::Row;

use crate::Gateway;
use crate::db::{PAYMENT_COLUMNS, payment_from_row};
use crate::flow::{Opening, applied_from};

/// Payments re-queried per round.
const ROUND: i64 = 50;

impl Gateway {
    /// Re-queries every open payment that is due; returns how many were asked.
    pub(crate) async fn requery_due(&self) -> ApiResult<usize> {
        let now = self.clock.now_ms();
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS}, requery_attempts FROM payments
             WHERE status IN ('processing', 'pending') AND next_requery_at_ms <= $1
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
        Ok(rows.len())
    }

    async fn requery(&self, row: crate::db::PaymentRow, attempt: i64) -> ApiResult<()> {
        let p = &row.out;
        let now = self.clock.now_ms();
        let answer = match &p.channel {
            Some(channel) => {
                let reference = ch::PaymentRef {
                    payment_id: p.id.clone(),
                    reference: p.channel_reference.clone(),
                    amount: types::Money {
                        amount_minor: p.amount,
                        currency: p.currency.clone(),
                    },
                };
                self.deps
                    .channels
                    .call(ChannelIn {
                        merchant_id: row.merchant_id.clone(),
                        channel: channel.clone(),
                        call: ChannelCall::QueryPayment(reference),
                    })
                    .await
            }
            None => return Ok(()),
        };
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
