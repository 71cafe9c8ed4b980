//! A deployment's certificates for the tests, laid out as `payloom certs init` issues them:
//! one CA, and per service a certificate naming `<service>.payment-network`.

use payloom_platform::provenance::EventSigner;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA and a signer for each service, as `payloom certs init` lays them out.
pub fn deployment(services: &[&str]) -> (String, Vec<EventSigner>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let signers = services
        .iter()
        .map(|service| {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(vec![format!("{service}.payment-network")]).unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            EventSigner::from_pem(
                service,
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
            )
            .unwrap()
        })
        .collect();
    (ca_pem, signers)
}
