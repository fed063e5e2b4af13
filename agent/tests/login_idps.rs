//! The login engine against real identity providers nobody on the team
//! wrote, installed unmodified from the package registries and configured
//! from tests/peers/django (see tests/src/idp.rs): django-oidc-provider with
//! django-two-factor-auth's two-step wizard as its login (a consent page with
//! Decline/Authorize; a token page with a Back button before Next), and
//! django-allauth's OpenID provider with allauth.mfa (a code page whose
//! Cancel button logs out through another form, a "trust this browser?"
//! interstitial, a consent page with Authorize/Cancel). Each IdP: a
//! single-page login, TOTP, a wrong password and a wrong code
//! (`auth_rejected` quoting the IdP), an existing session (second login in
//! one journey), refresh and userinfo after login, and an error page after
//! login (a redirect URI the IdP does not know).
use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::idp::DjangoIdp;

struct Secrets {
    dir: TempDir,
}

impl Secrets {
    fn new() -> Secrets {
        let dir = TempDir::new("ap-idps");
        for (name, value) in [
            ("web_secret", "probe-web-secret"),
            ("alice_password", "alice-password"),
            ("bob_password", "bob-password"),
            ("bob_totp", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
            ("carol_password", "carol-password"),
            ("wrong_totp", "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"),
            ("wrong_password", "not-the-password-5521"),
        ] {
            std::fs::write(dir.path().join(name), value).expect("secret");
        }
        Secrets { dir }
    }
    fn store(&self) -> SecretStore {
        SecretStore::new(Some(self.dir.path().to_path_buf()))
    }
}

async fn run(yaml: &str) -> ProbeOutcome {
    authpulse_tests::crypto();
    let secrets = Secrets::new();
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    probes::run(&cat.probes[0], &net, &secrets.store(), &Default::default()).await
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

fn names(o: &ProbeOutcome) -> Vec<&str> {
    o.steps.iter().map(|s| s.name.as_str()).collect()
}

/// An `authorization_code` body for `user` (password secret `password`),
/// indented by `indent`, with `extra` keys.
fn login(idp: &DjangoIdp, user: &str, password: &str, extra: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for line in [
        "kind: authorization_code".to_string(),
        format!("issuer: {}", idp.issuer),
        "client_id: probe-web".into(),
        "client_secret: { secret: web_secret }".into(),
        "redirect_uri: https://probe.invalid/cb".into(),
        format!("username: {user}"),
        format!("password: {{ secret: {password} }}"),
    ]
    .into_iter()
    .chain(extra.lines().map(str::to_string))
    {
        out.push_str(&format!("{pad}{line}\n"));
    }
    out
}

fn probe(body: &str) -> String {
    format!("  - id: login\n    timeout: 15s\n{body}")
}

fn consent_clicked(o: &ProbeOutcome) -> String {
    o.steps
        .iter()
        .find(|s| s.name == "consent")
        .map(|s| s.detail.clone())
        .unwrap_or_default()
}

async fn single_page_login(idp: &DjangoIdp) {
    let o = run(&probe(&login(idp, "alice", "alice_password", "", 4))).await;
    assert!(o.success(), "{}: {o:?}", idp.app);
    assert_eq!(
        names(&o),
        [
            "discovery",
            "authorize",
            "login",
            "consent",
            "callback",
            "token",
            "validate"
        ],
        "{}",
        idp.app
    );
    // The affirmative button, never Decline/Cancel.
    assert_eq!(consent_clicked(&o), "clicked `Authorize`", "{}", idp.app);
}

async fn totp_login(idp: &DjangoIdp, interstitial: Option<&str>) {
    let o = run(&probe(&login(
        idp,
        "bob",
        "bob_password",
        "totp: { secret: bob_totp }",
        4,
    )))
    .await;
    assert!(o.success(), "{}: {o:?}", idp.app);
    assert_eq!(
        names(&o)[..5],
        ["discovery", "authorize", "login", "totp", "consent"],
        "{}",
        idp.app
    );
    let clicked = consent_clicked(&o);
    match interstitial {
        Some(label) => assert_eq!(
            clicked,
            format!("clicked `{label}`, clicked `Authorize`"),
            "{}",
            idp.app
        ),
        None => assert_eq!(clicked, "clicked `Authorize`", "{}", idp.app),
    }
}

async fn wrong_password(idp: &DjangoIdp, message: &str) {
    let o = run(&probe(&login(idp, "alice", "wrong_password", "", 4))).await;
    assert_eq!(
        class(&o),
        Some(FailureClass::AuthRejected),
        "{}: {o:?}",
        idp.app
    );
    assert!(
        o.detail
            .contains("step `login`: credentials for `alice` rejected at")
            && o.detail.contains(message),
        "{}: {}",
        idp.app,
        o.detail
    );
    assert!(!format!("{o:?}").contains("not-the-password-5521"));

    // An unknown user is the same class.
    let o = run(&probe(&login(idp, "nobody", "wrong_password", "", 4))).await;
    assert_eq!(
        class(&o),
        Some(FailureClass::AuthRejected),
        "{}: {o:?}",
        idp.app
    );
}

async fn wrong_code(idp: &DjangoIdp, message: &str) {
    let o = run(&probe(&login(
        idp,
        "carol",
        "carol_password",
        "totp: { secret: wrong_totp }",
        4,
    )))
    .await;
    assert_eq!(
        class(&o),
        Some(FailureClass::AuthRejected),
        "{}: {o:?}",
        idp.app
    );
    assert!(
        o.detail.contains("step `totp`: one-time code rejected") && o.detail.contains(message),
        "{}: {}",
        idp.app,
        o.detail
    );
}

/// Two logins in one journey: the second finds the IdP's session and goes
/// straight to consent; then refresh and userinfo with the tokens.
async fn session_refresh_userinfo(idp: &DjangoIdp, scope: &str) {
    let yaml = format!(
        "  - id: j\n    kind: journey\n    timeout: 30s\n    steps:\n      - name: first\n{first}      - name: again\n{again}      - name: refresh\n        kind: refresh\n        issuer: {issuer}\n        client_id: probe-web\n        client_secret: {{ secret: web_secret }}\n        refresh_token: '{{{{ steps.first.refresh_token }}}}'\n      - name: me\n        kind: userinfo\n        issuer: {issuer}\n        token: '{{{{ steps.again.access_token }}}}'\n        expect_sub: '{{{{ steps.again.sub }}}}'\n",
        first = login(idp, "alice", "alice_password", scope, 8),
        again = login(idp, "alice", "alice_password", scope, 8),
        issuer = idp.issuer,
    );
    let o = run(&yaml).await;
    assert!(o.success(), "{}: {o:?}", idp.app);
    assert!(o.steps[0].detail.contains("login: as alice"), "{o:?}");
    let again = &o.steps[1].detail;
    assert!(
        !again.contains("login:") && again.contains("consent: clicked `Authorize`"),
        "{}: the second login should reuse the session: {again}",
        idp.app
    );
}

async fn bad_redirect_uri(idp: &DjangoIdp, message: &str) {
    let body = login(idp, "alice", "alice_password", "", 4).replace(
        "redirect_uri: https://probe.invalid/cb",
        "redirect_uri: https://elsewhere.invalid/cb",
    );
    let o = run(&probe(&body)).await;
    assert!(
        matches!(
            class(&o),
            Some(FailureClass::Protocol | FailureClass::HttpStatus)
        ),
        "{}: {o:?}",
        idp.app
    );
    assert!(o.detail.contains(message), "{}: {}", idp.app, o.detail);
}

#[tokio::test]
async fn dop_single_page_login_with_consent() {
    single_page_login(DjangoIdp::dop()).await;
}

#[tokio::test]
async fn dop_totp_through_the_two_step_wizard() {
    // The token page has Back (name=wizard_goto_step) before Next.
    totp_login(DjangoIdp::dop(), None).await;
}

#[tokio::test]
async fn dop_wrong_password_and_unknown_user_are_auth_rejected() {
    wrong_password(
        DjangoIdp::dop(),
        "Please enter a correct username and password.",
    )
    .await;
}

#[tokio::test]
async fn dop_wrong_code_is_auth_rejected() {
    wrong_code(DjangoIdp::dop(), "Invalid token.").await;
}

#[tokio::test]
async fn dop_existing_session_refresh_and_userinfo() {
    session_refresh_userinfo(DjangoIdp::dop(), "").await;
}

#[tokio::test]
async fn dop_unknown_redirect_uri_quotes_the_idp() {
    bad_redirect_uri(DjangoIdp::dop(), "mismatching redirection URI").await;
}

#[tokio::test]
async fn allauth_single_page_login_with_consent() {
    single_page_login(DjangoIdp::allauth()).await;
}

#[tokio::test]
async fn allauth_totp_then_trust_this_browser() {
    // Code page: Cancel posts to the logout form; trust page: "Trust for 2
    // weeks" / "Don't Trust" / Cancel (logout).
    totp_login(DjangoIdp::allauth(), Some("Trust for 2 weeks")).await;
}

#[tokio::test]
async fn allauth_wrong_password_and_unknown_user_are_auth_rejected() {
    wrong_password(
        DjangoIdp::allauth(),
        "The username and/or password you specified are not correct.",
    )
    .await;
}

#[tokio::test]
async fn allauth_wrong_code_is_auth_rejected() {
    wrong_code(DjangoIdp::allauth(), "Incorrect code.").await;
}

#[tokio::test]
async fn allauth_existing_session_refresh_and_userinfo() {
    session_refresh_userinfo(DjangoIdp::allauth(), "scope: [openid, profile]").await;
}

#[tokio::test]
async fn allauth_unknown_redirect_uri_quotes_the_idp() {
    bad_redirect_uri(DjangoIdp::allauth(), "Mismatching redirect URI.").await;
}
