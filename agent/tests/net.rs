//! `tcp`, `tls` and `dns` against real servers on 127.0.0.1: a TCP line
//! server, TLS endpoints with rcgen certificates (good, expired, expiring,
//! wrong name), and an authoritative hickory-server serving a zone file.
//! Outputs are checked the way journeys see them: a later `http` step posts
//! `{{ steps.<name>.<key> }}` to a capture server.
use std::time::Duration;

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::capture::CaptureServer;
use authpulse_tests::dns_server::{DnsBlackHole, DnsServer};
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::line_server::LineServer;
use authpulse_tests::tls::TlsFixture;

async fn run_yaml(yaml: &str) -> ProbeOutcome {
    authpulse_tests::crypto();
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    probes::run(
        &cat.probes[0],
        &net,
        &SecretStore::new(None),
        &Default::default(),
    )
    .await
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

/// Runs `step` (YAML of one journey step named `s`, indented by 8) and then
/// an `http` step that posts `body` (templates reading `steps.s.*`) to a
/// capture server, even when `s` failed; returns the outcome and the body
/// the capture server received (`None` if the echo step did not run).
async fn with_outputs(step: &str, body: &str) -> (ProbeOutcome, Option<serde_json::Value>) {
    let capture = CaptureServer::start(|_| 200).await;
    let yaml = format!(
        "  - id: j\n    kind: journey\n    timeout: 5s\n    steps:\n      - name: s\n{step}      - name: echo\n        always: true\n        kind: http\n        method: POST\n        url: {}\n        body: '{body}'\n",
        capture.url("/echo")
    );
    let o = run_yaml(&yaml).await;
    let echoed = capture.requests().first().map(|r| r.json());
    (o, echoed)
}

// ---------------------------------------------------------------- tcp

#[tokio::test]
async fn tcp_banner_and_send_expect() {
    let server = LineServer::start(Some("SSH-2.0-OpenSSH_9.6\r\n"), Duration::ZERO, |line| {
        (line == "PING").then(|| "PONG ok\r\n".to_string())
    })
    .await;
    let banner = run_yaml(&format!(
        "  - id: t\n    kind: tcp\n    address: {}\n    expect: '^SSH-2\\.0-'\n",
        server.addr
    ))
    .await;
    assert!(banner.success(), "{banner:?}");
    assert_eq!(banner.steps.len(), 2);
    assert_eq!(banner.steps[0].name, "connect");
    assert!(banner.steps[0].timings.connect.is_some());
    // An address: no DNS phase.
    assert_eq!(banner.timings.dns, None);
    assert!(banner.steps[1].timings.ttfb.is_some());

    // The banner arrives first and must not satisfy the reply's pattern.
    let (o, echoed) = with_outputs(
        &format!(
            "        kind: tcp\n        address: {}\n        send: \"PING\\r\\n\"\n        expect: 'PONG ok'\n",
            server.addr
        ),
        r#"{"peer": "{{ steps.s.peer }}", "received": "{{ steps.s.received }}"}"#,
    )
    .await;
    assert!(o.success(), "{o:?}");
    let echoed = echoed.expect("echo ran");
    assert_eq!(echoed["peer"], server.addr.to_string());
    let received = echoed["received"].as_str().expect("received");
    assert!(
        received.starts_with("SSH-2.0-OpenSSH_9.6") && received.ends_with("PONG ok"),
        "{received}"
    );
}

#[tokio::test]
async fn tcp_wrong_banner_reports_what_came() {
    let server =
        LineServer::start(Some("220 smtp.example ESMTP\r\n"), Duration::ZERO, |_| None).await;
    let o = run_yaml(&format!(
        "  - id: t\n    kind: tcp\n    address: {}\n    expect: '^SSH-'\n    timeout: 2s\n",
        server.addr
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout), "{o:?}");
    assert!(o.detail.contains("220 smtp.example ESMTP"), "{}", o.detail);

    // A server that closes after its banner: the mismatch is known at once.
    let closing =
        LineServer::start(Some("220 smtp.example ESMTP\r\n"), Duration::ZERO, |_| None).await;
    let o = run_yaml(&format!(
        "  - id: t\n    kind: tcp\n    address: {}\n    send: \"QUIT\\r\\n\"\n    expect: '^SSH-'\n",
        closing.addr
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(
        o.detail.contains("closed the connection") && o.detail.contains("/^SSH-/"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn tcp_refused_is_connect_and_slow_banner_times_out() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let refused = run_yaml(&format!(
        "  - id: t\n    kind: tcp\n    address: 127.0.0.1:{port}\n"
    ))
    .await;
    assert_eq!(class(&refused), Some(FailureClass::Connect), "{refused:?}");
    assert!(
        refused.detail.contains(&format!("127.0.0.1:{port}")),
        "{}",
        refused.detail
    );

    let slow = LineServer::start(Some("hello\r\n"), Duration::from_secs(5), |_| None).await;
    let o = run_yaml(&format!(
        "  - id: t\n    kind: tcp\n    address: {}\n    expect: hello\n    timeout: 300ms\n    interval: 1s\n",
        slow.addr
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout), "{o:?}");
    assert!(o.detail.contains("waiting for a reply"), "{}", o.detail);
    assert!(o.timings.total < Duration::from_secs(2));
}

#[tokio::test]
async fn tcp_resolves_names_through_the_resolver() {
    let server = LineServer::start(Some("ready\n"), Duration::ZERO, |_| None).await;
    let o = run_yaml(&format!(
        "  - id: t\n    kind: tcp\n    address: localhost:{}\n    expect: ready\n",
        server.addr.port()
    ))
    .await;
    assert!(o.success(), "{o:?}");
    assert!(o.timings.dns.is_some(), "{o:?}");
}

#[test]
fn tcp_and_dns_catalog_errors() {
    let bad = catalog::load_str(
        "t.yaml",
        "probes:\n  - id: t\n    kind: tcp\n    address: example.com\n  - id: d\n    kind: dns\n    name: x.example\n    record_type: BOGUS\n",
    )
    .expect_err("rejected");
    let text = bad.to_string();
    assert!(text.contains("expected host:port"), "{text}");
    assert!(text.contains("BOGUS"), "{text}");
}

// ---------------------------------------------------------------- tls

async fn tls_server(fixture: &TlsFixture) -> FaultServer {
    FaultServer::start_tls(fixture.server_config.clone(), |_| Reply::status(200, "ok")).await
}

#[tokio::test]
async fn tls_good_certificate_outputs_dates_issuer_and_sans() {
    let fixture = TlsFixture::new();
    let dir = TempDir::new("ap-tls-ok");
    let ca = fixture.write_ca(dir.path());
    let server = tls_server(&fixture).await;
    let (o, echoed) = with_outputs(
        &format!(
            "        kind: tls\n        address: localhost:{}\n        ca_file: {}\n        expect_sans: [localhost, 127.0.0.1]\n",
            server.addr.port(),
            ca.display()
        ),
        r#"{"days": {{ steps.s.days_remaining }}, "not_after": "{{ steps.s.not_after }}", "issuer": "{{ steps.s.issuer }}", "sans": {{ steps.s.sans }}, "version": "{{ steps.s.tls_version }}"}"#,
    )
    .await;
    assert!(o.success(), "{o:?}");
    let tls_step = &o.steps[0];
    assert!(tls_step.timings.tls.is_some() && tls_step.timings.connect.is_some());
    assert!(tls_step.timings.dns.is_some(), "localhost is resolved");
    let echoed = echoed.expect("echo ran");
    // rcgen's default validity ends on 4096-01-01.
    assert_eq!(echoed["not_after"], "4096-01-01T00:00:00Z");
    assert!(echoed["days"].as_i64().expect("days") > 700_000);
    assert!(
        echoed["issuer"]
            .as_str()
            .expect("issuer")
            .contains("authpulse test CA"),
        "{echoed}"
    );
    assert_eq!(
        echoed["sans"],
        serde_json::json!(["localhost", "127.0.0.1"])
    );
    assert_eq!(echoed["version"], "TLSv1_3");
}

#[tokio::test]
async fn tls_untrusted_expired_wrong_name_and_missing_san() {
    let dir = TempDir::new("ap-tls-bad");

    // No ca_file: the private CA is unknown to the system roots.
    let good = TlsFixture::new();
    let server = tls_server(&good).await;
    let o = run_yaml(&format!(
        "  - id: t\n    kind: tls\n    address: localhost:{}\n",
        server.addr.port()
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Tls), "{o:?}");
    assert!(
        o.detail.contains("does not verify") && o.detail.contains("UnknownIssuer"),
        "{}",
        o.detail
    );

    // Expired two days ago, otherwise trusted.
    let expired = TlsFixture::with_leaf(&["localhost"], -30, -2);
    let ca = dir.path().join("expired-ca.pem");
    std::fs::write(&ca, &expired.ca_pem).expect("ca");
    let server = tls_server(&expired).await;
    let (o, echoed) = with_outputs(
        &format!(
            "        kind: tls\n        address: localhost:{}\n        ca_file: {}\n",
            server.addr.port(),
            ca.display()
        ),
        r#"{"days": {{ steps.s.days_remaining }}}"#,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Tls), "{o:?}");
    assert!(
        o.detail.contains("expired 2 day(s) ago") && o.detail.contains("certificate expired"),
        "{}",
        o.detail
    );
    // The certificate was still read: its numbers reach later steps.
    assert_eq!(echoed.expect("echo ran")["days"], -2);

    // Trusted but for another name.
    let wrong = TlsFixture::with_leaf(&["idp.other.example"], -1, 90);
    let ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&ca, &wrong.ca_pem).expect("ca");
    let server = tls_server(&wrong).await;
    let base = format!(
        "  - id: t\n    kind: tls\n    address: localhost:{}\n    ca_file: {}\n",
        server.addr.port(),
        ca.display()
    );
    let o = run_yaml(&base).await;
    assert_eq!(class(&o), Some(FailureClass::Tls), "{o:?}");
    assert!(
        o.detail.contains("not valid for name") && o.detail.contains("localhost"),
        "{}",
        o.detail
    );
    // The right SNI/verification name makes it pass ...
    let o = run_yaml(&format!("{base}    server_name: idp.other.example\n")).await;
    assert!(o.success(), "{o:?}");
    // ... and expect_sans still catches a certificate lacking a name.
    let o = run_yaml(&format!(
        "{base}    server_name: idp.other.example\n    expect_sans: [idp.other.example, login.other.example]\n"
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Tls), "{o:?}");
    assert!(
        o.detail
            .contains("lacks expected SAN(s) login.other.example; it has: idp.other.example"),
        "{}",
        o.detail
    );
    // insecure_skip_verify skips the chain and name, not the expiry.
    let o = run_yaml(&format!("{base}    insecure_skip_verify: true\n")).await;
    assert!(o.success(), "{o:?}");
    let o = run_yaml(&format!(
        "{base}    insecure_skip_verify: true\n    min_days_remaining: 120\n"
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Tls), "{o:?}");
}

#[tokio::test]
async fn tls_expiring_soon_fails_below_the_threshold() {
    let dir = TempDir::new("ap-tls-soon");
    let soon = TlsFixture::with_leaf(&["localhost"], -80, 5);
    let ca = soon.write_ca(dir.path());
    let server = tls_server(&soon).await;
    let base = format!(
        "  - id: t\n    kind: tls\n    address: localhost:{}\n    ca_file: {}\n",
        server.addr.port(),
        ca.display()
    );
    // Default threshold: 14 days.
    let o = run_yaml(&base).await;
    assert_eq!(class(&o), Some(FailureClass::Tls), "{o:?}");
    // Five days from when the certificate was made, in whole seconds:
    // 4 full days left once a second has passed, else 5.
    let days_left = |text: &str| text.contains("4 days") || text.contains("5 days");
    assert!(
        o.detail.contains("expires in")
            && days_left(&o.detail)
            && o.detail.contains("min_days_remaining 14"),
        "{}",
        o.detail
    );
    let o = run_yaml(&format!("{base}    min_days_remaining: 3\n")).await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.steps[2].detail.contains("days left") && days_left(&o.steps[2].detail),
        "{}",
        o.steps[2].detail
    );
}

#[tokio::test]
async fn tls_handshake_that_never_completes_times_out() {
    // A plain HTTP fault server never answers a ClientHello.
    let silent = FaultServer::start(|_| Reply::Hang).await;
    let o = run_yaml(&format!(
        "  - id: t\n    kind: tls\n    address: 127.0.0.1:{}\n    server_name: localhost\n    timeout: 300ms\n    interval: 1s\n",
        silent.addr.port()
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout), "{o:?}");
    assert!(o.detail.contains("TLS handshake"), "{}", o.detail);
    assert!(o.timings.connect.is_some());
}

#[tokio::test]
async fn http_over_https_with_expired_or_wrong_name_certificate_is_tls() {
    let dir = TempDir::new("ap-https-bad");
    for (name, fixture) in [
        ("expired", TlsFixture::with_leaf(&["localhost"], -30, -1)),
        (
            "wrong-name",
            TlsFixture::with_leaf(&["other.example"], -1, 30),
        ),
    ] {
        let ca = dir.path().join(format!("{name}.pem"));
        std::fs::write(&ca, &fixture.ca_pem).expect("ca");
        let server = tls_server(&fixture).await;
        let o = run_yaml(&format!(
            "  - id: h\n    kind: http\n    url: {}\n    tls: {{ ca_file: {} }}\n",
            server.https_url("/"),
            ca.display()
        ))
        .await;
        assert_eq!(class(&o), Some(FailureClass::Tls), "{name}: {o:?}");
        assert!(o.detail.contains("TLS handshake"), "{name}: {}", o.detail);
    }
}

/// Each `http` run over HTTPS is a full handshake even when the server hands
/// out session tickets (rustls does by default): a resumed run would not see
/// the certificate at all and would time the cheap handshake.
#[tokio::test]
async fn https_runs_never_resume_a_tls_session() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    authpulse_tests::crypto();
    let fixture = TlsFixture::new();
    assert!(
        fixture.server_config.send_tls13_tickets > 0,
        "the server must offer tickets for this test to mean anything"
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(fixture.server_config.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let kinds: Arc<Mutex<Vec<Option<rustls::HandshakeKind>>>> = Arc::default();
    let seen = kinds.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            seen.lock()
                .expect("lock")
                .push(tls.get_ref().1.handshake_kind());
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
            let _ = tls.shutdown().await;
        }
    });
    let dir = TempDir::new("ap-https-resume");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &fixture.ca_pem).expect("ca");
    let cat = catalog::load_str(
        "t.yaml",
        &format!(
            "probes:\n  - id: h\n    kind: http\n    url: https://127.0.0.1:{port}/\n    tls: {{ ca_file: {} }}\n",
            ca.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // One context for all runs, as in the agent (it caches the TLS config).
    let net = NetContext::new().expect("net");
    for run in 0..3 {
        let o = probes::run(
            &cat.probes[0],
            &net,
            &SecretStore::new(None),
            &Default::default(),
        )
        .await;
        assert!(o.success(), "run {run}: {o:?}");
    }
    server.abort();
    let kinds = kinds.lock().expect("lock").clone();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|k| *k == Some(rustls::HandshakeKind::Full)),
        "every run must be a full handshake: {kinds:?}"
    );
}

// ---------------------------------------------------------------- dns

const ZONE: &str = r#"$ORIGIN authpulse.test.
$TTL 60
@       IN SOA ns1.authpulse.test. hostmaster.authpulse.test. ( 1 3600 600 86400 60 )
@       IN NS  ns1
ns1     IN A   127.0.0.1
app     IN A   127.0.0.10
app     IN A   127.0.0.11
idp     IN A   127.0.0.12
idp     IN AAAA ::1
login   IN CNAME idp
@       IN MX  10 mail
mail    IN A   127.0.0.13
@       IN TXT "v=spf1 -all"
_ldaps._tcp IN SRV 0 5 636 idp
"#;

async fn zone() -> DnsServer {
    DnsServer::start("authpulse.test.", ZONE).await
}

fn dns_probe(server: &DnsServer, body: &str) -> String {
    format!(
        "  - id: d\n    kind: dns\n    server: {}\n{body}",
        server.addr
    )
}

#[tokio::test]
async fn dns_answers_by_type_from_an_authoritative_server() {
    let server = zone().await;
    let cases = [
        ("app.authpulse.test", "A", "[127.0.0.11, 127.0.0.10]"),
        ("idp.authpulse.test", "AAAA", "['::1']"),
        ("login.authpulse.test", "CNAME", "[idp.authpulse.test.]"),
        // A CNAME chain resolves to the target's addresses only.
        ("login.authpulse.test", "A", "[127.0.0.12]"),
        ("authpulse.test", "MX", "['10 mail.authpulse.test']"),
        ("authpulse.test", "TXT", "['v=spf1 -all']"),
        (
            "_ldaps._tcp.authpulse.test",
            "SRV",
            "['0 5 636 idp.authpulse.test']",
        ),
        ("authpulse.test", "NS", "[NS1.authpulse.test]"),
    ];
    for (name, rtype, expect) in cases {
        let o = run_yaml(&dns_probe(
            &server,
            &format!("    name: {name}\n    record_type: {rtype}\n    expect: {expect}\n    exact: true\n"),
        ))
        .await;
        assert!(o.success(), "{name} {rtype}: {o:?}");
        assert!(o.timings.dns.is_some(), "{o:?}");
    }
    // Over TCP too; the detail lists the answers.
    let o = run_yaml(&dns_probe(
        &server,
        "    name: app.authpulse.test\n    protocol: tcp\n",
    ))
    .await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.detail.contains("127.0.0.10") && o.detail.contains("(tcp)"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn dns_unexpected_answers_are_assertions() {
    let server = zone().await;
    let missing = run_yaml(&dns_probe(
        &server,
        "    name: app.authpulse.test\n    expect: [127.0.0.10, 127.0.0.99]\n",
    ))
    .await;
    assert_eq!(
        class(&missing),
        Some(FailureClass::Assertion),
        "{missing:?}"
    );
    assert!(
        missing.detail.contains("missing expected [127.0.0.99]")
            && missing.detail.contains("127.0.0.11"),
        "{}",
        missing.detail
    );
    // A subset passes unless `exact`.
    let subset = run_yaml(&dns_probe(
        &server,
        "    name: app.authpulse.test\n    expect: [127.0.0.10]\n",
    ))
    .await;
    assert!(subset.success(), "{subset:?}");
    let exact = run_yaml(&dns_probe(
        &server,
        "    name: app.authpulse.test\n    expect: [127.0.0.10]\n    exact: true\n",
    ))
    .await;
    assert_eq!(class(&exact), Some(FailureClass::Assertion));
    assert!(
        exact.detail.contains("unexpected [127.0.0.11]"),
        "{}",
        exact.detail
    );
}

#[tokio::test]
async fn dns_nxdomain_and_no_records_are_dns() {
    let server = zone().await;
    let nx = run_yaml(&dns_probe(&server, "    name: nope.authpulse.test\n")).await;
    assert_eq!(class(&nx), Some(FailureClass::Dns), "{nx:?}");
    assert!(
        nx.detail.contains("NXDOMAIN") && nx.detail.contains("nope.authpulse.test"),
        "{}",
        nx.detail
    );
    let empty = run_yaml(&dns_probe(
        &server,
        "    name: app.authpulse.test\n    record_type: AAAA\n",
    ))
    .await;
    assert_eq!(class(&empty), Some(FailureClass::Dns), "{empty:?}");
    assert!(
        empty.detail.contains("AAAA app.authpulse.test"),
        "{}",
        empty.detail
    );
    assert!(!empty.detail.contains("NXDOMAIN"), "{}", empty.detail);
}

#[tokio::test]
async fn dns_server_that_never_answers_times_out() {
    let hole = DnsBlackHole::start().await;
    let o = run_yaml(&format!(
        "  - id: d\n    kind: dns\n    name: app.authpulse.test\n    server: {}\n    timeout: 500ms\n    interval: 1s\n",
        hole.addr
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout), "{o:?}");
    assert!(o.detail.contains("app.authpulse.test"), "{}", o.detail);
    assert!(o.timings.total < Duration::from_secs(2));
}

#[tokio::test]
async fn dns_system_resolver_reads_the_hosts_file() {
    // /etc/hosts maps localhost to 127.0.0.1 on every machine we run on.
    let o =
        run_yaml("  - id: d\n    kind: dns\n    name: localhost\n    expect: [127.0.0.1]\n").await;
    assert!(o.success(), "{o:?}");
    assert!(o.detail.contains("system resolver"), "{}", o.detail);
}
