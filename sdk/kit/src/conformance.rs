//! The conformance suite every channel adapter must pass.
//!
//! Generic checks (describe is valid; bad amounts and unknown currencies are refused as
//! errors, not traps; amounts and currencies in responses match requests; notifications
//! with missing or bad signatures are rejected) plus the adapter's own scenarios: which
//! inputs lead to which outcome, a correctly signed notification, a sample statement.
//! Scenarios live in a JSON file beside the adapter (`conformance.json`).

use std::collections::BTreeMap;

use payloom_host::bindings::channel_types::{
    ChannelError, CreateRequest, Descriptor, Notification, Outcome, PaymentRef, PaymentResponse,
    RefundOutcome, RefundRequest,
};
use payloom_host::bindings::types::{CaptureMode, Customer, KeyValue, Money, Payment};
use payloom_host::{Call, CallContext, ChannelCall, Plugin, Reply};
use serde::{Deserialize, Serialize};

use crate::runner::{FixtureContext, Runner};

/// An adapter's scenarios.
#[derive(Debug, Clone, Deserialize)]
pub struct Scenarios {
    /// Secrets, keys and clock for every call.
    #[serde(default)]
    pub context: FixtureContext,
    /// Payments and the outcome each must produce.
    #[serde(default)]
    pub payments: Vec<PaymentScenario>,
    /// Refunds (of a succeeded payment) and their outcomes.
    #[serde(default)]
    pub refunds: Vec<RefundScenario>,
    /// A correctly signed notification the adapter must accept.
    pub notification: Option<NotificationSample>,
    /// A statement the adapter must parse, and how many lines it holds.
    pub statement: Option<StatementSample>,
}

/// One payment input and its expected outcome.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentScenario {
    /// What it shows.
    pub name: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// Method; default `card`.
    #[serde(default = "card")]
    pub method: String,
    /// `automatic` (default) or `manual`.
    #[serde(default)]
    pub manual_capture: bool,
    /// Method data (e.g. `card.number`).
    #[serde(default)]
    pub method_data: BTreeMap<String, String>,
    /// Expected outcome: succeeded, pending, requires-action, authorized, declined, canceled, unknown.
    pub expect: String,
    /// For declines, the expected code.
    pub code: Option<String>,
}

fn card() -> String {
    "card".into()
}

/// One refund input and its expected outcome.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundScenario {
    /// What it shows.
    pub name: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// succeeded, pending, declined, unknown.
    pub expect: String,
}

/// A PSP callback as it would arrive.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationSample {
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// Body text.
    pub body: String,
}

/// A statement file.
#[derive(Debug, Clone, Deserialize)]
pub struct StatementSample {
    /// File content.
    pub content: String,
    /// Lines it must yield.
    pub lines: usize,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen, when it did not.
    pub detail: String,
}

/// The whole suite's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    fn check(&mut self, name: impl Into<String>, result: Result<(), String>) {
        let (passed, detail) = match result {
            Ok(()) => (true, String::new()),
            Err(detail) => (false, detail),
        };
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail,
        });
    }
}

/// Outcome names as scenarios spell them.
pub fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Pending => "pending",
        Outcome::RequiresAction(_) => "requires-action",
        Outcome::Authorized => "authorized",
        Outcome::Declined(_) => "declined",
        Outcome::Canceled => "canceled",
        Outcome::Unknown(_) => "unknown",
    }
}

fn refund_outcome_name(outcome: &RefundOutcome) -> &'static str {
    match outcome {
        RefundOutcome::Succeeded => "succeeded",
        RefundOutcome::Pending => "pending",
        RefundOutcome::Declined(_) => "declined",
        RefundOutcome::Unknown(_) => "unknown",
    }
}

