//! Verifying a signed merchant request (DESIGN §5):
//! `X-Signature = hex(HMAC-SHA256(secret, METHOD\nPATH_AND_QUERY\nTIMESTAMP\nNONCE\nBODY))`.

use hmac::{Hmac, Mac};
use payloom_platform::{ApiError, ApiResult};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{MerchantAuth, VerifiedOut, VerifyIn};

/// Requests older or newer than this, against server time, are refused.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;
/// Nonces are remembered for twice the window, so a nonce cannot come back with a
/// timestamp still inside the window.
const NONCE_TTL_MS: u64 = 2 * SIGNATURE_WINDOW_SECS as u64 * 1_000;
/// Random bytes in a secret. Hex-encoded with the `sk_` prefix that is 99 bytes, above
/// HMAC-SHA256's 64-byte block, which is what lets us keep only the hash.
pub(crate) const SECRET_BYTES: usize = 48;
const _: () = assert!(3 + 2 * SECRET_BYTES > 64);
/// Longest nonce accepted.
const NONCE_LEN_MAX: usize = 64;

/// The message a merchant signs.
pub fn string_to_sign(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}")
}

/// Hex HMAC-SHA256 of the request under `secret` (what a merchant's client computes).
pub fn sign(
    secret: &str,
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(string_to_sign(method, path_and_query, timestamp, nonce, body).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What is stored for a secret: the key HMAC derives from it.
pub(crate) fn signing_key(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn refuse(code: &str, message: &str) -> ApiError {
    ApiError::unauthorized(code, message)
}

pub(crate) async fn verify(auth: &MerchantAuth, req: VerifyIn) -> ApiResult<VerifiedOut> {
    let now_secs = auth.clock.now_ms() / 1_000;
    let timestamp: i64 = req
        .timestamp
        .parse()
        .map_err(|_| refuse("timestamp_invalid", "X-Timestamp must be unix seconds"))?;
    if (now_secs - timestamp).abs() > SIGNATURE_WINDOW_SECS {
        return Err(refuse(
            "timestamp_out_of_window",
            "X-Timestamp is more than 300 s from server time",
        ));
    }
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
    let nonce_key = format!("{}:{}", req.key_id, req.nonce);
    if !auth
        .nonces
        .insert_if_absent(&nonce_key, NONCE_TTL_MS)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(refuse("nonce_replayed", "this X-Nonce was already used"));
    }
    Ok(VerifiedOut {
        merchant_id: key.merchant_id,
        tier: key.tier,
        key_id: req.key_id,
    })
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
    use super::*;

    #[test]
    fn the_stored_hash_verifies_what_the_secret_signs() {
        let secret = format!("sk_{}", "ab".repeat(SECRET_BYTES));
        let by_secret = sign(&secret, "POST", "/v1/payments", "1700000000", "n", "{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(&signing_key(&secret)).unwrap();
        mac.update(string_to_sign("POST", "/v1/payments", "1700000000", "n", "{}").as_bytes());
        assert_eq!(hex::encode(mac.finalize().into_bytes()), by_secret);
    }
}
