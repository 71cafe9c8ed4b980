//! Secrets at rest: AES-256-GCM under the platform master key from config.
//!
//! A sealed value is `v1:` + base64-free hex of `nonce(12) || ciphertext+tag`. The
//! associated data binds a value to where it is stored (e.g. `channel:mch_…:sandbox`), so
//! a sealed value copied to another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE_LEN: usize = 12;
const PREFIX: &str = "v1:";

/// The master key. Debug never prints it.
#[derive(Clone)]
pub struct MasterKey(Box<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From 64 hex characters.
    pub fn from_hex(hex_key: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| anyhow::anyhow!("master key must be 64 hex characters"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("master key must be 32 bytes (64 hex characters)"))?;
        Ok(Self(Box::new(key)))
    }

    /// A fresh random key (tests and first `dev` start).
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source");
        Self(Box::new(key))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(*self.0)
    }

    /// A key for one purpose, derived so that no use of it can reveal the master key or
    /// another purpose's key: HMAC-SHA256(master, domain || purpose).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&*self.0)
            .expect("HMAC takes any key length");
        mac.update(b"payloom-derived-key-v1\n");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&*self.0).expect("32-byte key")
    }

    /// Encrypts `plain`, bound to `context`.
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption does not fail for in-memory inputs");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", hex::encode(out))
    }

    /// Decrypts a value sealed for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> anyhow::Result<Vec<u8>> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|raw| raw.len() > NONCE_LEN)
            .ok_or_else(|| anyhow::anyhow!("not a sealed value"))?;
        let (nonce, body) = raw.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealed value does not open with this key and context"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_context() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"sk_live_123", "channel:mch_1:sandbox");
        assert!(!sealed.contains("sk_live"));
        assert_eq!(
            key.open(&sealed, "channel:mch_1:sandbox").unwrap(),
            b"sk_live_123"
        );
        assert!(key.open(&sealed, "channel:mch_2:sandbox").is_err());
        assert!(
            MasterKey::generate()
                .open(&sealed, "channel:mch_1:sandbox")
                .is_err()
        );
        assert!(MasterKey::from_hex(&key.to_hex()).is_ok());
        assert!(MasterKey::from_hex("abcd").is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_master() {
        let key = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        assert_eq!(key.derive("plugin-cache"), key.derive("plugin-cache"));
        assert_ne!(key.derive("plugin-cache"), key.derive("other"));
        assert_ne!(key.derive("plugin-cache"), *key.0);
        assert_ne!(
            MasterKey::generate().derive("plugin-cache"),
            key.derive("plugin-cache")
        );
    }
}
