//! Capture and cancel are claimed before the channel is called: concurrent requests reach
//! the PSP once between them (counted by the channel-adapter's per-operation counter), the
//! losers answer 409, and a claim whose answer was lost is never sent to the PSP again.

use serde_json::json;

use crate::in_every_topology;
use crate::support::{Answer, Backend, Merchant, Platform};

in_every_topology!(
    concurrent_captures_reach_the_channel_once,
    captures_racing_cancels_make_one_move,
    a_capture_whose_answer_was_lost_is_not_sent_again
);

/// Runs `requests` (path, body) at once and returns the answers in order.
async fn all_at_once(m: &Merchant, requests: Vec<(String, String)>) -> Vec<Answer> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(path, body)| {
            let m = m.clone();
            tokio::spawn(async move { m.send("POST", &path, &body, &[]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn authorized(m: &Merchant, amount: i64) -> String {
    let paid = m.pay(amount, json!({"capture": "manual"})).await;
    assert_eq!(paid.json["status"], "authorized", "{}", paid.text);
    paid.json["id"].as_str().unwrap().to_owned()
}

async fn concurrent_captures_reach_the_channel_once(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    let id = authorized(m, 1_000).await;
    let before = p.channel_calls("capture").await;
    // Six partial captures of different amounts, so the winner is visible in the result.
    let requests = (1..=6)
        .map(|i| {
            let body = json!({"amount": i * 100}).to_string();
            (format!("/v1/payments/{id}/capture"), body)
        })
        .collect();
    let answers = all_at_once(m, requests).await;
    let won: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(won.len(), 1, "{answers:#?}");
    for lost in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(
            (lost.status, lost.error_code()),
            (409, "payment_not_capturable"),
            "{}",
            lost.text
        );
    }
    assert_eq!(
        p.channel_calls("capture").await,
        before + 1,
        "one PSP capture"
    );
    let payment = m.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(payment.json["status"], "succeeded");
    assert_eq!(
        payment.json["amount_captured"], won[0].json["amount_captured"],
        "the winner's amount is what was captured"
    );
}

async fn captures_racing_cancels_make_one_move(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let m = &p.merchant;
    for round in 0..3 {
        let id = authorized(m, 2_000 + round).await;
        let calls = p.channel_calls("capture").await + p.channel_calls("cancel").await;
        let requests = (0..6)
            .map(|i| {
                let op = if i % 2 == 0 { "capture" } else { "cancel" };
                (format!("/v1/payments/{id}/{op}"), String::new())
            })
            .collect();
        let answers = all_at_once(m, requests).await;
        let won: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
        assert_eq!(won.len(), 1, "{answers:#?}");
        assert!(
            answers
                .iter()
                .filter(|a| a.status != 200)
                .all(|a| a.status == 409),
            "{answers:#?}"
        );
        let after = p.channel_calls("capture").await + p.channel_calls("cancel").await;
        assert_eq!(after, calls + 1, "one capture or one cancel, never both");
        let payment = m.get(&format!("/v1/payments/{id}")).await;
        assert_eq!(
            payment.json["status"], won[0].json["status"],
            "the record says what the PSP did"
        );
        assert!(
            matches!(
                payment.json["status"].as_str(),
                Some("succeeded" | "canceled")
            ),
            "{}",
            payment.text
        );
    }
}

/// Polls a payment until it leaves `capturing`; its status then.
async fn settled(m: &Merchant, id: &str) -> String {
    let mut status = String::new();
    for _ in 0..100 {
        let now = m.get(&format!("/v1/payments/{id}")).await;
        status = now.json["status"].as_str().unwrap_or_default().to_owned();
        if status != "capturing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    status
}

/// The PSP captured, but the capture could not be recorded (a database fault): the
/// request fails and the payment holds its claim. A retry with the same key answers
/// where the claim stands instead of capturing again: 202 while it is claimed, and
/// once the janitor has settled it with the PSP's word (after the claim's lease), 409.
/// The key's capture reaches the PSP once, whatever its retries do.
async fn a_capture_whose_answer_was_lost_is_not_sent_again(backend: Backend) {
    let config = "[gateway]\nlease_secs = 2\nrequery_schedule_secs = [1, 1, 1]\nexpiry_sweep_interval_ms = 200\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let m = &p.merchant;
    let (early, late) = (authorized(m, 1_000).await, authorized(m, 1_001).await);
    let path = |id: &str| format!("/v1/payments/{id}/capture");
    let (early_key, late_key) = (
        [("idempotency-key", "capture-early")],
        [("idempotency-key", "capture-late")],
    );
    let before = p.channel_calls("capture").await;

    p.break_updates("payment-gateway", "payments", "NEW.status = 'succeeded'")
        .await;
    for (id, key) in [(&early, &early_key), (&late, &late_key)] {
        let failed = m.send("POST", &path(id), "", key).await;
        assert_eq!(failed.status, 500, "{}", failed.text);
    }
    let retried = m.send("POST", &path(&early), "", &early_key).await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    assert_eq!(retried.json["status"], "capturing");
    let other = m.send("POST", &path(&early), "", &[]).await;
    assert_eq!(
        (other.status, other.error_code()),
        (409, "payment_not_capturable"),
        "a claimed capture cannot be claimed again: {}",
        other.text
    );
    p.mend("payment-gateway", "payments").await;
    assert_eq!(p.channel_calls("capture").await, before + 2);

    // The janitor asks the PSP (the stateless sandbox answers `authorized`) and settles.
    assert_eq!(settled(m, &early).await, "authorized");
    assert_eq!(settled(m, &late).await, "authorized");
    assert!(p.channel_calls("query-payment").await >= 2);
    let late_retry = m.send("POST", &path(&late), "", &late_key).await;
    assert_eq!(
        (late_retry.status, late_retry.error_code()),
        (409, "payment_not_capturable"),
        "the key's capture is over; a new key may try again: {}",
        late_retry.text
    );
    let replayed = m.send("POST", &path(&early), "", &early_key).await;
    assert_eq!((replayed.status, replayed.replayed), (202, true));
    assert_eq!(
        p.channel_calls("capture").await,
        before + 2,
        "nothing captured twice"
    );
}
