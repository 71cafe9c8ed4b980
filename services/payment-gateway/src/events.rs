//! The gateway's events: every payment and refund state change writes one into the
//! outbox in the transaction that makes the change.

use payloom_platform::events::Envelope;
use payloom_platform::{ApiError, ApiResult};
use sqlx::AnyConnection;

use crate::Gateway;
use crate::api::model::{PaymentStatus, RefundOut};
use crate::db::PaymentRow;

impl Gateway {
    /// `payment.<status>`. A payment still `processing` has no news for anyone.
    pub(crate) async fn emit_payment(
        &self,
        tx: &mut AnyConnection,
        row: &PaymentRow,
    ) -> ApiResult<()> {
        let payment = &row.out;
        if payment.status == PaymentStatus::Processing {
            return Ok(());
        }
        let event = Envelope::new(
            format!("payment.{}", payment.status.as_str()),
            "payment",
            &payment.id,
            payment.updated_at_ms,
            serde_json::to_value(payment).map_err(ApiError::internal)?,
        )
        .for_merchant(&row.merchant_id);
        self.outbox.append(tx, &event, &payment.id).await?;
        Ok(())
    }

    /// `refund.<status>`, keyed by the payment so it follows the payment's own events.
    pub(crate) async fn emit_refund(
        &self,
        tx: &mut AnyConnection,
        merchant_id: &str,
        refund: &RefundOut,
    ) -> ApiResult<()> {
        let event = Envelope::new(
            format!("refund.{}", refund.status.as_str()),
            "refund",
            &refund.id,
            refund.updated_at_ms,
            serde_json::to_value(refund).map_err(ApiError::internal)?,
        )
        .for_merchant(merchant_id);
        self.outbox.append(tx, &event, &refund.payment_id).await?;
        Ok(())
    }
}
