//! Money and messages end to end: a payment and a partial refund are booked in the ledger
//! and told to the merchant by webhooks that an independent Standard Webhooks verifier
//! accepts; PSP notifications move pending payments once, and only forward.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use payloom_gateway_contract::{PaymentEvent, PaymentOut, PaymentStatus};
use payloom_platform::Db;
use payloom_platform::db::PoolOptions;

use crate::on_both_databases;
use crate::receiver::{Receiver, assert_refused, assert_verified};
use crate::support::{Answer, Backend, Merchant, Platform, answer};

on_both_databases!(
    a_payment_and_a_partial_refund_are_booked_and_signed_webhooks_verify,
    signed_notifications_complete_pending_payments_once_and_only_forward,
    the_janitor_settles_unknown_outcomes_and_expiry_is_told,
    a_dead_lettered_event_is_listed_and_replayed,
);

async fn a_dead_lettered_event_is_listed_and_replayed(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let mid = &p.merchant.key.merchant_id;
    let now = payloom_platform::Clock::now_ms(&payloom_platform::SystemClock);
    let event = PaymentEvent::Succeeded(PaymentOut {
        id: "pay_replayed".into(),
        amount: 700,
        currency: "USD".into(),
        status: PaymentStatus::Succeeded,
        channel: Some("sandbox".into()),
        amount_captured: 700,
        fee: 30,
        updated_at_ms: now,
        ..PaymentOut::default()
    })
    .envelope(mid);
    // What the ledger's consumer leaves behind when it gives up on an event.
    let db = Db::connect(&p.database_of("accounting"), &PoolOptions::default())
        .await
        .unwrap();
    sqlx::query("INSERT INTO payloom_consumed (consumer, event_id, consumed_at_ms) VALUES ('accounting', $1, $2)")
        .bind(&event.id)
        .bind(now)
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO payloom_dead_letters (consumer, event_id, topic, envelope, error, attempts, at_ms) VALUES ('accounting', $1, 'payment.events', $2, 'the database went away', 5, $3)")
        .bind(&event.id)
        .bind(serde_json::to_string(&event).unwrap())
        .bind(now)
        .execute(db.pool())
        .await
        .unwrap();
    db.pool().close().await;

    let listed = p.admin("GET", "/admin/v1/dead_letters", Value::Null).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let data = listed.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", listed.text);
    assert_eq!(
        (
            data[0]["consumer"].as_str(),
            data[0]["error"].as_str(),
            data[0]["event"]["id"].as_str()
        ),
        (
            Some("accounting"),
            Some("the database went away"),
            Some(event.id.as_str())
        )
    );
    let path = format!("/admin/v1/dead_letters/accounting/{}/replay", event.id);
    let replayed = p.admin("POST", &path, Value::Null).await;
    assert_eq!(replayed.status, 200, "{}", replayed.text);
    assert_eq!(replayed.json["outcome"], "handled");
    let booked = entries(&p, "pay_replayed", 1).await;
    assert_eq!(booked[0]["kind"], "capture");
    assert_eq!(booked[0]["source"], event.id.as_str());
    let empty = p.admin("GET", "/admin/v1/dead_letters", Value::Null).await;
    assert_eq!(empty.json["data"], json!([]));
    assert_eq!(p.admin("POST", &path, Value::Null).await.status, 404);
    let nobody = p
        .admin(
            "POST",
            "/admin/v1/dead_letters/nobody/evt_1/replay",
            Value::Null,
        )
        .await;
    assert_eq!(nobody.status, 404);
}

