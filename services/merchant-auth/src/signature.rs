//! Verifying a signed merchant request (DESIGN §5):
//! `X-Signature = hex(HMAC-SHA256(secret, METHOD\nPATH_AND_QUERY\nTIMESTAMP\nNONCE\nBODY))`.

use hmac::{Hmac, Mac};
use payloom_platform::cache::StoreFull;
use payloom_platform::{ApiError, ApiResult};
use sha2::{Digest, Sha256};
use sqlx::Row;

pub use payloom_merchant_auth_contract::signing::{SIGNATURE_WINDOW_SECS, sign, string_to_sign};

use crate::{MerchantAuth, VerifiedOut, VerifyIn};

/// The window as compared: in milliseconds, so it is exactly as long as the nonce TTL
/// below assumes (whole seconds would stretch it by up to a second).
const SIGNATURE_WINDOW_MS: u64 = SIGNATURE_WINDOW_SECS as u64 * 1_000;
/// Slack for nodes (and Redis) whose clocks disagree a little.
const NONCE_TTL_MARGIN_MS: u64 = 30_000;
/// A timestamp passes for twice the window (from a window ahead of server time to a
/// window behind it), so a nonce first used at the start of that span must still be
/// remembered at its end: two windows, plus the margin.
const NONCE_TTL_MS: u64 = 2 * SIGNATURE_WINDOW_MS + NONCE_TTL_MARGIN_MS;
const _: () = assert!(NONCE_TTL_MS > 2 * SIGNATURE_WINDOW_MS);
/// Random bytes in a secret. Hex-encoded with the `sk_` prefix that is 99 bytes, above
/// HMAC-SHA256's 64-byte block, which is what lets us keep only the hash.
pub(crate) const SECRET_BYTES: usize = 48;
const _: () = assert!(3 + 2 * SECRET_BYTES > 64);
/// Longest nonce accepted.
const NONCE_LEN_MAX: usize = 64;

/// What is stored for a secret: the key HMAC derives from it.
pub(crate) fn signing_key(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn refuse(code: &str, message: &str) -> ApiError {
    ApiError::unauthorized(code, message)
}

/// Refuses a timestamp that is not unix seconds within the window of `now_ms`. Any
/// `i64` is compared without overflow: the extremes are simply out of the window.
fn check_timestamp(now_ms: i64, timestamp: &str) -> ApiResult<()> {
    let secs: i64 = timestamp
        .parse()
        .map_err(|_| refuse("timestamp_invalid", "X-Timestamp must be unix seconds"))?;
    let in_window = secs
        .checked_mul(1_000)
        .is_some_and(|ms| ms.abs_diff(now_ms) <= SIGNATURE_WINDOW_MS);
    if !in_window {
        return Err(refuse(
            "timestamp_out_of_window",
            "X-Timestamp is more than 300 s from server time",
        ));
    }
    Ok(())
}

pub(crate) async fn verify(auth: &MerchantAuth, req: VerifyIn) -> ApiResult<VerifiedOut> {
    check_timestamp(auth.clock.now_ms(), &req.timestamp)?;
    if req.nonce.is_empty() || req.nonce.len() > NONCE_LEN_MAX {
        return Err(refuse(
            "nonce_invalid",
            "X-Nonce must be 1 to 64 characters",
        ));
    }
    let Some(key) = active_key(auth, &req.key_id).await? else {
        return Err(refuse("api_key_invalid", "unknown or revoked API key"));
    };
    let expected = hex::decode(&req.signature).map_err(|_| {
        refuse(
            "signature_invalid",
            "the signature does not match the request",
        )
    })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.signing_key).expect("any key length");
    mac.update(
        string_to_sign(
            &req.method,
            &req.path_and_query,
            &req.timestamp,
            &req.nonce,
            &req.body,
        )
        .as_bytes(),
    );
    mac.verify_slice(&expected).map_err(|_| {
        refuse(
            "signature_invalid",
            "the signature does not match the request",
        )
    })?;
    // Claimed only after the signature checks out, so nobody can burn a merchant's nonces.
    claim_nonce(auth, &key.merchant_id, &req.nonce).await?;
    Ok(VerifiedOut {
        merchant_id: key.merchant_id,
        tier: key.tier,
        key_id: req.key_id,
    })
}

/// Spends `nonce` for the merchant: each merchant's nonces are its own, and a bounded
/// store caps each merchant's share of it.
async fn claim_nonce(auth: &MerchantAuth, merchant_id: &str, nonce: &str) -> ApiResult<()> {
    match auth
        .nonces
        .insert_scoped_if_absent(merchant_id, nonce, NONCE_TTL_MS)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(refuse("nonce_replayed", "this X-Nonce was already used")),
        Err(err) => Err(nonce_store_refusal(&err)),
    }
}

