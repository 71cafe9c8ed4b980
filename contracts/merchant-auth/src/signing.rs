//! How a merchant signs a request (DESIGN §5):
//! `X-Signature = hex(HMAC-SHA256(secret, METHOD\nPATH_AND_QUERY\nTIMESTAMP\nNONCE\nBODY))`.
//! Merchant-auth verifies what the gateway's clients compute with these.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Requests older or newer than this, against server time, are refused.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

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
