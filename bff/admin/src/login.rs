//! Operator login. Argon2 runs on the blocking pool behind a few slots, so a login flood
//! cannot stall the other APIs of the process; an unknown username costs the same Argon2
//! work as a known one, so timing does not tell which usernames exist; failures are
//! throttled per username and per source address through the shared key store, so the
//! limits hold across nodes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRequestParts, State};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use payloom_platform::cache::{KeyStore, TtlCache};
use payloom_platform::clock::SharedClock;
use payloom_platform::{ApiError, ApiJson, ids};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::Semaphore;

use crate::{Admin, Claims, ISSUER, PASSWORD_LEN_MAX, TOKEN_TTL_SECS, USERNAME_LEN_MAX};

/// What a client waiting for an Argon2 slot is told to wait before trying again, in seconds.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// The login settings of `[admin]`: throttling and the Argon2 slots.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginConfig {
    /// Failed logins one username may take in a window; beyond, every login for it (the
    /// right password included) is 429 until the window closes.
    pub login_failures_per_username_max: u64,
    /// Failed logins one source address may make in a window, over every username.
    pub login_failures_per_source_max: u64,
    /// The throttling window, in seconds.
    pub login_failure_window_secs: u64,
    /// Argon2 checks run at once; each holds ~19 MiB and a core for tens of milliseconds.
    pub login_hash_slots: usize,
    /// How long a login waits for a slot before it is 503 `login_busy`, in milliseconds.
    pub login_hash_wait_ms: u64,
}

impl LoginConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.login_failures_per_username_max > 0 && self.login_failures_per_source_max > 0,
            "admin.login_failures_per_username_max and _per_source_max must be positive"
        );
        anyhow::ensure!(
            (1..=86_400).contains(&self.login_failure_window_secs),
            "admin.login_failure_window_secs must be 1 to 86400"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.login_hash_slots),
            "admin.login_hash_slots must be 1 to 64"
        );
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginIn {
    username: String,
    password: String,
    /// No operator has TOTP yet, so a code sent is refused rather than ignored.
    #[serde(default)]
    totp: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LoginOut {
    token: String,
    expires_in: i64,
}

/// A refused login: the error, and when to come back for a throttled or busy one.
pub(crate) struct Refusal {
    error: ApiError,
    retry_after_secs: Option<u64>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after_secs: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        response
    }
}

fn throttled(retry_after_secs: u64) -> Refusal {
    Refusal {
        error: ApiError::new(
            429,
            "rate_limit_error",
            "login_throttled",
            "too many failed logins for this username or from this address; retry later",
        ),
        retry_after_secs: Some(retry_after_secs),
    }
}

/// Argon2 off the async workers, a few at a time.
pub(crate) struct Passwords {
    slots: Arc<Semaphore>,
    wait: Duration,
    /// The hash an unknown username is checked against, made with the same parameters as
    /// real ones from a password nobody knows.
    dummy_hash: String,
}

impl Passwords {
    pub(crate) async fn new(config: &LoginConfig) -> anyhow::Result<Self> {
        let slots = Arc::new(Semaphore::new(config.login_hash_slots));
        let dummy_hash = hash_with(&slots, ids::random_hex(32)).await?;
        Ok(Self {
            slots,
            wait: Duration::from_millis(config.login_hash_wait_ms),
            dummy_hash,
        })
    }

    /// The PHC string of `password` (argon2id); waits for a slot as long as it takes.
    pub(crate) async fn hash(&self, password: &str) -> anyhow::Result<String> {
        hash_with(&self.slots, password.to_owned()).await
    }

