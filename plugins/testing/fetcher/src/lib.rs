//! A channel for host tests: `create-payment` performs the host call named by
//! `method-data` `op` and reports the result as an `unknown` outcome's message.
//! `op=fetch` GETs `url`; `op=secret` reads `name`; `op=hmac|rsa|aes` exercise crypto.

use payloom_sdk::channel::*;
use payloom_sdk::http::Request;
use payloom_sdk::{String, Vec, crypto, find, format, secrets};

struct Fetcher;

/// Sent with every fetch; tests relabel it to make a candidate that builds its request
/// differently.
const BUILD: &str = "fetcher-build-A";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn run(data: &[payloom_sdk::KeyValue]) -> String {
    let arg = |k: &str| find(data, k).unwrap_or("");
    match arg("op") {
        "fetch" => match Request::get(arg("url"))
            .header("x-fetcher-build", BUILD)
            .send()
        {
            Ok(resp) => format!(
                "status={} body={}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ),
            Err(err) => format!("error={err:?}"),
        },
        "secret" => format!("{:?}", secrets::get(arg("name"))),
        "hmac" => format!(
            "{:?}",
            crypto::hmac_sha256(arg("key"), arg("data").as_bytes()).map(|m| hex(&m))
        ),
        "sha256" => hex(&crypto::sha256(arg("data").as_bytes())),
        "rsa" => {
            let signature = crypto::rsa_sha256_sign("rsa_private", arg("data").as_bytes());
            match signature {
                Ok(sig) => format!(
                    "verify={:?} tampered={:?}",
                    crypto::rsa_sha256_verify("rsa_public", arg("data").as_bytes(), &sig),
                    crypto::rsa_sha256_verify("rsa_public", b"tampered", &sig)
                ),
                Err(err) => format!("sign={err:?}"),
            }
        }
        "aes" => {
            let plain = crypto::aes256_gcm_decrypt(
                "aes",
                &unhex(arg("nonce")),
                &unhex(arg("ciphertext")),
                b"",
            );
            format!(
                "{:?}",
                plain.map(|p| String::from_utf8_lossy(&p).into_owned())
            )
        }
        other => format!("unknown op {other:?}"),
    }
}

impl Guest for Fetcher {
    fn describe() -> Descriptor {
        Descriptor {
            id: "fetcher".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            methods: payloom_sdk::vec!["card".into()],
            currencies: payloom_sdk::vec!["USD".into()],
            countries: Vec::new(),
            capabilities: Vec::new(),
        }
    }
    fn create_payment(req: CreateRequest) -> Result<PaymentResponse, ChannelError> {
        let report = run(&req.method_data);
        Ok(PaymentResponse {
            outcome: Outcome::Unknown(report),
            reference: None,
            amount: req.payment.amount,
        })
    }
    fn query_payment(_: PaymentRef) -> Result<PaymentResponse, ChannelError> {
        Err(ChannelError::Unsupported("query".into()))
    }
    fn capture(_: PaymentRef) -> Result<PaymentResponse, ChannelError> {
        Err(ChannelError::Unsupported("capture".into()))
    }
    fn cancel(_: PaymentRef) -> Result<PaymentResponse, ChannelError> {
        Err(ChannelError::Unsupported("cancel".into()))
    }
    fn refund(_: RefundRequest) -> Result<RefundResponse, ChannelError> {
        Err(ChannelError::Unsupported("refund".into()))
    }
    fn query_refund(_: RefundRef) -> Result<RefundResponse, ChannelError> {
        Err(ChannelError::Unsupported("query-refund".into()))
    }
    fn handle_notification(req: Notification) -> Result<NotificationResponse, ChannelError> {
        // A notification that crashes its handler: the host's breakers are tested with it.
        if req.body == b"trap" {
            panic!("notification handler crashed");
        }
        Err(ChannelError::Unsupported("notifications".into()))
    }
    fn parse_statement(_: Vec<u8>) -> Result<Vec<StatementLine>, ChannelError> {
        Err(ChannelError::Unsupported("statements".into()))
    }
}

payloom_sdk::export_channel!(Fetcher);
