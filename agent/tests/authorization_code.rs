//! `authorization_code` against the real oidc-provider peer: its login
//! pages are guarded (tests/peers/oidc/server.mjs: alice with her password;
//! bob with his password and then a TOTP code), consent pages, PKCE, the
//! code exchange and ID token validation are oidc-provider's own. The fault
//! server stands in for IdPs that misbehave (no login form, an error or a
//! forged state in the callback, slow answers, bad certificates).
use std::time::Duration;

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::capture::CaptureServer;
use authpulse_tests::decision_server::DecisionServer;
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::tls::TlsFixture;

/// The peer's default TOTP secret for bob (OIDC_PEER_TOTP_SECRET).
const BOB_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

struct Secrets {
    dir: TempDir,
}

impl Secrets {
    fn new() -> Secrets {
        let dir = TempDir::new("ap-authz");
        for (name, value) in [
            ("web_secret", "probe-web-secret"),
            ("alice_password", "alice-password"),
            ("bob_password", "bob-password"),
            ("bob_totp", BOB_TOTP),
            // Valid base32, but not bob's secret.
            ("wrong_totp", "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"),
            ("wrong_password", "not-alices-password-4417"),
        ] {
            std::fs::write(dir.path().join(name), value).expect("secret");
        }
        Secrets { dir }
    }
    fn store(&self) -> SecretStore {
        SecretStore::new(Some(self.dir.path().to_path_buf()))
    }
}

