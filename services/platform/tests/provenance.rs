//! Proof of origin for events: only the declared producer of a topic, holding a
//! certificate from this deployment's CA, can sign a message a consumer will believe.

mod deployment;

use deployment::deployment;
use payloom_platform::provenance::{EventSigner, EventVerifier, Refused};

fn check(
    verifier: &EventVerifier,
    signer: &EventSigner,
    signed: (&str, &str, &[u8]),
    sent: (&str, &str, &[u8]),
) -> Result<String, Refused> {
    let signature = signer.sign(signed.0, signed.1, signed.2).unwrap();
    verifier.verify(
        sent.0,
        sent.1,
        sent.2,
        Some(signer.certificate()),
        Some(&signature),
    )
}

const PRODUCERS: [(&str, &str); 2] = [
    ("payment.events", "payment-gateway"),
    ("refund.events", "payment-gateway"),
];

#[test]
fn the_producer_of_a_topic_is_believed() {
    let (ca, signers) = deployment(&["payment-gateway"]);
    let verifier = EventVerifier::new(ca.as_bytes(), PRODUCERS).unwrap();
    let message = ("payment.events", "pay_1", &b"{}"[..]);
    for _ in 0..2 {
        // The second time the certificate comes from the cache.
        assert_eq!(
            check(&verifier, &signers[0], message, message).as_deref(),
            Ok("payment-gateway")
        );
    }
}

#[test]
fn a_changed_topic_key_or_payload_breaks_the_signature() {
    let (ca, signers) = deployment(&["payment-gateway"]);
    let verifier = EventVerifier::new(ca.as_bytes(), PRODUCERS).unwrap();
    let signed = ("payment.events", "pay_1", &br#"{"amount":1}"#[..]);
    for sent in [
        ("refund.events", "pay_1", signed.2),
        ("payment.events", "pay_2", signed.2),
        ("payment.events", "pay_1", &br#"{"amount":100000}"#[..]),
    ] {
        assert_eq!(
            check(&verifier, &signers[0], signed, sent),
            Err(Refused::BadSignature)
        );
    }
}

#[test]
fn only_declared_producers_from_this_ca_are_believed() {
    let (ca, signers) = deployment(&["payment-gateway", "notification"]);
    let verifier = EventVerifier::new(ca.as_bytes(), PRODUCERS).unwrap();
    let message = ("payment.events", "pay_1", &b"{}"[..]);
    assert_eq!(
        check(&verifier, &signers[1], message, message),
        Err(Refused::NotAProducer {
            service: "notification".into(),
            topic: "payment.events".into()
        })
    );
    let (_, strangers) = deployment(&["payment-gateway"]);
    assert!(matches!(
        check(&verifier, &strangers[0], message, message),
        Err(Refused::Untrusted(_))
    ));
    // A genuine certificate beside a signature made with another key.
    let signature = strangers[0].sign(message.0, message.1, message.2).unwrap();
    let forged = verifier.verify(
        message.0,
        message.1,
        message.2,
        Some(signers[0].certificate()),
        Some(&signature),
    );
    assert_eq!(forged, Err(Refused::BadSignature));
    let unsigned = verifier.verify(message.0, message.1, message.2, None, None);
    assert_eq!(unsigned, Err(Refused::Unsigned));
}
