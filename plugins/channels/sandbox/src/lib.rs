//! The sandbox channel: a deterministic PSP simulator in the manner of Stripe's test mode.
//! A payment with no special card or amount succeeds at once; the test cards and amounts
//! in `README.md` trigger every other outcome. It keeps no state: the reference it
//! returns carries what a later query needs.

use payloom_sdk::channel::*;
use payloom_sdk::{KeyValue, Money, String, ToString, Vec, crypto, find, format, kv, money, vec};

/// Currencies the simulator accepts.
const CURRENCIES: &[&str] = &[
    "USD", "EUR", "GBP", "JPY", "CNY", "HKD", "SGD", "AUD", "CAD", "CHF",
];
/// Methods the simulator accepts.
const METHODS: &[&str] = &["card", "wallet"];
/// Notification timestamps older or newer than this are refused (ms), as Stripe does.
const NOTIFY_TOLERANCE_MS: i64 = 300_000;
/// Handle of the host-held key that signs notifications.
const NOTIFY_KEY: &str = "notify_secret";

/// What the simulator decided for a payment or refund.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Approve,
    Decline(&'static str, &'static str),
    Redirect,
    Qr,
    Pending,
    Unknown,
}

fn scenario_for_card(number: &str) -> Option<Scenario> {
    Some(match number {
        "4242424242424242" | "5555555555554444" => Scenario::Approve,
        "4000000000000002" => Scenario::Decline("card_declined", "The card was declined."),
        "4000000000009995" => {
            Scenario::Decline("insufficient_funds", "The card has insufficient funds.")
        }
        "4000000000000069" => Scenario::Decline("expired_card", "The card has expired."),
        "4000000000000127" => {
            Scenario::Decline("incorrect_cvc", "The card's security code is incorrect.")
        }
        "4000002500003155" => Scenario::Redirect,
        "4000000000000077" => Scenario::Pending,
        "4000000000000119" => Scenario::Unknown,
        _ => return None,
    })
}

/// Amount triggers, by the last two digits of the minor amount.
fn scenario_for_amount(amount_minor: i64) -> Scenario {
    match amount_minor % 100 {
        51 => Scenario::Decline("insufficient_funds", "The card has insufficient funds."),
        52 => Scenario::Decline("card_declined", "The card was declined."),
        60 => Scenario::Redirect,
        61 => Scenario::Qr,
        70 => Scenario::Pending,
        80 => Scenario::Unknown,
        _ => Scenario::Approve,
    }
}

fn decline(code: &str, message: &str) -> Outcome {
    Outcome::Declined(Decline {
        code: code.into(),
        message: message.into(),
    })
}

fn validate_money(amount: &Money) -> Result<(), ChannelError> {
    if amount.amount_minor <= 0 {
        return Err(ChannelError::InvalidRequest(format!(
            "amount must be positive, got {}",
            amount.amount_minor
        )));
    }
    if !CURRENCIES.contains(&amount.currency.as_str()) {
        return Err(ChannelError::Unsupported(format!(
            "currency {} is not supported",
            amount.currency
        )));
    }
    Ok(())
}

/// The reference encodes the capture mode so queries stay stateless: `sbx_{a|m}_{payment id}`.
fn payment_reference(payment: &payloom_sdk::Payment) -> String {
    let mode = match payment.capture {
        payloom_sdk::CaptureMode::Automatic => "a",
        payloom_sdk::CaptureMode::Manual => "m",
    };
    format!("sbx_{mode}_{}", payment.id)
}

fn is_manual(reference: &Option<String>) -> bool {
    reference
        .as_deref()
        .is_some_and(|r| r.starts_with("sbx_m_"))
}

