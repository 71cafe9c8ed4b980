//! `crypto`: operations with keys the host holds, named by handle.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use crate::bindings::imports::payloom::plugin::crypto::{self, Error};
use crate::state::CallState;

/// A key the host holds for a plugin.
#[derive(Clone)]
pub enum Key {
    /// HMAC key bytes.
    Hmac(Vec<u8>),
    /// 32-byte AES-256 key.
    Aes256(Box<[u8; 32]>),
    /// RSA private key (signing).
    RsaPrivate(Box<RsaPrivateKey>),
    /// RSA public key (verification).
    RsaPublic(Box<RsaPublicKey>),
}

impl Key {
    /// An RSA private key from PKCS#8 PEM.
    pub fn rsa_private_pem(pem: &str) -> anyhow::Result<Self> {
        use rsa::pkcs8::DecodePrivateKey;
        Ok(Self::RsaPrivate(Box::new(RsaPrivateKey::from_pkcs8_pem(
            pem,
        )?)))
    }

    /// An RSA public key from SPKI PEM.
    pub fn rsa_public_pem(pem: &str) -> anyhow::Result<Self> {
        use rsa::pkcs8::DecodePublicKey;
        Ok(Self::RsaPublic(Box::new(
            RsaPublicKey::from_public_key_pem(pem)?,
        )))
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
            Key::RsaPrivate(private) => {
                let signer = SigningKey::<Sha256>::new((**private).clone());
                Ok(signer.sign(&data).to_vec())
            }
            _ => Err(Error::WrongKeyType(key)),
        }
    }

    fn rsa_sha256_verify(
        &mut self,
        key: String,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, Error> {
        let public = match self.key(&key)? {
            Key::RsaPublic(public) => (**public).clone(),
            Key::RsaPrivate(private) => private.to_public_key(),
            _ => return Err(Error::WrongKeyType(key)),
        };
        let Ok(signature) = Signature::try_from(signature.as_slice()) else {
            return Err(Error::InvalidInput("malformed RSA signature".into()));
        };
        Ok(VerifyingKey::<Sha256>::new(public)
            .verify(&data, &signature)
            .is_ok())
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
