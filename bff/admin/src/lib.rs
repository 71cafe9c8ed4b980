//! The admin API (minimal): login, merchants, API keys, channel credentials, policies,
//! and the money and message views of [`money`].

mod login;
mod money;
mod plugins;
pub mod service;

pub use login::LoginConfig;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{post, put};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use payloom_accounting_contract::AccountingApi;
use payloom_channel_contract::ChannelApi;
use payloom_merchant_auth_contract::{ApiKeyOut, Merchant, MerchantAuthApi, MerchantIn};
use payloom_notification_contract::NotificationApi;
use payloom_platform::events::DeadLetterApi;
use payloom_plugin_registry_contract::PluginRegistryApi;
use payloom_policy_contract::{PolicyApi, PolicyIn};

use payloom_platform::cache::KeyStore;
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use serde::{Deserialize, Serialize};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "admins",
    sql: include_str!("../migrations/0001_admins.sql"),
}];

/// How long a login token lasts.
const TOKEN_TTL_SECS: i64 = 3_600;
const PASSWORD_LEN_MIN: usize = 12;
/// Longest operator username and password. A login sending longer is refused before any
/// work: it cannot be an operator's, and Argon2 would still read every byte.
const USERNAME_LEN_MAX: usize = 128;
const PASSWORD_LEN_MAX: usize = 1_024;
const ISSUER: &str = "payloom-admin";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iss: String,
    exp: i64,
    iat: i64,
}

pub struct Admin {
    db: Db,
    clock: SharedClock,
    jwt_secret: Vec<u8>,
    passwords: login::Passwords,
    throttle: login::Throttle,
    auth: Arc<dyn MerchantAuthApi>,
    channels: Arc<dyn ChannelApi>,
    policy: Arc<dyn PolicyApi>,
    accounting: Arc<dyn AccountingApi>,
    notifications: Arc<dyn NotificationApi>,
    plugins: Arc<dyn PluginRegistryApi>,
    dead_letters: Vec<(String, Arc<dyn DeadLetterApi>)>,
}

/// The services the admin API acts through.
pub struct AdminClients {
    pub auth: Arc<dyn MerchantAuthApi>,
    pub channels: Arc<dyn ChannelApi>,
    pub policy: Arc<dyn PolicyApi>,
    pub accounting: Arc<dyn AccountingApi>,
    pub notifications: Arc<dyn NotificationApi>,
    pub plugins: Arc<dyn PluginRegistryApi>,
    /// Each event consumer's dead letters, by consumer name.
    pub dead_letters: Vec<(String, Arc<dyn DeadLetterApi>)>,
}

impl Admin {
    /// `attempts` counts failed logins; give every node the same store (Redis) so the
    /// limits hold across nodes.
    pub async fn new(
        db: Db,
        clock: SharedClock,
        jwt_secret: &[u8],
        login: &LoginConfig,
        attempts: Arc<dyn KeyStore>,
        clients: AdminClients,
    ) -> anyhow::Result<Arc<Self>> {
        anyhow::ensure!(
            jwt_secret.len() >= 32,
            "the admin JWT secret must be at least 32 bytes"
        );
        login.validate()?;
        db.migrate("admin-bff", MIGRATIONS).await?;
        Ok(Arc::new(Self {
            passwords: login::Passwords::new(login).await?,
            throttle: login::Throttle::new(clock.clone(), attempts, login),
            db,
            clock,
            jwt_secret: jwt_secret.to_vec(),
            auth: clients.auth,
            channels: clients.channels,
            policy: clients.policy,
            accounting: clients.accounting,
            notifications: clients.notifications,
            plugins: clients.plugins,
            dead_letters: clients.dead_letters,
        }))
    }

