//! The login engine against oidc-provider's identifier-first client
//! (tests/peers/oidc/server.mjs `probe-idf`): the username on one page, the
//! password on the next (username hidden), and a consent page whose buttons
//! are Deny, "Switch user" (value=logout) and Accept, in that order; plus the
//! `consent_button` override and `login_steps`.
use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::peers::OidcPeer;

async fn run(yaml: &str, save: Option<std::path::PathBuf>) -> ProbeOutcome {
    authpulse_tests::crypto();
    let dir = TempDir::new("ap-engine");
    for (name, value) in [
        ("web_secret", "probe-web-secret"),
        ("alice_password", "alice-password"),
        ("wrong_password", "not-alices-password-8812"),
    ] {
        std::fs::write(dir.path().join(name), value).expect("secret");
    }
    let secrets = SecretStore::new(Some(dir.path().to_path_buf()));
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    probes::run_saving_pages(&cat.probes[0], &net, &secrets, &Default::default(), save).await
}

fn idf(peer: &OidcPeer, user: &str, password: &str, extra: &str) -> String {
    format!(
        "  - id: login\n    timeout: 10s\n    kind: authorization_code\n    issuer: {}\n    client_id: probe-idf\n    client_secret: {{ secret: web_secret }}\n    redirect_uri: https://probe.invalid/cb\n    username: {user}\n    password: {{ secret: {password} }}\n{extra}",
        peer.issuer
    )
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

#[tokio::test]
async fn identifier_first_then_accept_never_switch_user() {
    let peer = OidcPeer::start().await;
    let o = run(&idf(&peer, "alice", "alice_password", ""), None).await;
    assert!(o.success(), "{o:?}");
    let login = o.steps.iter().find(|s| s.name == "login").expect("login");
    assert_eq!(login.detail, "as alice");
    let consent = o
        .steps
        .iter()
        .find(|s| s.name == "consent")
        .expect("consent");
    assert_eq!(consent.detail, "clicked `Accept`");
}

#[tokio::test]
async fn identifier_first_unknown_user_and_wrong_password_are_auth_rejected() {
    let peer = OidcPeer::start().await;
    let o = run(&idf(&peer, "nobody", "alice_password", ""), None).await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(
        o.detail.contains("username `nobody` rejected")
            && o.detail
                .contains("We could not find an account with that username."),
        "{}",
        o.detail
    );
    let o = run(&idf(&peer, "alice", "wrong_password", ""), None).await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(
        o.detail.contains("credentials for `alice` rejected")
            && o.detail.contains("Wrong password. Try again."),
        "{}",
        o.detail
    );
    assert!(!format!("{o:?}").contains("not-alices-password-8812"));
}

#[tokio::test]
async fn consent_button_overrides_the_choice() {
    let peer = OidcPeer::start().await;
    let o = run(
        &idf(
            &peer,
            "alice",
            "alice_password",
            "    consent_button: \"button[value=deny]\"\n",
        ),
        None,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(o.detail.contains("error=access_denied"), "{}", o.detail);
}

#[tokio::test]
async fn login_steps_script_the_pages() {
    let peer = OidcPeer::start().await;
    let steps = "    login_steps:\n      - on: \"form[action$='/identify']\"\n        fill: { username: alice }\n        click: \"button[value=continue]\"\n      - on: \"input[type=password]\"\n        fill: { password: { secret: alice_password } }\n";
    let o = run(&idf(&peer, "ignored", "wrong_password", steps), None).await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.detail.contains("login_steps[0]") && o.detail.contains("login_steps[1]"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn saved_pages_hold_no_secret_byte() {
    let peer = OidcPeer::start().await;
    let dir = TempDir::new("ap-saved");
    let o = run(
        &idf(&peer, "alice", "alice_password", ""),
        Some(dir.path().to_path_buf()),
    )
    .await;
    assert!(o.success(), "{o:?}");
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("file");
        files += 1;
        for spelling in authpulse_agent::login::save::spellings("alice-password") {
            assert!(!text.contains(&spelling), "{spelling} in a saved page");
        }
    }
    assert!(files >= 6, "{files} files");
    let all: String = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        all.contains("<secret alice_password>"),
        "the password field is recorded, hidden"
    );
}

#[test]
fn login_steps_and_consent_button_are_validated_at_load() {
    let errs = catalog::load_str(
        "t.yaml",
        "probes:\n  - id: a\n    kind: authorization_code\n    issuer: http://127.0.0.1:1\n    client_id: c\n    redirect_uri: https://probe.invalid/cb\n    username: u\n    password: p\n    consent_button: \"button[\"\n    login_steps:\n      - on: \"^http://(\"\n        click: \"#ok\"\n      - on: \".*login\"\n        fill: { user: u }\n",
    )
    .expect_err("rejected")
    .to_string();
    assert!(
        errs.contains("t.yaml:9") && errs.contains("consent_button"),
        "{errs}"
    );
    assert!(
        errs.contains("t.yaml:11") && errs.contains("invalid regular expression"),
        "{errs}"
    );
    assert!(
        errs.contains("t.yaml:13") && errs.contains("a URL regular expression starts with `^`"),
        "{errs}"
    );
}

/// A body whose endpoints are all on `server` (no discovery).
fn fake(server: &authpulse_tests::fault::FaultServer, extra: &str) -> String {
    format!(
        "  - id: login\n    timeout: 5s\n    kind: authorization_code\n    authorization_endpoint: {}\n    token_endpoint: {}\n    client_id: probe-web\n    client_secret: {{ secret: web_secret }}\n    redirect_uri: https://probe.invalid/cb\n    username: alice\n    password: {{ secret: alice_password }}\n{extra}",
        server.url("/authorize"),
        server.url("/token")
    )
}

fn html(body: &str) -> authpulse_tests::fault::Reply {
    authpulse_tests::fault::Reply::Respond {
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: body.into(),
        delay: std::time::Duration::ZERO,
    }
}

#[tokio::test]
async fn a_script_only_page_needs_javascript() {
    let idp = authpulse_tests::fault::FaultServer::start(|_| {
        html("<html><head><title>Sign in</title><script src=/app.js></script></head><body><div id=root></div><noscript>You need to enable JavaScript to run this app.</noscript></body></html>")
    })
    .await;
    let o = run(&fake(&idp, ""), None).await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert!(
        o.detail.contains("the login page needs JavaScript"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn meta_refresh_then_a_page_loop_ends_at_the_page_limit() {
    // Every page refreshes to the next: the limit names the last page.
    let idp = authpulse_tests::fault::FaultServer::start(|line| {
        let n: usize = line
            .split(['=', ' '])
            .find_map(|p| p.parse().ok())
            .unwrap_or(0);
        html(&format!(
            "<html><head><title>Hop {n}</title><meta http-equiv=refresh content=\"0; url=/hop?n={}\"></head></html>",
            n + 1
        ))
    })
    .await;
    let o = run(&fake(&idp, "    max_pages: 3\n"), None).await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert!(
        o.detail.contains("no end of the login after 3 pages") && o.detail.contains("title \"Hop"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn a_form_post_to_the_redirect_uri_ends_the_walk() {
    // response_mode=form_post: the self-posting form is read, not submitted.
    let idp = authpulse_tests::fault::FaultServer::start(|_| {
        html("<html><body onload=\"document.forms[0].submit()\"><form method=post action=\"https://probe.invalid/cb\"><input type=hidden name=code value=abc><input type=hidden name=state value=forged></form></body></html>")
    })
    .await;
    let o = run(&fake(&idp, ""), None).await;
    // The callback was reached (its state is then checked, and is not ours).
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert!(o.detail.contains("state mismatch"), "{}", o.detail);
    assert_eq!(idp.requests(), 1, "nothing was posted anywhere");
}
