//! A merchant policy's fee must lie between zero and the payment's amount; a policy that
//! answers anything else refuses the payment instead of pricing it.

use serde_json::json;

use crate::in_every_topology;
use crate::support::{Backend, Platform};

in_every_topology!(a_policy_fee_above_the_amount_refuses_the_payment);

async fn a_policy_fee_above_the_amount_refuses_the_payment(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let b = p.another_merchant().await;
    // A fixed fee of 15.00 is more than a 10.00 payment is worth.
    let policy =
        json!({"plugin": "standard", "config": {"fee.bps": "0", "fee.fixed_minor": "1500"}});
    let set = p
        .admin(
            "PUT",
            &format!("/admin/v1/merchants/{}/policy", b.key.merchant_id),
            policy,
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);

    let over = b.pay(1_000, json!({})).await;
    assert_eq!(over.status, 201, "{}", over.text);
    assert_eq!(
        (
            over.json["status"].as_str(),
            over.json["failure_code"].as_str(),
            over.json["fee"].as_i64()
        ),
        (Some("failed"), Some("policy_denied"), Some(0)),
        "{}",
        over.text
    );
    let reason = over.json["failure_message"].as_str().unwrap_or_default();
    assert!(reason.contains("policy fee out of range"), "{reason}");
    assert!(
        over.json["channel_reference"].is_null(),
        "a refused payment never reaches the channel"
    );

    for amount in [1_500, 2_000] {
        let paid = b.pay(amount, json!({})).await;
        assert_eq!(
            (paid.json["status"].as_str(), paid.json["fee"].as_i64()),
            (Some("succeeded"), Some(1_500)),
            "a fee up to the whole amount stands: {}",
            paid.text
        );
    }
}
