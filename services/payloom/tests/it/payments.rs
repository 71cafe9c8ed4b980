//! The payment flow: every sandbox outcome, risk blocks, capture, cancel, expiry, lists, quotas.

use serde_json::json;

use crate::on_both_databases;
use crate::support::{Backend, Merchant, Platform};

on_both_databases!(
    merchant_policies_set_fees_and_limits,
    sandbox_outcomes,
    capture_and_cancel,
    expiry,
    lists_page_newest_first,
    quota_limits_volume
);

/// Every sandbox outcome and the risk block, as the merchant sees them. Shared with the
/// multi-process test, which must give the same answers.
pub async fn assert_sandbox_outcomes(m: &Merchant) {
    let card = |n: &str| json!({"method_data": {"card.number": n}});
    let ok = m
        .pay(1_000, json!({"customer": {"email": "ok@example.com"}}))
        .await;
    assert_eq!(
        (ok.status, ok.json["status"].as_str()),
        (201, Some("succeeded")),
        "{}",
        ok.text
    );
    assert_eq!(ok.json["amount_captured"], 1_000);
    assert_eq!(ok.json["channel"], "sandbox");
    assert_eq!(ok.json["risk_action"], "allow");
    assert!(ok.json["id"].as_str().unwrap().starts_with("pay_"));
    assert_eq!(
        ok.json["fee"], 59,
        "2.9 % + 30 of 1000, from the standard policy"
    );

    for (number, code) in [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
    ] {
        let declined = m.pay(1_000, card(number)).await;
        assert_eq!(declined.status, 201, "{}", declined.text);
        assert_eq!(declined.json["status"], "failed");
        assert_eq!(declined.json["failure_code"], code);
    }
    let redirect = m.pay(1_000, card("4000002500003155")).await;
    assert_eq!(
        redirect.json["status"], "requires_action",
        "{}",
        redirect.text
    );
    assert_eq!(redirect.json["next_action"]["type"], "redirect");
    assert!(
        redirect.json["next_action"]["url"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );
    let qr = m.pay(1_061, json!({})).await;
    assert_eq!(qr.json["status"], "requires_action", "{}", qr.text);
    assert_eq!(qr.json["next_action"]["type"], "qr_code");
    let pending = m.pay(1_000, card("4000000000000077")).await;
    assert_eq!(pending.json["status"], "pending", "{}", pending.text);
    let unknown = m.pay(1_000, card("4000000000000119")).await;
    assert_eq!(
        unknown.json["status"], "processing",
        "an unknown outcome waits for the janitor: {}",
        unknown.text
    );
    let manual = m.pay(1_000, json!({"capture": "manual"})).await;
    assert_eq!(manual.json["status"], "authorized", "{}", manual.text);
    assert_eq!(manual.json["amount_captured"], 0);

    let blocked = m
        .pay(1_000, json!({"customer": {"email": "blocked@example.com"}}))
        .await;
    assert_eq!(blocked.status, 201, "{}", blocked.text);
    assert_eq!(blocked.json["status"], "failed");
    assert_eq!(blocked.json["failure_code"], "risk_blocked");
    assert_eq!(blocked.json["risk_action"], "block");
    assert!(
        blocked.json["channel_reference"].is_null(),
        "a blocked payment never reaches the channel"
    );
    let too_big = m.pay(6_000_000, json!({})).await;
    assert_eq!(
        too_big.json["failure_code"], "risk_blocked",
        "amount-limit blocks above 5,000,000: {}",
        too_big.text
    );

    let stored = m
        .get(&format!("/v1/payments/{}", ok.json["id"].as_str().unwrap()))
        .await;
    assert_eq!(stored.json, ok.json, "what was answered is what is stored");
}

async fn sandbox_outcomes(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    assert_sandbox_outcomes(&p.merchant).await;

    // What the operators' dashboards read: ten payments allowed, two blocked (one by each
    // rule that fired), and the ledger consuming the payments' events.
    let decisions = |action: &'static str| {
        let p = &p;
        async move {
            let label = format!("action=\"{action}\"");
            p.metric("payloom_risk_decisions_total", &[&label]).await
        }
    };
    assert_eq!(
        (
            decisions("allow").await,
            decisions("review").await,
            decisions("block").await
        ),
        (10.0, 0.0, 2.0)
    );
    for rule in ["blocklist", "amount-limit"] {
        let label = format!("rule=\"{rule}\"");
        let fired = p
            .metric(
                "payloom_risk_rule_results_total",
                &[&label, "action=\"block\""],
            )
            .await;
        assert_eq!(fired, 1.0, "{rule}");
    }
    let mut booked = 0.0;
    for _ in 0..50 {
        booked = p
            .metric(
                "payloom_events_consumed_total",
                &["consumer=\"accounting\""],
            )
            .await;
        if booked > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(booked > 0.0, "the ledger consumed no event");
}

async fn capture_and_cancel(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let authorized = m.pay(1_000, json!({"capture": "manual"})).await;
    let id = authorized.json["id"].as_str().unwrap();
    let over = m
        .post(
            &format!("/v1/payments/{id}/capture"),
            json!({"amount": 1_001}),
        )
        .await;
    // Well-formed, but more than this payment's authorization: a conflict with its state.
    assert_eq!(
        (over.status, over.error_code()),
        (409, "amount_too_large"),
        "{}",
        over.text
    );
    assert_eq!(over.json["error"]["param"], "amount");
    for bad in [json!({"amount": 0}), json!({"amount": 10.5}), json!([null])] {
        let refused = m
            .post(&format!("/v1/payments/{id}/capture"), bad.clone())
            .await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text);
    }
    // 600.0 is the integer 600, as JSON Schema counts it.
    let captured = m
        .post(
            &format!("/v1/payments/{id}/capture"),
            json!({"amount": 600.0}),
        )
        .await;
    assert_eq!(captured.status, 200, "{}", captured.text);
    assert_eq!(
        (
            captured.json["status"].as_str(),
            captured.json["amount_captured"].as_i64()
        ),
        (Some("succeeded"), Some(600))
    );
    let again = m
        .post(&format!("/v1/payments/{id}/capture"), json!({}))
        .await;
    assert_eq!(
        (again.status, again.error_code()),
        (409, "payment_not_capturable")
    );
    let late_cancel = m
        .post(&format!("/v1/payments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(
        (late_cancel.status, late_cancel.error_code()),
        (409, "payment_not_cancelable")
    );

    let whole = m.pay(700, json!({"capture": "manual"})).await;
    let whole_id = whole.json["id"].as_str().unwrap();
    let captured = m
        .send("POST", &format!("/v1/payments/{whole_id}/capture"), "", &[])
        .await;
    assert_eq!(
        captured.json["amount_captured"], 700,
        "no amount captures everything: {}",
        captured.text
    );

    for extra in [
        json!({"capture": "manual"}),
        json!({"method_data": {"card.number": "4000000000000077"}}),
    ] {
        let payment = m.pay(1_000, extra).await;
        let id = payment.json["id"].as_str().unwrap();
        let canceled = m
            .post(&format!("/v1/payments/{id}/cancel"), json!({}))
            .await;
        assert_eq!(
            (canceled.status, canceled.json["status"].as_str()),
            (200, Some("canceled")),
            "{}",
            canceled.text
        );
        let twice = m
            .post(&format!("/v1/payments/{id}/cancel"), json!({}))
            .await;
        assert_eq!(twice.status, 409);
        let capture = m
            .post(&format!("/v1/payments/{id}/capture"), json!({}))
            .await;
        assert_eq!(capture.status, 409);
    }
}

async fn expiry(backend: Backend) {
    let Some(p) =
        Platform::start_with(backend, "[gateway]\nexpiry_sweep_interval_ms = 200\n").await
    else {
        return;
    };
    let m = &p.merchant;
    let card = json!({"method_data": {"card.number": "4000000000000077"}, "expires_in": 1});
    let pending = m.pay(1_000, card).await;
    assert_eq!(pending.json["status"], "pending", "{}", pending.text);
    let paid = m.pay(1_000, json!({"expires_in": 1})).await;
    let path = format!("/v1/payments/{}", pending.json["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let expired = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let now = m.get(&path).await;
        if now.json["status"] == "expired" || std::time::Instant::now() > deadline {
            break now;
        }
    };
    assert_eq!(expired.json["status"], "expired", "{}", expired.text);
    assert_eq!(expired.json["failure_code"], "expired");
    let listed = m.get("/v1/payments?status=expired").await;
    assert_eq!(
        listed.json["data"].as_array().unwrap().len(),
        1,
        "the sweeper persisted it: {}",
        listed.text
    );
    let still = m
        .get(&format!(
            "/v1/payments/{}",
            paid.json["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        still.json["status"], "succeeded",
        "a paid payment never expires"
    );
    let cancel = m.post(&format!("{path}/cancel"), json!({})).await;
    assert_eq!(cancel.status, 409, "expired is final");
}

async fn lists_page_newest_first(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let mut ids = Vec::new();
    for i in 0..5 {
        let extra = if i == 2 {
            json!({"method_data": {"card.number": "4000000000000002"}})
        } else {
            json!({})
        };
        ids.push(
            m.pay(1_000 + i, extra).await.json["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.reverse();
    let first = m.get("/v1/payments?limit=2").await;
    let page = |a: &crate::support::Answer| {
        a.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(page(&first), ids[..2]);
    assert_eq!(first.json["has_more"], true);
    let second = m
        .get(&format!("/v1/payments?limit=2&starting_after={}", ids[1]))
        .await;
    assert_eq!(page(&second), ids[2..4]);
    let last = m
        .get(&format!("/v1/payments?limit=2&starting_after={}", ids[3]))
        .await;
    assert_eq!(
        (page(&last), last.json["has_more"].as_bool()),
        (ids[4..].to_vec(), Some(false))
    );
    let failed = m.get("/v1/payments?status=failed").await;
    assert_eq!(page(&failed), vec![ids[2].clone()]);
    let one = m.get(&format!("/v1/payments/{}", ids[0])).await;
    let by_order = m
        .get(&format!(
            "/v1/payments?order_no={}",
            one.json["order_no"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page(&by_order), vec![ids[0].clone()]);
    for bad in [
        "limit=0",
        "limit=101",
        "status=paid",
        "starting_after=nope",
        "limit=abc",
        "colour=red",
    ] {
        let answer = m.get(&format!("/v1/payments?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text);
        assert!(answer.json["error"]["message"].is_string());
    }
}

async fn quota_limits_volume(backend: Backend) {
    let config = "[quota.currencies.CHF]\ndaily_minor = 100000\nmonthly_minor = 150000\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let m = &p.merchant;
    let chf = |amount: i64, extra: serde_json::Value| {
        let mut body = json!({"currency": "CHF"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        m.pay(amount, body)
    };
    assert_eq!(chf(60_000, json!({})).await.json["status"], "succeeded");
    let over = chf(50_000, json!({})).await;
    assert_eq!(
        (over.status, over.error_code()),
        (429, "quota_exceeded"),
        "{}",
        over.text
    );
    assert_eq!(m.count().await, 1, "a refused payment is not persisted");
    let declined = chf(
        30_000,
        json!({"method_data": {"card.number": "4000000000000002"}}),
    )
    .await;
    assert_eq!(declined.json["status"], "failed");
    assert_eq!(
        chf(30_000, json!({})).await.json["status"],
        "succeeded",
        "a failed payment gives its quota back"
    );
    let canceled = chf(10_000, json!({"capture": "manual"})).await;
    assert_eq!(canceled.json["status"], "authorized", "{}", canceled.text);
    assert_eq!(chf(1, json!({})).await.status, 429, "the day is full");
    m.post(
        &format!(
            "/v1/payments/{}/cancel",
            canceled.json["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    assert_eq!(
        chf(1, json!({})).await.status,
        201,
        "a cancel gives its quota back"
    );
    assert_eq!(
        m.pay(60_000, json!({})).await.status,
        201,
        "other currencies have their own quota"
    );

    // Concurrent reservations never pass the limit together.
    let config = "[quota.currencies.CHF]\ndaily_minor = 10000\nmonthly_minor = 10000\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let m = p.merchant.clone();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.pay(1_000, json!({"currency": "CHF"})).await.status })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap() == 201 {
            created += 1;
        }
    }
    assert_eq!(created, 10);
    assert_eq!(m.count().await, 10);
}

async fn merchant_policies_set_fees_and_limits(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let b = p.another_merchant().await;
    let policy = json!({"plugin": "standard", "config": {"fee.bps": "100", "fee.fixed_minor": "0", "max_minor": "5000"}});
    let set = p
        .admin(
            "PUT",
            &format!("/admin/v1/merchants/{}/policy", b.key.merchant_id),
            policy.clone(),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let paid = b.pay(1_000, json!({})).await;
    assert_eq!(
        (paid.json["status"].as_str(), paid.json["fee"].as_i64()),
        (Some("succeeded"), Some(10)),
        "{}",
        paid.text
    );
    let denied = b.pay(6_000, json!({})).await;
    assert_eq!(denied.status, 201, "{}", denied.text);
    assert_eq!(
        (
            denied.json["status"].as_str(),
            denied.json["failure_code"].as_str()
        ),
        (Some("failed"), Some("policy_denied"))
    );
    assert!(
        denied.json["channel_reference"].is_null(),
        "a denied payment never reaches the channel"
    );
    let others = p.merchant.pay(1_000, json!({})).await;
    assert_eq!(
        others.json["fee"], 59,
        "other merchants keep the default policy"
    );
    let unknown = p
        .admin(
            "PUT",
            &format!("/admin/v1/merchants/{}/policy", b.key.merchant_id),
            json!({"plugin": "nope"}),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (400, "plugin_unknown")
    );
    let not_a_policy = p
        .admin(
            "PUT",
            &format!("/admin/v1/merchants/{}/policy", b.key.merchant_id),
            json!({"plugin": "sandbox"}),
        )
        .await;
    assert_eq!(not_a_policy.status, 400);
    let nobody = p
        .admin("PUT", "/admin/v1/merchants/mch_nope/policy", policy)
        .await;
    assert_eq!(nobody.status, 404);
    assert_eq!(
        b.pay(1_000, json!({})).await.json["fee"],
        10,
        "refused changes left the policy as it was"
    );
}
