//! `crypto` RSA-SHA256 with the keys PSPs issue: 2048- and 4096-bit, PKCS#8 and PKCS#1
//! PEM. Signatures are checked byte for byte against ones OpenSSL made for the fixtures
//! (`openssl dgst -sha256 -sign`; RSASSA-PKCS1-v1_5 is deterministic), and through a plugin.

use std::collections::HashMap;

use payloom_host::CallContext;
use payloom_host::capabilities::crypto::Key;
use payloom_reference_plugins::testing::FETCHER;

use crate::http::run;
use crate::support::*;

/// The message the fixture signatures sign.
const MESSAGE: &[u8] = b"payloom fixture message";

struct Pair {
    bits: u32,
    private: &'static str,
    public: &'static str,
    /// OpenSSL's signature of [`MESSAGE`], hex.
    signature: &'static str,
}

const PAIRS: [Pair; 2] = [
    Pair {
        bits: 2048,
        private: include_str!("fixtures/test-rsa-private.pem"),
        public: include_str!("fixtures/test-rsa-public.pem"),
        signature: include_str!("fixtures/test-rsa-2048.sig.hex"),
    },
    Pair {
        bits: 4096,
        private: include_str!("fixtures/test-rsa-4096-private.pem"),
        public: include_str!("fixtures/test-rsa-4096-public.pem"),
        signature: include_str!("fixtures/test-rsa-4096.sig.hex"),
    },
];

fn sign(key: &Key, data: &[u8]) -> Vec<u8> {
    match key {
        Key::RsaPrivate(private) => private.sign(data),
        _ => panic!("not an RSA private key"),
    }
}

fn verify(key: &Key, data: &[u8], signature: &[u8]) -> Option<bool> {
    match key {
        Key::RsaPublic(public) => public.verify(data, signature),
        _ => panic!("not an RSA public key"),
    }
}

#[test]
fn signatures_are_openssls_and_verify_for_2048_and_4096_bit_keys() {
    for pair in PAIRS {
        let bits = pair.bits;
        let private = Key::rsa_private_pem(pair.private).unwrap();
        let public = Key::rsa_public_pem(pair.public).unwrap();
        let expected = hex::decode(pair.signature.trim()).unwrap();
        let signature = sign(&private, MESSAGE);
        assert_eq!(signature.len() as u32 * 8, bits);
        assert_eq!(signature, expected, "{bits} bits: OpenSSL's signature");
        assert_eq!(verify(&public, MESSAGE, &signature), Some(true), "{bits}");

        let mut tampered_message = MESSAGE.to_vec();
        tampered_message[0] ^= 1;
        assert_eq!(
            verify(&public, &tampered_message, &signature),
            Some(false),
            "{bits} bits: a tampered message"
        );
        let mut tampered_signature = signature.clone();
        tampered_signature[bits as usize / 16] ^= 0x40;
        assert_eq!(
            verify(&public, MESSAGE, &tampered_signature),
            Some(false),
            "{bits} bits: a tampered signature"
        );
        assert_eq!(
            verify(&public, MESSAGE, &signature[1..]),
            None,
            "{bits} bits: a signature of the wrong length is malformed"
        );
    }
}

#[test]
fn pkcs1_and_pkcs8_pem_of_one_key_sign_alike() {
    let pkcs8 = Key::rsa_private_pem(include_str!("fixtures/test-rsa-private.pem")).unwrap();
    let pkcs1 = Key::rsa_private_pem(include_str!("fixtures/test-rsa-pkcs1-private.pem")).unwrap();
    assert_eq!(sign(&pkcs1, MESSAGE), sign(&pkcs8, MESSAGE));
}

#[test]
fn malformed_and_unsuitable_keys_are_refused_with_a_clear_error() {
    let private_refusals = [
        ("not a key", "not a PEM private key"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQ==\n-----END PRIVATE KEY-----\n",
            "InvalidEncoding",
        ),
        (
            include_str!("fixtures/test-rsa-public.pem"),
            "not a PEM private key",
        ),
        (
            include_str!("fixtures/test-ec-private.pem"),
            "WrongAlgorithm",
        ),
        (
            include_str!("fixtures/test-rsa-1024-private.pem"),
            "TooSmall",
        ),
    ];
    for (pem, expected) in private_refusals {
        let error = Key::rsa_private_pem(pem).err().expect(expected).to_string();
        assert!(
            error.starts_with("RSA private key") && error.contains(expected),
            "{expected}: {error}"
        );
    }
    let public_refusals = [
        ("", "not a PEM public key"),
        (
            include_str!("fixtures/test-rsa-private.pem"),
            "not a PEM public key",
        ),
        (
            include_str!("fixtures/test-ec-public.pem"),
            "not an RSA key",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsbiTZFM6dN0Pd6V2\n-----END PUBLIC KEY-----\n",
            "not a SubjectPublicKeyInfo",
        ),
    ];
    for (pem, expected) in public_refusals {
        let error = format!("{:#}", Key::rsa_public_pem(pem).err().expect(expected));
        assert!(
            error.starts_with("RSA public key") && error.contains(expected),
            "{expected}: {error}"
        );
    }
}

#[tokio::test]
async fn plugins_sign_and_verify_by_handle_with_either_key_size() {
    let host = TestHost::with(&[FETCHER]).await;
    for pair in PAIRS {
        let private = Key::rsa_private_pem(pair.private).unwrap();
        let public = Key::rsa_public_pem(pair.public).unwrap();
        // The public handle may also name the private key: it verifies with its half.
        for verifier in [public, private.clone()] {
            let keys = HashMap::from([
                ("rsa_private".to_owned(), private.clone()),
                ("rsa_public".to_owned(), verifier),
            ]);
            let answer = run(
                &host,
                CallContext::default().with_keys(keys),
                &[("op", "rsa"), ("data", "hello")],
            )
            .await;
            assert_eq!(
                answer, "verify=Ok(true) tampered=Ok(false)",
                "{}",
                pair.bits
            );
        }
    }
}
