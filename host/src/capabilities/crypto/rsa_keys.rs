//! RSA keys for RSASSA-PKCS1-v1_5 with SHA-256, on `ring`: its private-key operations
//! run in constant time, which the `rsa` crate's do not (RUSTSEC-2023-0071).
//!
//! Private keys come as PEM, PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`);
//! public keys as PEM SubjectPublicKeyInfo (`PUBLIC KEY`). `ring` signs with 2048- to
//! 4096-bit keys and verifies with 2048- to 8192-bit keys; other sizes are refused when
//! the key is loaded, not when it is first used.

use anyhow::{Context, bail, ensure};
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

/// Verification accepts the sizes PSPs use, up to 8192 bits.
const VERIFY: &signature::RsaParameters = &signature::RSA_PKCS1_2048_8192_SHA256;
const MODULUS_BITS_MIN: usize = 2048;
const MODULUS_BITS_MAX: usize = 8192;
/// The DER object identifier rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// A private key; it signs, and verifies with its public half.
pub struct RsaPrivateKey(RsaKeyPair);

/// A public key: the PKCS#1 `RSAPublicKey` DER that `ring` verifies with.
#[derive(Debug, Clone)]
pub struct RsaPublicKey {
    der: Vec<u8>,
    modulus_len: usize,
}

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RsaPrivateKey({} bits)",
            self.0.public().modulus_len() * 8
        )
    }
}

impl RsaPrivateKey {
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("RSA private key: not a PEM private key ({e})"))?;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(key) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der()),
            _ => bail!("RSA private key: the PEM holds another kind of key"),
        };
        let pair = pair.map_err(|rejected| {
            anyhow::anyhow!(
                "RSA private key refused ({rejected}): signing takes an RSA key of 2048 to 4096 bits"
            )
        })?;
        Ok(Self(pair))
    }

    /// The RSASSA-PKCS1-v1_5 SHA-256 signature of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                data,
                &mut signature,
            )
            .expect("a buffer of the modulus length and a checked key sign");
        signature
    }

    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey {
            der: self.0.public().as_ref().to_vec(),
            modulus_len: self.0.public().modulus_len(),
        }
    }
}

impl RsaPublicKey {
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("RSA public key: not a PEM public key ({e})"))?;
        let der = rsa_public_key_of(spki.as_ref()).context("RSA public key")?;
        let modulus_len = modulus_len_of(der).context("RSA public key")?;
        Ok(Self {
            der: der.to_vec(),
            modulus_len,
        })
    }

    /// Whether `signature` is an RSASSA-PKCS1-v1_5 SHA-256 signature of `data`. `None`
    /// when it cannot be one: its length is not the modulus length.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> Option<bool> {
        if signature.len() != self.modulus_len {
            return None;
        }
        let key = UnparsedPublicKey::new(VERIFY, &self.der);
        Some(key.verify(data, signature).is_ok())
    }
}

/// The `RSAPublicKey` inside a SubjectPublicKeyInfo, once its algorithm is rsaEncryption.
fn rsa_public_key_of(spki: &[u8]) -> anyhow::Result<&[u8]> {
    let (info, _) = der_element(spki, SEQUENCE).context("not a SubjectPublicKeyInfo")?;
    let (algorithm, rest) = der_element(info, SEQUENCE).context("no algorithm")?;
    let (oid, _) = der_element(algorithm, OBJECT_IDENTIFIER).context("no algorithm")?;
    ensure!(oid == RSA_ENCRYPTION_OID, "the key is not an RSA key");
    let (bits, _) = der_element(rest, BIT_STRING).context("no key bits")?;
    match bits.split_first() {
        Some((0, key)) => Ok(key),
        _ => bail!("malformed key bits"),
    }
}

/// The modulus length in bytes of an `RSAPublicKey`, checked against what `ring` verifies.
fn modulus_len_of(der: &[u8]) -> anyhow::Result<usize> {
    let (key, _) = der_element(der, SEQUENCE).context("not an RSAPublicKey")?;
    let (modulus, rest) = der_element(key, INTEGER).context("no modulus")?;
    let (exponent, _) = der_element(rest, INTEGER).context("no public exponent")?;
    let modulus = strip_sign_byte(modulus);
    let bits = modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
    ensure!(
        (MODULUS_BITS_MIN..=MODULUS_BITS_MAX).contains(&bits),
        "the modulus has {bits} bits; verification takes {MODULUS_BITS_MIN} to {MODULUS_BITS_MAX}"
    );
    let exponent = strip_sign_byte(exponent);
    ensure!(
        exponent.len() <= 5 && exponent.last().is_some_and(|b| b & 1 == 1),
        "the public exponent is not an odd number of at most 33 bits"
    );
    Ok(modulus.len())
}

fn strip_sign_byte(integer: &[u8]) -> &[u8] {
    match integer {
        [0, rest @ ..] => rest,
        other => other,
    }
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OBJECT_IDENTIFIER: u8 = 0x06;
const SEQUENCE: u8 = 0x30;

/// One DER element with `tag` at the front of `input`: its contents and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length bytes that follow; four cover any key.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len, rest) = rest.split_at(count);
        let len = len.iter().fold(0usize, |n, b| n << 8 | usize::from(*b));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_in_short_and_long_form_are_read_and_overruns_refused() {
        assert_eq!(
            der_element(&[0x02, 0x01, 0x05, 0xff], INTEGER),
            Some((&[0x05][..], &[0xff][..]))
        );
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend([7u8; 256]);
        assert_eq!(der_element(&long, 0x04).map(|(c, _)| c.len()), Some(256));
        assert_eq!(der_element(&[0x02, 0x03, 0x01], INTEGER), None, "overrun");
        assert_eq!(der_element(&[0x02, 0x80], INTEGER), None, "indefinite");
        assert_eq!(der_element(&[0x30, 0x00], INTEGER), None, "wrong tag");
        assert_eq!(der_element(&[], INTEGER), None);
    }

    #[test]
    fn small_moduli_and_even_exponents_are_refused_at_load() {
        let key = |modulus: &[u8], exponent: &[u8]| {
            let integer = |bytes: &[u8]| {
                let mut out = vec![INTEGER, 0x82];
                out.extend((bytes.len() as u16).to_be_bytes());
                out.extend(bytes);
                out
            };
            let body = [integer(modulus), integer(exponent)].concat();
            let mut der = vec![SEQUENCE, 0x82];
            der.extend((body.len() as u16).to_be_bytes());
            der.extend(body);
            der
        };
        let mut modulus_2048 = vec![0x00, 0xc5];
        modulus_2048.extend([0x11; 255]);
        assert_eq!(
            modulus_len_of(&key(&modulus_2048, &[1, 0, 1])).unwrap(),
            256
        );
        let err = modulus_len_of(&key(&modulus_2048[..129], &[1, 0, 1])).unwrap_err();
        assert!(err.to_string().contains("1024 bits"), "{err}");
        let err = modulus_len_of(&key(&modulus_2048, &[1, 0, 0])).unwrap_err();
        assert!(err.to_string().contains("exponent"), "{err}");
    }
}
