//! `crypto`: operations with keys the host holds, named by handle.

mod rsa_keys;

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use self::rsa_keys::{RsaPrivateKey, RsaPublicKey};
use crate::bindings::imports::payloom::plugin::crypto::{self, Error};
use crate::state::CallState;

/// A key the host holds for a plugin.
#[derive(Clone)]
pub enum Key {
    /// HMAC key bytes.
    Hmac(Vec<u8>),
    /// 32-byte AES-256 key.
    Aes256(Box<[u8; 32]>),
    /// RSA private key (signing, and verifying with its public half).
    RsaPrivate(Arc<RsaPrivateKey>),
    /// RSA public key (verification).
    RsaPublic(Arc<RsaPublicKey>),
}

impl Key {
    /// An RSA private key from PEM, PKCS#8 or PKCS#1; 2048 to 4096 bits.
    pub fn rsa_private_pem(pem: &str) -> anyhow::Result<Self> {
        Ok(Self::RsaPrivate(Arc::new(RsaPrivateKey::from_pem(pem)?)))
    }

    /// An RSA public key from SubjectPublicKeyInfo PEM; 2048 to 8192 bits.
    pub fn rsa_public_pem(pem: &str) -> anyhow::Result<Self> {
        Ok(Self::RsaPublic(Arc::new(RsaPublicKey::from_pem(pem)?)))
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CallState {
    /// The key for `handle`, if the manifest grants it and the call carries it. An
    /// ungranted handle reads as unknown so a plugin cannot probe for keys.
    fn key(&self, handle: &str) -> Result<&Key, Error> {
        let granted = self
            .plugin
            .manifest
            .capabilities
            .keys
            .iter()
            .any(|k| k == handle);
        match self.ctx.keys.get(handle) {
            Some(key) if granted => Ok(key),
            _ => Err(Error::UnknownKey(handle.to_owned())),
        }
    }

    fn hmac(&self, handle: &str) -> Result<HmacSha256, Error> {
        match self.key(handle)? {
            Key::Hmac(bytes) => {
                Ok(<HmacSha256 as Mac>::new_from_slice(bytes).expect("HMAC takes any key length"))
            }
            _ => Err(Error::WrongKeyType(handle.to_owned())),
        }
    }
}

impl crypto::Host for CallState {
    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        Sha256::digest(&data).to_vec()
    }

    fn hmac_sha256(&mut self, key: String, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let mut mac = self.hmac(&key)?;
        mac.update(&data);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    fn hmac_sha256_verify(
        &mut self,
        key: String,
        data: Vec<u8>,
        expected: Vec<u8>,
    ) -> Result<bool, Error> {
        let mut mac = self.hmac(&key)?;
        mac.update(&data);
        Ok(mac.verify_slice(&expected).is_ok())
    }

    fn rsa_sha256_sign(&mut self, key: String, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        match self.key(&key)? {
            Key::RsaPrivate(private) => Ok(private.sign(&data)),
            _ => Err(Error::WrongKeyType(key)),
        }
    }

    fn rsa_sha256_verify(
        &mut self,
        key: String,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, Error> {
        let verified = match self.key(&key)? {
            Key::RsaPublic(public) => public.verify(&data, &signature),
            Key::RsaPrivate(private) => private.public_key().verify(&data, &signature),
            _ => return Err(Error::WrongKeyType(key)),
        };
        verified.ok_or_else(|| Error::InvalidInput("malformed RSA signature".into()))
    }

    fn aes256_gcm_decrypt(
        &mut self,
        key: String,
        nonce: Vec<u8>,
        ciphertext: Vec<u8>,
        aad: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let Key::Aes256(bytes) = self.key(&key)? else {
            return Err(Error::WrongKeyType(key));
        };
        if nonce.len() != 12 {
            return Err(Error::InvalidInput("AES-GCM nonce must be 12 bytes".into()));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes[..]).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::InvalidInput("ciphertext did not authenticate".into()))
    }
}