/// A nonce that cannot be stored is refused with a reason the caller can act on (slow
/// down, or retry later), never as an internal error.
fn nonce_store_refusal(err: &anyhow::Error) -> ApiError {
    match err.downcast_ref::<StoreFull>() {
        Some(StoreFull::Scope) => ApiError::new(
            429,
            "rate_limit_error",
            "nonce_store_full",
            "this merchant holds as many unexpired nonces (requests of the last ten minutes) \
             as this node keeps for one merchant; slow down and retry",
        ),
        Some(StoreFull::Store) => ApiError::new(
            503,
            "api_error",
            "nonce_store_full",
            "the nonce store is full; retry later",
        ),
        None => {
            tracing::error!("nonce store failed: {err:#}");
            ApiError::unavailable("the nonce store cannot be reached; retry later")
        }
    }
}

/// An active key of an active merchant, opened.
#[derive(Clone)]
pub(crate) struct ActiveKey {
    merchant_id: String,
    tier: String,
    signing_key: Vec<u8>,
}

/// The key from the cache or the database. Only active keys are cached; revoking one
/// removes it from this node's cache (other nodes drop it within the TTL).
async fn active_key(auth: &MerchantAuth, key_id: &str) -> ApiResult<Option<ActiveKey>> {
    if let Some(key) = auth.keys.get(key_id) {
        return Ok(Some(key));
    }
    let row = sqlx::query(
        "SELECT k.merchant_id, k.signing_key_sealed, m.tier FROM api_keys k JOIN merchants m ON m.id = k.merchant_id
         WHERE k.key_id = $1 AND k.status = 'active' AND m.status = 'active'",
    )
    .bind(key_id)
    .fetch_optional(auth.db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed: String = row.try_get("signing_key_sealed")?;
    let signing_key = auth
        .master_key
        .open(&sealed, &MerchantAuth::seal_context(key_id))
        .map_err(ApiError::internal)?;
    let key = ActiveKey {
        merchant_id: row.try_get("merchant_id")?,
        tier: row.try_get("tier")?,
        signing_key,
    };
    auth.keys.insert(key_id, key.clone());
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use payloom_platform::ManualClock;
    use payloom_platform::cache::{KeyStore, MemoryKeyStore, MemoryLimits};
    use payloom_platform::db::{PoolOptions, sqlite_url};
    use payloom_platform::seal::MasterKey;

    use super::*;
    use crate::{ApiKeyOut, MerchantAuthApi, MerchantIn};

    /// 2023-11-14T22:13:20Z, in unix seconds.
    const T_SECS: i64 = 1_700_000_000;

    struct Fixture {
        auth: Arc<MerchantAuth>,
        clock: ManualClock,
        _dir: tempfile::TempDir,
    }

    async fn fixture(nonces: impl FnOnce(ManualClock) -> Arc<dyn KeyStore>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(dir.path(), "merchant-auth");
        let db = payloom_platform::Db::connect(&url, &PoolOptions::default())
            .await
            .unwrap();
        let clock = ManualClock::new(T_SECS * 1_000);
        let store = nonces(clock.clone());
        let auth = MerchantAuth::new(db, Arc::new(clock.clone()), MasterKey::generate(), store)
            .await
            .unwrap();
        Fixture {
            auth,
            clock,
            _dir: dir,
        }
    }

    fn memory(limits: MemoryLimits) -> impl FnOnce(ManualClock) -> Arc<dyn KeyStore> {
        move |clock| Arc::new(MemoryKeyStore::with_limits(Arc::new(clock), limits))
    }

    async fn merchant_key(auth: &MerchantAuth) -> ApiKeyOut {
        let input = MerchantIn {
            name: "Shop".into(),
            tier: None,
        };
        let merchant = auth.create_merchant(input).await.unwrap();
        auth.create_api_key(&merchant.id).await.unwrap()
    }

    /// `GET /v1/balance` signed by `key` with this timestamp and nonce.
    fn signed(key: &ApiKeyOut, timestamp: &str, nonce: &str) -> VerifyIn {
        VerifyIn {
            key_id: key.key_id.clone(),
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            signature: sign(&key.secret, "GET", "/v1/balance", timestamp, nonce, ""),
            method: "GET".into(),
            path_and_query: "/v1/balance".into(),
            body: String::new(),
        }
    }

    fn code(result: ApiResult<VerifiedOut>) -> (u16, String) {
        let err = result.unwrap_err();
        (err.status, err.code)
    }

    #[tokio::test]
    async fn a_nonce_is_remembered_for_as_long_as_its_timestamp_passes() {
        let f = fixture(memory(MemoryLimits::default())).await;
        let key = merchant_key(&f.auth).await;
        // Signed 300 s ahead of server time: the earliest moment this timestamp passes.
        let ts = T_SECS + SIGNATURE_WINDOW_SECS;
        let request = signed(&key, &ts.to_string(), "n-boundary");
        f.clock.advance(-1);
        let early = f.auth.verify(request.clone()).await;
        assert_eq!(code(early), (401, "timestamp_out_of_window".into()));
        f.clock.advance(1);
        f.auth.verify(request.clone()).await.unwrap();
        // The last moment the timestamp passes, 600 s later: the nonce is still spent.
        f.clock.set((ts + SIGNATURE_WINDOW_SECS) * 1_000);
        let replay = f.auth.verify(request.clone()).await;
        assert_eq!(code(replay), (401, "nonce_replayed".into()));
        f.clock.advance(1);
        let late = f.auth.verify(request).await;
        assert_eq!(code(late), (401, "timestamp_out_of_window".into()));
    }

    #[tokio::test]
    async fn extreme_timestamps_are_refused_without_overflow() {
        let f = fixture(memory(MemoryLimits::default())).await;
        let key = merchant_key(&f.auth).await;
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -1, 0] {
            let refused = f.auth.verify(signed(&key, &ts.to_string(), "n")).await;
            assert_eq!(
                code(refused),
                (401, "timestamp_out_of_window".into()),
                "{ts}"
            );
        }
        let huge = f
            .auth
            .verify(signed(&key, "9223372036854775808", "n"))
            .await;
        assert_eq!(code(huge), (401, "timestamp_invalid".into()));
    }

    #[tokio::test]
    async fn nonces_are_per_merchant_and_capped_per_merchant() {
        let limits = MemoryLimits {
            keys_max: 5,
            keys_per_scope_max: 2,
        };
        let f = fixture(memory(limits)).await;
        let (a, b, c) = (
            merchant_key(&f.auth).await,
            merchant_key(&f.auth).await,
            merchant_key(&f.auth).await,
        );
        let a_second_key = f.auth.create_api_key(&a.merchant_id).await.unwrap();
        let ts = T_SECS.to_string();
        f.auth.verify(signed(&a, &ts, "n1")).await.unwrap();
        let other_key = f.auth.verify(signed(&a_second_key, &ts, "n1")).await;
        assert_eq!(
            code(other_key),
            (401, "nonce_replayed".into()),
            "a nonce is spent for the merchant, whichever of its keys signed"
        );
        f.auth.verify(signed(&b, &ts, "n1")).await.unwrap();
        f.auth.verify(signed(&a, &ts, "n2")).await.unwrap();
        let full = f.auth.verify(signed(&a, &ts, "n3")).await;
        assert_eq!(code(full), (429, "nonce_store_full".into()));
        f.auth.verify(signed(&b, &ts, "n2")).await.unwrap();
        f.auth.verify(signed(&c, &ts, "n1")).await.unwrap();
        let store_full = f.auth.verify(signed(&c, &ts, "n2")).await;
        assert_eq!(code(store_full), (503, "nonce_store_full".into()));
    }

    /// A store that cannot be reached.
    struct Unreachable;

    #[async_trait]
    impl KeyStore for Unreachable {
        async fn insert_if_absent(&self, _: &str, _: u64) -> anyhow::Result<bool> {
            anyhow::bail!("connection refused")
        }
        async fn hit(&self, _: &str, _: u64) -> anyhow::Result<u64> {
            anyhow::bail!("connection refused")
        }
    }

    #[tokio::test]
    async fn an_unreachable_nonce_store_is_a_503_not_a_500() {
        let f = fixture(|_| Arc::new(Unreachable)).await;
        let key = merchant_key(&f.auth).await;
        let refused = f.auth.verify(signed(&key, &T_SECS.to_string(), "n")).await;
        assert_eq!(code(refused), (503, "service_unavailable".into()));
    }

    #[test]
    fn the_stored_hash_verifies_what_the_secret_signs() {
        let secret = format!("sk_{}", "ab".repeat(SECRET_BYTES));
        let by_secret = sign(&secret, "POST", "/v1/payments", "1700000000", "n", "{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(&signing_key(&secret)).unwrap();
        mac.update(string_to_sign("POST", "/v1/payments", "1700000000", "n", "{}").as_bytes());
        assert_eq!(hex::encode(mac.finalize().into_bytes()), by_secret);
    }
}
