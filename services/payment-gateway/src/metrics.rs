//! `payloom_payments_total`: every status a payment reaches, counted once its change is
//! committed, by channel and merchant. The success rate the dashboards and alerts watch is
//! `succeeded` over `succeeded` and `failed`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::db::PaymentRow;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PaymentLabels {
    channel: String,
    merchant: String,
    status: String,
}

#[derive(Clone, Default)]
pub struct PaymentMetrics {
    reached: Family<PaymentLabels, Counter>,
}

impl PaymentMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "payloom_payments",
            "Payment state changes committed, by channel, merchant and the status reached",
            metrics.reached.clone(),
        );
        metrics
    }

    pub(crate) fn reached(&self, payment: &PaymentRow) {
        let labels = PaymentLabels {
            // A payment refused before routing has no channel.
            channel: payment.out.channel.clone().unwrap_or_else(|| "none".into()),
            merchant: payment.merchant_id.clone(),
            status: payment.out.status.as_str().to_owned(),
        };
        self.reached.get_or_create(&labels).inc();
    }
}