/// Registers `receiver` for the merchant; returns the endpoint's secret.
async fn endpoint(m: &Merchant, receiver: &Receiver) -> String {
    let created = m
        .post("/v1/webhook_endpoints", json!({"url": receiver.url}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(created.json["id"].as_str().unwrap().starts_with("we_"));
    created.json["secret"].as_str().unwrap().to_owned()
}

/// The ledger entries of a payment, once `count` of them exist (at most 10 s).
async fn entries(p: &Platform, payment_id: &str, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let got = p
            .admin(
                "GET",
                &format!("/admin/v1/ledger/entries?payment_id={payment_id}"),
                Value::Null,
            )
            .await;
        assert_eq!(got.status, 200, "{}", got.text);
        let list = got.json.as_array().unwrap().clone();
        if list.len() >= count {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{payment_id} never had {count} ledger entries");
}

/// An entry's postings as (account, side, amount), in order.
fn postings(entry: &Value) -> Vec<(String, String, i64)> {
    entry["postings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["currency"], "USD");
            (
                p["account"].as_str().unwrap().to_owned(),
                p["side"].as_str().unwrap().to_owned(),
                p["amount_minor"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn line(account: &str, side: &str, amount: i64) -> (String, String, i64) {
    (account.to_owned(), side.to_owned(), amount)
}

pub(crate) async fn available(m: &Merchant) -> i64 {
    let balance = m.get("/v1/balance").await;
    assert_eq!(balance.status, 200, "{}", balance.text);
    assert_eq!(balance.json["object"], "balance");
    balance.json["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "USD")
        .map(|b| b["available"].as_i64().unwrap())
        .unwrap_or(0)
}

async fn a_payment_and_a_partial_refund_are_booked_and_signed_webhooks_verify(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let mid = &m.key.merchant_id;
    let receiver = Receiver::start().await;
    let secret = endpoint(m, &receiver).await;
    assert!(secret.starts_with("whsec_"));
    let listed = m.get("/v1/webhook_endpoints").await;
    assert_eq!(listed.json["data"][0]["url"], receiver.url);
    assert!(
        listed.json["data"][0].get("secret").is_none(),
        "the secret is shown once"
    );

    let paid = m.pay(10_000, json!({})).await;
    assert_eq!(paid.json["status"], "succeeded", "{}", paid.text);
    let id = paid.json["id"].as_str().unwrap();
    let fee = paid.json["fee"].as_i64().unwrap();
    assert!(fee > 0);

    let booked = entries(&p, id, 1).await;
    assert_eq!(booked.len(), 1, "{booked:#?}");
    assert_eq!(booked[0]["kind"], "capture");
    assert_eq!(
        postings(&booked[0]),
        [
            line("channel:sandbox:clearing", "debit", 10_000),
            line(&format!("merchant:{mid}:available"), "credit", 10_000 - fee),
            line("platform:fees", "credit", fee),
        ]
    );
    assert_eq!(available(m).await, 10_000 - fee);

    let got = receiver
        .wait_for("payment.succeeded", |r| {
            r.iter().any(|r| r.kind() == "payment.succeeded")
        })
        .await;
    let hook = got
        .iter()
        .find(|r| r.kind() == "payment.succeeded")
        .unwrap();
    assert_eq!(hook.json()["data"]["id"], id);
    assert_eq!(hook.json()["data"]["status"], "succeeded");
    assert!(hook.id().starts_with("evt_"));
    assert!(hook.headers["webhook-signature"].starts_with("v1,"));

    let refund = m
        .post(
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 2_500}),
        )
        .await;
    assert_eq!(refund.json["status"], "succeeded", "{}", refund.text);
    let booked = entries(&p, id, 2).await;
    assert_eq!(booked.len(), 2);
    assert_eq!(booked[1]["kind"], "refund");
    let fee_back = fee * 2_500 / 10_000;
    assert_eq!(
        postings(&booked[1]),
        [
            line(
                &format!("merchant:{mid}:available"),
                "debit",
                2_500 - fee_back
            ),
            line("platform:fees", "debit", fee_back),
            line("channel:sandbox:clearing", "credit", 2_500),
        ]
    );
    assert_eq!(available(m).await, 10_000 - fee - (2_500 - fee_back));

    let got = receiver
        .wait_for("refund.succeeded", |r| {
            r.iter().any(|r| r.kind() == "refund.succeeded")
        })
        .await;
    let hook = got.iter().find(|r| r.kind() == "refund.succeeded").unwrap();
    assert_eq!(hook.json()["data"]["id"], refund.json["id"]);
    assert_eq!(hook.json()["data"]["amount"], 2_500);

    // The independent verifier accepts every request with the endpoint's secret, and
    // refuses them with another secret or a changed body.
    let all = receiver.received();
    assert_verified(&secret, &all);
    let (other, _) = payloom_notification::signing::new_secret();
    assert_refused(&other, &all);
    let mut tampered = all[0].clone();
    tampered.body = tampered.body.replace("succeeded", "failed");
    assert_refused(&secret, &[tampered]);

    // The books balance: debits equal credits in every currency.
    let accounts = p
        .admin("GET", "/admin/v1/ledger/accounts", Value::Null)
        .await;
    for total in accounts.json["totals"].as_array().unwrap() {
        assert_eq!(total["debits"], total["credits"], "{total}");
    }
    let admin_view = p
        .admin(
            "GET",
            &format!("/admin/v1/merchants/{mid}/balance"),
            Value::Null,
        )
        .await;
    assert_eq!(
        admin_view.json["balances"][0]["available"].as_i64(),
        Some(10_000 - fee - (2_500 - fee_back))
    );

    // A correction is a reversing entry, booked once; the original stays as it was.
    let refund_entry = booked[1]["id"].as_str().unwrap();
    let path = format!("/admin/v1/ledger/entries/{refund_entry}/reversals");
    let reversed = p
        .admin("POST", &path, json!({"reason": "booked twice by hand"}))
        .await;
    assert_eq!(reversed.status, 201, "{}", reversed.text);
    assert_eq!(reversed.json["reverses_entry_id"], refund_entry);
    let mut undone = postings(&booked[1]);
    undone.reverse();
    for line in &mut undone {
        line.1 = if line.1 == "debit" { "credit" } else { "debit" }.into();
    }
    assert_eq!(postings(&reversed.json), undone);
    assert_eq!(available(m).await, 10_000 - fee);
    let again = p.admin("POST", &path, json!({"reason": "again"})).await;
    assert_eq!(
        (again.status, again.error_code()),
        (409, "entry_already_reversed")
    );
    let of_reversal = p
        .admin(
            "POST",
            &format!(
                "/admin/v1/ledger/entries/{}/reversals",
                reversed.json["id"].as_str().unwrap()
            ),
            json!({"reason": "undo the undo"}),
        )
        .await;
    assert_eq!(of_reversal.status, 409, "{}", of_reversal.text);
    let no_reason = p.admin("POST", &path, json!({"reason": " "})).await;
    assert_eq!(no_reason.status, 400);
    let entries_now = entries(&p, id, 3).await;
    assert_eq!(entries_now[1], booked[1], "entries are never changed");
    let neither = p
        .admin("GET", "/admin/v1/ledger/entries", Value::Null)
        .await;
    assert_eq!(neither.status, 400);
}

async fn the_janitor_settles_unknown_outcomes_and_expiry_is_told(backend: Backend) {
    let config = "[gateway]\nrequery_schedule_secs = [1, 1, 1]\nexpiry_sweep_interval_ms = 200\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let m = &p.merchant;
    let receiver = Receiver::start().await;
    let secret = endpoint(m, &receiver).await;

    // An amount ending in 80 times out at the sandbox: the outcome is unknown.
    let unknown = m.pay(1_080, json!({})).await;
    assert_eq!(unknown.json["status"], "processing", "{}", unknown.text);
    assert_eq!(unknown.json["failure_code"], "outcome_unknown");
    let id = unknown.json["id"].as_str().unwrap().to_owned();
    // A pending payment that nobody completes expires.
    let pending = m.pay(1_070, json!({"expires_in": 1})).await;
    assert_eq!(pending.json["status"], "pending");
    let pending_id = pending.json["id"].as_str().unwrap().to_owned();

    let mut settled = Value::Null;
    for _ in 0..100 {
        settled = m.get(&format!("/v1/payments/{id}")).await.json;
        if settled["status"] != "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settled["status"], "succeeded", "{settled}");
    assert_eq!(settled["failure_code"], Value::Null);
    assert_eq!(entries(&p, &id, 1).await[0]["kind"], "capture");

    // A refund whose outcome is unknown stays pending until the janitor asks again.
    let refund = m
        .post(
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 1_080}),
        )
        .await;
    assert_eq!(refund.json["status"], "pending", "{}", refund.text);
    let refund_id = refund.json["id"].as_str().unwrap().to_owned();
    let mut refunded = Value::Null;
    for _ in 0..100 {
        refunded = m.get(&format!("/v1/refunds/{refund_id}")).await.json;
        if refunded["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refunded["status"], "succeeded", "{refunded}");
    assert_eq!(entries(&p, &id, 2).await[1]["kind"], "refund");

    let got = receiver
        .wait_for(
            "payment.succeeded, refund.succeeded and payment.expired",
            |r| {
                r.iter().any(|r| r.kind() == "payment.succeeded")
                    && r.iter().any(|r| r.kind() == "refund.succeeded")
                    && r.iter().any(|r| r.kind() == "payment.expired")
            },
        )
        .await;
    let succeeded = got
        .iter()
        .find(|r| r.kind() == "payment.succeeded")
        .unwrap();
    assert_eq!(succeeded.json()["data"]["id"], id.as_str());
    let expired = got.iter().find(|r| r.kind() == "payment.expired").unwrap();
    assert_eq!(expired.json()["data"]["id"], pending_id.as_str());
    assert_eq!(
        m.get(&format!("/v1/payments/{pending_id}")).await.json["status"],
        "expired"
    );
    assert!(
        entries(&p, &pending_id, 0).await.is_empty(),
        "nothing to book for an expired payment"
    );
    assert_verified(&secret, &got);
}

/// `Sandbox-Signature: t=<ms>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
async fn notify(p: &Platform, merchant_id: &str, body: &str, secret: &[u8]) -> Answer {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/notify/sandbox?merchant={merchant_id}",
            p.base
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sandbox-signature", format!("t={t},v1={signature}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn signed_notifications_complete_pending_payments_once_and_only_forward(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    // This merchant's sandbox notification secret is known: "s3cret".
    let m = p.another_merchant().await;
    let mid = m.key.merchant_id.clone();
    let receiver = Receiver::start().await;
    let secret = endpoint(&m, &receiver).await;

    // An amount ending in 70 stays pending at the sandbox until it notifies.
    let pending = m.pay(1_070, json!({})).await;
    assert_eq!(pending.json["status"], "pending", "{}", pending.text);
    let id = pending.json["id"].as_str().unwrap().to_owned();
    let reference = pending.json["channel_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let succeeded = format!(
        "type=payment.succeeded&payment_id={id}&reference={reference}&amount=1070&currency=USD"
    );

    let forged = notify(&p, &mid, &succeeded, b"not-the-secret").await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (401, "notification_unverified"),
        "{}",
        forged.text
    );
    let unknown_merchant = notify(&p, "mch_nobody", &succeeded, b"s3cret").await;
    assert_eq!(unknown_merchant.status, 400, "{}", unknown_merchant.text);
    assert_eq!(
        m.get(&format!("/v1/payments/{id}")).await.json["status"],
        "pending"
    );

    let ok = notify(&p, &mid, &succeeded, b"s3cret").await;
    assert_eq!((ok.status, ok.text.as_str()), (200, "ok"));
    let paid = m.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(paid.json["status"], "succeeded");
    assert_eq!(paid.json["amount_captured"], 1_070);
    let fee = paid.json["fee"].as_i64().unwrap();
    let booked = entries(&p, &id, 1).await;
    assert_eq!(
        postings(&booked[0]),
        [
            line("channel:sandbox:clearing", "debit", 1_070),
            line(&format!("merchant:{mid}:available"), "credit", 1_070 - fee),
            line("platform:fees", "credit", fee),
        ]
    );

    // The same notification again, and a late failure: acknowledged, nothing moves.
    let again = notify(&p, &mid, &succeeded, b"s3cret").await;
    assert_eq!(again.status, 200);
    let late = notify(
        &p,
        &mid,
        &format!("type=payment.failed&payment_id={id}&amount=1070&currency=USD"),
        b"s3cret",
    )
    .await;
    assert_eq!(late.status, 200, "{}", late.text);
    assert_eq!(m.get(&format!("/v1/payments/{id}")).await.json, paid.json);

    let got = receiver
        .wait_for("payment.pending and payment.succeeded", |r| {
            r.iter().any(|r| r.kind() == "payment.succeeded")
        })
        .await;
    // Give a duplicate the time to show up if it were coming.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.of_kind("payment.succeeded").len(), 1, "{got:#?}");
    assert_eq!(receiver.of_kind("payment.failed").len(), 0);
    assert_eq!(entries(&p, &id, 1).await.len(), 1);
    assert_verified(&secret, &receiver.received());

    // Refunds: an amount ending in 70 stays pending at the sandbox until it notifies.
    let refund = |amount: i64| {
        let m = m.clone();
        let path = format!("/v1/payments/{id}/refunds");
        async move {
            let r = m.post(&path, json!({"amount": amount})).await;
            assert_eq!(r.json["status"], "pending", "{}", r.text);
            r.json["id"].as_str().unwrap().to_owned()
        }
    };
    let first = refund(170).await;
    let done = notify(
        &p,
        &mid,
        &format!("type=refund.succeeded&refund_id={first}&amount=170&currency=USD"),
        b"s3cret",
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(
        m.get(&format!("/v1/refunds/{first}")).await.json["status"],
        "succeeded"
    );
    assert_eq!(entries(&p, &id, 2).await[1]["kind"], "refund");

    // One that fails by notification gives its amount back to what can be refunded, and a
    // late success for it changes nothing.
    let second = refund(270).await;
    let failed = format!("type=refund.failed&refund_id={second}&amount=270&currency=USD");
    assert_eq!(notify(&p, &mid, &failed, b"s3cret").await.status, 200);
    let late = format!("type=refund.succeeded&refund_id={second}&amount=270&currency=USD");
    assert_eq!(notify(&p, &mid, &late, b"s3cret").await.status, 200);
    assert_eq!(
        m.get(&format!("/v1/refunds/{second}")).await.json["status"],
        "failed"
    );
    assert_eq!(
        m.get(&format!("/v1/payments/{id}")).await.json["amount_refunded"],
        170
    );
    let wrong_amount = format!("type=refund.succeeded&refund_id={second}&amount=999&currency=USD");
    assert_eq!(
        notify(&p, &mid, &wrong_amount, b"s3cret")
            .await
            .error_code(),
        "notification_mismatch"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        entries(&p, &id, 2).await.len(),
        2,
        "the failed refund books nothing"
    );
}
