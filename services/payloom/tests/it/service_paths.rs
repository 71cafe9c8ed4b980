//! Ids travel between services as single path segments: in the split topology, an id
//! that spells `../../<merchant>/…` reaches nothing of another merchant's.

use serde_json::json;

use crate::multiprocess::{bootstrap_merchant, notification_apart};
use crate::support::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traversing_endpoint_id_cannot_delete_another_merchants_endpoint() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_processes, urls) = notification_apart(
        dir.path(),
        &db.url,
        "[notification]\nallow_loopback = true\n",
    );
    let a = bootstrap_merchant(&urls).await;
    let b = bootstrap_merchant(&urls).await;
    let target = json!({"url": "http://127.0.0.1:9/hooks"});
    let created = b.post("/v1/webhook_endpoints", target.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let b_endpoint = created.json["id"].as_str().unwrap().to_owned();

    let traversal = format!(
        "/v1/webhook_endpoints/..%2F..%2F{}%2Fwebhook_endpoints%2F{b_endpoint}",
        b.key.merchant_id
    );
    let attempt = a.send("DELETE", &traversal, "", &[]).await;
    assert_eq!(
        (attempt.status, attempt.error_code()),
        (404, "resource_missing"),
        "{}",
        attempt.text
    );
    let listed = b.get("/v1/webhook_endpoints").await;
    let ids: Vec<&str> = listed.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b_endpoint.as_str()], "{}", listed.text);

    // Plain ids still reach their resources across the processes.
    let own = a.post("/v1/webhook_endpoints", target).await;
    let own_id = own.json["id"].as_str().unwrap();
    let deleted = a
        .send(
            "DELETE",
            &format!("/v1/webhook_endpoints/{own_id}"),
            "",
            &[],
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let foreign = a
        .send(
            "DELETE",
            &format!("/v1/webhook_endpoints/{b_endpoint}"),
            "",
            &[],
        )
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.text);
}