    /// Whether `password` matches `hash`; with no hash (no such user) the dummy is checked
    /// and the answer is no. A login that waits too long for a slot is 503 `login_busy`.
    async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, Refusal> {
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(ApiError::internal)?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let matched = tokio::task::spawn_blocking(move || {
            // The slot is held until Argon2 is done, even if the client has gone.
            let _slot = slot;
            let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::Ok(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        Ok(known && matched)
    }
}

async fn hash_with(slots: &Arc<Semaphore>, password: String) -> anyhow::Result<String> {
    let slot = slots.clone().acquire_owned().await?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let salt =
            SaltString::encode_b64(&ids::random_bytes(16)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(hash.to_string())
    })
    .await?
}

fn busy() -> Refusal {
    Refusal {
        error: ApiError::new(
            503,
            "api_error",
            "login_busy",
            "too many logins are being checked at once; retry shortly",
        ),
        retry_after_secs: Some(BUSY_RETRY_AFTER_SECS),
    }
}

/// Failed logins counted per username and per source in the shared key store. A node
/// that sees a count reach its limit also locks the subject locally for a window, so
/// every login for it (the right password included) is refused before Argon2 runs.
/// Another node learns of the lock from its own next failure for that subject, so over
/// N nodes a window allows at most the limit plus N failures.
pub(crate) struct Throttle {
    clock: SharedClock,
    store: Arc<dyn KeyStore>,
    per_username_max: u64,
    per_source_max: u64,
    window_ms: i64,
    /// Locked subjects, with when their lock ends.
    locks: TtlCache<i64>,
}

impl Throttle {
    pub(crate) fn new(clock: SharedClock, store: Arc<dyn KeyStore>, config: &LoginConfig) -> Self {
        let window_ms = i64::try_from(config.login_failure_window_secs * 1_000)
            .expect("validated: at most a day");
        Self {
            locks: TtlCache::new(clock.clone(), window_ms),
            clock,
            store,
            per_username_max: config.login_failures_per_username_max,
            per_source_max: config.login_failures_per_source_max,
            window_ms,
        }
    }

    /// The subjects a login counts against, each with its limit. Without a known source
    /// (a router served without connection info) only the username counts.
    fn subjects(&self, username: &str, source: Option<IpAddr>) -> Vec<(String, u64)> {
        let mut subjects = vec![(format!("user:{username}"), self.per_username_max)];
        if let Some(ip) = source {
            subjects.push((format!("source:{}", source_key(ip)), self.per_source_max));
        }
        subjects
    }

    /// Refuses a login for a locked username or source.
    fn check(&self, subjects: &[(String, u64)]) -> Result<(), Refusal> {
        let now = self.clock.now_ms();
        let until = subjects
            .iter()
            .filter_map(|(subject, _)| self.locks.get(subject))
            .max();
        match until {
            Some(until) => Err(throttled(seconds_until(now, until))),
            None => Ok(()),
        }
    }

    /// Counts a failed login. The failure that reaches a limit locks the subject and is
    /// still answered 401; one past it (a concurrent attempt, or another node's lock) is
    /// answered 429. A store that cannot count refuses rather than stop counting.
    async fn record_failure(&self, subjects: &[(String, u64)]) -> Result<(), Refusal> {
        let mut past_limit = false;
        for (subject, max) in subjects {
            let failures = self
                .store
                .hit(&format!("login-failures:{subject}"), self.window_ms as u64)
                .await
                .map_err(|e| {
                    tracing::error!("login throttle store failed: {e:#}");
                    ApiError::unavailable("logins cannot be checked now; retry later")
                })?;
            if failures >= *max && self.locks.get(subject).is_none() {
                self.locks
                    .insert(subject, self.clock.now_ms() + self.window_ms);
            }
            past_limit |= failures > *max;
        }
        if past_limit {
            return Err(throttled((self.window_ms as u64).div_ceil(1_000)));
        }
        Ok(())
    }
}

/// What a source is counted as: an IPv4 address, or an IPv6 /64, the block one host
/// usually has (counting single IPv6 addresses would let it rotate through them).
fn source_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let prefix = std::net::Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            );
            format!("{prefix}/64")
        }
    }
}

/// Whole seconds from `now_ms` to `until_ms`, rounded up, at least one.
fn seconds_until(now_ms: i64, until_ms: i64) -> u64 {
    let ms = until_ms.saturating_sub(now_ms).max(1) as u64;
    ms.div_ceil(1_000)
}

/// The address a request came from, when the server recorded it.
pub(crate) struct Source(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(payloom_platform::server::peer_ip(parts)))
    }
}

pub(crate) async fn login(
    State(admin): State<Arc<Admin>>,
    Source(source): Source,
    ApiJson(input): ApiJson<LoginIn>,
) -> Result<ApiJson<LoginOut>, Refusal> {
    admin.login(input, source).await.map(ApiJson)
}

impl Admin {
    async fn login(&self, input: LoginIn, source: Option<IpAddr>) -> Result<LoginOut, Refusal> {
        check_lengths(&input)?;
        let subjects = self.throttle.subjects(&input.username, source);
        self.throttle.check(&subjects)?;
        let row = sqlx::query("SELECT id, password_hash, role FROM admins WHERE username = $1")
            .bind(&input.username)
            .fetch_optional(self.db.pool())
            .await
            .map_err(ApiError::from)?;
        let hash = match &row {
            Some(row) => Some(
                row.try_get::<String, _>("password_hash")
                    .map_err(ApiError::from)?,
            ),
            None => None,
        };
        let matched = self.passwords.verify(input.password, hash).await?;
        let Some(row) = row.filter(|_| matched) else {
            self.throttle.record_failure(&subjects).await?;
            return Err(ApiError::unauthorized(
                "credentials_invalid",
                "wrong username or password",
            )
            .into());
        };
        if input.totp.is_some() {
            return Err(ApiError::bad_request(
                "totp_not_enabled",
                "this operator has no TOTP configured; send no totp",
            )
            .with_param("totp")
            .into());
        }
        let id: String = row.try_get("id").map_err(ApiError::from)?;
        let role: String = row.try_get("role").map_err(ApiError::from)?;
        Ok(self.issue_token(id, role)?)
    }