    /// Creates an operator, or sets the password and role of an existing one. This is how
    /// `dev` keeps its demo operator's login; deployments get their first operator from
    /// [`Admin::bootstrap_admin`].
    pub async fn upsert_admin(
        &self,
        username: &str,
        password: &str,
        role: &str,
    ) -> anyhow::Result<()> {
        let hash = self.checked_hash(username, password).await?;
        let now = self.clock.now_ms();
        sqlx::query(
            "INSERT INTO admins (id, username, password_hash, role, created_at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
        )
        .bind(ids::new_id("adm", now))
        .bind(username)
        .bind(hash)
        .bind(role)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Creates the first operator, a `super_admin`, when there is no operator yet; `false`
    /// when there is one, and then nothing changes. So a bootstrap password left in the
    /// configuration is used once and never re-applied.
    pub async fn bootstrap_admin(&self, username: &str, password: &str) -> anyhow::Result<bool> {
        let exists = sqlx::query("SELECT id FROM admins LIMIT 1")
            .fetch_optional(self.db.pool())
            .await?
            .is_some();
        if exists {
            return Ok(false);
        }
        let hash = self.checked_hash(username, password).await?;
        let now = self.clock.now_ms();
        // The NOT EXISTS makes two nodes bootstrapping at once create one operator.
        let created = sqlx::query(
            "INSERT INTO admins (id, username, password_hash, role, created_at_ms)
             SELECT $1, $2, $3, 'super_admin', $4 WHERE NOT EXISTS (SELECT 1 FROM admins)
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(ids::new_id("adm", now))
        .bind(username)
        .bind(hash)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(created.rows_affected() == 1)
    }

    /// The Argon2 hash of a new operator password, after checking the username and length.
    async fn checked_hash(&self, username: &str, password: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            !username.is_empty() && username.len() <= USERNAME_LEN_MAX,
            "admin usernames are 1 to {USERNAME_LEN_MAX} bytes"
        );
        anyhow::ensure!(
            (PASSWORD_LEN_MIN..=PASSWORD_LEN_MAX).contains(&password.len()),
            "admin passwords are {PASSWORD_LEN_MIN} to {PASSWORD_LEN_MAX} bytes"
        );
        self.passwords.hash(password).await
    }

    fn check_token(&self, token: &str) -> ApiResult<Claims> {
        // The algorithm is pinned: a token naming another one (or none) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(&self.jwt_secret),
            &validation,
        )
        .map_err(|_| {
            ApiError::unauthorized("token_invalid", "the bearer token is invalid or expired")
        })?;
        if data.claims.exp <= self.clock.now_ms() / 1_000 {
            return Err(ApiError::unauthorized(
                "token_invalid",
                "the bearer token is invalid or expired",
            ));
        }
        Ok(data.claims)
    }
}

/// An operator with a valid token.
struct Operator(Claims);

impl Operator {
    /// `username (adm_…)`: how the operator appears in histories other services keep.
    async fn named(&self, admin: &Admin) -> ApiResult<String> {
        let username: Option<String> =
            sqlx::query_scalar("SELECT username FROM admins WHERE id = $1")
                .bind(&self.0.sub)
                .fetch_optional(admin.db.pool())
                .await?;
        let username = username.ok_or_else(|| {
            ApiError::unauthorized(
                "token_invalid",
                "the operator of this token no longer exists",
            )
        })?;
        Ok(format!("{username} ({})", self.0.sub))
    }
}

impl FromRequestParts<Arc<Admin>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, admin: &Arc<Admin>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "token_missing",
                    "send Authorization: Bearer <token> from POST /admin/v1/login",
                )
            })?;
        admin.check_token(token).map(Operator)
    }
}

pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/admin/v1/login", post(login::login))
        .route("/admin/v1/merchants", post(create_merchant))
        .route("/admin/v1/merchants/{id}/api-keys", post(create_api_key))
        .route(
            "/admin/v1/merchants/{id}/api-keys/{key_id}/revoke",
            post(revoke_api_key),
        )
        .route(
            "/admin/v1/merchants/{id}/channels/{channel}/credentials",
            put(set_credentials),
        )
        .route("/admin/v1/merchants/{id}/policy", put(set_policy))
        .merge(money::routes())
        .merge(plugins::routes())
        .with_state(admin)
}

async fn set_policy(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path(id): Path<String>,
    ApiJson(policy): ApiJson<PolicyIn>,
) -> ApiResult<Json<serde_json::Value>> {
    a.auth.get_merchant(&id).await?;
    a.policy.set_policy(&id, policy).await?;
    Ok(Json(
        serde_json::json!({"merchant_id": id, "updated": true}),
    ))
}

async fn create_merchant(
    State(a): State<Arc<Admin>>,
    _: Operator,
    ApiJson(input): ApiJson<MerchantIn>,
) -> ApiResult<(StatusCode, Json<Merchant>)> {
    Ok((
        StatusCode::CREATED,
        Json(a.auth.create_merchant(input).await?),
    ))
}

async fn create_api_key(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<ApiKeyOut>)> {
    Ok((StatusCode::CREATED, Json(a.auth.create_api_key(&id).await?)))
}

async fn revoke_api_key(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    a.auth.revoke_api_key(&id, &key_id).await?;
    Ok(Json(
        serde_json::json!({"key_id": key_id, "status": "revoked"}),
    ))
}

async fn set_credentials(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path((id, channel)): Path<(String, String)>,
    ApiJson(values): ApiJson<BTreeMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    a.auth.get_merchant(&id).await?;
    a.channels.set_credentials(&id, &channel, values).await?;
    Ok(Json(
        serde_json::json!({"merchant_id": id, "channel": channel, "updated": true}),
    ))
}
