//! The `scim` kind against a real SCIM 2.0 server (scim2-server, see
//! tests/src/scim_peer.rs): the whole lifecycle, orphan cleanup that
//! touches only old users with the probe's prefix, a refused token, and
//! keeping the deactivated user for later journey steps.
use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::scim_peer::ScimPeer;

const TOKEN: &str = "scim-test-token-1234";

/// Runs the one probe in `yaml` with the secret `scim_token` = `token`.
async fn run(yaml: &str, token: &str) -> ProbeOutcome {
    authpulse_tests::crypto();
    let dir = TempDir::new("scim-secrets");
    std::fs::write(dir.path().join("scim_token"), token).expect("secret");
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    let store = SecretStore::new(Some(dir.path().to_path_buf()));
    let o = probes::run(&cat.probes[0], &net, &store, &Default::default()).await;
    // Shown for failing tests (and with --nocapture): what an SRE would read.
    eprintln!("outcome: {}", o.detail);
    o
}

fn scim(peer: &ScimPeer, extra: &str) -> String {
    format!(
        "  - id: sc\n    kind: scim\n    timeout: 10s\n    base_url: {}\n    token: {{ secret: scim_token }}\n{extra}",
        peer.base_url
    )
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

fn names(o: &ProbeOutcome) -> Vec<&str> {
    o.steps.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn full_lifecycle_leaves_nothing_behind() {
    let peer = ScimPeer::start(TOKEN).await;
    let o = run(&scim(&peer, ""), TOKEN).await;
    assert!(o.success(), "{o:?}\n{}", peer.log());
    assert_eq!(
        names(&o),
        [
            "cleanup",
            "create",
            "read",
            "patch",
            "deactivate",
            "verify",
            "delete",
            "gone"
        ]
    );
    assert!(
        o.steps[1].detail.starts_with("created authpulse-probe-"),
        "{}",
        o.steps[1].detail
    );
    // scim2-server answers PATCH with 204 and no body.
    assert!(
        o.steps[3].detail.starts_with("204"),
        "{}",
        o.steps[3].detail
    );
    assert_eq!(o.steps[5].detail, "title patched, inactive");
    assert!(o.steps.iter().all(|s| s.timings.ttfb.is_some()), "{o:?}");
    assert!(
        peer.user_names().await.is_empty(),
        "the probe left users behind"
    );
}

#[tokio::test]
async fn outputs_name_the_user_for_later_steps() {
    let peer = ScimPeer::start(TOKEN).await;
    // After the lifecycle, the published user id must answer 404.
    let yaml = format!(
        "  - id: j\n    kind: journey\n    timeout: 10s\n    steps:\n\
         \x20     - name: provision\n        kind: scim\n        base_url: {base}\n        token: {{ secret: scim_token }}\n\
         \x20     - name: check\n        kind: http\n        url: \"{base}/Users/{{{{ steps.provision.user_id }}}}\"\n\
         \x20       headers:\n          authorization: \"Bearer {TOKEN}\"\n\
         \x20       expect:\n          status: [404]\n          body_contains: [\"not found\"]\n",
        base = peer.base_url
    );
    let o = run(&yaml, TOKEN).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(o.steps.len(), 2);
}

#[tokio::test]
async fn orphans_with_the_prefix_are_deleted_and_nothing_else() {
    let peer = ScimPeer::start(TOKEN).await;
    peer.create_user("authpulse-probe-left1").await;
    peer.create_user("authpulse-probe-left2").await;
    peer.create_user("alice").await;
    peer.create_user("authpulse-probeX").await;
    peer.create_user("team-b-probe-1").await;

    // scim2-server stamps meta.created itself, so "old" means max age 0.
    // The process-wide recorder: only this test of this binary installs it.
    let metrics = authpulse_agent::telemetry::install_recorder().expect("recorder");
    let o = run(
        &scim(
            &peer,
            "    orphan_max_age: 0s\n    user_name_prefix: authpulse-probe-\n",
        )
        .replace("id: sc\n", "id: orphans\n"),
        TOKEN,
    )
    .await;
    assert!(o.success(), "{o:?}\n{}", peer.log());
    assert_eq!(
        o.steps[0].detail, "2 user(s) named authpulse-probe-*, deleted 2 older than 0s",
        "{o:?}"
    );
    let text = metrics.render();
    assert!(
        text.contains("authpulse_agent_scim_orphans_deleted_total{probe=\"orphans\"} 2"),
        "{text}"
    );
    assert_eq!(
        peer.user_names().await,
        ["alice", "authpulse-probeX", "team-b-probe-1"]
    );

    // Fresh users with the prefix survive the default max age (1h).
    peer.create_user("authpulse-probe-fresh").await;
    let o = run(&scim(&peer, ""), TOKEN).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(
        o.steps[0].detail, "1 user(s) named authpulse-probe-*, deleted 0 older than 1h",
        "{o:?}"
    );
    assert!(
        peer.user_names()
            .await
            .contains(&"authpulse-probe-fresh".to_string())
    );

    // Another probe's prefix is out of reach even at max age 0.
    let o = run(
        &scim(
            &peer,
            "    orphan_max_age: 0s\n    user_name_prefix: team-a-probe-\n",
        ),
        TOKEN,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.steps[0]
            .detail
            .starts_with("0 user(s) named team-a-probe-*"),
        "{}",
        o.steps[0].detail
    );
    assert_eq!(
        peer.user_names().await,
        [
            "alice",
            "authpulse-probe-fresh",
            "authpulse-probeX",
            "team-b-probe-1"
        ]
    );
}

#[tokio::test]
async fn wrong_token_is_auth_rejected() {
    let peer = ScimPeer::start(TOKEN).await;
    let wrong = "wrong-token-5678";
    let o = run(&scim(&peer, ""), wrong).await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert_eq!(names(&o)[0], "cleanup");
    assert!(o.detail.contains("401 Unauthorized"), "{}", o.detail);
    assert!(!format!("{o:?}").contains(wrong));
    // Nothing could be created either.
    assert!(peer.user_names().await.is_empty());
}

#[tokio::test]
async fn a_failed_middle_step_still_deletes_the_user() {
    // A provider that creates, then fails reads: the user must not be left behind.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let fake = FaultServer::start(move |line| {
        log.lock().expect("lock").push(line.to_string());
        let created = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"u1","userName":"x"}"#;
        match line.split_whitespace().take(2).collect::<Vec<_>>()[..] {
            ["GET", p] if p.starts_with("/v2/Users?") => {
                Reply::json(r#"{"totalResults":0,"Resources":[]}"#)
            }
            ["POST", "/v2/Users"] => match Reply::json(created) {
                Reply::Respond { headers, body, .. } => Reply::Respond {
                    status: 201,
                    headers,
                    body,
                    delay: std::time::Duration::ZERO,
                },
                other => other,
            },
            ["DELETE", "/v2/Users/u1"] => Reply::status(204, ""),
            _ => Reply::status(500, "boom"),
        }
    })
    .await;
    let o = run(
        &format!(
            "  - id: sc\n    kind: scim\n    base_url: {}\n    token: {{ secret: scim_token }}\n",
            fake.url("/v2")
        ),
        TOKEN,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus), "{o:?}");
    assert!(o.detail.starts_with("step `read`"), "{}", o.detail);
    assert!(o.detail.contains("500"), "{}", o.detail);
    assert_eq!(names(&o), ["cleanup", "create", "read", "delete"]);
    assert!(o.steps[3].failure.is_none(), "{o:?}");
    assert!(
        seen.lock()
            .expect("lock")
            .iter()
            .any(|l| l.starts_with("DELETE /v2/Users/u1 ")),
        "no DELETE sent"
    );
}

#[tokio::test]
async fn kept_user_stays_deactivated_until_the_next_cleanup() {
    let peer = ScimPeer::start(TOKEN).await;
    let o = run(&scim(&peer, "    delete: false\n"), TOKEN).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(
        names(&o),
        ["cleanup", "create", "read", "patch", "deactivate", "verify"]
    );
    let left = peer.user_names().await;
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with("authpulse-probe-"));

    let o = run(&scim(&peer, "    orphan_max_age: 0s\n"), TOKEN).await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.steps[0].detail.contains("deleted 1"),
        "{}",
        o.steps[0].detail
    );
    assert!(peer.user_names().await.is_empty());
}
