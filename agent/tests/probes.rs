//! Probe kinds against real peers: oidc-provider for discovery, the fault
//! server for what a real peer won't do on demand. Each test asserts on the
//! outcome a user would see: class, timings, detail.
use std::time::Duration;

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::tls::TlsFixture;

async fn run_yaml(yaml: &str) -> ProbeOutcome {
    run_with(yaml, SecretStore::new(None)).await
}

async fn run_with(yaml: &str, secrets: SecretStore) -> ProbeOutcome {
    authpulse_tests::crypto();
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    probes::run(&cat.probes[0], &net, &secrets, &Default::default()).await
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

#[tokio::test]
async fn discovery_against_oidc_provider() {
    let peer = OidcPeer::shared().await;
    let o = run_yaml(&format!(
        "  - id: d\n    kind: oidc_discovery\n    issuer: {}\n    timeout: 5s\n",
        peer.issuer
    ))
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(o.steps.len(), 2);
    assert_eq!(o.steps[0].name, "discovery");
    assert_eq!(o.steps[1].name, "jwks");
    // The peer makes one RS256 and one ES256 signing key.
    assert!(
        o.steps[1].detail.starts_with("2 signing key(s)"),
        "{}",
        o.steps[1].detail
    );
    // 127.0.0.1: no DNS; plain HTTP: no TLS; one connection reused for both steps.
    assert_eq!(o.timings.dns, None);
    assert_eq!(o.timings.tls, None);
    assert!(o.steps[0].timings.connect.is_some());
    assert_eq!(
        o.steps[1].timings.connect, None,
        "second step reuses the run's connection"
    );
    let ttfb = o.timings.ttfb.expect("ttfb");
    assert!(ttfb > Duration::ZERO && ttfb <= o.timings.total);
}

#[tokio::test]
async fn discovery_issuer_mismatch_is_protocol() {
    let peer = OidcPeer::shared().await;
    let o = run_yaml(&format!(
        "  - id: d\n    kind: oidc_discovery\n    issuer: {0}/tenant-a\n    discovery_url: {0}/.well-known/openid-configuration\n",
        peer.issuer
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Protocol));
    assert!(o.detail.contains("issuer mismatch"), "{}", o.detail);
}

#[tokio::test]
async fn discovery_of_a_stopped_peer_is_connect() {
    let mut peer = OidcPeer::start().await;
    let issuer = peer.issuer.clone();
    peer.stop().await;
    let o = run_yaml(&format!(
        "  - id: d\n    kind: oidc_discovery\n    issuer: {issuer}\n"
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Connect), "{o:?}");
    assert!(o.timings.connect.is_some());
}

#[tokio::test]
async fn jwks_without_signing_keys_fails() {
    // A discovery doc needs absolute URLs with the server's port: serve it from a second server.
    let jwks = FaultServer::start(|_| {
        Reply::json(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","use":"sig"}]}"#)
    })
    .await;
    let issuer = "http://issuer.test".to_string();
    let doc = format!(
        r#"{{"issuer":"{issuer}","authorization_endpoint":"{0}/auth","token_endpoint":"{0}/token","jwks_uri":"{0}/jwks"}}"#,
        jwks.url("")
    );
    let disco = FaultServer::start(move |_| Reply::json(&doc)).await;
    let o = run_yaml(&format!(
        "  - id: d\n    kind: oidc_discovery\n    issuer: {issuer}\n    discovery_url: {}\n",
        disco.url("/.well-known/openid-configuration")
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert!(
        o.detail.contains("0 usable signing key(s), need 1"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn http_status_mismatch_is_http_status() {
    let s = FaultServer::start(|_| Reply::status(503, "upstream down")).await;
    let o = run_yaml(&format!(
        "  - id: h\n    kind: http\n    url: {}\n",
        s.url("/health")
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus));
    assert!(
        o.detail.contains("503") && o.detail.contains("upstream down"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn http_slow_answer_times_out_in_the_right_phase() {
    let s =
        FaultServer::start(|_| Reply::status(200, "late").delayed(Duration::from_secs(5))).await;
    let o = run_yaml(&format!(
        "  - id: h\n    kind: http\n    url: {}\n    timeout: 300ms\n    interval: 1s\n",
        s.url("/")
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout));
    assert!(
        o.detail.contains("waiting for the first byte"),
        "{}",
        o.detail
    );
    assert!(
        o.timings.total >= Duration::from_millis(300) && o.timings.total < Duration::from_secs(2)
    );
    assert!(
        o.timings.connect.is_some(),
        "connect phase completed before the timeout"
    );
}

#[tokio::test]
async fn http_reset_is_connect() {
    let s = FaultServer::start(|_| Reply::Reset).await;
    let o = run_yaml(&format!(
        "  - id: h\n    kind: http\n    url: {}\n",
        s.url("/")
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Connect), "{o:?}");
}

#[tokio::test]
async fn http_assertions_body_headers_json_latency() {
    let s = FaultServer::start(|_| Reply::Respond {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"status":"ok","checks":{"db":"up","cache":"down"}}"#.into(),
        delay: Duration::from_millis(50),
    })
    .await;
    let base = format!("  - id: h\n    kind: http\n    url: {}\n", s.url("/status"));
    let ok = run_yaml(&format!(
        "{base}    expect:\n      status: [200]\n      body_contains: ['\"status\"']\n      headers: {{ content-type: '^application/json' }}\n      json:\n        - path: $.status\n          equals: ok\n        - path: $.checks.db\n          matches: '^up$'\n        - path: $.error\n          exists: false\n"
    ))
    .await;
    assert!(ok.success(), "{ok:?}");
    let json_fail = run_yaml(&format!(
        "{base}    expect:\n      json:\n        - path: $.checks.cache\n          equals: up\n"
    ))
    .await;
    assert_eq!(class(&json_fail), Some(FailureClass::Assertion));
    assert!(
        json_fail
            .detail
            .contains("$.checks.cache is \"down\", expected \"up\""),
        "{}",
        json_fail.detail
    );
    let header_fail = run_yaml(&format!(
        "{base}    expect:\n      headers: {{ x-missing: '.' }}\n"
    ))
    .await;
    assert!(
        header_fail.detail.contains("header `x-missing` missing"),
        "{}",
        header_fail.detail
    );
    let slow = run_yaml(&format!("{base}    expect:\n      max_latency: 10ms\n")).await;
    assert_eq!(class(&slow), Some(FailureClass::Assertion));
    assert!(slow.detail.contains("max_latency"), "{}", slow.detail);
}

#[tokio::test]
async fn https_with_private_ca_measures_tls() {
    let fixture = TlsFixture::new();
    let dir = authpulse_tests::TempDir::new("ap-tls");
    let ca = fixture.write_ca(dir.path());
    let s =
        FaultServer::start_tls(fixture.server_config.clone(), |_| Reply::status(200, "ok")).await;
    let url = s.https_url("/");
    let trusted = run_yaml(&format!(
        "  - id: h\n    kind: http\n    url: {url}\n    tls: {{ ca_file: {} }}\n",
        ca.display()
    ))
    .await;
    assert!(trusted.success(), "{trusted:?}");
    assert!(trusted.timings.tls.is_some_and(|t| t > Duration::ZERO));
    // `localhost` goes through the resolver: a DNS phase is measured.
    assert!(trusted.timings.dns.is_some());

    let untrusted = run_yaml(&format!("  - id: h\n    kind: http\n    url: {url}\n")).await;
    assert_eq!(class(&untrusted), Some(FailureClass::Tls), "{untrusted:?}");
    assert!(
        untrusted.detail.contains("TLS handshake"),
        "{}",
        untrusted.detail
    );

    let skip = run_yaml(&format!(
        "  - id: h\n    kind: http\n    url: {url}\n    tls: {{ insecure_skip_verify: true }}\n"
    ))
    .await;
    assert!(skip.success(), "{skip:?}");
}

#[tokio::test]
async fn secrets_never_appear_in_outcomes() {
    // The server echoes the Authorization header back in an error body.
    let secret = "s3cr3t-token-value-9f8e";
    let s = FaultServer::start(move |_| Reply::status(401, &format!("bad token Bearer {secret}")))
        .await;
    let dir = authpulse_tests::TempDir::new("ap-sec");
    std::fs::write(dir.path().join("api_token"), format!("Bearer {secret}\n")).expect("write");
    let o = run_with(
        &format!(
            "  - id: h\n    kind: http\n    url: {}\n    headers:\n      Authorization: {{ secret: api_token }}\n",
            s.url("/")
        ),
        SecretStore::new(Some(dir.path().to_path_buf())),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus));
    let everything = format!("{o:?}");
    assert!(!everything.contains(secret), "secret leaked: {everything}");
    assert!(o.detail.contains("[redacted]"), "{}", o.detail);
}

#[tokio::test]
async fn missing_secret_is_config_and_names_the_variable() {
    let o = run_yaml(
        "  - id: h\n    kind: http\n    url: http://127.0.0.1:9/\n    headers:\n      Authorization: { secret: nope_not_set }\n",
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Config));
    assert!(
        o.detail.contains("AUTHPULSE_SECRET_NOPE_NOT_SET"),
        "{}",
        o.detail
    );
}