fn settle(scenario: Scenario, manual: bool, payment_id: &str, return_url: Option<&str>) -> Outcome {
    match scenario {
        Scenario::Approve if manual => Outcome::Authorized,
        Scenario::Approve => Outcome::Succeeded,
        Scenario::Decline(code, message) => decline(code, message),
        Scenario::Redirect => {
            let back = return_url.unwrap_or("");
            Outcome::RequiresAction(NextAction::Redirect(format!(
                "https://sandbox.payloom.test/authenticate/{payment_id}?return_url={back}"
            )))
        }
        Scenario::Qr => Outcome::RequiresAction(NextAction::QrCode(format!(
            "payloom-sandbox://pay/{payment_id}"
        ))),
        Scenario::Pending => Outcome::Pending,
        Scenario::Unknown => Outcome::Unknown("sandbox simulated a timeout; query later".into()),
    }
}

struct Sandbox;

impl Guest for Sandbox {
    fn describe() -> Descriptor {
        Descriptor {
            id: "sandbox".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            methods: METHODS.iter().map(|m| m.to_string()).collect(),
            currencies: CURRENCIES.iter().map(|c| c.to_string()).collect(),
            countries: Vec::new(),
            capabilities: vec![
                Capability::Capture,
                Capability::PartialCapture,
                Capability::Cancel,
                Capability::Refund,
                Capability::PartialRefund,
                Capability::Notifications,
                Capability::Statements,
            ],
        }
    }

    fn create_payment(req: CreateRequest) -> Result<PaymentResponse, ChannelError> {
        let payment = &req.payment;
        validate_money(&payment.amount)?;
        if !METHODS.contains(&payment.method.as_str()) {
            return Err(ChannelError::Unsupported(format!(
                "method {} is not supported",
                payment.method
            )));
        }
        let scenario = find(&req.method_data, "card.number")
            .and_then(scenario_for_card)
            .unwrap_or_else(|| scenario_for_amount(payment.amount.amount_minor));
        let reference = payment_reference(payment);
        let manual = payment.capture == payloom_sdk::CaptureMode::Manual;
        let outcome = settle(scenario, manual, &payment.id, payment.return_url.as_deref());
        Ok(PaymentResponse {
            outcome,
            reference: Some(reference),
            amount: payment.amount.clone(),
        })
    }

    fn query_payment(req: PaymentRef) -> Result<PaymentResponse, ChannelError> {
        validate_money(&req.amount)?;
        let Some(reference) = req.reference.clone() else {
            return Err(ChannelError::InvalidRequest(
                "query needs the sandbox reference".into(),
            ));
        };
        // The PSP has finished by the time anyone asks: unknown resolves to its real outcome.
        let scenario = match scenario_for_amount(req.amount.amount_minor) {
            Scenario::Unknown => Scenario::Approve,
            other => other,
        };
        let outcome = settle(scenario, is_manual(&req.reference), &req.payment_id, None);
        Ok(PaymentResponse {
            outcome,
            reference: Some(reference),
            amount: req.amount,
        })
    }

    fn capture(req: PaymentRef) -> Result<PaymentResponse, ChannelError> {
        validate_money(&req.amount)?;
        if !is_manual(&req.reference) {
            return Err(ChannelError::InvalidRequest(
                "only manual-capture payments can be captured".into(),
            ));
        }
        Ok(PaymentResponse {
            outcome: Outcome::Succeeded,
            reference: req.reference,
            amount: req.amount,
        })
    }

    fn cancel(req: PaymentRef) -> Result<PaymentResponse, ChannelError> {
        validate_money(&req.amount)?;
        // Stateless: any payment it issued a reference for can be canceled. Callers only
        // cancel what has not completed (authorized, pending, awaiting the customer).
        if !req
            .reference
            .as_deref()
            .is_some_and(|r| r.starts_with("sbx_"))
        {
            return Err(ChannelError::InvalidRequest(
                "not a sandbox payment reference".into(),
            ));
        }
        Ok(PaymentResponse {
            outcome: Outcome::Canceled,
            reference: req.reference,
            amount: req.amount,
        })
    }

    fn refund(req: RefundRequest) -> Result<RefundResponse, ChannelError> {
        validate_money(&req.amount)?;
        let outcome = match scenario_for_amount(req.amount.amount_minor) {
            Scenario::Decline(code, message) => RefundOutcome::Declined(Decline {
                code: code.into(),
                message: message.into(),
            }),
            Scenario::Pending => RefundOutcome::Pending,
            Scenario::Unknown => {
                RefundOutcome::Unknown("sandbox simulated a timeout; query later".into())
            }
            Scenario::Approve | Scenario::Redirect | Scenario::Qr => RefundOutcome::Succeeded,
        };
        Ok(RefundResponse {
            outcome,
            reference: Some(format!("sbxre_{}", req.refund_id)),
            amount: req.amount,
        })
    }

