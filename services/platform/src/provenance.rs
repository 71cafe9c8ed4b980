//! Proof of where an event came from, for events that cross processes. Kafka is not
//! trusted: whoever can write to a topic could otherwise credit a balance with a forged
//! `payment.succeeded`. The producing service signs each message with the key of its
//! certificate (the one `payloom certs init` issued it for mutual TLS) and sends the
//! certificate beside it. A consumer accepts the message only when that certificate
//! chains to the deployment's CA, names a service that produces the topic, and the
//! signature covers exactly this topic, key and payload.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor, UnixTime};

use crate::tls::identity_of;

/// The message header carrying the producer's certificate (DER).
pub const CERT_HEADER: &str = "producer-cert";
/// The message header carrying the signature (ECDSA P-256 with SHA-256, ASN.1).
pub const SIGNATURE_HEADER: &str = "signature";

/// How long a verified certificate is trusted before its chain is checked again (so an
/// expired one stops being accepted without a restart).
const RECHECK: Duration = Duration::from_secs(600);

/// What is signed: a domain tag, then the topic, the key and the payload, each with its
/// length, so no two different messages sign the same bytes.
fn signed_bytes(topic: &str, key: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = b"payloom-event-v1".to_vec();
    for part in [topic.as_bytes(), key.as_bytes(), payload] {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    bytes
}

/// Signs the events one service produces.
pub struct EventSigner {
    service: String,
    cert: Vec<u8>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSigner")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl EventSigner {
    /// From a service's certificate and its PKCS#8 key, both PEM.
    pub fn from_pem(service: &str, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Self> {
        let cert = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .context("no certificate")?
            .context("parsing the certificate")?;
        let PrivateKeyDer::Pkcs8(key) = PrivateKeyDer::from_pem_slice(key_pem)? else {
            anyhow::bail!("the key of {service} is not PKCS#8");
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            key.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| anyhow::anyhow!("events are signed with ECDSA P-256 keys: {e}"))?;
        Ok(Self {
            service: service.to_owned(),
            cert: cert.to_vec(),
            key,
            rng,
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The certificate consumers verify the signature with (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }

    pub fn sign(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
        let signature = self
            .key
            .sign(&self.rng, &signed_bytes(topic, key, payload))
            .map_err(|_| anyhow::anyhow!("signing an event failed"))?;
        Ok(signature.as_ref().to_vec())
    }
}

/// Why a message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("the message is not signed")]
    Unsigned,
    #[error("the producer certificate is not from this deployment's CA: {0}")]
    Untrusted(String),
    #[error("the producer certificate names no service")]
    Anonymous,
    #[error("{service} does not produce {topic}")]
    NotAProducer { service: String, topic: String },
    #[error("the signature does not match the message")]
    BadSignature,
}

/// Checks the origin of every message a consumer reads.
pub struct EventVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    /// Topic → the services that produce it.
    producers: HashMap<String, Vec<String>>,
    /// Certificates whose chain checked out, with the service they name.
    verified: Mutex<HashMap<Vec<u8>, (String, Instant)>>,
}

impl EventVerifier {
    /// Trusts `ca_pem`; `producers` lists (topic, service) pairs.
    pub fn new<'a>(
        ca_pem: &[u8],
        producers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Self> {
        let mut anchors = Vec::new();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            let ca = ca.context("parsing the CA certificate")?;
            let anchor = webpki::anchor_from_trusted_cert(&ca).context("the CA certificate")?;
            anchors.push(anchor.to_owned());
        }
        anyhow::ensure!(!anchors.is_empty(), "no CA certificate");
        let mut by_topic: HashMap<String, Vec<String>> = HashMap::new();
        for (topic, service) in producers {
            by_topic
                .entry(topic.to_owned())
                .or_default()
                .push(service.to_owned());
        }
        Ok(Self {
            anchors,
            producers: by_topic,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The producing service of a message, or why it cannot be trusted.
    pub fn verify(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        cert: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> Result<String, Refused> {
        let (Some(cert), Some(signature)) = (cert, signature) else {
            return Err(Refused::Unsigned);
        };
        let der = CertificateDer::from(cert);
        let parsed =
            webpki::EndEntityCert::try_from(&der).map_err(|e| Refused::Untrusted(e.to_string()))?;
        let service = self.service_of(&der, &parsed)?;
        if !self
            .producers
            .get(topic)
            .is_some_and(|services| services.contains(&service))
        {
            return Err(Refused::NotAProducer {
                service,
                topic: topic.to_owned(),
            });
        }
        parsed
            .verify_signature(
                webpki::ring::ECDSA_P256_SHA256,
                &signed_bytes(topic, key, payload),
                signature,
            )
            .map_err(|_| Refused::BadSignature)?;
        Ok(service)
    }

    /// The service a certificate names, once its chain to the CA checks out.
    fn service_of(
        &self,
        der: &CertificateDer<'_>,
        parsed: &webpki::EndEntityCert<'_>,
    ) -> Result<String, Refused> {
        let cert: &[u8] = der.as_ref();
        let cache = |verified: &HashMap<Vec<u8>, (String, Instant)>| {
            verified
                .get(cert)
                .filter(|(_, at)| at.elapsed() < RECHECK)
                .map(|(service, _)| service.clone())
        };
        if let Some(service) = cache(&self.verified.lock().expect("not poisoned")) {
            return Ok(service);
        }
        parsed
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &[],
                UnixTime::now(),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| Refused::Untrusted(e.to_string()))?;
        let service = identity_of(der).ok_or(Refused::Anonymous)?;
        self.verified
            .lock()
            .expect("not poisoned")
            .insert(cert.to_vec(), (service.clone(), Instant::now()));
        Ok(service)
    }
}
