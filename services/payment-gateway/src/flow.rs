//! Creating a payment: quota → policy → risk → order and payment persisted → channel →
//! state update. Everything before the payment row exists is undone (the quota released)
//! when a step refuses; after it exists, the row tells the truth and the API answers with it.

use axum::http::StatusCode;
use payloom_channel_contract as ch;
use payloom_channel_contract::ChannelCall;
use payloom_channel_contract::{CHANNEL_UNAVAILABLE, CHANNEL_UNKNOWN, ChannelIn, ChannelOut};
use payloom_order_contract::{OrderIn, OrderStatus};
use payloom_payment_facts as types;
use payloom_platform::{ApiError, ApiResult, ids};
use payloom_policy_contract::DecideIn;
use payloom_quota_contract::ReserveIn;
use payloom_risk_contract::{Action, EvaluateIn, RiskDecision};

use crate::Gateway;
use crate::api::model::{CaptureMode, NextAction, PaymentIn, PaymentOut, PaymentStatus};
use crate::auth::Authenticated;
use crate::db::{PAYMENT_COLUMNS, payment_from_row};
use crate::idempotency::KeyScope;

/// Who brings a channel's answer, which decides the states it may move a payment from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// The answer to `create-payment`.
    Created,
    /// The answer to the janitor's re-query number `n` (1-based).
    Requery(i64),
    /// A verified PSP notification.
    Notified,
    /// The settlement of a claimed capture or cancel (see `claims`).
    Claimed,
}

impl Opening {
    /// The states `to` may come from. The PSP's word moves any open state forward, and
    /// an authorization (or a claimed capture or cancel) to its capture or cancel; nothing
    /// leaves a terminal state, and a state never moves to itself (a duplicate changes
    /// nothing).
    fn from(self, to: PaymentStatus) -> &'static [PaymentStatus] {
        use PaymentStatus::*;
        match (self, to) {
            (Opening::Created, _) => &[Processing],
            // A late answer after the janitor put the claim back lands all the same.
            (Opening::Claimed, Succeeded) => &[Capturing, Canceling, Authorized],
            (Opening::Claimed, Canceled | Failed) => {
                &[Capturing, Canceling, Pending, RequiresAction, Authorized]
            }
            (Opening::Claimed, _) => &[],
            (_, Succeeded | Canceled) => &[
                Processing,
                Pending,
                RequiresAction,
                Authorized,
                Capturing,
                Canceling,
            ],
            (_, Authorized | Failed) => &[Processing, Pending, RequiresAction],
            (_, Pending | RequiresAction) => &[Processing],
            (_, Processing | Expired | Capturing | Canceling) => &[],
        }
    }

    fn requery_attempts(self) -> i64 {
        match self {
            Opening::Requery(n) => n,
            Opening::Created | Opening::Notified | Opening::Claimed => 0,
        }
    }
}

/// Why a payment failed before reaching a channel.
struct Refusal {
    code: &'static str,
    message: String,
}

/// What policy and risk settled.
struct Plan {
    channel: Option<String>,
    fee_minor: i64,
    risk: Option<RiskDecision>,
    refusal: Option<Refusal>,
}

/// What a channel's answer means for the payment.
pub(crate) struct Applied {
    pub status: PaymentStatus,
    pub reference: Option<String>,
    pub next_action: Option<NextAction>,
    pub failure: Option<(String, String)>,
}

