//! Reading payments, capture, cancel, refunds and the expiry of unpaid payments.

use payloom_channel_adapter::{ChannelIn, ChannelOut};
use payloom_host::ChannelCall;
use payloom_host::bindings::{channel_types as ch, types};
use payloom_order::OrderStatus;
use payloom_platform::{ApiError, ApiResult, ids};
use sqlx::Row;

use crate::Gateway;
use crate::api::model::{
    PaymentList, PaymentOut, PaymentStatus, RefundIn, RefundOut, RefundStatus, check_amount,
};
use crate::db::{PAYMENT_COLUMNS, REFUND_COLUMNS, payment_from_row, refund_from_row};

/// Largest page a list returns.
pub const LIST_LIMIT_MAX: i64 = 100;
const LIST_LIMIT_DEFAULT: i64 = 10;

/// Filters of `GET /v1/payments`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub order_no: Option<String>,
    pub status: Option<String>,
    /// 1 to 100, default 10.
    pub limit: Option<i64>,
    /// A payment id: the page starts after it (older payments).
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

    pub(crate) async fn capture(
        &self,
        merchant_id: &str,
        id: &str,
        amount: Option<i64>,
    ) -> ApiResult<PaymentOut> {
        let row = self.load_row(merchant_id, id).await?;
        let p = &row.out;
        if p.status != PaymentStatus::Authorized {
            return Err(ApiError::conflict(
                "payment_not_capturable",
                format!("a {} payment cannot be captured", p.status.as_str()),
            ));
        }
        let amount = amount.unwrap_or(p.amount);
        check_amount("amount", amount)?;
        if amount > p.amount {
            return Err(ApiError::invalid(
                "amount",
                "amount is more than was authorized",
            ));
        }
        let response = self
            .payment_op(merchant_id, p, ChannelCall::Capture, amount)
            .await?;
        match response.outcome {
            ch::Outcome::Succeeded => {}
            ch::Outcome::Declined(d) => {
                return Err(ApiError::new(402, "channel_error", &d.code, d.message));
            }
            other => {
                return Err(ApiError::new(
                    502,
                    "api_error",
                    "capture_unconfirmed",
                    format!("the channel answered {other:?}; the payment stays authorized"),
                ));
            }
        }
        let moved = self
            .move_payment(
                "status = 'succeeded', amount_captured_minor = $3",
                "status = 'authorized'",
                id,
                Some(amount),
            )
            .await?;
        if moved && let Some(order_id) = &row.order_id {
            self.deps
                .orders
                .transition(order_id, OrderStatus::Paid)
                .await?;
        }
        self.load(merchant_id, id).await
    }

    pub(crate) async fn cancel(&self, merchant_id: &str, id: &str) -> ApiResult<PaymentOut> {
        let row = self.load_row(merchant_id, id).await?;
        let p = &row.out;
        if !matches!(
            p.status,
            PaymentStatus::Pending | PaymentStatus::RequiresAction | PaymentStatus::Authorized
        ) {
            return Err(ApiError::conflict(
                "payment_not_cancelable",
                format!("a {} payment cannot be canceled", p.status.as_str()),
            ));
        }
        let response = self
            .payment_op(merchant_id, p, ChannelCall::Cancel, p.amount)
            .await?;
        if !matches!(response.outcome, ch::Outcome::Canceled) {
            return Err(ApiError::new(
                502,
                "api_error",
                "cancel_unconfirmed",
                format!("the channel answered {:?}", response.outcome),
            ));
        }
        let from = format!("status = '{}'", p.status.as_str());
        let moved = self
            .move_payment("status = 'canceled'", &from, id, None)
            .await?;
        if moved {
            if let Some(order_id) = &row.order_id {
                self.deps
                    .orders
                    .transition(order_id, OrderStatus::Canceled)
                    .await?;
            }
            self.release_quota(row.quota_reservation_id.as_deref())
                .await;
        }
        self.load(merchant_id, id).await
    }

    /// Moves a payment with `set` if it still matches `only_if`, and writes its event in
    /// the same transaction. `false` when someone else moved it first.
    async fn move_payment(
        &self,
        set: &str,
        only_if: &str,
        id: &str,
        amount: Option<i64>,
    ) -> ApiResult<bool> {
        let mut tx = self.db.pool().begin().await?;
        let sql = format!(
            "UPDATE payments SET {set}, updated_at_ms = $1 WHERE id = $2 AND {only_if} RETURNING {PAYMENT_COLUMNS}"
        );
        let mut query = sqlx::query(&sql).bind(self.clock.now_ms()).bind(id);
        if let Some(amount) = amount {
            query = query.bind(amount);
        }
        let Some(row) = query.fetch_optional(&mut *tx).await? else {
            return Ok(false);
        };
        self.emit_payment(&mut tx, &payment_from_row(&row)?).await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(true)
    }

    /// Capture or cancel at the channel.
    async fn payment_op(
        &self,
        merchant_id: &str,
        p: &PaymentOut,
        op: fn(ch::PaymentRef) -> ChannelCall,
        amount: i64,
    ) -> ApiResult<ch::PaymentResponse> {
        let channel = p.channel.clone().ok_or_else(|| {
            ApiError::conflict(
                "payment_without_channel",
                "this payment never reached a channel",
            )
        })?;
        let reference = ch::PaymentRef {
            payment_id: p.id.clone(),
            reference: p.channel_reference.clone(),
            amount: types::Money {
                amount_minor: amount,
                currency: p.currency.clone(),
            },
        };
        let call = ChannelIn {
            merchant_id: merchant_id.to_owned(),
            channel,
            call: op(reference),
        };
        match self.deps.channels.call(call).await? {
            ChannelOut::Payment(Ok(response)) => Ok(response),
            ChannelOut::Payment(Err(e)) => Err(ApiError::new(
                402,
                "channel_error",
                "channel_refused",
                format!("{e:?}"),
            )),
            ChannelOut::Refund(_) | ChannelOut::Notification(_) => Err(ApiError::internal(
                "channel answered a payment call with another kind of answer",
            )),
        }
    }

    pub(crate) async fn create_refund(
        &self,
        merchant_id: &str,
        payment_id: &str,
        input: RefundIn,
    ) -> ApiResult<RefundOut> {
        check_amount("amount", input.amount)?;
        if input
            .reason
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.len() > 500)
        {
            return Err(ApiError::invalid(
                "reason",
                "reason must be 1 to 500 characters",
            ));
        }
        let row = self.load_row(merchant_id, payment_id).await?;
        let p = row.out;
        if p.status != PaymentStatus::Succeeded {
            return Err(ApiError::conflict(
                "payment_not_refundable",
                format!("a {} payment cannot be refunded", p.status.as_str()),
            ));
        }
        let now = self.clock.now_ms();
        let refund_id = ids::new_id("re", now);
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
            return Err(ApiError::new(
                400,
                "invalid_request_error",
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
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND merchant_id = $2"
        ))
        .bind(id)
        .bind(merchant_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| ApiError::not_found("refund", id))?;
        refund_from_row(&row)
    }

    /// Expires every unpaid payment past its expiry.
    pub(crate) async fn expire_due(&self) -> ApiResult<usize> {
        self.expire(None).await
    }

    /// Drops finished Idempotency-Keys older than the retention. Keys still `started`
    /// belong to a request in flight and stay.
    pub(crate) async fn forget_idempotency_keys(&self) -> ApiResult<u64> {
        let cutoff = self.clock.now_ms() - self.config.idempotency_retention_secs * 1_000;
        let done =
            sqlx::query("DELETE FROM idempotency_keys WHERE state = 'done' AND created_at_ms < $1")
                .bind(cutoff)
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
