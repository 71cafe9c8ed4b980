//! Reading payments, refunds and the expiry of unpaid payments.

use payloom_channel_contract as ch;
use payloom_channel_contract::ChannelCall;
use payloom_channel_contract::{ChannelIn, ChannelOut};
use payloom_order_contract::OrderStatus;
use payloom_payment_facts as types;
use payloom_platform::{ApiError, ApiResult, ids};
use sqlx::Row;

use crate::Gateway;
use crate::api::model::{
    PaymentList, PaymentOut, PaymentStatus, RefundIn, RefundOut, RefundStatus, is_order_no,
};
use crate::db::{PAYMENT_COLUMNS, REFUND_COLUMNS, payment_from_row, refund_from_row};
use crate::idempotency::KeyScope;

/// Largest page a list returns.
pub const LIST_LIMIT_MAX: i64 = 100;
const LIST_LIMIT_DEFAULT: i64 = 10;

/// Filters of `GET /v1/payments`, all optional; any other query parameter is refused.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only the payment of this order number.
    pub order_no: Option<String>,
    /// Only payments in this status.
    #[param(value_type = Option<PaymentStatus>)]
    pub status: Option<String>,
    /// How many payments a page holds.
    #[param(minimum = 1, maximum = 100, default = 10)]
    pub limit: Option<i64>,
    /// A payment id: the page starts after it (older payments).
    #[param(pattern = "^pay_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub starting_after: Option<String>,
}

impl Gateway {
    pub(crate) async fn get_payment(&self, merchant_id: &str, id: &str) -> ApiResult<PaymentOut> {
        let payment = self.load(merchant_id, id).await?;
        let unpaid = matches!(
            payment.status,
            PaymentStatus::Pending | PaymentStatus::RequiresAction
        );
        if unpaid && payment.expires_at_ms <= self.clock.now_ms() {
            self.expire(Some(id)).await?;
            return self.load(merchant_id, id).await;
        }
        Ok(payment)
    }

    pub(crate) async fn list_payments(
        &self,
        merchant_id: &str,
        q: ListQuery,
    ) -> ApiResult<PaymentList> {
        let limit = q.limit.unwrap_or(LIST_LIMIT_DEFAULT);
        if !(1..=LIST_LIMIT_MAX).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit must be 1 to 100"));
        }
        if let Some(status) = &q.status
            && PaymentStatus::parse(status).is_none()
        {
            return Err(ApiError::invalid(
                "status",
                format!("'{status}' is not a payment status"),
            ));
        }
        if let Some(after) = &q.starting_after
            && !ids::has_shape(after, "pay")
        {
            return Err(ApiError::invalid(
                "starting_after",
                "starting_after must be a payment id",
            ));
        }
        // No payment has an order number of another shape, so such a filter finds nothing
        // (and the database never sees it: PostgreSQL cannot compare text holding U+0000).
        if q.order_no.as_deref().is_some_and(|o| !is_order_no(o)) {
            return Ok(PaymentList {
                data: Vec::new(),
                has_more: false,
            });
        }
        let mut sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1");
        let mut binds = vec![merchant_id.to_owned()];
        for (column, op, value) in [
            ("order_no", "=", &q.order_no),
            ("status", "=", &q.status),
            ("id", "<", &q.starting_after),
        ] {
            if let Some(value) = value {
                binds.push(value.clone());
                sql.push_str(&format!(" AND {column} {op} ${}", binds.len()));
            }
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        let has_more = rows.len() as i64 > limit;
        let data = rows
            .iter()
            .take(limit as usize)
            .map(|r| payment_from_row(r).map(|p| p.out))
            .collect::<ApiResult<_>>()?;
        Ok(PaymentList { data, has_more })
    }