impl Gateway {
    /// Creates a payment. Under an Idempotency-Key its id is the key's, so a retry that
    /// resumes a crashed request finds the payment it made (and answers with it) or makes
    /// it under the same id.
    pub(crate) async fn create_payment(
        &self,
        who: &Authenticated,
        input: PaymentIn,
        key: Option<&KeyScope>,
    ) -> ApiResult<(StatusCode, PaymentOut)> {
        // A duplicate order_no is refused by the order service's unique key, before any
        // payment row exists; the quota taken until then is given back.
        let now = self.clock.now_ms();
        let id = match key.and_then(|k| k.resource_id.clone()) {
            Some(id) => id,
            None => ids::new_id("pay", now),
        };
        if key.is_some_and(|k| k.resumed)
            && let Some(made) = self.find_row(&who.merchant_id, &id).await?
        {
            return Ok((StatusCode::CREATED, made.out));
        }
        let wire = wire_payment(id, &who.merchant_id, &input, now);
        let reservation = self
            .deps
            .quota
            .reserve(ReserveIn {
                merchant_id: who.merchant_id.clone(),
                currency: input.currency.clone(),
                amount_minor: input.amount,
            })
            .await?;
        let persisted = match self
            .plan_and_persist(who, &input, &wire, &reservation.id, now)
            .await
        {
            Ok(persisted) => persisted,
            Err(e) => {
                self.release_quota(Some(&reservation.id)).await;
                return Err(e);
            }
        };
        let (plan, order_id) = persisted;
        let Some(channel) = plan.channel.filter(|_| plan.refusal.is_none()) else {
            self.finish_refused(&wire.id, &order_id, &reservation.id)
                .await?;
            return Ok((
                StatusCode::CREATED,
                self.load(&who.merchant_id, &wire.id).await?,
            ));
        };
        let applied = self
            .call_channel(&who.merchant_id, &channel, &wire, &input)
            .await;
        let updated = self
            .apply(
                &wire.id,
                &order_id,
                Some(&reservation.id),
                input.amount,
                applied,
                Opening::Created,
            )
            .await?;
        let payment = match updated {
            Some(payment) => payment,
            None => self.load(&who.merchant_id, &wire.id).await?,
        };
        Ok((StatusCode::CREATED, payment))
    }

