//! The gateway's events: every payment and refund state change writes one into the
//! outbox in the transaction that makes the change. Their types are the contract's.

use payloom_gateway_contract::{PaymentEvent, RefundEvent};
use payloom_platform::ApiResult;
use sqlx::AnyConnection;

use crate::Gateway;
use crate::api::model::RefundOut;
use crate::db::PaymentRow;

impl Gateway {
    /// `payment.<status>`. A payment still `processing` has no news for anyone.
    pub(crate) async fn emit_payment(
        &self,
        tx: &mut AnyConnection,
        row: &PaymentRow,
    ) -> ApiResult<()> {
        let Some(event) = PaymentEvent::of(row.out.clone()) else {
            return Ok(());
        };
        let envelope = event.envelope(&row.merchant_id);
        self.outbox.append(tx, &envelope, event.key()).await?;
        Ok(())
    }

    /// `refund.<status>`, keyed by the payment so it follows the payment's own events.
    pub(crate) async fn emit_refund(
        &self,
        tx: &mut AnyConnection,
        merchant_id: &str,
        refund: &RefundOut,
    ) -> ApiResult<()> {
        let event = RefundEvent::of(refund.clone());
        self.outbox
            .append(tx, &event.envelope(merchant_id), event.key())
            .await?;
        Ok(())
    }
}
