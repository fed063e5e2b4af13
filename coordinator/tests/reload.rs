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

/// Waits until the served catalog satisfies `done`.
async fn until(
    running: &authpulse_coordinator::Running,
    what: &str,
    done: impl Fn(&authpulse_proto::catalog::Catalog) -> bool,
) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done(&running.catalog()) {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A catalog directory (as a ConfigMap mounted without subPath): a team's
/// file that appears is served without a restart, a broken one is refused
/// while the running catalog stays, and one that goes away is dropped.
#[tokio::test]
async fn a_catalog_directory_picks_up_new_changed_and_removed_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let teams = dir.path().join("catalog.d");
    std::fs::create_dir_all(&teams).expect("dir");
    let probe = |id: &str| {
        format!("probes:\n  - id: {id}\n    kind: http\n    url: https://{id}.example\n")
    };
    std::fs::write(teams.join("a.yaml"), probe("a")).expect("write");
    let config = authpulse_coordinator::config::CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        catalog: vec![teams.clone()],
        insecure: true,
        ..Default::default()
    };
    let running = authpulse_coordinator::start(config).await.expect("starts");
    assert!(running.catalog().probe("a").is_some());

    std::fs::write(teams.join("b.yaml"), probe("b")).expect("write");
    until(&running, "b served", |c| c.probe("b").is_some()).await;

    // A broken file is refused; a and b keep being served.
    let version = running.catalog_version();
    std::fs::write(teams.join("c.yaml"), "probes:\n  - id: c\n    kind: htp\n").expect("write");
    let errs = running.reload_catalog().await.expect_err("refused");
    assert!(
        errs.to_string()
            .contains("c.yaml:3: `c`: probes[0].kind: unknown probe kind `htp`"),
        "{errs}"
    );
    assert_eq!(
        running.catalog_version(),
        version,
        "a broken file was applied"
    );
    assert!(running.catalog().probe("b").is_some());
    std::fs::remove_file(teams.join("c.yaml")).expect("rm");
    std::fs::remove_file(teams.join("a.yaml")).expect("rm");
    until(&running, "a dropped", |c| {
        c.probe("a").is_none() && c.probe("b").is_some()
    })
    .await;
}
