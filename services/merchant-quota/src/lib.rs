//! Volume quotas: a payment reserves its amount against the merchant's daily and monthly
//! limit for its currency, and gives it back if it fails or is canceled.

pub mod service;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::{Json, Router};
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use serde::{Deserialize, Serialize};

pub use payloom_quota_contract::{QuotaApi, QuotaHttp, Reservation, ReserveIn, operations};
pub use store::{RedisUsage, ReservationRecord, SqlUsage, UsageStore};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "quota usage and reservations",
    sql: include_str!("../migrations/0001_quotas.sql"),
}];

/// Limits for one currency, in its minor units.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub struct Limits {
    pub daily_minor: i64,
    pub monthly_minor: i64,
}

/// `[quota]`: the limits every merchant gets; `currencies.<CODE>` overrides per currency
/// (minor units differ between currencies, so one number rarely fits all).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct QuotaConfig {
    pub daily_minor: i64,
    pub monthly_minor: i64,
    #[serde(default)]
    pub currencies: BTreeMap<String, Limits>,
}

impl QuotaConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let all = std::iter::once(&self.limits_default())
            .chain(self.currencies.values())
            .copied()
            .collect::<Vec<_>>();
        for l in all {
            anyhow::ensure!(
                l.daily_minor > 0 && l.monthly_minor > 0,
                "quota limits must be positive"
            );
            anyhow::ensure!(
                l.daily_minor <= l.monthly_minor,
                "a daily quota above the monthly one never applies"
            );
        }
        Ok(())
    }

    fn limits_default(&self) -> Limits {
        Limits {
            daily_minor: self.daily_minor,
            monthly_minor: self.monthly_minor,
        }
    }

    pub fn limits(&self, currency: &str) -> Limits {
        self.currencies
            .get(currency)
            .copied()
            .unwrap_or_else(|| self.limits_default())
    }
}

pub struct Quotas {
    clock: SharedClock,
    config: QuotaConfig,
    usage: Arc<dyn UsageStore>,
}

impl Quotas {
    pub async fn new(
        db: Db,
        clock: SharedClock,
        config: QuotaConfig,
        usage: Option<Arc<dyn UsageStore>>,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        // The tables exist whichever store counts, so a node can move between them.
        db.migrate("merchant-quota", MIGRATIONS).await?;
        let usage = usage.unwrap_or_else(|| Arc::new(SqlUsage::new(db.clone())));
        Ok(Arc::new(Self {
            clock,
            config,
            usage,
        }))
    }
}

/// `(d:YYYY-MM-DD, m:YYYY-MM)` in UTC for a millisecond timestamp.
pub fn periods(now_ms: i64) -> (String, String) {
    let days = now_ms.div_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("d:{year:04}-{month:02}-{day:02}"),
        format!("m:{year:04}-{month:02}"),
    )
}

#[async_trait]
impl QuotaApi for Quotas {
    async fn reserve(&self, req: ReserveIn) -> ApiResult<Reservation> {
        if req.amount_minor <= 0 {
            return Err(ApiError::invalid(
                "amount_minor",
                "a reservation must be positive",
            ));
        }
        let now = self.clock.now_ms();
        let (day, month) = periods(now);
        let limits = self.config.limits(&req.currency);
        let record = ReservationRecord {
            id: ids::new_id("qr", now),
            merchant_id: req.merchant_id,
            currency: req.currency,
            amount_minor: req.amount_minor,
            day,
            month,
            created_at_ms: now,
        };
        let granted = self
            .usage
            .reserve(&record, limits.daily_minor, limits.monthly_minor)
            .await
            .map_err(ApiError::internal)?;
        if !granted {
            return Err(ApiError::new(
                429,
                "quota_error",
                "quota_exceeded",
                format!(
                    "this payment would exceed the merchant's daily or monthly {} volume quota",
                    record.currency
                ),
            ));
        }
        Ok(Reservation { id: record.id })
    }

    async fn release(&self, reservation_id: &str) -> ApiResult<()> {
        self.usage
            .release(reservation_id)
            .await
            .map_err(ApiError::internal)
    }
}

pub fn router(service: Arc<Quotas>) -> Router {
    let router = operations::RESERVE.route(Router::new(), reserve);
    operations::RELEASE
        .route(router, release)
        .with_state(service)
}

async fn reserve(
    State(s): State<Arc<Quotas>>,
    ApiJson(req): ApiJson<ReserveIn>,
) -> ApiResult<Json<Reservation>> {
    s.reserve(req).await.map(Json)
}

async fn release(
    State(s): State<Arc<Quotas>>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    s.release(&id).await?;
    Ok(Json(serde_json::json!({"id": id, "status": "released"})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_calendar_days_and_months() {
        assert_eq!(periods(0), ("d:1970-01-01".into(), "m:1970-01".into()));
        // 2024-02-29T23:59:59.999Z, a leap day.
        assert_eq!(
            periods(1_709_251_199_999),
            ("d:2024-02-29".into(), "m:2024-02".into())
        );
        assert_eq!(
            periods(1_709_251_200_000),
            ("d:2024-03-01".into(), "m:2024-03".into())
        );
    }
}
