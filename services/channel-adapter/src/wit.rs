//! The contract's channel operations into the WIT calls a component runs, and its
//! answers back. The only place the two shapes meet: a new WIT field is a change here
//! and nowhere else.

use payloom_channel_contract as c;
use payloom_host::ChannelCall;
use payloom_host::bindings::channel_types as ch;
use payloom_host::facts::into_all;

pub fn call(call: c::ChannelCall) -> ChannelCall {
    match call {
        c::ChannelCall::CreatePayment(r) => ChannelCall::CreatePayment(ch::CreateRequest {
            payment: r.payment.into(),
            method_data: into_all(r.method_data),
            notify_url: r.notify_url,
        }),
        c::ChannelCall::QueryPayment(r) => ChannelCall::QueryPayment(payment_ref(r)),
        c::ChannelCall::Capture(r) => ChannelCall::Capture(payment_ref(r)),
        c::ChannelCall::Cancel(r) => ChannelCall::Cancel(payment_ref(r)),
        c::ChannelCall::Refund(r) => ChannelCall::Refund(ch::RefundRequest {
            refund_id: r.refund_id,
            payment_id: r.payment_id,
            payment_reference: r.payment_reference,
            amount: r.amount.into(),
            reason: r.reason,
        }),
        c::ChannelCall::QueryRefund(r) => ChannelCall::QueryRefund(ch::RefundRef {
            refund_id: r.refund_id,
            reference: r.reference,
            amount: r.amount.into(),
        }),
        c::ChannelCall::HandleNotification(n) => {
            ChannelCall::HandleNotification(ch::Notification {
                method: n.method,
                path: n.path,
                headers: into_all(n.headers),
                body: n.body,
            })
        }
    }
}

fn payment_ref(r: c::PaymentRef) -> ch::PaymentRef {
    ch::PaymentRef {
        payment_id: r.payment_id,
        reference: r.reference,
        amount: r.amount.into(),
    }
}

/// A component's answer to a payment operation.
pub fn payment_answer(
    answer: Result<ch::PaymentResponse, ch::ChannelError>,
) -> Result<c::PaymentResponse, c::ChannelError> {
    answer
        .map(|r| c::PaymentResponse {
            outcome: outcome(r.outcome),
            reference: r.reference,
            amount: r.amount.into(),
        })
        .map_err(error)
}

/// A component's answer to a refund operation.
pub fn refund_answer(
    answer: Result<ch::RefundResponse, ch::ChannelError>,
) -> Result<c::RefundResponse, c::ChannelError> {
    answer
        .map(|r| c::RefundResponse {
            outcome: refund_outcome(r.outcome),
            reference: r.reference,
            amount: r.amount.into(),
        })
        .map_err(error)
}

/// A component's reading of a PSP notification.
pub fn notification_answer(
    answer: Result<ch::NotificationResponse, ch::ChannelError>,
) -> Result<c::NotificationResponse, c::ChannelError> {
    answer
        .map(|r| c::NotificationResponse {
            event: match r.event {
                ch::NotificationEvent::Payment(u) => {
                    c::NotificationEvent::Payment(c::PaymentUpdate {
                        payment_id: u.payment_id,
                        reference: u.reference,
                        outcome: outcome(u.outcome),
                        amount: u.amount.into(),
                    })
                }
                ch::NotificationEvent::Refund(u) => c::NotificationEvent::Refund(c::RefundUpdate {
                    refund_id: u.refund_id,
                    reference: u.reference,
                    outcome: refund_outcome(u.outcome),
                    amount: u.amount.into(),
                }),
                ch::NotificationEvent::Ignored => c::NotificationEvent::Ignored,
            },
            ack_status: r.ack_status,
            ack_body: r.ack_body,
        })
        .map_err(error)
}

fn outcome(o: ch::Outcome) -> c::Outcome {
    match o {
        ch::Outcome::Succeeded => c::Outcome::Succeeded,
        ch::Outcome::Pending => c::Outcome::Pending,
        ch::Outcome::RequiresAction(next) => c::Outcome::RequiresAction(match next {
            ch::NextAction::Redirect(url) => c::NextAction::Redirect(url),
            ch::NextAction::QrCode(code) => c::NextAction::QrCode(code),
            ch::NextAction::SdkParams(params) => c::NextAction::SdkParams(into_all(params)),
        }),
        ch::Outcome::Authorized => c::Outcome::Authorized,
        ch::Outcome::Declined(d) => c::Outcome::Declined(decline(d)),
        ch::Outcome::Canceled => c::Outcome::Canceled,
        ch::Outcome::Unknown(why) => c::Outcome::Unknown(why),
    }
}

fn refund_outcome(o: ch::RefundOutcome) -> c::RefundOutcome {
    match o {
        ch::RefundOutcome::Succeeded => c::RefundOutcome::Succeeded,
        ch::RefundOutcome::Pending => c::RefundOutcome::Pending,
        ch::RefundOutcome::Declined(d) => c::RefundOutcome::Declined(decline(d)),
        ch::RefundOutcome::Unknown(why) => c::RefundOutcome::Unknown(why),
    }
}

fn decline(d: ch::Decline) -> c::Decline {
    c::Decline {
        code: d.code,
        message: d.message,
    }
}

fn error(e: ch::ChannelError) -> c::ChannelError {
    match e {
        ch::ChannelError::InvalidRequest(m) => c::ChannelError::InvalidRequest(m),
        ch::ChannelError::Unauthorized(m) => c::ChannelError::Unauthorized(m),
        ch::ChannelError::Unsupported(m) => c::ChannelError::Unsupported(m),
        ch::ChannelError::Upstream(m) => c::ChannelError::Upstream(m),
    }
}