/// A payment for suite calls.
pub fn sample_payment(
    id: &str,
    amount_minor: i64,
    currency: &str,
    method: &str,
    manual: bool,
) -> Payment {
    Payment {
        id: id.into(),
        merchant_id: "mch_conformance".into(),
        order_no: format!("order-{id}"),
        amount: Money {
            amount_minor,
            currency: currency.into(),
        },
        method: method.into(),
        capture: if manual {
            CaptureMode::Manual
        } else {
            CaptureMode::Automatic
        },
        customer: Customer {
            email: Some("payer@example.com".into()),
            ip: None,
            country: Some("US".into()),
            device_id: None,
            phone: None,
        },
        description: None,
        return_url: Some("https://merchant.example/return".into()),
        metadata: vec![],
        created_at_ms: 1_767_225_600_000,
    }
}

/// Runs the suite against a loaded channel plugin.
pub async fn run(
    runner: &Runner,
    plugin: &Plugin,
    scenarios: &Scenarios,
) -> anyhow::Result<Report> {
    let ctx = scenarios.context.to_call_context()?;
    let suite = Suite {
        runner,
        plugin,
        ctx,
    };
    let mut report = Report { checks: Vec::new() };
    let descriptor = suite.describe(&mut report).await;
    let currency = descriptor
        .as_ref()
        .and_then(|d| d.currencies.first().cloned())
        .unwrap_or_else(|| "USD".into());
    let method = descriptor
        .as_ref()
        .and_then(|d| d.methods.first().cloned())
        .unwrap_or_else(card);
    suite.bad_input(&mut report, &currency, &method).await;
    for (n, scenario) in scenarios.payments.iter().enumerate() {
        suite.payment(&mut report, n, scenario).await;
    }
    for (n, scenario) in scenarios.refunds.iter().enumerate() {
        suite.refund(&mut report, n, scenario).await;
    }
    suite
        .notifications(&mut report, scenarios.notification.as_ref())
        .await;
    if let Some(statement) = &scenarios.statement {
        suite.statement(&mut report, statement).await;
    }
    Ok(report)
}

struct Suite<'a> {
    runner: &'a Runner,
    plugin: &'a Plugin,
    ctx: CallContext,
}