    /// Refunds part or all of a payment. Under an Idempotency-Key the refund's id is the
    /// key's and is written with the reservation, so a retry that resumes a failed or
    /// crashed request answers with that refund instead of asking the channel again.
    /// `input` has passed [`RefundIn::validate`].
    pub(crate) async fn create_refund(
        &self,
        merchant_id: &str,
        payment_id: &str,
        input: RefundIn,
        key: Option<&KeyScope>,
    ) -> ApiResult<RefundOut> {
        let now = self.clock.now_ms();
        let refund_id = match self.resumed_refund(merchant_id, key).await? {
            Ok(made) => return Ok(made),
            Err(id) => id.unwrap_or_else(|| ids::new_id("re", now)),
        };
        let row = self.load_row(merchant_id, payment_id).await?;
        let p = row.out;
        if p.status != PaymentStatus::Succeeded {
            return Err(ApiError::conflict(
                "payment_not_refundable",
                format!("a {} payment cannot be refunded", p.status.as_str()),
            ));
        }
        let mut tx = self.db.pool().begin().await?;
        // The check and the increment are one statement, so concurrent refunds can never
        // take the total past what was captured.
        let reserved = sqlx::query(
            "UPDATE payments SET amount_refunded_minor = amount_refunded_minor + $1, updated_at_ms = $2
             WHERE id = $3 AND merchant_id = $4 AND status = 'succeeded' AND amount_refunded_minor + $1 <= amount_captured_minor",
        )
        .bind(input.amount)
        .bind(now)
        .bind(payment_id)
        .bind(merchant_id)
        .execute(&mut *tx)
        .await?;
        if reserved.rows_affected() == 0 {
            // Well-formed, but more than the payment has left to refund: a conflict with
            // its state, which other refunds may have just changed.
            return Err(ApiError::conflict(
                "amount_too_large",
                "the refund would take the refunded total above the captured amount",
            )
            .with_param("amount"));
        }
        // Due for a re-query from the start, like a payment: a crash before the channel's
        // answer is written leaves it to the janitor.
        sqlx::query(&format!("INSERT INTO refunds ({REFUND_COLUMNS}, next_requery_at_ms) VALUES ($1, $2, $3, $4, $5, 'pending', $6, NULL, NULL, NULL, $7, $7, $8)"))
            .bind(&refund_id)
            .bind(payment_id)
            .bind(merchant_id)
            .bind(input.amount)
            .bind(&p.currency)
            .bind(&input.reason)
            .bind(now)
            .bind(self.requery_at(0, now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let answer = self
            .refund_at_channel(merchant_id, &p, &refund_id, &input)
            .await;
        self.apply_refund(&refund_id, payment_id, input.amount, answer, 0)
            .await?;
        if let Some(order_id) = &row.order_id {
            self.move_order_after_refund(merchant_id, payment_id, order_id)
                .await;
        }
        self.get_refund(merchant_id, &refund_id).await
    }

    /// The refund an earlier holder of the key made (`Ok`), or the id the key reserved for
    /// it (`Err`; none without a key).
    async fn resumed_refund(
        &self,
        merchant_id: &str,
        key: Option<&KeyScope>,
    ) -> ApiResult<Result<RefundOut, Option<String>>> {
        let Some(key) = key else {
            return Ok(Err(None));
        };
        let id = key.resource_id.clone();
        if let (true, Some(id)) = (key.resumed, &id)
            && let Some(made) = self.find_refund(merchant_id, id).await?
        {
            return Ok(Ok(made));
        }
        Ok(Err(id))
    }

    async fn refund_at_channel(
        &self,
        merchant_id: &str,
        p: &PaymentOut,
        refund_id: &str,
        input: &RefundIn,
    ) -> ApiResult<ChannelOut> {
        let channel = p
            .channel
            .clone()
            .ok_or_else(|| ApiError::internal("succeeded payment without a channel"))?;
        let request = ch::RefundRequest {
            refund_id: refund_id.to_owned(),
            payment_id: p.id.clone(),
            payment_reference: p.channel_reference.clone(),
            amount: types::Money {
                amount_minor: input.amount,
                currency: p.currency.clone(),
            },
            reason: input.reason.clone(),
        };
        self.deps
            .channels
            .call(ChannelIn {
                merchant_id: merchant_id.to_owned(),
                channel,
                call: ChannelCall::Refund(request),
            })
            .await
    }

    /// Writes a channel's answer to a refund still `pending`; `attempts` re-queries were
    /// made before this answer (a refund left pending is asked again on the schedule).
    pub(crate) async fn apply_refund(
        &self,
        refund_id: &str,
        payment_id: &str,
        amount: i64,
        answer: ApiResult<ChannelOut>,
        attempts: i64,
    ) -> ApiResult<()> {
        let (status, reference, failure) = match answer {
            Ok(ChannelOut::Refund(Ok(r))) => match r.outcome {
                ch::RefundOutcome::Succeeded => (RefundStatus::Succeeded, r.reference, None),
                ch::RefundOutcome::Pending | ch::RefundOutcome::Unknown(_) => {
                    (RefundStatus::Pending, r.reference, None)
                }
                ch::RefundOutcome::Declined(d) => {
                    (RefundStatus::Failed, r.reference, Some((d.code, d.message)))
                }
            },
            Ok(ChannelOut::Refund(Err(e))) => (
                RefundStatus::Failed,
                None,
                Some(("channel_refused".to_owned(), format!("{e:?}"))),
            ),
            // No answer: the refund may have happened; it stays pending for the janitor.
            Ok(ChannelOut::Payment(_) | ChannelOut::Notification(_)) | Err(_) => {
                (RefundStatus::Pending, None, None)
            }
        };
        let now = self.clock.now_ms();
        let mut tx = self.db.pool().begin().await?;
        let requery = if status == RefundStatus::Pending {
            self.requery_at(attempts, now)
        } else {
            None
        };
        let moved = sqlx::query(&format!("UPDATE refunds SET status = $1, channel_reference = COALESCE($2, channel_reference), failure_code = $3, failure_message = $4, updated_at_ms = $5,
            requery_attempts = $7, next_requery_at_ms = $8 WHERE id = $6 AND status = 'pending' RETURNING {REFUND_COLUMNS}"))
            .bind(status.as_str())
            .bind(reference)
            .bind(failure.as_ref().map(|f| f.0.clone()))
            .bind(failure.as_ref().map(|f| f.1.clone()))
            .bind(now)
            .bind(refund_id)
            .bind(attempts)
            .bind(requery)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(moved) = moved else {
            return Ok(());
        };
        // A refund still pending is news only when it finishes.
        if status != RefundStatus::Pending {
            let merchant_id: String = moved.try_get("merchant_id")?;
            self.emit_refund(&mut tx, &merchant_id, &refund_from_row(&moved)?)
                .await?;
        }
        if status == RefundStatus::Failed {
            // A declined refund gives its amount back to what can still be refunded.
            sqlx::query("UPDATE payments SET amount_refunded_minor = amount_refunded_minor - $1, updated_at_ms = $2 WHERE id = $3")
                .bind(amount)
                .bind(now)
                .bind(payment_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        Ok(())
    }

    /// The order follows the refunded total. Concurrent refunds may race on the order;
    /// the payment row is the record of money, so a lost race is logged, not failed.
    pub(crate) async fn move_order_after_refund(
        &self,
        merchant_id: &str,
        payment_id: &str,
        order_id: &str,
    ) {
        let Ok(p) = self.load(merchant_id, payment_id).await else {
            return;
        };
        let to = if p.amount_refunded >= p.amount_captured {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartiallyRefunded
        };
        if p.amount_refunded > 0
            && let Err(e) = self.deps.orders.transition(order_id, to).await
        {
            tracing::info!(order_id, "order not moved after refund: {e}");
        }
    }

    pub(crate) async fn get_refund(&self, merchant_id: &str, id: &str) -> ApiResult<RefundOut> {
        self.find_refund(merchant_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("refund", id))
    }

    /// The merchant's refund `id`, if there is one.
    async fn find_refund(&self, merchant_id: &str, id: &str) -> ApiResult<Option<RefundOut>> {
        if !ids::has_shape(id, "re") {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND merchant_id = $2"
        ))
        .bind(id)
        .bind(merchant_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(refund_from_row).transpose()
    }

    /// Expires every unpaid payment past its expiry.
    pub(crate) async fn expire_due(&self) -> ApiResult<usize> {
        self.expire(None).await
    }

    /// Drops Idempotency-Keys older than the retention: finished ones, and ones whose
    /// request never finished and whose lease has passed (nobody resumed them in time).
    /// A key whose lease still holds belongs to a request in flight and stays.
    pub(crate) async fn forget_idempotency_keys(&self) -> ApiResult<u64> {
        let now = self.clock.now_ms();
        let cutoff = now - self.config.idempotency_retention_secs * 1_000;
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at_ms < $1 AND (state = 'done' OR locked_until_ms < $2)",
        )
        .bind(cutoff)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Expires unpaid payments past their expiry (one, or all). Each row is claimed by the
    /// update itself, so concurrent sweepers on several nodes expire it once.
    async fn expire(&self, only: Option<&str>) -> ApiResult<usize> {
        let now = self.clock.now_ms();
        let sql = format!(
            "UPDATE payments SET status = 'expired', failure_code = 'expired', failure_message = 'the payment was not completed in time', updated_at_ms = $1
             WHERE status IN ('pending', 'requires_action') AND expires_at_ms <= $1{}
             RETURNING {PAYMENT_COLUMNS}",
            if only.is_some() { " AND id = $2" } else { "" }
        );
        let mut query = sqlx::query(&sql).bind(now);
        if let Some(id) = only {
            query = query.bind(id);
        }
        let mut tx = self.db.pool().begin().await?;
        let rows = query.fetch_all(&mut *tx).await?;
        let expired = rows
            .iter()
            .map(payment_from_row)
            .collect::<ApiResult<Vec<_>>>()?;
        for payment in &expired {
            self.emit_payment(&mut tx, payment).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        for payment in &expired {
            self.metrics.reached(payment);
        }
        for payment in expired {
            let order_id = payment.order_id;
            let reservation = payment.quota_reservation_id;
            tracing::info!(payment_id = payment.out.id, "payment expired");
            if let Some(order_id) = order_id
                && let Err(e) = self
                    .deps
                    .orders
                    .transition(&order_id, OrderStatus::Expired)
                    .await
            {
                tracing::warn!(order_id, "order not expired: {e}");
            }
            self.release_quota(reservation.as_deref()).await;
        }
        Ok(rows.len())
    }
}
