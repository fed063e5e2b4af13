//! What the binaries serve at `/metrics` is what Prometheus' own linter
//! accepts, and carries what Prometheus users look for first.
//!
//! A real coordinator and agent (the fleet fixtures) run a catalog that
//! makes most metric families appear: results ingested, an SLO whose page
//! alert fires and is delivered to a webhook, a gate decision, `tls` and
//! HTTPS probes against real TLS servers (rcgen certificates). Both
//! `/metrics` pages then go through `promtool check metrics` (the Debian
//! `prometheus` package's; `AUTHPULSE_TEST_PROMTOOL` overrides), which must
//! report nothing: no gauge named `_total`, no family without HELP, no
//! counter without `_total`.
//!
//! Besides the linter: `authpulse_build_info` on both, and
//! `authpulse_agent_certificate_expiry_seconds{probe}` equal to the
//! `notAfter` of the certificate each server presented: for the `tls` kind
//! even when that certificate has expired (the kind reports it), and absent
//! for an HTTPS probe whose handshake the expired certificate failed.
use std::collections::BTreeSet;
use std::time::Duration;

use authpulse_tests::capture::CaptureServer;
use authpulse_tests::deploy_check::promtool;
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, metric};
use authpulse_tests::tls::TlsFixture;
use authpulse_tests::{TempDir, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// The value of the one series of `name` whose labels include every
/// `key="value"` of `labels`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Metric family names (`# TYPE` lines) in Prometheus text.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

/// `promtool check metrics` on `text` (its stdin): (success, what it printed).
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

async fn get(client: &reqwest::Client, url: &str) -> Option<String> {
    client.get(url).send().await.ok()?.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_metrics_pages_pass_promtool_with_build_info_and_certificate_expiry() {
    let dir = TempDir::new("ap-promtool-metrics");
    let client = reqwest::Client::new();

    let plain = FaultServer::start(|line: &str| {
        if line.contains("/fail") {
            Reply::status(503, "down")
        } else {
            Reply::status(200, "ok")
        }
    })
    .await;
    // Three TLS servers, each with its own CA and expiry: one for the `tls`
    // kind, one for an HTTPS `http` probe, one whose certificate expired.
    let tls_ok = TlsFixture::with_leaf(&["localhost"], -1, 40);
    let https_ok = TlsFixture::with_leaf(&["localhost"], -1, 20);
    let expired = TlsFixture::with_leaf(&["localhost"], -30, -2);
    let ok = |_: &str| Reply::status(200, "ok");
    let tls_server = FaultServer::start_tls(tls_ok.server_config.clone(), ok).await;
    let https_server = FaultServer::start_tls(https_ok.server_config.clone(), ok).await;
    let expired_server = FaultServer::start_tls(expired.server_config.clone(), ok).await;
    let ca = |name: &str, f: &TlsFixture| {
        let path = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&path, &f.ca_pem).expect("ca");
        path.display().to_string()
    };
    let (tls_ca, https_ca, expired_ca) = (
        ca("tls", &tls_ok),
        ca("https", &https_ok),
        ca("expired", &expired),
    );
    let catalog = format!(
        "probes:\n\
         \x20 - {{ id: web-ok, kind: http, url: \"{ok_url}\", interval: 1s, timeout: 800ms }}\n\
         \x20 - {{ id: web-down, kind: http, url: \"{down_url}\", interval: 1s, timeout: 800ms }}\n\
         \x20 - {{ id: https-page, kind: http, url: \"{https_url}\", tls: {{ ca_file: \"{https_ca}\" }}, interval: 1s, timeout: 800ms }}\n\
         \x20 - {{ id: tls-cert, kind: tls, address: \"localhost:{tls_port}\", ca_file: \"{tls_ca}\", min_days_remaining: 1, interval: 1s, timeout: 800ms }}\n\
         \x20 - {{ id: tls-expired, kind: tls, address: \"localhost:{expired_port}\", ca_file: \"{expired_ca}\", interval: 1s, timeout: 800ms }}\n\
         \x20 - {{ id: https-expired, kind: http, url: \"{expired_url}\", tls: {{ ca_file: \"{expired_ca}\" }}, interval: 1s, timeout: 800ms }}\n\
         slos:\n\
         \x20 - {{ id: web, probes: [web-ok, web-down], objective: 99, window: 1h }}\n\
         gates:\n\
         \x20 - {{ id: web-gate, slos: [web], block_when: [page_alert] }}\n",
        ok_url = plain.url("/ok"),
        down_url = plain.url("/fail"),
        https_url = https_server.https_url("/ok"),
        tls_port = tls_server.addr.port(),
        expired_port = expired_server.addr.port(),
        expired_url = expired_server.https_url("/ok"),
    );
    let webhook = CaptureServer::start(|_| 200).await;
    let coordinator = CoordinatorFixture::start_with(
        &dir,
        &catalog,
        &format!(
            "alerting:\n  webhook: {{ url: \"{}\" }}\n",
            webhook.url("/hook")
        ),
    )
    .await;
    let agent = AgentFixture::start(&dir, "lint-1", &coordinator.grpc_url(), "").await;
    let coordinator_metrics = format!("{}/metrics", coordinator.api);

    // Drive: results stored, the page alert fired and delivered, a gate
    // decision (it fails: the SLO pages).
    wait_for(WAIT, "the page alert delivered to the webhook", || async {
        let text = get(&client, &coordinator_metrics).await?;
        let delivered = metric(&text, "authpulse_coordinator_notifications_total") >= 1.0;
        let firing = series(
            &text,
            "authpulse_slo_alert_firing",
            &[("slo", "web"), ("severity", "page")],
        ) == Some(1.0);
        (delivered && firing).then_some(())
    })
    .await;
    wait_for(WAIT, "a gate decision", || async {
        let r = client
            .get(format!("{}/api/v1/gates/web-gate", coordinator.api))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    let agent_text = wait_for(WAIT, "certificate expiry for three probes", || async {
        let text = agent.metrics(&client).await?;
        let seen = ["tls-cert", "https-page", "tls-expired"].iter().all(|p| {
            series(
                &text,
                "authpulse_agent_certificate_expiry_seconds",
                &[("probe", p)],
            )
            .is_some()
        });
        // The expired HTTPS probe has run (and failed) by now too.
        let failed = series(
            &text,
            "authpulse_agent_probe_failures_total",
            &[("probe", "https-expired"), ("class", "tls")],
        )
        .is_some();
        (seen && failed).then_some(text)
    })
    .await;
    let coordinator_text = wait_for(WAIT, "the gate decision counted", || async {
        let text = get(&client, &coordinator_metrics).await?;
        (metric(&text, "authpulse_coordinator_gate_decisions_total") >= 1.0).then_some(text)
    })
    .await;

    // The linter finds nothing on either page.
    for (what, text) in [("coordinator", &coordinator_text), ("agent", &agent_text)] {
        let (ok, printed) = promtool_check(text);
        assert!(
            ok && printed.trim().is_empty(),
            "promtool check metrics on the {what}'s /metrics:\n{printed}"
        );
    }
    // … and the pages were not trivially small: the families this run drives.
    let coordinator_families = families(&coordinator_text);
    for f in [
        "authpulse_build_info",
        "authpulse_probe_results_total",
        "authpulse_probe_results_good_total",
        "authpulse_coordinator_results_ingested_total",
        "authpulse_coordinator_ingest_commit_seconds",
        "authpulse_coordinator_agent_dropped",
        "authpulse_coordinator_agent_up",
        "authpulse_coordinator_catalog_version",
        "authpulse_coordinator_gate_decisions_total",
        "authpulse_coordinator_notifications_total",
        "authpulse_slo_burn_rate",
        "authpulse_slo_window_seconds",
        "authpulse_slo_alert_firing",
    ] {
        assert!(
            coordinator_families.contains(f),
            "coordinator /metrics lacks {f}"
        );
    }
    assert!(
        !coordinator_families.contains("authpulse_coordinator_agent_dropped_total"),
        "the old gauge name is gone"
    );
    let agent_families = families(&agent_text);
    for f in [
        "authpulse_build_info",
        "authpulse_agent_probe_runs_total",
        "authpulse_agent_probe_duration_seconds",
        "authpulse_agent_results_acked_total",
        "authpulse_agent_spool_bytes",
        "authpulse_agent_certificate_expiry_seconds",
    ] {
        assert!(agent_families.contains(f), "agent /metrics lacks {f}");
    }
    println!(
        "promtool check metrics: clean on {} coordinator and {} agent families",
        coordinator_families.len(),
        agent_families.len()
    );

    // Build info: the workspace version, on both.
    let version = env!("CARGO_PKG_VERSION");
    for (what, text) in [("coordinator", &coordinator_text), ("agent", &agent_text)] {
        assert_eq!(
            series(text, "authpulse_build_info", &[("version", version)]),
            Some(1.0),
            "{what}: authpulse_build_info{{version=\"{version}\"}} 1"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("authpulse_build_info{") && l.contains("revision=\"")),
            "{what}: build info without a revision label"
        );
    }

    // Certificate expiry: each probe's gauge is its server's notAfter.
    let expiry = |probe: &str| {
        series(
            &agent_text,
            "authpulse_agent_certificate_expiry_seconds",
            &[("probe", probe)],
        )
    };
    assert_eq!(expiry("tls-cert"), Some(tls_ok.leaf_not_after as f64));
    assert_eq!(expiry("https-page"), Some(https_ok.leaf_not_after as f64));
    // The tls kind completes the handshake to report an expired
    // certificate; the time is in the past.
    assert_eq!(expiry("tls-expired"), Some(expired.leaf_not_after as f64));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as f64;
    assert!(expiry("tls-expired").is_some_and(|t| t < now));
    // An HTTPS probe's handshake fails on it: no certificate was accepted.
    assert_eq!(expiry("https-expired"), None);
    assert_ne!(tls_ok.leaf_not_after, https_ok.leaf_not_after);
    drop((agent, coordinator));
}
