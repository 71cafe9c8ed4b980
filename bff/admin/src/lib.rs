//! The admin API (minimal): login, merchants, API keys, channel credentials, policies,
//! and the money and message views of [`money`].

mod money;

use std::collections::BTreeMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{post, put};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use payloom_accounting::AccountingApi;
use payloom_channel_adapter::ChannelApi;
use payloom_merchant_auth::{ApiKeyOut, Merchant, MerchantAuthApi, MerchantIn};
use payloom_merchant_policy::{PolicyApi, PolicyIn};
use payloom_notification::NotificationApi;
use payloom_platform::events::DeadLetterApi;

use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use serde::{Deserialize, Serialize};
use sqlx::Row;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "admins",
    sql: include_str!("../migrations/0001_admins.sql"),
}];

/// How long a login token lasts.
const TOKEN_TTL_SECS: i64 = 3_600;
const PASSWORD_LEN_MIN: usize = 12;
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
    auth: Arc<dyn MerchantAuthApi>,
    channels: Arc<dyn ChannelApi>,
    policy: Arc<dyn PolicyApi>,
    accounting: Arc<dyn AccountingApi>,
    notifications: Arc<dyn NotificationApi>,
    dead_letters: Vec<(String, Arc<dyn DeadLetterApi>)>,
}

/// The services the admin API acts through.
pub struct AdminClients {
    pub auth: Arc<dyn MerchantAuthApi>,
    pub channels: Arc<dyn ChannelApi>,
    pub policy: Arc<dyn PolicyApi>,
    pub accounting: Arc<dyn AccountingApi>,
    pub notifications: Arc<dyn NotificationApi>,
    /// Each event consumer's dead letters, by consumer name.
    pub dead_letters: Vec<(String, Arc<dyn DeadLetterApi>)>,
}

impl Admin {
    pub async fn new(
        db: Db,
        clock: SharedClock,
        jwt_secret: &[u8],
        clients: AdminClients,
    ) -> anyhow::Result<Arc<Self>> {
        anyhow::ensure!(
            jwt_secret.len() >= 32,
            "the admin JWT secret must be at least 32 bytes"
        );
        db.migrate("admin-bff", MIGRATIONS).await?;
        Ok(Arc::new(Self {
            db,
            clock,
            jwt_secret: jwt_secret.to_vec(),
            auth: clients.auth,
            channels: clients.channels,
            policy: clients.policy,
            accounting: clients.accounting,
            notifications: clients.notifications,
            dead_letters: clients.dead_letters,
        }))
    }

    /// Creates an operator, or sets the password and role of an existing one.
    pub async fn upsert_admin(
        &self,
        username: &str,
        password: &str,
        role: &str,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            password.len() >= PASSWORD_LEN_MIN,
            "admin passwords are at least {PASSWORD_LEN_MIN} characters"
        );
        let salt =
            SaltString::encode_b64(&ids::random_bytes(16)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string();
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

    async fn login(&self, input: LoginIn) -> ApiResult<LoginOut> {
        let refused =
            || ApiError::unauthorized("credentials_invalid", "wrong username or password");
        let row = sqlx::query("SELECT id, password_hash, role FROM admins WHERE username = $1")
            .bind(&input.username)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(refused)?;
        let hash: String = row.try_get("password_hash")?;
        let parsed = PasswordHash::new(&hash).map_err(ApiError::internal)?;
        Argon2::default()
            .verify_password(input.password.as_bytes(), &parsed)
            .map_err(|_| refused())?;
        let now_secs = self.clock.now_ms() / 1_000;
        let claims = Claims {
            sub: row.try_get("id")?,
            role: row.try_get("role")?,
            iss: ISSUER.into(),
            iat: now_secs,
            exp: now_secs + TOKEN_TTL_SECS,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.jwt_secret),
        )
        .map_err(ApiError::internal)?;
        Ok(LoginOut {
            token,
            expires_in: TOKEN_TTL_SECS,
        })
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginIn {
    username: String,
    password: String,
    /// Accepted and ignored until TOTP enrolment exists.
    #[serde(default)]
    #[allow(dead_code)]
    totp: Option<String>,
}

#[derive(Debug, Serialize)]
struct LoginOut {
    token: String,
    expires_in: i64,
}

/// An operator with a valid token.
struct Operator(#[allow(dead_code)] Claims);

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
        .route("/admin/v1/login", post(login))
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

async fn login(
    State(a): State<Arc<Admin>>,
    ApiJson(input): ApiJson<LoginIn>,
) -> ApiResult<Json<LoginOut>> {
    a.login(input).await.map(Json)
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