    fn query_refund(req: RefundRef) -> Result<RefundResponse, ChannelError> {
        validate_money(&req.amount)?;
        let outcome = match scenario_for_amount(req.amount.amount_minor) {
            Scenario::Decline(code, message) => RefundOutcome::Declined(Decline {
                code: code.into(),
                message: message.into(),
            }),
            _ => RefundOutcome::Succeeded,
        };
        Ok(RefundResponse {
            outcome,
            reference: req.reference,
            amount: req.amount,
        })
    }

    fn handle_notification(req: Notification) -> Result<NotificationResponse, ChannelError> {
        let header = req
            .headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case("sandbox-signature"))
            .map(|h| h.value.as_str())
            .ok_or_else(|| ChannelError::Unauthorized("missing Sandbox-Signature header".into()))?;
        verify_signature(header, &req.body)?;
        let body = core::str::from_utf8(&req.body)
            .map_err(|_| ChannelError::InvalidRequest("body is not UTF-8".into()))?;
        let fields = parse_form(body);
        let event = event_from_fields(&fields)?;
        Ok(NotificationResponse {
            event,
            ack_status: 200,
            ack_body: b"ok".to_vec(),
        })
    }

    fn parse_statement(content: Vec<u8>) -> Result<Vec<StatementLine>, ChannelError> {
        let text = core::str::from_utf8(&content)
            .map_err(|_| ChannelError::InvalidRequest("statement is not UTF-8".into()))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, header)) if header.trim() == STATEMENT_HEADER => {}
            _ => {
                return Err(ChannelError::InvalidRequest(format!(
                    "statement must start with `{STATEMENT_HEADER}`"
                )));
            }
        }
        lines
            .map(|(n, line)| {
                parse_statement_line(line)
                    .map_err(|e| ChannelError::InvalidRequest(format!("line {}: {e}", n + 1)))
            })
            .collect()
    }
}

/// `Sandbox-Signature: t=<unix ms>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`
fn verify_signature(header: &str, body: &[u8]) -> Result<(), ChannelError> {
    let mut timestamp = None;
    let mut mac = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => mac = decode_hex(v),
            _ => {}
        }
    }
    let (Some(timestamp), Some(mac)) = (timestamp, mac) else {
        return Err(ChannelError::Unauthorized(
            "malformed Sandbox-Signature header".into(),
        ));
    };
    if (payloom_sdk::clock::now_ms() - timestamp).abs() > NOTIFY_TOLERANCE_MS {
        return Err(ChannelError::Unauthorized(
            "notification timestamp outside the tolerance".into(),
        ));
    }
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    match crypto::hmac_sha256_verify(NOTIFY_KEY, &signed, &mac) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ChannelError::Unauthorized(
            "notification signature does not match".into(),
        )),
        Err(_) => Err(ChannelError::InvalidRequest(
            "no notification secret is configured".into(),
        )),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `a=1&b=2` without percent-decoding (the sandbox never sends reserved characters).
fn parse_form(body: &str) -> Vec<KeyValue> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| kv(k, v))
        .collect()
}