    /// Policy, risk, then the order and payment rows. Errors here leave nothing behind
    /// but the quota reservation, which the caller releases.
    async fn plan_and_persist(
        &self,
        who: &Authenticated,
        input: &PaymentIn,
        wire: &types::Payment,
        reservation: &str,
        now: i64,
    ) -> ApiResult<(Plan, String)> {
        let plan = self.plan(who, input, wire).await?;
        let order = self
            .deps
            .orders
            .create(OrderIn {
                merchant_id: who.merchant_id.clone(),
                order_no: input.order_no.clone(),
                amount_minor: input.amount,
                currency: input.currency.clone(),
                payment_id: wire.id.clone(),
            })
            .await?;
        let (status, failure) = match &plan.refusal {
            Some(r) => (PaymentStatus::Failed, Some((r.code, r.message.as_str()))),
            None => (PaymentStatus::Processing, None),
        };
        let expires_in = input
            .expires_in
            .unwrap_or(self.config.expires_in_default_secs);
        // A payment on its way to a channel is due for a re-query from the start: if this
        // process dies before the answer is written, the janitor still finds it.
        let sql = format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}, next_requery_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, 0, 0, $11, $12, $13, $14, $15, NULL, $16, $17, $18, $19, $20, $21, $22, $22, $23)"
        );
        let insert = sqlx::query(&sql)
            .bind(&wire.id)
            .bind(&who.merchant_id)
            .bind(&order.id)
            .bind(&input.order_no)
            .bind(input.amount)
            .bind(&input.currency)
            .bind(status.as_str())
            .bind(if input.capture == Some(CaptureMode::Manual) {
                "manual"
            } else {
                "automatic"
            })
            .bind(&wire.method)
            .bind(&plan.channel)
            .bind(plan.fee_minor)
            .bind(
                serde_json::to_string(&input.customer.clone().unwrap_or_default())
                    .map_err(ApiError::internal)?,
            )
            .bind(&input.description)
            .bind(&input.return_url)
            .bind(
                serde_json::to_string(&input.metadata.clone().unwrap_or_default())
                    .map_err(ApiError::internal)?,
            )
            .bind(failure.map(|f| f.0))
            .bind(failure.map(|f| f.1))
            .bind(plan.risk.as_ref().map(|r| r.id.clone()))
            .bind(plan.risk.as_ref().map(|r| r.action.as_str()))
            .bind(reservation)
            .bind(now + expires_in * 1_000)
            .bind(now)
            .bind(if plan.refusal.is_some() {
                None
            } else {
                self.requery_at(0, now)
            });
        let inserted = self
            .insert_payment(insert, &wire.id, &input.order_no, plan.refusal.is_some())
            .await;
        match inserted {
            Ok(()) => Ok((plan, order.id)),
            Err(e) => Err(self
                .not_inserted(e, &who.merchant_id, &wire.id, &order.id)
                .await),
        }
    }

    /// A payment row that could not be written fails its order, unless its id is taken:
    /// the id is the Idempotency-Key's, so another holder of the key (whose lease ran out
    /// while it worked) made this payment, and the order is that payment's.
    async fn not_inserted(
        &self,
        e: ApiError,
        merchant_id: &str,
        id: &str,
        order_id: &str,
    ) -> ApiError {
        match self.find_row(merchant_id, id).await {
            Ok(Some(_)) => crate::idempotency::in_progress(),
            _ => {
                let _ = self
                    .deps
                    .orders
                    .transition(order_id, OrderStatus::Failed)
                    .await;
                e
            }
        }
    }

    /// A payment refused before the channel is born `failed`, and its event goes with it;
    /// one on its way to a channel is `processing`, which is nobody's news yet.
    async fn insert_payment<'q>(
        &self,
        insert: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        id: &str,
        order_no: &str,
        refused: bool,
    ) -> ApiResult<()> {
        let taken = |e: sqlx::Error| {
            if payloom_platform::db::is_unique_violation(&e) {
                order_no_taken(order_no)
            } else {
                e.into()
            }
        };
        if !refused {
            insert.execute(self.db.pool()).await.map_err(taken)?;
            return Ok(());
        }
        let mut tx = self.db.pool().begin().await?;
        insert.execute(&mut *tx).await.map_err(taken)?;
        let row = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let payment = payment_from_row(&row)?;
        self.emit_payment(&mut tx, &payment).await?;
        tx.commit().await?;
        self.outbox.wake();
        self.metrics.reached(&payment);
        Ok(())
    }

    async fn plan(
        &self,
        who: &Authenticated,
        input: &PaymentIn,
        wire: &types::Payment,
    ) -> ApiResult<Plan> {
        let decision = self
            .deps
            .policy
            .decide(DecideIn {
                tier: who.tier.clone(),
                payment: wire.clone(),
            })
            .await?;
        if let Some(reason) = decision.denied {
            let refusal = Refusal {
                code: "policy_denied",
                message: reason,
            };
            return Ok(Plan {
                channel: None,
                fee_minor: 0,
                risk: None,
                refusal: Some(refusal),
            });
        }
        let channel = match &input.channel {
            Some(asked) if decision.channels.contains(asked) => asked.clone(),
            Some(asked) => {
                // Well-formed, but which channels run and where the merchant's policy
                // routes this payment are the platform's state: a conflict, not bad input.
                return Err(ApiError::new(
                    409,
                    "invalid_request_error",
                    "channel_unavailable",
                    format!("channel '{asked}' cannot take this payment"),
                )
                .with_param("channel"));
            }
            None => match decision.channels.first() {
                Some(first) => first.clone(),
                None => {
                    let refusal = Refusal {
                        code: "no_channel",
                        message: "no channel can take this payment".into(),
                    };
                    return Ok(Plan {
                        channel: None,
                        fee_minor: decision.fee_minor,
                        risk: None,
                        refusal: Some(refusal),
                    });
                }
            },
        };
        let risk = self
            .deps
            .risk
            .evaluate(EvaluateIn {
                payment: wire.clone(),
                channel: Some(channel.clone()),
            })
            .await?;
        let refusal = (risk.action == Action::Block).then(|| Refusal {
            code: "risk_blocked",
            message: risk
                .rules
                .iter()
                .filter(|r| r.action == "block")
                .flat_map(|r| r.reasons.iter().cloned())
                .collect::<Vec<_>>()
                .join("; "),
        });
        Ok(Plan {
            channel: Some(channel),
            fee_minor: decision.fee_minor,
            risk: Some(risk),
            refusal,
        })
    }

    async fn finish_refused(
        &self,
        payment_id: &str,
        order_id: &str,
        reservation: &str,
    ) -> ApiResult<()> {
        tracing::info!(payment_id, "payment refused before the channel");
        self.deps
            .orders
            .transition(order_id, OrderStatus::Failed)
            .await?;
        self.release_quota(Some(reservation)).await;
        Ok(())
    }

    async fn call_channel(
        &self,
        merchant_id: &str,
        channel: &str,
        wire: &types::Payment,
        input: &PaymentIn,
    ) -> Applied {
        let method_data = input
            .method_data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| types::KeyValue { key, value })
            .collect();
        let request = ch::CreateRequest {
            payment: wire.clone(),
            method_data,
            notify_url: format!(
                "{}/v1/notify/{channel}?merchant={merchant_id}",
                self.config.public_base_url.trim_end_matches('/')
            ),
        };
        let call = ChannelIn {
            merchant_id: merchant_id.to_owned(),
            channel: channel.to_owned(),
            call: ChannelCall::CreatePayment(request),
        };
        applied_from(self.deps.channels.call(call).await)
    }

    /// Writes a channel's answer to a payment still open (which states count as open
    /// depends on who answers), moves the order, and gives the quota back if the payment
    /// is over without money moving. `None` when the payment had already moved on: a
    /// terminal state never moves back, and a repeated answer changes nothing.
    pub(crate) async fn apply(
        &self,
        payment_id: &str,
        order_id: &str,
        reservation: Option<&str>,
        amount: i64,
        applied: Applied,
        opening: Opening,
    ) -> ApiResult<Option<PaymentOut>> {
        let from = opening.from(applied.status);
        if from.is_empty() {
            return Ok(None);
        }
        let updated = self
            .write_outcome(payment_id, from, amount, &applied, opening)
            .await?;
        if let Some(to) = order_status_after(applied.status)
            && updated.is_some()
        {
            self.deps.orders.transition(order_id, to).await?;
        }
        if updated.is_some()
            && matches!(
                applied.status,
                PaymentStatus::Failed | PaymentStatus::Canceled
            )
        {
            self.release_quota(reservation).await;
        }
        Ok(updated)
    }

    /// The payment's move out of one of `from`, and its event, in one transaction; `None`
    /// when it was no longer in any of them.
    async fn write_outcome(
        &self,
        payment_id: &str,
        from: &[PaymentStatus],
        amount: i64,
        applied: &Applied,
        opening: Opening,
    ) -> ApiResult<Option<PaymentOut>> {
        let now = self.clock.now_ms();
        let attempts = opening.requery_attempts();
        let requery = match applied.status {
            PaymentStatus::Processing | PaymentStatus::Pending => self.requery_at(attempts, now),
            _ => None,
        };
        let captured = if applied.status == PaymentStatus::Succeeded {
            amount
        } else {
            0
        };
        let next_action = applied
            .next_action
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(ApiError::internal)?;
        // RETURNING hands back the row as written: no second read to answer with it, and
        // the event carries exactly what was stored. A claimed partial capture captures
        // its claimed amount; whatever the move, the claim is over.
        let mut tx = self.db.pool().begin().await?;
        let from: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let row = sqlx::query(&format!(
            "UPDATE payments SET status = $1, channel_reference = COALESCE($2, channel_reference), next_action = $3, failure_code = $4,
             failure_message = $5, amount_captured_minor = CASE WHEN $6 > 0 THEN COALESCE(claim_amount_minor, $6) ELSE 0 END,
             claimed_from = NULL, claim_amount_minor = NULL, updated_at_ms = $7, requery_attempts = $9, next_requery_at_ms = $10
             WHERE id = $8 AND status IN ({}) RETURNING {PAYMENT_COLUMNS}",
            from.join(", ")
        ))
        .bind(applied.status.as_str())
        .bind(&applied.reference)
        .bind(next_action)
        .bind(applied.failure.as_ref().map(|f| f.0.clone()))
        .bind(applied.failure.as_ref().map(|f| f.1.clone()))
        .bind(captured)
        .bind(now)
        .bind(payment_id)
        .bind(attempts)
        .bind(requery)
        .fetch_optional(&mut *tx)
        .await?;
        let updated = row.map(|row| payment_from_row(&row)).transpose()?;
        if let Some(payment) = &updated {
            self.emit_payment(&mut tx, payment).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        if let Some(payment) = &updated {
            self.metrics.reached(payment);
        }
        Ok(updated.map(|p| p.out))
    }

    /// [`Gateway::apply`] to a payment as read; a payment without an order (none are
    /// made without one) has nothing to apply to.
    pub(crate) async fn apply_to_row(
        &self,
        row: &crate::db::PaymentRow,
        applied: Applied,
        opening: Opening,
    ) -> ApiResult<Option<PaymentOut>> {
        let Some(order_id) = &row.order_id else {
            return Ok(None);
        };
        self.apply(
            &row.out.id,
            order_id,
            row.quota_reservation_id.as_deref(),
            row.out.amount,
            applied,
            opening,
        )
        .await
    }

    /// Best effort: a release that fails leaves the merchant's quota conservative.
    pub(crate) async fn release_quota(&self, reservation: Option<&str>) {
        if let Some(id) = reservation
            && let Err(e) = self.deps.quota.release(id).await
        {
            tracing::warn!(reservation = id, "quota release failed: {e}");
        }
    }

    pub(crate) async fn load(&self, merchant_id: &str, id: &str) -> ApiResult<PaymentOut> {
        Ok(self.load_row(merchant_id, id).await?.out)
    }

    pub(crate) async fn load_row(
        &self,
        merchant_id: &str,
        id: &str,
    ) -> ApiResult<crate::db::PaymentRow> {
        self.find_row(merchant_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("payment", id))
    }

    /// The merchant's payment `id`, if there is one. A string that cannot be a payment
    /// id finds nothing without asking the database.
    pub(crate) async fn find_row(
        &self,
        merchant_id: &str,
        id: &str,
    ) -> ApiResult<Option<crate::db::PaymentRow>> {
        if !ids::has_shape(id, "pay") {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND merchant_id = $2"
        ))
        .bind(id)
        .bind(merchant_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(payment_from_row).transpose()
    }
}

