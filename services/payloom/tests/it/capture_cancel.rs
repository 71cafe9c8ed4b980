//! Capture and cancel are claimed before the channel is called: concurrent requests reach
//! the PSP once between them (counted by the channel-adapter's per-operation counter), the
//! losers answer 409, and a claim whose answer was lost is never sent to the PSP again.

use serde_json::json;

use crate::on_both_databases;
use crate::support::{Answer, Backend, Merchant, Platform};

on_both_databases!(
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

/// The PSP captured, but the capture could not be recorded (a database fault): the
/// request fails, the payment holds its claim, and the retry with the same key answers
/// where the claim stands instead of capturing again. Once the claim's lease has
/// passed the janitor settles it with the PSP's word.
async fn a_capture_whose_answer_was_lost_is_not_sent_again(backend: Backend) {
    let config = "[gateway]\nlease_secs = 2\nrequery_schedule_secs = [1, 1, 1]\nexpiry_sweep_interval_ms = 200\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let m = &p.merchant;
    let id = authorized(m, 1_000).await;
    let path = format!("/v1/payments/{id}/capture");
    let key = [("idempotency-key", "capture-once")];
    let before = p.channel_calls("capture").await;

    p.break_updates("payment-gateway", "payments", "NEW.status = 'succeeded'")
        .await;
    let failed = m.send("POST", &path, "", &key).await;
    assert_eq!(failed.status, 500, "{}", failed.text);
    let retried = m.send("POST", &path, "", &key).await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    assert_eq!(retried.json["status"], "capturing");
    let other = m.send("POST", &path, "", &[]).await;
    assert_eq!(
        (other.status, other.error_code()),
        (409, "payment_not_capturable"),
        "a claimed capture cannot be claimed again: {}",
        other.text
    );
    p.mend("payment-gateway", "payments").await;
    assert_eq!(p.channel_calls("capture").await, before + 1);

    // The janitor asks the PSP (the stateless sandbox answers `authorized`) and settles.
    let mut settled = String::new();
    for _ in 0..100 {
        let now = m.get(&format!("/v1/payments/{id}")).await;
        settled = now.json["status"].as_str().unwrap_or_default().to_owned();
        if settled != "capturing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(settled, "authorized");
    assert!(p.channel_calls("query-payment").await >= 1);
    assert_eq!(
        p.channel_calls("capture").await,
        before + 1,
        "nothing captured twice"
    );
}
