//! Merchants, API keys and signed-request verification.

pub mod api;
pub mod service;
mod signature;

use std::sync::Arc;

use async_trait::async_trait;
use payloom_platform::cache::{KeyStore, MemoryLimits, TtlCache};
use payloom_platform::client::ServiceClient;
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::seal::MasterKey;
use payloom_platform::{ApiError, ApiResult, Db, ids};
use serde::{Deserialize, Serialize};
use sqlx::Row;

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

/// A merchant account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    /// Pricing tier handed to the merchant's policy (`standard`, `premium`, …).
    pub tier: String,
    /// `active` or `suspended`.
    pub status: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MerchantIn {
    pub name: String,
    #[serde(default)]
    pub tier: Option<String>,
}

/// A new key. The secret appears here once and nowhere else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyOut {
    pub key_id: String,
    pub secret: String,
    pub merchant_id: String,
}

/// The parts of a signed request the verifier needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyIn {
    pub key_id: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub method: String,
    pub path_and_query: String,
    pub body: String,
}

/// Who signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedOut {
    pub merchant_id: String,
    pub tier: String,
    pub key_id: String,
}

/// What the rest of the platform asks of merchant-auth.
#[async_trait]
pub trait MerchantAuthApi: Send + Sync {
    async fn verify(&self, req: VerifyIn) -> ApiResult<VerifiedOut>;
    async fn create_merchant(&self, req: MerchantIn) -> ApiResult<Merchant>;
    async fn get_merchant(&self, id: &str) -> ApiResult<Merchant>;
    async fn create_api_key(&self, merchant_id: &str) -> ApiResult<ApiKeyOut>;
    async fn revoke_api_key(&self, merchant_id: &str, key_id: &str) -> ApiResult<()>;
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

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use payloom_platform::operation::Operation;
    use serde_json::Value;

    use super::{ApiKeyOut, Merchant, MerchantIn, VerifiedOut, VerifyIn};

    pub const VERIFY: Operation<VerifyIn, VerifiedOut> =
        Operation::post("/internal/v1/auth/verify");
    pub const CREATE_MERCHANT: Operation<MerchantIn, Merchant> =
        Operation::post("/internal/v1/merchants");
    pub const GET_MERCHANT: Operation<(), Merchant> = Operation::get("/internal/v1/merchants/{id}");
    pub const CREATE_API_KEY: Operation<Value, ApiKeyOut> =
        Operation::post("/internal/v1/merchants/{id}/api-keys");
    pub const REVOKE_API_KEY: Operation<Value, Value> =
        Operation::post("/internal/v1/merchants/{id}/api-keys/{key_id}/revoke");
}

/// [`MerchantAuthApi`] over HTTP.
pub struct MerchantAuthHttp(pub ServiceClient);

#[async_trait]
impl MerchantAuthApi for MerchantAuthHttp {
    async fn verify(&self, req: VerifyIn) -> ApiResult<VerifiedOut> {
        operations::VERIFY.call(&self.0, &[], &req).await
    }
    async fn create_merchant(&self, req: MerchantIn) -> ApiResult<Merchant> {
        operations::CREATE_MERCHANT.call(&self.0, &[], &req).await
    }
    async fn get_merchant(&self, id: &str) -> ApiResult<Merchant> {
        operations::GET_MERCHANT.call(&self.0, &[id], &()).await
    }
    async fn create_api_key(&self, merchant_id: &str) -> ApiResult<ApiKeyOut> {
        let empty = serde_json::json!({});
        operations::CREATE_API_KEY
            .call(&self.0, &[merchant_id], &empty)
            .await
    }
    async fn revoke_api_key(&self, merchant_id: &str, key_id: &str) -> ApiResult<()> {
        let empty = serde_json::json!({});
        operations::REVOKE_API_KEY
            .call(&self.0, &[merchant_id, key_id], &empty)
            .await
            .map(drop)
    }
}
