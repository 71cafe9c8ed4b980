//! PSP notifications: `POST /v1/notify/{channel}?merchant=<id>` hands the raw request to
//! the channel component, which verifies it with the merchant's credentials and says what
//! moved. The move is applied like any channel answer: only forward from an open state,
//! so a duplicated or late notification changes nothing. The PSP gets the component's ack.

use std::net::IpAddr;

use payloom_channel_contract as ch;
use payloom_channel_contract::ChannelCall;
use payloom_channel_contract::{ChannelIn, ChannelOut};
use payloom_platform::{ApiError, ApiResult};

use crate::Gateway;
use crate::flow::{Opening, applied_from};

impl Gateway {
    /// Per-source rate limit of the unauthenticated notification ingress: 429 past the
    /// allowance in the current second. A source the server could not tell is one source.
    pub(crate) async fn admit_notification(&self, source: Option<IpAddr>) -> ApiResult<()> {
        let source = source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let hits = self
            .deps
            .limits
            .hit(&format!("notify:{source}"), 1_000)
            .await
            .map_err(|e| ApiError::unavailable(format!("rate limit unavailable: {e}")))?;
        if hits > self.config.notify_per_source_per_sec {
            return Err(ApiError::new(
                429,
                "rate_limit_error",
                "notifications_throttled",
                "too many notifications from this source; retry in a second",
            ));
        }
        Ok(())
    }

    /// Returns the status and body to answer the PSP with.
    pub(crate) async fn handle_notification(
        &self,
        merchant_id: &str,
        channel: &str,
        notification: ch::Notification,
    ) -> ApiResult<(u16, Vec<u8>)> {
        let out = self
            .deps
            .channels
            .call(ChannelIn {
                merchant_id: merchant_id.to_owned(),
                channel: channel.to_owned(),
                call: ChannelCall::HandleNotification(notification),
            })
            .await?;
        let response = match out {
            ChannelOut::Notification(Ok(response)) => response,
            ChannelOut::Notification(Err(ch::ChannelError::Unauthorized(m))) => {
                return Err(ApiError::new(
                    401,
                    "authentication_error",
                    "notification_unverified",
                    m,
                ));
            }
            ChannelOut::Notification(Err(
                ch::ChannelError::InvalidRequest(m) | ch::ChannelError::Unsupported(m),
            )) => {
                return Err(ApiError::bad_request("notification_invalid", m));
            }
            ChannelOut::Notification(Err(ch::ChannelError::Upstream(m))) => {
                return Err(ApiError::new(502, "api_error", "channel_failed", m));
            }
            ChannelOut::Payment(_) | ChannelOut::Refund(_) => {
                return Err(ApiError::internal(
                    "channel answered a notification with another kind of answer",
                ));
            }
        };
        match response.event {
            ch::NotificationEvent::Payment(update) => {
                self.notified_payment(merchant_id, channel, update).await?
            }
            ch::NotificationEvent::Refund(update) => {
                self.notified_refund(merchant_id, channel, update).await?
            }
            ch::NotificationEvent::Ignored => {}
        }
        let status = if (200..600).contains(&response.ack_status) {
            response.ack_status
        } else {
            200
        };
        Ok((status, response.ack_body))
    }

    async fn notified_payment(
        &self,
        merchant_id: &str,
        channel: &str,
        update: ch::PaymentUpdate,
    ) -> ApiResult<()> {
        let row = self.load_row(merchant_id, &update.payment_id).await?;
        let p = &row.out;
        if p.channel.as_deref() != Some(channel) {
            return Err(ApiError::bad_request(
                "notification_mismatch",
                format!("payment {} did not go through {channel}", p.id),
            ));
        }
        if update.amount.currency != p.currency || update.amount.amount_minor != p.amount {
            return Err(ApiError::bad_request(
                "notification_mismatch",
                "the notification's amount is not the payment's",
            ));
        }
        let applied = applied_from(Ok(ChannelOut::Payment(Ok(ch::PaymentResponse {
            outcome: update.outcome,
            reference: update.reference,
            amount: update.amount,
        }))));
        let to = applied.status;
        let moved = self.apply_to_row(&row, applied, Opening::Notified).await?;
        if moved.is_none() {
            tracing::info!(
                payment_id = p.id,
                from = p.status.as_str(),
                to = to.as_str(),
                "notification changed nothing"
            );
        }
        Ok(())
    }

    async fn notified_refund(
        &self,
        merchant_id: &str,
        channel: &str,
        update: ch::RefundUpdate,
    ) -> ApiResult<()> {
        let refund = self.get_refund(merchant_id, &update.refund_id).await?;
        let row = self.load_row(merchant_id, &refund.payment_id).await?;
        if row.out.channel.as_deref() != Some(channel) {
            return Err(ApiError::bad_request(
                "notification_mismatch",
                format!("refund {} did not go through {channel}", refund.id),
            ));
        }
        if update.amount.currency != refund.currency || update.amount.amount_minor != refund.amount
        {
            return Err(ApiError::bad_request(
                "notification_mismatch",
                "the notification's amount is not the refund's",
            ));
        }
        let answer = Ok(ChannelOut::Refund(Ok(ch::RefundResponse {
            outcome: update.outcome,
            reference: update.reference,
            amount: update.amount,
        })));
        self.apply_refund(&refund.id, &refund.payment_id, refund.amount, answer, 0)
            .await?;
        if let Some(order_id) = &row.order_id {
            self.move_order_after_refund(merchant_id, &refund.payment_id, order_id)
                .await;
        }
        Ok(())
    }
}
