//! Shadow runs: a channel candidate beside the live version, answered from the live
//! call's recorded HTTP, so the PSP sees each request once; the differences in the
//! requests it builds or the outcomes it maps are counted and quoted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use payloom_host::CallContext;
use payloom_host::shadow::ShadowSummary;
use payloom_reference_plugins::testing::FETCHER;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::run;
use crate::support::*;

/// A PSP stand-in that answers `hello` and counts the requests it gets.
async fn psp() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response =
                    "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

async fn compared(host: &TestHost, calls: u64) -> ShadowSummary {
    for _ in 0..200 {
        let summary = host.registry.shadow_summaries().remove(0);
        if summary.compared >= calls {
            return summary;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the shadow never ran {calls} calls");
}

async fn shadowed(candidate: (&str, &str)) -> (ShadowSummary, usize) {
    let host = TestHost::builder()
        .config(|c| c.http_allow_private = true)
        .build();
    host.install(&FETCHER).await;
    let wasm = FETCHER.bytes_replaced(candidate.0, candidate.1);
    let runtime = host.registry.runtime();
    let plugin = runtime.load(&wasm, FETCHER.manifest, None).await.unwrap();
    host.registry.set_shadow(plugin).unwrap();
    let (port, seen) = psp().await;
    let url = format!("http://127.0.0.1:{port}/pay");
    for _ in 0..3 {
        let live = run(
            &host,
            CallContext::default(),
            &[("op", "fetch"), ("url", &url)],
        )
        .await;
        assert_eq!(live, "status=200 body=hello", "the live version answers");
    }
    let summary = compared(&host, 3).await;
    (summary, seen.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_candidate_that_builds_a_request_differently_shows_exactly_that() {
    let (summary, psp_saw) = shadowed(("fetcher-build-A", "fetcher-build-B")).await;
    assert_eq!(
        psp_saw, 3,
        "the PSP sees each live request once, never the shadow's"
    );
    assert_eq!((summary.compared, summary.differing), (3, 3));
    let expected = "create-payment: request 1: headers [x-fetcher-build: fetcher-build-A] \
                    became [x-fetcher-build: fetcher-build-B]";
    assert_eq!(summary.differences, vec![expected; 3]);
}

#[tokio::test]
async fn a_candidate_that_maps_the_outcome_differently_shows_only_that() {
    let (summary, psp_saw) = shadowed(("status=", "STATUS=")).await;
    assert_eq!(psp_saw, 3);
    assert_eq!((summary.compared, summary.differing), (3, 3));
    let only = &summary.differences[0];
    assert!(only.starts_with("create-payment: outcome "), "{only}");
    assert!(
        only.contains("status=200 body=hello") && only.contains("STATUS=200 body=hello"),
        "{only}"
    );
    assert_eq!(summary.differences.len(), 3, "{:?}", summary.differences);
}

#[tokio::test]
async fn the_same_build_in_shadow_agrees_and_only_channels_run_in_shadow() {
    let (summary, _) = shadowed(("fetcher-build-A", "fetcher-build-A")).await;
    assert_eq!((summary.compared, summary.differing), (3, 0));
    let host = TestHost::with(&[payloom_reference_plugins::AMOUNT_LIMIT]).await;
    let rule = host.registry.get("amount-limit").unwrap();
    assert!(host.registry.set_shadow(rule).is_err());
}