fn order_no_taken(order_no: &str) -> ApiError {
    ApiError::conflict(
        "order_no_taken",
        format!("order_no '{order_no}' already has a payment"),
    )
    .with_param("order_no")
}

/// The payment as components see it.
fn wire_payment(id: String, merchant_id: &str, input: &PaymentIn, now: i64) -> types::Payment {
    let c = input.customer.clone().unwrap_or_default();
    types::Payment {
        id,
        merchant_id: merchant_id.to_owned(),
        order_no: input.order_no.clone(),
        amount: types::Money {
            amount_minor: input.amount,
            currency: input.currency.clone(),
        },
        method: input.method.clone().unwrap_or_else(|| "card".into()),
        capture: match input.capture {
            Some(CaptureMode::Manual) => types::CaptureMode::Manual,
            _ => types::CaptureMode::Automatic,
        },
        customer: types::Customer {
            email: c.email,
            ip: c.ip,
            country: c.country,
            device_id: c.device_id,
            phone: c.phone,
        },
        description: input.description.clone(),
        return_url: input.return_url.clone(),
        metadata: input
            .metadata
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| types::KeyValue { key, value })
            .collect(),
        created_at_ms: now,
    }
}

/// What a channel answer, or the lack of one, means for a payment. Exhaustive: a new
/// outcome must say where it goes.
pub(crate) fn applied_from(answer: ApiResult<ChannelOut>) -> Applied {
    let unknown = |reason: String| Applied {
        status: PaymentStatus::Processing,
        reference: None,
        next_action: None,
        failure: Some(("outcome_unknown".into(), reason)),
    };
    let response = match answer {
        Ok(ChannelOut::Payment(Ok(response))) => response,
        Ok(ChannelOut::Payment(Err(error))) => {
            let (code, message) = match error {
                ch::ChannelError::InvalidRequest(m) => ("channel_invalid_request", m),
                ch::ChannelError::Unauthorized(m) => ("channel_unauthorized", m),
                ch::ChannelError::Unsupported(m) => ("channel_unsupported", m),
                // The PSP may have acted before failing: the janitor finds out.
                ch::ChannelError::Upstream(m) => return unknown(m),
            };
            return Applied {
                status: PaymentStatus::Failed,
                reference: None,
                next_action: None,
                failure: Some((code.into(), message)),
            };
        }
        Ok(ChannelOut::Refund(_) | ChannelOut::Notification(_)) => {
            return unknown("channel answered a payment call with another kind of answer".into());
        }
        // The component never ran: the PSP was not asked, so the payment has failed.
        Err(e) if e.code == CHANNEL_UNKNOWN || e.code == CHANNEL_UNAVAILABLE => {
            return Applied {
                status: PaymentStatus::Failed,
                reference: None,
                next_action: None,
                failure: Some((e.code, e.message)),
            };
        }
        Err(e) => return unknown(e.message),
    };
    let mut applied = Applied {
        status: PaymentStatus::Processing,
        reference: response.reference,
        next_action: None,
        failure: None,
    };
    match response.outcome {
        ch::Outcome::Succeeded => applied.status = PaymentStatus::Succeeded,
        ch::Outcome::Authorized => applied.status = PaymentStatus::Authorized,
        ch::Outcome::Pending => applied.status = PaymentStatus::Pending,
        ch::Outcome::Canceled => applied.status = PaymentStatus::Canceled,
        ch::Outcome::RequiresAction(action) => {
            applied.status = PaymentStatus::RequiresAction;
            applied.next_action = Some(match action {
                ch::NextAction::Redirect(url) => NextAction::Redirect { url },
                ch::NextAction::QrCode(data) => NextAction::QrCode { data },
                ch::NextAction::SdkParams(params) => NextAction::SdkParams {
                    params: params.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                },
            });
        }
        ch::Outcome::Declined(decline) => {
            applied.status = PaymentStatus::Failed;
            applied.failure = Some((decline.code, decline.message));
        }
        ch::Outcome::Unknown(reason) => applied.failure = Some(("outcome_unknown".into(), reason)),
    }
    applied
}

/// Where a payment's new state leaves its order; `None` while the payment is still open.
fn order_status_after(status: PaymentStatus) -> Option<OrderStatus> {
    match status {
        PaymentStatus::Succeeded => Some(OrderStatus::Paid),
        PaymentStatus::Authorized => Some(OrderStatus::Authorized),
        PaymentStatus::Failed => Some(OrderStatus::Failed),
        PaymentStatus::Canceled => Some(OrderStatus::Canceled),
        PaymentStatus::Expired => Some(OrderStatus::Expired),
        PaymentStatus::Pending
        | PaymentStatus::RequiresAction
        | PaymentStatus::Processing
        | PaymentStatus::Capturing
        | PaymentStatus::Canceling => None,
    }
}