impl Suite<'_> {
    async fn call(&self, call: ChannelCall) -> Result<Reply, String> {
        let report = self
            .runner
            .run_call(self.plugin, "suite", self.ctx.clone(), Call::Channel(call))
            .await;
        match (report.reply, report.error) {
            (Some(reply), _) => Ok(reply),
            (None, error) => Err(format!(
                "call failed (trap or limit): {}",
                error.unwrap_or_default()
            )),
        }
    }

    async fn payment_call(
        &self,
        call: ChannelCall,
    ) -> Result<Result<PaymentResponse, ChannelError>, String> {
        match self.call(call).await? {
            Reply::Payment(result) => Ok(result),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    async fn describe(&self, report: &mut Report) -> Option<Descriptor> {
        let descriptor = match self.call(ChannelCall::Describe).await {
            Ok(Reply::ChannelDescriptor(d)) => d,
            other => {
                report.check("describe answers", Err(format!("{other:?}")));
                return None;
            }
        };
        report.check(
            "describe is valid",
            validate_descriptor(&descriptor, self.plugin),
        );
        Some(descriptor)
    }

    async fn bad_input(&self, report: &mut Report, currency: &str, method: &str) {
        for (name, amount, currency) in [
            ("zero amount", 0, currency),
            ("negative amount", -100, currency),
            ("unknown currency", 1000, "XXX"),
        ] {
            let request = CreateRequest {
                payment: sample_payment("pay_bad_input", amount, currency, method, false),
                method_data: vec![],
                notify_url: "https://payloom.test/v1/notify/x".into(),
            };
            let result = self.payment_call(ChannelCall::CreatePayment(request)).await;
            let verdict = match result {
                Ok(Err(ChannelError::InvalidRequest(_) | ChannelError::Unsupported(_))) => Ok(()),
                other => Err(format!(
                    "expected invalid-request or unsupported, got {other:?}"
                )),
            };
            report.check(format!("create-payment refuses {name}"), verdict);
        }
    }

    async fn payment(&self, report: &mut Report, n: usize, scenario: &PaymentScenario) {
        let id = format!("pay_conformance_{n}");
        let payment = sample_payment(
            &id,
            scenario.amount,
            &scenario.currency,
            &scenario.method,
            scenario.manual_capture,
        );
        let request = CreateRequest {
            payment: payment.clone(),
            method_data: scenario
                .method_data
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            notify_url: "https://payloom.test/v1/notify/conformance".into(),
        };
        let name = format!("payment: {}", scenario.name);
        let response = match self.payment_call(ChannelCall::CreatePayment(request)).await {
            Ok(Ok(response)) => response,
            other => return report.check(name, Err(format!("{other:?}"))),
        };
        report.check(
            format!("{name} (amount echoed)"),
            same_money(&response.amount, &payment.amount),
        );
        let got = outcome_name(&response.outcome);
        let code_ok = match (&response.outcome, &scenario.code) {
            (Outcome::Declined(decline), Some(code)) => decline.code == *code,
            _ => true,
        };
        let outcome = match got == scenario.expect && code_ok {
            true => Ok(()),
            false => Err(format!(
                "expected {} {:?}, got {:?}",
                scenario.expect, scenario.code, response.outcome
            )),
        };
        report.check(format!("{name} -> {}", scenario.expect), outcome);
        let query = PaymentRef {
            payment_id: id,
            reference: response.reference.clone(),
            amount: payment.amount.clone(),
        };
        let queried = match self.payment_call(ChannelCall::QueryPayment(query)).await {
            Ok(Ok(r)) => same_money(&r.amount, &payment.amount),
            Ok(Err(ChannelError::Unsupported(_))) => Ok(()),
            other => Err(format!("{other:?}")),
        };
        report.check(format!("{name} (query echoes amount)"), queried);
        if matches!(response.outcome, Outcome::Authorized) {
            let capture = PaymentRef {
                payment_id: payment.id.clone(),
                reference: response.reference,
                amount: payment.amount.clone(),
            };
            let captured = match self.payment_call(ChannelCall::Capture(capture)).await {
                Ok(Ok(r)) if matches!(r.outcome, Outcome::Succeeded | Outcome::Pending) => {
                    same_money(&r.amount, &payment.amount)
                }
                other => Err(format!("capture of an authorized payment: {other:?}")),
            };
            report.check(format!("{name} (capture)"), captured);
        }
    }

    async fn refund(&self, report: &mut Report, n: usize, scenario: &RefundScenario) {
        let amount = Money {
            amount_minor: scenario.amount,
            currency: scenario.currency.clone(),
        };
        let request = RefundRequest {
            refund_id: format!("re_conformance_{n}"),
            payment_id: "pay_conformance_refunded".into(),
            payment_reference: Some("ref".into()),
            amount: amount.clone(),
            reason: None,
        };
        let result = match self.call(ChannelCall::Refund(request)).await {
            Ok(Reply::Refund(Ok(r))) => {
                let got = refund_outcome_name(&r.outcome);
                same_money(&r.amount, &amount).and_then(|()| match got == scenario.expect {
                    true => Ok(()),
                    false => Err(format!("expected {}, got {:?}", scenario.expect, r.outcome)),
                })
            }
            other => Err(format!("{other:?}")),
        };
        report.check(
            format!("refund: {} -> {}", scenario.name, scenario.expect),
            result,
        );
    }

    async fn notification(
        &self,
        headers: &BTreeMap<String, String>,
        body: Vec<u8>,
    ) -> Result<Result<(), ChannelError>, String> {
        let request = Notification {
            method: "POST".into(),
            path: "/v1/notify/conformance".into(),
            headers: headers
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            body,
        };
        match self.call(ChannelCall::HandleNotification(request)).await? {
            Reply::Notification(result) => Ok(result.map(|_| ())),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    async fn notifications(&self, report: &mut Report, sample: Option<&NotificationSample>) {
        let unsigned = self
            .notification(&BTreeMap::new(), b"type=payment.succeeded".to_vec())
            .await;
        report.check(
            "notification without a signature is rejected",
            expect_unauthorized(unsigned),
        );
        let Some(sample) = sample else { return };
        let accepted = self
            .notification(&sample.headers, sample.body.clone().into_bytes())
            .await;
        report.check(
            "correctly signed notification is accepted",
            match accepted {
                Ok(Ok(())) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        let mut tampered = sample.body.clone().into_bytes();
        if let Some(last) = tampered.last_mut() {
            *last ^= 0x01;
        }
        let result = self.notification(&sample.headers, tampered).await;
        report.check(
            "notification with a tampered body is rejected",
            expect_unauthorized(result),
        );
        let forged: BTreeMap<String, String> = sample
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), flip_last_hex_digit(v)))
            .collect();
        let result = self
            .notification(&forged, sample.body.clone().into_bytes())
            .await;
        report.check(
            "notification with a forged signature is rejected",
            expect_unauthorized(result),
        );
    }

    async fn statement(&self, report: &mut Report, sample: &StatementSample) {
        let parsed = match self
            .call(ChannelCall::ParseStatement(
                sample.content.clone().into_bytes(),
            ))
            .await
        {
            Ok(Reply::Statement(Ok(lines))) if lines.len() == sample.lines => Ok(()),
            other => Err(format!("expected {} lines, got {other:?}", sample.lines)),
        };
        report.check("sample statement parses", parsed);
        let garbage = match self
            .call(ChannelCall::ParseStatement(
                b"\xff\xfe not a statement".to_vec(),
            ))
            .await
        {
            Ok(Reply::Statement(Err(_))) => Ok(()),
            other => Err(format!("expected an error, got {other:?}")),
        };
        report.check("garbage statement is an error, not a trap", garbage);
    }
}

fn expect_unauthorized(result: Result<Result<(), ChannelError>, String>) -> Result<(), String> {
    match result {
        Ok(Err(ChannelError::Unauthorized(_))) => Ok(()),
        other => Err(format!("expected unauthorized, got {other:?}")),
    }
}

/// Changes the last hexadecimal digit of a header value (a signature), keeping its form.
fn flip_last_hex_digit(value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    if let Some(c) = chars.iter_mut().rev().find(|c| c.is_ascii_hexdigit()) {
        *c = if *c == '0' { '1' } else { '0' };
    }
    chars.into_iter().collect()
}

fn same_money(got: &Money, want: &Money) -> Result<(), String> {
    match got == want {
        true => Ok(()),
        false => Err(format!(
            "response amount {} {} differs from request {} {}",
            got.amount_minor, got.currency, want.amount_minor, want.currency
        )),
    }
}

fn validate_descriptor(d: &Descriptor, plugin: &Plugin) -> Result<(), String> {
    let mut problems = Vec::new();
    if d.id != plugin.id() {
        problems.push(format!(
            "id {:?} differs from the manifest's {:?}",
            d.id,
            plugin.id()
        ));
    }
    if d.version.split('.').count() != 3
        || !d
            .version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        problems.push(format!("version {:?} is not MAJOR.MINOR.PATCH", d.version));
    }
    if d.methods.is_empty() {
        problems.push("no methods".into());
    }
    if d.currencies.is_empty() {
        problems.push("no currencies".into());
    }
    let upper = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_uppercase());
    problems.extend(
        d.currencies
            .iter()
            .filter(|c| !upper(c, 3))
            .map(|c| format!("currency {c:?} is not ISO 4217")),
    );
    problems.extend(
        d.countries
            .iter()
            .filter(|c| !upper(c, 2))
            .map(|c| format!("country {c:?} is not ISO 3166-1 alpha-2")),
    );
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}