fn event_from_fields(fields: &[KeyValue]) -> Result<NotificationEvent, ChannelError> {
    let field = |name: &str| {
        find(fields, name)
            .ok_or_else(|| ChannelError::InvalidRequest(format!("missing field `{name}`")))
    };
    let amount_minor: i64 = field("amount")?
        .parse()
        .map_err(|_| ChannelError::InvalidRequest("bad amount".into()))?;
    let amount = money(amount_minor, field("currency")?);
    let reference = find(fields, "reference").map(String::from);
    let failed = || Decline {
        code: find(fields, "code").unwrap_or("card_declined").into(),
        message: find(fields, "message").unwrap_or("declined").into(),
    };
    Ok(match field("type")? {
        "payment.succeeded" => payment_event(fields, reference, Outcome::Succeeded, amount)?,
        "payment.authorized" => payment_event(fields, reference, Outcome::Authorized, amount)?,
        "payment.failed" => payment_event(fields, reference, Outcome::Declined(failed()), amount)?,
        "payment.canceled" => payment_event(fields, reference, Outcome::Canceled, amount)?,
        "refund.succeeded" => refund_event(fields, reference, RefundOutcome::Succeeded, amount)?,
        "refund.failed" => {
            refund_event(fields, reference, RefundOutcome::Declined(failed()), amount)?
        }
        _ => NotificationEvent::Ignored,
    })
}

fn payment_event(
    fields: &[KeyValue],
    reference: Option<String>,
    outcome: Outcome,
    amount: Money,
) -> Result<NotificationEvent, ChannelError> {
    let payment_id = find(fields, "payment_id")
        .ok_or_else(|| ChannelError::InvalidRequest("missing field `payment_id`".into()))?;
    Ok(NotificationEvent::Payment(PaymentUpdate {
        payment_id: payment_id.into(),
        reference,
        outcome,
        amount,
    }))
}

fn refund_event(
    fields: &[KeyValue],
    reference: Option<String>,
    outcome: RefundOutcome,
    amount: Money,
) -> Result<NotificationEvent, ChannelError> {
    let refund_id = find(fields, "refund_id")
        .ok_or_else(|| ChannelError::InvalidRequest("missing field `refund_id`".into()))?;
    Ok(NotificationEvent::Refund(RefundUpdate {
        refund_id: refund_id.into(),
        reference,
        outcome,
        amount,
    }))
}

const STATEMENT_HEADER: &str =
    "reference,host_id,kind,amount_minor,currency,fee_minor,booked_at_ms";

fn parse_statement_line(line: &str) -> Result<StatementLine, String> {
    let cols: Vec<&str> = line.split(',').map(str::trim).collect();
    let [reference, host_id, kind, amount, currency, fee, booked] = cols[..] else {
        return Err(format!("expected 7 columns, found {}", cols.len()));
    };
    let kind = match kind {
        "payment" => StatementKind::Payment,
        "refund" => StatementKind::Refund,
        "fee" => StatementKind::Fee,
        "chargeback" => StatementKind::Chargeback,
        other => return Err(format!("unknown kind {other:?}")),
    };
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("bad currency {currency:?}"));
    }
    let number = |name: &str, v: &str| v.parse::<i64>().map_err(|_| format!("bad {name} {v:?}"));
    Ok(StatementLine {
        reference: reference.into(),
        host_id: (!host_id.is_empty()).then(|| host_id.into()),
        kind,
        amount: money(number("amount", amount)?, currency),
        fee: if fee.is_empty() {
            None
        } else {
            Some(money(number("fee", fee)?, currency))
        },
        booked_at_ms: number("booked_at_ms", booked)?,
    })
}

payloom_sdk::export_channel!(Sandbox);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_cards_pick_scenarios() {
        assert_eq!(scenario_for_amount(1000), Scenario::Approve);
        assert_eq!(scenario_for_amount(1070), Scenario::Pending);
        assert_eq!(scenario_for_amount(1080), Scenario::Unknown);
        assert_eq!(
            scenario_for_card("4000002500003155"),
            Some(Scenario::Redirect)
        );
        assert_eq!(scenario_for_card("1234"), None);
    }

    #[test]
    fn statement_lines_parse_and_reject() {
        let line =
            parse_statement_line("sbx_a_pay_1,pay_1,payment,1000,USD,30,1700000000000").unwrap();
        assert_eq!(line.amount.amount_minor, 1000);
        assert_eq!(line.fee.unwrap().amount_minor, 30);
        assert!(parse_statement_line("x,,payment,ten,USD,,1").is_err());
        assert!(parse_statement_line("x,,payment,10,usd,,1").is_err());
        assert!(parse_statement_line("x,,payment,10").is_err());
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
