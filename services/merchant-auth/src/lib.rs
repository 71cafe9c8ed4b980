//! Merchants, API keys and signed-request verification.

pub mod api;
pub mod service;
mod signature;

use std::sync::Arc;

use async_trait::async_trait;
use payloom_platform::cache::{KeyStore, MemoryLimits, TtlCache};
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::seal::MasterKey;
use payloom_platform::{ApiError, ApiResult, Db, ids};
use serde::Deserialize;
use sqlx::Row;

pub use payloom_merchant_auth_contract::{
    ApiKeyOut, Merchant, MerchantAuthApi, MerchantAuthHttp, MerchantIn, VerifiedOut, VerifyIn,
    operations,
};
pub use signature::{SIGNATURE_WINDOW_SECS, sign, string_to_sign};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "merchants and api keys",
    sql: include_str!("../migrations/0001_merchants.sql"),
}];

/// `[auth]`: merchant-auth's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// Most nonces the in-memory nonce store holds at once, for every merchant together.
    /// Only used without Redis (`dev`, or one node); a full store answers 503.
    pub nonces_memory_max: usize,
    /// Most of them one merchant may hold: a merchant at its share gets 429
    /// `nonce_store_full` while the others go on.
    pub nonces_memory_per_merchant_max: usize,
}

impl AuthConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.nonces_memory_max > 0 && self.nonces_memory_per_merchant_max > 0,
            "auth.nonces_memory_max and auth.nonces_memory_per_merchant_max must be positive"
        );
        anyhow::ensure!(
            self.nonces_memory_per_merchant_max <= self.nonces_memory_max,
            "auth.nonces_memory_per_merchant_max cannot exceed auth.nonces_memory_max"
        );
        Ok(())
    }

    /// The bounds of an in-memory nonce store.
    pub fn memory_limits(&self) -> MemoryLimits {
        MemoryLimits {
            keys_max: self.nonces_memory_max,
            keys_per_scope_max: self.nonces_memory_per_merchant_max,
        }
    }
}

/// The service itself (the in-process implementation of [`MerchantAuthApi`]).
pub struct MerchantAuth {
    db: Db,
    clock: SharedClock,
    master_key: MasterKey,
    nonces: Arc<dyn KeyStore>,
    /// Active keys by id, so a signed request costs no query in the common case.
    keys: TtlCache<signature::ActiveKey>,
}

/// How long another node may keep using a key after it is revoked elsewhere.
pub const KEY_CACHE_TTL_MS: i64 = 5_000;

impl MerchantAuth {
    pub async fn new(
        db: Db,
        clock: SharedClock,
        master_key: MasterKey,
        nonces: Arc<dyn KeyStore>,
    ) -> anyhow::Result<Arc<Self>> {
        db.migrate("merchant-auth", MIGRATIONS).await?;
        Ok(Arc::new(Self {
            keys: TtlCache::new(clock.clone(), KEY_CACHE_TTL_MS),
            db,
            clock,
            master_key,
            nonces,
        }))
    }

    fn seal_context(key_id: &str) -> String {
        format!("api-key:{key_id}")
    }
}

fn merchant_from_row(row: &sqlx::any::AnyRow) -> Result<Merchant, sqlx::Error> {
    Ok(Merchant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tier: row.try_get("tier")?,
        status: row.try_get("status")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Longest merchant name kept.
const MERCHANT_NAME_LEN_MAX: usize = 200;

#[async_trait]
impl MerchantAuthApi for MerchantAuth {
    async fn verify(&self, req: VerifyIn) -> ApiResult<VerifiedOut> {
        signature::verify(self, req).await
    }

    async fn create_merchant(&self, req: MerchantIn) -> ApiResult<Merchant> {
        let name = req.name.trim();
        if name.is_empty() || name.len() > MERCHANT_NAME_LEN_MAX {
            return Err(ApiError::invalid(
                "name",
                "name must be 1 to 200 characters",
            ));
        }
        let tier = req.tier.unwrap_or_else(|| "standard".into());
        if tier.is_empty() || !tier.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(ApiError::invalid(
                "tier",
                "tier is lower-case letters and underscores",
            ));
        }
        let now = self.clock.now_ms();
        let merchant = Merchant {
            id: ids::new_id("mch", now),
            name: name.to_owned(),
            tier,
            status: "active".into(),
            created_at_ms: now,
        };
        sqlx::query("INSERT INTO merchants (id, name, tier, status, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&merchant.id)
            .bind(&merchant.name)
            .bind(&merchant.tier)
            .bind(&merchant.status)
            .bind(merchant.created_at_ms)
            .execute(self.db.pool())
            .await?;
        Ok(merchant)
    }

    async fn get_merchant(&self, id: &str) -> ApiResult<Merchant> {
        let row = sqlx::query(
            "SELECT id, name, tier, status, created_at_ms FROM merchants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| ApiError::not_found("merchant", id))?;
        Ok(merchant_from_row(&row)?)
    }

    async fn create_api_key(&self, merchant_id: &str) -> ApiResult<ApiKeyOut> {
        self.get_merchant(merchant_id).await?;
        let now = self.clock.now_ms();
        let key_id = ids::new_id("key", now);
        let secret = format!("sk_{}", ids::random_hex(signature::SECRET_BYTES));
        let sealed = self.master_key.seal(
            &signature::signing_key(&secret),
            &Self::seal_context(&key_id),
        );
        sqlx::query(
            "INSERT INTO api_keys (key_id, merchant_id, signing_key_sealed, status, created_at_ms) VALUES ($1, $2, $3, 'active', $4)",
        )
        .bind(&key_id)
        .bind(merchant_id)
        .bind(&sealed)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(ApiKeyOut {
            key_id,
            secret,
            merchant_id: merchant_id.to_owned(),
        })
    }

    async fn revoke_api_key(&self, merchant_id: &str, key_id: &str) -> ApiResult<()> {
        let done = sqlx::query(
            "UPDATE api_keys SET status = 'revoked', revoked_at_ms = $1 WHERE key_id = $2 AND merchant_id = $3",
        )
        .bind(self.clock.now_ms())
        .bind(key_id)
        .bind(merchant_id)
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(ApiError::not_found("api key", key_id));
        }
        self.keys.remove(key_id);
        Ok(())
    }
}
