//! Catalog hot reload through the file watcher.
mod common;

use common::*;

/// Regression: the watcher used to take its first look at the files when
/// its task first ran, so a change made right after start (before that)
/// was never picked up. The runtime here is single-threaded, so the task
/// can't run between `start` returning and the rewrite below.
#[tokio::test]
async fn a_change_right_after_start_is_picked_up() {
    let h = start_default().await;
    let before = h.running.catalog_version();
    let changed = CATALOG.replace("interval: 30s", "interval: 45s");
    let tmp = h.catalog_path.with_extension("tmp");
    std::fs::write(&tmp, &changed).expect("write");
    std::fs::rename(&tmp, &h.catalog_path).expect("rename");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.running.catalog_version() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the change was never reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let probe = h
        .running
        .catalog()
        .probe("discovery")
        .cloned()
        .expect("probe");
    assert_eq!(probe.interval.as_secs(), 45);
}
