//! The watched plugin directory: installs, hot swaps, and refuses bad files once.

use std::time::Duration;

use payloom_host::watch::{WatchEvent, Watcher};
use payloom_reference_plugins::testing::HOSTILE;
use tokio::sync::broadcast::Receiver;

use crate::support::*;

async fn next_event(events: &mut Receiver<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("a watch event")
        .unwrap()
}

/// A watched folder holding the hostile test plugin (9.1.0), and its events.
async fn watching_hostile() -> (tempfile::TempDir, TestHost, Watcher, Receiver<WatchEvent>) {
    let dir = tempfile::tempdir().unwrap();
    HOSTILE.write_to(dir.path()).unwrap();
    let host = TestHost::builder().build();
    let watcher = Watcher::start(host.registry.clone(), dir.path())
        .await
        .unwrap();
    let events = watcher.subscribe();
    (dir, host, watcher, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_directory_swaps_good_files_and_reports_a_bad_one_once() {
    let (dir, host, _watcher, mut events) = watching_hostile().await;
    assert_eq!(
        host.registry.get("hostile").unwrap().version(),
        "9.1.0",
        "initial scan"
    );

    // A new version dropped in goes live.
    let (wasm, manifest) = patched(&HOSTILE, "9.1.0", "9.2.0");
    std::fs::write(dir.path().join("hostile.toml"), &manifest).unwrap();
    std::fs::write(dir.path().join("hostile.wasm"), &wasm).unwrap();
    match next_event(&mut events).await {
        WatchEvent::Installed(installed) => assert_eq!(installed.version, "9.2.0"),
        other => panic!("{other:?}"),
    }

    // A broken file is rejected, reported, and the good version keeps serving.
    std::fs::write(
        dir.path().join("hostile.wasm"),
        b"\0asm\x0d\0\x01\0 truncated",
    )
    .unwrap();
    match next_event(&mut events).await {
        WatchEvent::Rejected { path, error } => {
            assert!(path.ends_with("hostile.wasm"));
            assert!(!error.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(host.registry.get("hostile").unwrap().version(), "9.2.0");
    let verdict = host.verdict("hostile", risk_ctx(100), &[]).await;
    assert_eq!(verdict.reasons[0], "version=9.2.0");

    // More events on the same bad content are not reported again.
    for _ in 0..3 {
        std::fs::write(
            dir.path().join("hostile.wasm"),
            b"\0asm\x0d\0\x01\0 truncated",
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        events.try_recv().is_err(),
        "the bad file was reported more than once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_caught_between_truncate_and_write_is_not_reported() {
    let (dir, host, _watcher, mut events) = watching_hostile().await;

    // What a reader sees of a rewrite between its truncate and its write.
    std::fs::write(dir.path().join("hostile.wasm"), b"").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        events.try_recv().is_err(),
        "an empty file was tried as a plugin"
    );
    assert_eq!(host.registry.get("hostile").unwrap().version(), "9.1.0");

    let (wasm, manifest) = patched(&HOSTILE, "9.1.0", "9.2.0");
    std::fs::write(dir.path().join("hostile.toml"), &manifest).unwrap();
    std::fs::write(dir.path().join("hostile.wasm"), &wasm).unwrap();
    match next_event(&mut events).await {
        WatchEvent::Installed(installed) => assert_eq!(installed.version, "9.2.0"),
        other => panic!("{other:?}"),
    }
}
