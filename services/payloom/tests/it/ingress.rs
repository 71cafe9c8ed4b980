//! The unauthenticated PSP notification ingress cannot take a channel down: oversized
//! bodies are refused with 413 before any component runs, whatever reaches a component
//! cannot open the breaker payments go through, and one source is rate-limited.

use serde_json::json;

use crate::in_every_topology;
use crate::support::{Answer, Backend, Platform, answer};

in_every_topology!(
    a_notification_flood_leaves_payments_working,
    one_source_is_rate_limited
);

/// A merchant id of the right shape that nobody has.
const NOBODY: &str = "mch_00000000000000000000000000";

async fn post_notification(p: &Platform, body: Vec<u8>) -> Answer {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/notify/sandbox?merchant={NOBODY}", p.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn a_notification_flood_leaves_payments_working(backend: Backend) {
    let Some(p) = Platform::start(backend).await else {
        return;
    };
    let before = p.channel_calls("handle-notification").await;
    // Larger than the ingress takes: refused unread, no component involved.
    let huge = post_notification(&p, vec![b'a'; 100 * 1024]).await;
    assert_eq!(
        (huge.status, huge.error_code()),
        (413, "body_too_large"),
        "{}",
        huge.text
    );
    assert_eq!(p.channel_calls("handle-notification").await, before);

    // What the audit sent: thirty unsigned ~46 KB posts. They reach the component, which
    // refuses them as unverified; none is a failure of the channel.
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let p_base = p.base.clone();
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(format!("{p_base}/v1/notify/sandbox?merchant={NOBODY}"))
                    .body(vec![b'a'; 46 * 1024])
                    .send()
                    .await
                    .unwrap();
                answer(response).await
            })
        })
        .collect();
    for task in tasks {
        let a = task.await.unwrap();
        assert!(
            matches!(a.status, 400 | 401 | 429),
            "a refusal, never a channel failure: {} {}",
            a.status,
            a.text
        );
    }
    let paid = p.merchant.pay(1_000, json!({})).await;
    assert_eq!(
        (paid.status, paid.json["status"].as_str()),
        (201, Some("succeeded")),
        "payments are untouched: {}",
        paid.text
    );
    if p.backend == Backend::Split {
        // Only `dev` lists its plugins' breakers; the payment above went through the
        // channel's own breaker.
        return;
    }
    let plugins = reqwest::get(format!("{}/v1/plugins", p.base))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let sandbox = plugins["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["id"] == "sandbox")
        .unwrap();
    assert_eq!(sandbox["breaker_open"], false, "{sandbox}");
}

async fn one_source_is_rate_limited(backend: Backend) {
    let config = "[gateway]\nnotify_per_source_per_sec = 5\n";
    let Some(p) = Platform::start_with(backend, config).await else {
        return;
    };
    let before = p.channel_calls("handle-notification").await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(post_notification(&p, b"type=payment.succeeded".to_vec()).await);
    }
    let throttled: Vec<&Answer> = statuses.iter().filter(|a| a.status == 429).collect();
    assert!(
        !throttled.is_empty(),
        "40 posts, 5 a second allowed: {:?}",
        statuses.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(throttled[0].error_code(), "notifications_throttled");
    let ran = p.channel_calls("handle-notification").await - before;
    assert_eq!(
        ran,
        40 - throttled.len() as u64,
        "throttled posts never reach the component"
    );
}
