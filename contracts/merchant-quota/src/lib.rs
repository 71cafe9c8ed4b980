//! merchant-quota's contract: reserving and releasing a payment's amount against the
//! merchant's daily and monthly volume, the internal API, its operations and its HTTP
//! client. The gateway depends on this crate, not on the service.

use async_trait::async_trait;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReserveIn {
    pub merchant_id: String,
    pub currency: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
}

#[async_trait]
pub trait QuotaApi: Send + Sync {
    /// Reserves `amount_minor`; 429 `quota_exceeded` when either period would go over.
    async fn reserve(&self, req: ReserveIn) -> ApiResult<Reservation>;
    /// Gives a reservation back. Releasing twice is a no-op.
    async fn release(&self, reservation_id: &str) -> ApiResult<()>;
}

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use payloom_platform::operation::Operation;

    use super::{Reservation, ReserveIn};

    pub const RESERVE: Operation<ReserveIn, Reservation> =
        Operation::post("/internal/v1/quota/reservations");
    pub const RELEASE: Operation<(), serde_json::Value> =
        Operation::post("/internal/v1/quota/reservations/{id}/release");
}

/// [`QuotaApi`] over HTTP.
pub struct QuotaHttp(pub ServiceClient);

#[async_trait]
impl QuotaApi for QuotaHttp {
    async fn reserve(&self, req: ReserveIn) -> ApiResult<Reservation> {
        operations::RESERVE.call(&self.0, &[], &req).await
    }
    async fn release(&self, reservation_id: &str) -> ApiResult<()> {
        operations::RELEASE
            .call(&self.0, &[reservation_id], &())
            .await
            .map(drop)
    }
}