    fn issue_token(&self, id: String, role: String) -> Result<LoginOut, ApiError> {
        let now_secs = self.clock.now_ms() / 1_000;
        let claims = Claims {
            sub: id,
            role,
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
}

fn check_lengths(input: &LoginIn) -> Result<(), ApiError> {
    if input.username.is_empty() || input.username.len() > USERNAME_LEN_MAX {
        return Err(ApiError::invalid(
            "username",
            "username must be 1 to 128 bytes",
        ));
    }
    if input.password.len() > PASSWORD_LEN_MAX {
        return Err(ApiError::invalid(
            "password",
            "password must be at most 1024 bytes",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use payloom_platform::ManualClock;
    use payloom_platform::cache::MemoryKeyStore;

    use super::*;

    fn config(per_username_max: u64, per_source_max: u64) -> LoginConfig {
        LoginConfig {
            login_failures_per_username_max: per_username_max,
            login_failures_per_source_max: per_source_max,
            login_failure_window_secs: 60,
            login_hash_slots: 1,
            login_hash_wait_ms: 0,
        }
    }

    fn status(result: Result<(), Refusal>) -> (u16, Option<u64>) {
        match result {
            Ok(()) => (200, None),
            Err(refusal) => (refusal.error.status, refusal.retry_after_secs),
        }
    }

    const HERE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const ELSEWHERE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[tokio::test]
    async fn failures_lock_a_username_everywhere_and_a_source_for_every_username() {
        let clock = ManualClock::new(0);
        let store = Arc::new(MemoryKeyStore::new(Arc::new(clock.clone())));
        let throttle = Throttle::new(Arc::new(clock.clone()), store, &config(2, 3));
        let admin_here = throttle.subjects("admin", HERE);
        for _ in 0..2 {
            assert_eq!(status(throttle.check(&admin_here)), (200, None));
            assert_eq!(
                status(throttle.record_failure(&admin_here).await),
                (200, None)
            );
        }
        assert_eq!(status(throttle.check(&admin_here)), (429, Some(60)));
        let admin_elsewhere = throttle.subjects("admin", ELSEWHERE);
        assert_eq!(
            status(throttle.check(&admin_elsewhere)).0,
            429,
            "per username"
        );
        let ops_elsewhere = throttle.subjects("ops", ELSEWHERE);
        assert_eq!(status(throttle.check(&ops_elsewhere)).0, 200);
        // The source has two failures; a third, for another username, locks it.
        let ghost_here = throttle.subjects("ghost", HERE);
        assert_eq!(status(throttle.check(&ghost_here)).0, 200);
        assert_eq!(status(throttle.record_failure(&ghost_here).await).0, 200);
        assert_eq!(
            status(throttle.check(&throttle.subjects("ops", HERE))).0,
            429
        );
        assert_eq!(status(throttle.check(&ops_elsewhere)).0, 200);
        clock.advance(59_500);
        assert_eq!(status(throttle.check(&admin_here)), (429, Some(1)));
        clock.advance(500);
        assert_eq!(
            status(throttle.check(&admin_here)).0,
            200,
            "the window closed"
        );
    }

    #[tokio::test]
    async fn another_node_refuses_past_the_limit_from_its_first_failure() {
        let clock = ManualClock::new(0);
        let shared: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new(Arc::new(clock.clone())));
        let node_a = Throttle::new(Arc::new(clock.clone()), shared.clone(), &config(2, 100));
        let node_b = Throttle::new(Arc::new(clock.clone()), shared, &config(2, 100));
        let subjects = node_a.subjects("admin", HERE);
        node_a.record_failure(&subjects).await.ok().unwrap();
        node_a.record_failure(&subjects).await.ok().unwrap();
        assert_eq!(
            status(node_b.check(&subjects)).0,
            200,
            "b has not seen it yet"
        );
        assert_eq!(status(node_b.record_failure(&subjects).await).0, 429);
        assert_eq!(status(node_b.check(&subjects)).0, 429);
    }

    #[tokio::test]
    async fn unknown_users_are_checked_against_the_dummy_and_refused() {
        let passwords = Passwords::new(&config(1, 1)).await.unwrap();
        let hash = passwords.hash("correct horse battery").await.unwrap();
        let verify =
            |password: &str, hash: Option<String>| passwords.verify(password.to_owned(), hash);
        assert!(
            verify("correct horse battery", Some(hash.clone()))
                .await
                .ok()
                .unwrap()
        );
        assert!(
            !verify("wrong horse battery", Some(hash))
                .await
                .ok()
                .unwrap()
        );
        assert!(!verify("correct horse battery", None).await.ok().unwrap());
    }

    #[tokio::test]
    async fn a_login_that_cannot_get_a_slot_is_busy_not_stuck() {
        let passwords = Passwords::new(&config(1, 1)).await.unwrap();
        let _taken = passwords.slots.clone().acquire_owned().await.unwrap();
        let refusal = passwords.verify("pw".into(), None).await.err().unwrap();
        assert_eq!(
            (refusal.error.status, refusal.error.code.as_str()),
            (503, "login_busy")
        );
        assert_eq!(refusal.retry_after_secs, Some(1));
    }

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_blocks() {
        let key = |ip: &str| source_key(ip.parse().unwrap());
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(seconds_until(0, 1), 1);
        assert_eq!(seconds_until(0, 1_000), 1);
        assert_eq!(seconds_until(0, 1_001), 2);
        assert_eq!(
            seconds_until(5_000, 1_000),
            1,
            "a lock just ended still says 1 s"
        );
    }
}