async fn run_with(yaml: &str, secrets: &SecretStore) -> ProbeOutcome {
    authpulse_tests::crypto();
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    probes::run(&cat.probes[0], &net, secrets, &Default::default()).await
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

fn step_names(o: &ProbeOutcome) -> Vec<&str> {
    o.steps.iter().map(|s| s.name.as_str()).collect()
}

/// An `authorization_code` body (indented by `indent` spaces) logging in to
/// the peer as `user` with `password` (a secret name) via probe-web.
fn login_body(peer: &OidcPeer, user: &str, password: &str, extra: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for line in [
        "kind: authorization_code".to_string(),
        format!("issuer: {}", peer.issuer),
        "client_id: probe-web".into(),
        "client_secret: { secret: web_secret }".into(),
        "redirect_uri: https://probe.invalid/cb".into(),
        format!("username: {user}"),
        format!("password: {{ secret: {password} }}"),
    ] {
        out.push_str(&format!("{pad}{line}\n"));
    }
    for line in extra.lines() {
        out.push_str(&format!("{pad}{line}\n"));
    }
    out
}

fn probe(body: &str) -> String {
    format!("  - id: login\n    timeout: 10s\n{body}")
}

#[tokio::test]
async fn login_with_consent_then_permission_checks_on_the_sub() {
    let peer = OidcPeer::shared().await;
    let secrets = Secrets::new();
    let opa = DecisionServer::start(&[("alice", "read", "doc:plan")]).await;
    let capture = CaptureServer::start(|_| 200).await;
    let yaml = format!(
        "  - id: j\n    kind: journey\n    timeout: 15s\n    steps:\n      - name: login\n{login}      - name: can-read\n        kind: permission\n        engine: opa\n        url: {opa}\n        path: app/authz/allow\n        input: {{ user: '{{{{ steps.login.claims.sub }}}}', action: read, resource: 'doc:plan' }}\n        expect: allow\n      - name: cannot-delete\n        kind: permission\n        engine: opa\n        url: {opa}\n        path: app/authz/allow\n        input: {{ user: '{{{{ steps.login.sub }}}}', action: delete, resource: 'doc:plan' }}\n        expect: deny\n      - name: echo\n        kind: http\n        method: POST\n        url: {echo}\n        body: '{{\"sub\": \"{{{{ steps.login.sub }}}}\", \"claims\": {{{{ steps.login.claims }}}}, \"access\": \"{{{{ steps.login.access_token }}}}\", \"scope\": \"{{{{ steps.login.scope }}}}\"}}'\n",
        login = login_body(
            &peer,
            "alice",
            "alice_password",
            "scope: [openid, profile]",
            8
        ),
        opa = opa.url(),
        echo = capture.url("/echo"),
    );
    let o = run_with(&yaml, &secrets.store()).await;
    assert!(o.success(), "{o:?}");
    let login = &o.steps[0];
    assert_eq!(login.kind, "authorization_code");
    assert!(login.timings.ttfb.is_some() && login.timings.connect.is_some());

    // The same login alone shows its sub-steps.
    let alone = run_with(
        &probe(&login_body(&peer, "alice", "alice_password", "", 4)),
        &secrets.store(),
    )
    .await;
    assert!(alone.success(), "{alone:?}");
    assert_eq!(
        step_names(&alone),
        [
            "discovery",
            "authorize",
            "login",
            "consent",
            "callback",
            "token",
            "validate"
        ]
    );
    assert!(
        alone.steps[4].detail.contains("state and iss match"),
        "{}",
        alone.steps[4].detail
    );
    for s in &alone.steps[1..4] {
        assert!(s.timings.ttfb.is_some(), "{} made requests: {s:?}", s.name);
    }

    // The decision server saw the sub from the ID token.
    let seen = opa.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["input"]["user"], "alice");
    assert_eq!(seen[1].body["input"]["action"], "delete");

    let echoed = capture.requests()[0].json();
    assert_eq!(echoed["sub"], "alice");
    assert_eq!(echoed["claims"]["sub"], "alice");
    assert_eq!(echoed["claims"]["aud"], "probe-web");
    assert_eq!(echoed["claims"]["iss"], peer.issuer.as_str());
    assert!(echoed["claims"]["nonce"].is_string(), "{echoed}");
    assert!(
        echoed["access"].as_str().is_some_and(|t| t.len() > 20),
        "{echoed}"
    );
    // Tokens reach later steps but never a detail.
    let access = echoed["access"].as_str().expect("access");
    assert!(!format!("{o:?}").contains(access));
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_with_the_pages_message() {
    let peer = OidcPeer::shared().await;
    let secrets = Secrets::new();
    let o = run_with(
        &probe(&login_body(&peer, "alice", "wrong_password", "", 4)),
        &secrets.store(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert_eq!(o.steps.last().map(|s| s.name.as_str()), Some("login"));
    assert!(
        o.detail.contains("credentials for `alice` rejected")
            && o.detail.contains("Invalid username or password."),
        "{}",
        o.detail
    );
    assert!(!format!("{o:?}").contains("not-alices-password-4417"));
}

#[tokio::test]
async fn totp_second_factor_ok_and_wrong_secret_rejected() {
    let peer = OidcPeer::shared().await;
    let secrets = Secrets::new();
    let ok = run_with(
        &probe(&login_body(
            &peer,
            "bob",
            "bob_password",
            "totp: { secret: bob_totp }",
            4,
        )),
        &secrets.store(),
    )
    .await;
    assert!(ok.success(), "{ok:?}");
    assert_eq!(
        step_names(&ok),
        [
            "discovery",
            "authorize",
            "login",
            "totp",
            "consent",
            "callback",
            "token",
            "validate"
        ]
    );
    assert!(ok.steps[3].timings.ttfb.is_some());

    let wrong = run_with(
        &probe(&login_body(
            &peer,
            "bob",
            "bob_password",
            "totp: { secret: wrong_totp }",
            4,
        )),
        &secrets.store(),
    )
    .await;
    assert_eq!(class(&wrong), Some(FailureClass::AuthRejected), "{wrong:?}");
    assert!(
        wrong.detail.contains("step `totp`")
            && wrong.detail.contains("one-time code rejected")
            && wrong.detail.contains("Invalid code."),
        "{}",
        wrong.detail
    );

    // A second factor the probe can't answer: its configuration is missing.
    let missing = run_with(
        &probe(&login_body(&peer, "bob", "bob_password", "", 4)),
        &secrets.store(),
    )
    .await;
    assert_eq!(class(&missing), Some(FailureClass::Config), "{missing:?}");
    assert!(
        missing
            .detail
            .contains("asks for a one-time code (field `otp`)"),
        "{}",
        missing.detail
    );
}

#[tokio::test]
async fn offline_access_with_prompt_consent_yields_a_refresh_token() {
    let peer = OidcPeer::shared().await;
    let secrets = Secrets::new();
    let capture = CaptureServer::start(|_| 200).await;
    let yaml = format!(
        "  - id: j\n    kind: journey\n    timeout: 15s\n    steps:\n      - name: login\n{login}      - name: echo\n        kind: http\n        method: POST\n        url: {echo}\n        body: '{{\"rt\": \"{{{{ steps.login.refresh_token }}}}\", \"scope\": \"{{{{ steps.login.scope }}}}\"}}'\n",
        login = login_body(
            &peer,
            "alice",
            "alice_password",
            "scope: [openid, offline_access]\nprompt: consent",
            8
        ),
        echo = capture.url("/echo"),
    );
    let o = run_with(&yaml, &secrets.store()).await;
    assert!(o.success(), "{o:?}");
    let echoed = capture.requests()[0].json();
    let rt = echoed["rt"].as_str().expect("refresh token");
    assert!(rt.len() > 20, "{echoed}");
    assert!(
        echoed["scope"]
            .as_str()
            .is_some_and(|s| s.contains("offline_access")),
        "{echoed}"
    );
    assert!(o.steps[0].detail.contains("refresh_token"), "{o:?}");
    assert!(!format!("{o:?}").contains(rt));
}

/// A body whose endpoints are all on `server` (no discovery, no issuer).
fn fake_idp(authorize: &str, token: &str, extra: &str) -> String {
    format!(
        "  - id: login\n    kind: authorization_code\n    authorization_endpoint: {authorize}\n    token_endpoint: {token}\n    client_id: probe-web\n    client_secret: {{ secret: web_secret }}\n    redirect_uri: https://probe.invalid/cb\n    username: alice\n    password: {{ secret: alice_password }}\n{extra}"
    )
}

#[tokio::test]
async fn a_page_without_a_login_form_is_protocol() {
    let secrets = Secrets::new();
    let idp = FaultServer::start(|_| Reply::Respond {
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: "<html><body><h1>Maintenance</h1><form action=/search><input name=q></form></body></html>"
            .into(),
        delay: Duration::ZERO,
    })
    .await;
    let o = run_with(
        &fake_idp(&idp.url("/authorize"), &idp.url("/token"), ""),
        &secrets.store(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert_eq!(step_names(&o), ["authorize", "login"]);
    assert!(
        o.detail.contains("login form not found at http://")
            && o.detail.contains("/authorize?response_type=code")
            && o.detail.contains("no form with a password field"),
        "{}",
        o.detail
    );
    assert_eq!(idp.requests(), 1, "the form was not submitted");
}

#[tokio::test]
async fn callback_with_access_denied_or_a_forged_state() {
    let secrets = Secrets::new();
    let denied = FaultServer::start(|_| Reply::Respond {
        status: 302,
        headers: vec![(
            "location".into(),
            "https://probe.invalid/cb?error=access_denied&error_description=End-User+aborted+interaction"
                .into(),
        )],
        body: String::new(),
        delay: Duration::ZERO,
    })
    .await;
    let o = run_with(
        &fake_idp(&denied.url("/authorize"), &denied.url("/token"), ""),
        &secrets.store(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(
        o.detail
            .contains("error=access_denied (End-User aborted interaction)"),
        "{}",
        o.detail
    );

    let forged = FaultServer::start(|_| Reply::Respond {
        status: 303,
        headers: vec![(
            "location".into(),
            "https://probe.invalid/cb?code=abc&state=not-ours".into(),
        )],
        body: String::new(),
        delay: Duration::ZERO,
    })
    .await;
    let o = run_with(
        &fake_idp(&forged.url("/authorize"), &forged.url("/token"), ""),
        &secrets.store(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert!(o.detail.contains("state mismatch"), "{}", o.detail);
    // Neither callback was fetched, and no code was exchanged.
    assert_eq!(forged.requests(), 1);
}

#[tokio::test]
async fn slow_login_page_times_out() {
    let secrets = Secrets::new();
    let slow = FaultServer::start(|_| {
        Reply::status(200, "<form><input type=password name=p></form>")
            .delayed(Duration::from_secs(5))
    })
    .await;
    let o = run_with(
        &fake_idp(
            &slow.url("/authorize"),
            &slow.url("/token"),
            "    timeout: 400ms\n    interval: 1s\n",
        ),
        &secrets.store(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout), "{o:?}");
    assert!(o.timings.total < Duration::from_secs(2));
}

#[tokio::test]
async fn https_idp_with_expired_or_wrong_name_certificate_is_tls() {
    let secrets = Secrets::new();
    let dir = TempDir::new("ap-authz-tls");
    for (name, fixture) in [
        ("expired", TlsFixture::with_leaf(&["localhost"], -30, -1)),
        (
            "wrong-name",
            TlsFixture::with_leaf(&["idp.other.example"], -1, 30),
        ),
    ] {
        let ca = dir.path().join(format!("{name}.pem"));
        std::fs::write(&ca, &fixture.ca_pem).expect("ca");
        let idp = FaultServer::start_tls(fixture.server_config.clone(), |_| {
            Reply::status(200, "<form><input type=password name=p></form>")
        })
        .await;
        let o = run_with(
            &fake_idp(
                &idp.https_url("/authorize"),
                &idp.https_url("/token"),
                &format!("    tls: {{ ca_file: {} }}\n", ca.display()),
            ),
            &secrets.store(),
        )
        .await;
        assert_eq!(class(&o), Some(FailureClass::Tls), "{name}: {o:?}");
        assert_eq!(step_names(&o), ["authorize"], "{name}");
    }
}

#[test]
fn catalog_checks() {
    let errs = catalog::load_str(
        "t.yaml",
        "probes:\n  - id: a\n    kind: authorization_code\n    client_id: c\n    redirect_uri: not a url\n    username: u\n    password: p\n    totp_digits: 4\n",
    )
    .expect_err("rejected")
    .to_string();
    assert!(
        errs.contains(
            "set `issuer` (the endpoint is found by discovery) or `authorization_endpoint`"
        ),
        "{errs}"
    );
    assert!(errs.contains("redirect_uri"), "{errs}");
    assert!(errs.contains("must be 6, 7 or 8"), "{errs}");
}
