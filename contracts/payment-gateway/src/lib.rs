//! The payment gateway's contract: the payment and refund objects of the merchant API and
//! the typed events of its topics. Callers and consumers depend on this crate, never on
//! the gateway's implementation, so renaming a field is a compile error for every reader
//! of it rather than a dead letter at run time.

pub mod events;
pub mod model;

pub use events::{PaymentEvent, RefundEvent};
pub use model::{
    CaptureMode, Customer, NextAction, PaymentOut, PaymentStatus, RefundOut, RefundStatus,
};
