//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256(key,
//! "<webhook-id>.<webhook-timestamp>.<body>")>`, where the endpoint secret is `whsec_` +
//! base64 of the key bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a new endpoint key (the spec asks for at least 24).
pub const KEY_BYTES: usize = 24;
pub const SECRET_PREFIX: &str = "whsec_";

/// A new endpoint secret and its key bytes.
pub fn new_secret() -> (String, Vec<u8>) {
    let key = payloom_platform::ids::random_bytes(KEY_BYTES);
    (format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)), key)
}

/// The key bytes of a `whsec_…` secret.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX)?)
        .ok()
        .filter(|k| k.len() >= KEY_BYTES)
}

/// The `webhook-signature` value for one send.
pub fn sign(key: &[u8], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp_secs}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_signatures_depend_on_every_part() {
        let (secret, key) = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key_of(&secret).unwrap(), key);
        let base = sign(&key, "evt_1", 1_700_000_000, b"{}");
        assert!(base.starts_with("v1,"));
        assert_ne!(base, sign(&key, "evt_2", 1_700_000_000, b"{}"));
        assert_ne!(base, sign(&key, "evt_1", 1_700_000_001, b"{}"));
        assert_ne!(base, sign(&key, "evt_1", 1_700_000_000, b"{ }"));
        assert_eq!(key_of("whsec_short"), None);
    }
}
