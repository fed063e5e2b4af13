//! OAuth/OIDC token probes against a real oidc-provider (tests/peers/oidc,
//! a private instance per test): client_credentials with every client
//! authentication, ROPC and refresh, introspection, revocation, userinfo,
//! JWT validation, discovery drift. Where the peer can't misbehave on
//! demand (a JWKS we control, a revocation endpoint that ignores us, a
//! discovery document that changes), a small fault server stands in and
//! says so.
//!
//! Over 800 lines on purpose: one test binary per real peer (oidc-provider),
//! so the peer and the build are shared by every OAuth kind's cases.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authpulse_agent::http::{NetContext, Session};
use authpulse_agent::jwt::JwksCache;
use authpulse_agent::probes::{self, ProbeMemory, ProbeOutcome, RunContext};
use authpulse_agent::secrets::{Redactor, SecretStore};
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::peers::OidcPeer;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value as Json, json};

/// Secrets as files in a temp dir (the dir lives as long as the store is used).
fn secrets(pairs: &[(&str, &str)]) -> (TempDir, SecretStore) {
    let dir = TempDir::new("ap-oauth");
    for (name, value) in pairs {
        std::fs::write(dir.path().join(name), value).expect("write secret");
    }
    let store = SecretStore::new(Some(dir.path().to_path_buf()));
    (dir, store)
}

fn load(yaml: &str) -> catalog::Catalog {
    authpulse_tests::crypto();
    catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"))
}

/// One run through the agent's entry point (timeout, redaction).
async fn run(yaml: &str, secrets: &SecretStore, memory: &ProbeMemory) -> ProbeOutcome {
    let cat = load(yaml);
    let net = NetContext::new().expect("net");
    probes::run(&cat.probes[0], &net, secrets, memory).await
}

/// One run that also returns the outputs a later journey step would see.
async fn run_outputs(
    yaml: &str,
    secrets: &SecretStore,
    memory: &ProbeMemory,
) -> (ProbeOutcome, Map<String, Json>) {
    let cat = load(yaml);
    let net = NetContext::new().expect("net");
    let def = &cat.probes[0];
    let started = tokio::time::Instant::now();
    let mut ctx = RunContext {
        session: Session::new(&net, started + def.timeout),
        secrets,
        redactor: Redactor::default(),
        started,
        memory,
        scope: def.id.clone(),
        outputs: Map::new(),
        save_pages: None,
    };
    let o = probes::dispatch(&def.spec, &mut ctx).await;
    (o, ctx.outputs)
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

fn step_names(o: &ProbeOutcome) -> Vec<&str> {
    o.steps.iter().map(|s| s.name.as_str()).collect()
}

/// A key pair the test controls: PKCS#8 PEM for signing, SPKI PEM and a
/// public JWK for whoever verifies.
struct TestKey {
    pem: String,
    public_pem: String,
    kid: String,
    alg: Algorithm,
}

impl TestKey {
    fn ec(kid: &str) -> TestKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
        TestKey {
            pem: kp.serialize_pem(),
            public_pem: kp.public_key_pem(),
            kid: kid.into(),
            alg: Algorithm::ES256,
        }
    }

    fn rsa(kid: &str) -> TestKey {
        let kp =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("rsa key");
        TestKey {
            pem: kp.serialize_pem(),
            public_pem: kp.public_key_pem(),
            kid: kid.into(),
            alg: Algorithm::RS256,
        }
    }

    /// The public JWK of an EC key (x and y from the uncompressed point).
    fn ec_jwk(&self) -> Json {
        let kp = rcgen::KeyPair::from_pem(&self.pem).expect("parse key");
        let raw = kp.public_key_raw();
        assert_eq!(raw.len(), 65, "uncompressed P-256 point");
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    fn sign(&self, claims: &Json) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let key = match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(self.pem.as_bytes()),
        }
        .expect("encoding key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ---------------------------------------------------------------------------
// client_credentials
// ---------------------------------------------------------------------------

#[tokio::test]
async fn client_credentials_with_basic_post_and_private_key_jwt() {
    // The private_key_jwt client's keys are made here; the peer gets the
    // public halves through OIDC_PEER_PKJWT_PUBLIC_KEYS.
    let rsa = TestKey::rsa("pk-rsa");
    let ec = TestKey::ec("pk-ec");
    let public = format!("{}{}", rsa.public_pem, ec.public_pem);
    let peer = OidcPeer::start_with_env(0, &[("OIDC_PEER_PKJWT_PUBLIC_KEYS", &public)]).await;
    let (_dir, store) = secrets(&[
        ("cc_secret", "probe-cc-secret"),
        ("cc_post_secret", "probe-cc-post-secret"),
        ("pk_rsa", &rsa.pem),
        ("pk_ec", &ec.pem),
    ]);
    let memory = ProbeMemory::default();
    let base = format!(
        "  - id: cc\n    kind: client_credentials\n    issuer: {}\n    scope: [\"api:read\"]\n",
        peer.issuer
    );
    let cases = [
        (
            "client_id: probe-cc\n    client_secret: { secret: cc_secret }\n",
            "client_secret_basic",
            "probe-cc-secret",
        ),
        (
            "client_id: probe-cc-post\n    client_secret: { secret: cc_post_secret }\n    client_auth: client_secret_post\n",
            "client_secret_post",
            "probe-cc-post-secret",
        ),
        (
            "client_id: probe-pkjwt\n    private_key: { secret: pk_rsa }\n",
            "private_key_jwt",
            "PRIVATE KEY",
        ),
        (
            "client_id: probe-pkjwt\n    private_key: { secret: pk_ec }\n    private_key_alg: ES256\n",
            "private_key_jwt",
            "PRIVATE KEY",
        ),
    ];
    for (client, method, secret) in cases {
        let yaml = format!("{base}    {client}");
        let o = run(&yaml, &store, &memory).await;
        assert!(o.success(), "{method}: {o:?}");
        let token = o
            .steps
            .iter()
            .find(|s| s.name == "token")
            .expect("token step");
        assert!(
            token.detail.starts_with("Bearer, expires in 10m")
                && token.detail.contains("scope `api:read`")
                && token.detail.contains(method),
            "{}",
            token.detail
        );
        // Opaque token: no validate step.
        assert!(!step_names(&o).contains(&"validate"), "{o:?}");
        assert!(
            !format!("{o:?}").contains(secret),
            "credential leaked: {o:?}"
        );
        assert!(o.timings.ttfb.is_some());
    }

    let (o, outputs) = run_outputs(
        &format!("{base}    client_id: probe-cc\n    client_secret: {{ secret: cc_secret }}\n"),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert!(
        outputs["access_token"]
            .as_str()
            .is_some_and(|t| t.len() > 20)
    );
    assert_eq!(outputs["token_type"], "Bearer");
    assert_eq!(outputs["expires_in"], 600);
    assert_eq!(outputs["scope"], "api:read");
    // The discovery document was fetched by the first run of this probe
    // and reused since: no request, no timings.
    assert!(
        o.steps[0].detail.contains("metadata reused"),
        "{}",
        o.steps[0].detail
    );
    assert_eq!(o.steps[0].timings.connect, None);
}

#[tokio::test]
async fn client_credentials_wrong_secret_is_auth_rejected() {
    let peer = OidcPeer::start().await;
    let (_dir, store) = secrets(&[("cc_secret", "not-the-secret-123")]);
    let o = run(
        &format!(
            "  - id: cc\n    kind: client_credentials\n    issuer: {}\n    client_id: probe-cc\n    client_secret: {{ secret: cc_secret }}\n",
            peer.issuer
        ),
        &store,
        &ProbeMemory::default(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(
        o.detail.contains("step `token`") && o.detail.contains("401 invalid_client"),
        "{}",
        o.detail
    );
    assert!(!format!("{o:?}").contains("not-the-secret-123"));
}

#[tokio::test]
async fn client_credentials_jwt_access_token_is_validated() {
    let peer = OidcPeer::start().await;
    let (_dir, store) = secrets(&[("cc_secret", "probe-cc-secret")]);
    let memory = ProbeMemory::default();
    let base = format!(
        "  - id: cc\n    kind: client_credentials\n    issuer: {}\n    client_id: probe-cc\n    client_secret: {{ secret: cc_secret }}\n    scope: [\"api:read\"]\n    resource: urn:authpulse:api\n",
        peer.issuer
    );
    let (o, outputs) =
        run_outputs(&format!("{base}    require_jwt: true\n"), &store, &memory).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(step_names(&o), ["discovery", "token", "validate"]);
    assert!(
        o.steps[2].detail.starts_with("RS256 kid ") && o.steps[2].detail.contains("expires in"),
        "{}",
        o.steps[2].detail
    );
    let claims = &outputs["claims"];
    assert_eq!(claims["aud"], "urn:authpulse:api");
    assert_eq!(claims["client_id"], "probe-cc");
    assert_eq!(claims["iss"], Json::String(peer.issuer.clone()));

    // The same token for an audience it wasn't issued to.
    let o = run(
        &format!("{base}    expected_audience: urn:other:api\n"),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
    assert!(
        o.detail
            .contains("aud mismatch: got [urn:authpulse:api] want urn:other:api"),
        "{}",
        o.detail
    );

    // Only ES256 allowed: the peer signs these with RS256.
    let o = run(&format!("{base}    algorithms: [ES256]\n"), &store, &memory).await;
    assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
    assert!(o.detail.contains("alg RS256 not allowed"), "{}", o.detail);

    // An opaque token where a JWT is required.
    let o = run(
        &format!(
            "  - id: cc2\n    kind: client_credentials\n    issuer: {}\n    client_id: probe-cc\n    client_secret: {{ secret: cc_secret }}\n    require_jwt: true\n",
            peer.issuer
        ),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
    assert!(o.detail.contains("opaque"), "{}", o.detail);
}

#[tokio::test]
async fn token_endpoint_errors_map_to_classes() {
    // Fault fixture: a token endpoint that fails in ways the peer won't.
    let s = FaultServer::start(|line| {
        if line.contains("/5xx") {
            Reply::status(503, "maintenance")
        } else if line.contains("/scope") {
            Reply::Respond {
                status: 400,
                headers: vec![("content-type".into(), "application/json".into())],
                body: r#"{"error":"invalid_scope","error_description":"unknown scope x"}"#.into(),
                delay: Duration::ZERO,
            }
        } else if line.contains("/html") {
            Reply::status(200, "<html>login</html>")
        } else {
            Reply::json(r#"{"access_token":"abcdefgh12345","token_type":"Bearer","expires_in":0}"#)
        }
    })
    .await;
    let cases = [
        ("/5xx", FailureClass::HttpStatus, "answered 503"),
        (
            "/scope",
            FailureClass::Protocol,
            "invalid_scope (unknown scope x)",
        ),
        ("/html", FailureClass::Protocol, "not JSON"),
        ("/zero", FailureClass::Protocol, "expires_in is 0"),
    ];
    for (path, want, text) in cases {
        let o = run(
            &format!(
                "  - id: cc\n    kind: client_credentials\n    token_endpoint: {}\n    client_id: c\n",
                s.url(path)
            ),
            &SecretStore::new(None),
            &ProbeMemory::default(),
        )
        .await;
        assert_eq!(class(&o), Some(want), "{path}: {o:?}");
        assert!(o.detail.contains(text), "{path}: {}", o.detail);
    }
}

// ---------------------------------------------------------------------------
// password, refresh, introspect, userinfo, revoke
// ---------------------------------------------------------------------------

fn ropc(issuer: &str, password_secret: &str, scope: &str) -> String {
    format!(
        "  - id: pw\n    kind: password\n    issuer: {issuer}\n    client_id: probe-ropc\n    client_secret: {{ secret: ropc_secret }}\n    username: alice\n    password: {{ secret: {password_secret} }}\n    scope: [{scope}]\n"
    )
}

#[tokio::test]
async fn password_grant_ok_and_wrong_password() {
    let peer = OidcPeer::start().await;
    let (_dir, store) = secrets(&[
        ("ropc_secret", "probe-ropc-secret"),
        ("alice_pw", "alice-password"),
        ("wrong_pw", "not-alices-password"),
    ]);
    let memory = ProbeMemory::default();
    let (o, outputs) = run_outputs(
        &ropc(&peer.issuer, "alice_pw", "openid, offline_access, profile"),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(step_names(&o), ["discovery", "token", "validate"]);
    assert!(
        o.steps[1]
            .detail
            .contains("with refresh_token and id_token"),
        "{}",
        o.steps[1].detail
    );
    for k in ["access_token", "refresh_token", "id_token"] {
        assert!(outputs[k].as_str().is_some_and(|t| !t.is_empty()), "{k}");
    }
    // The ID token was validated (aud = client, at_hash = the access token).
    assert_eq!(outputs["claims"]["sub"], "alice");
    assert_eq!(outputs["claims"]["aud"], "probe-ropc");
    assert!(outputs["claims"]["at_hash"].is_string());

    let o = run(&ropc(&peer.issuer, "wrong_pw", "openid"), &store, &memory).await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(o.detail.contains("400 invalid_grant"), "{}", o.detail);
    assert!(!format!("{o:?}").contains("not-alices-password"));
}

#[tokio::test]
async fn journey_password_refresh_userinfo_introspect_revoke() {
    let peer = OidcPeer::start().await;
    let (_dir, store) = secrets(&[
        ("ropc_secret", "probe-ropc-secret"),
        ("alice_pw", "alice-password"),
    ]);
    let client = "client_id: probe-ropc\n        client_secret: { secret: ropc_secret }";
    let yaml = r#"  - id: j
    kind: journey
    timeout: 20s
    interval: 1m
    steps:
      - name: login
        kind: password
        issuer: ISSUER
        CLIENT
        username: alice
        password: { secret: alice_pw }
        scope: [openid, offline_access, profile]
      - name: idtoken
        kind: jwt_validate
        token: "{{ steps.login.id_token }}"
        issuer: ISSUER
        audience: probe-ropc
        access_token: "{{ steps.login.access_token }}"
        required_claims: [sub, name]
        min_remaining_lifetime: 30m
      - name: refreshed
        kind: refresh
        issuer: ISSUER
        CLIENT
        refresh_token: "{{ steps.login.refresh_token }}"
      - name: me
        kind: userinfo
        issuer: ISSUER
        token: "{{ steps.refreshed.access_token }}"
        required_claims: [sub, name]
        expect_sub: "{{ steps.login.claims.sub }}"
      - name: check
        kind: introspect
        issuer: ISSUER
        CLIENT
        token: "{{ steps.refreshed.access_token }}"
      - name: logout
        kind: revoke
        issuer: ISSUER
        CLIENT
        token: "{{ steps.refreshed.access_token }}"
        token_type_hint: access_token
      - name: gone
        kind: introspect
        issuer: ISSUER
        CLIENT
        token: "{{ steps.refreshed.access_token }}"
        expect_active: false
"#
    .replace("ISSUER", &peer.issuer)
    .replace("CLIENT", client);
    let o = run(&yaml, &store, &ProbeMemory::default()).await;
    assert!(o.success(), "{o:#?}");
    assert_eq!(
        step_names(&o),
        [
            "login",
            "idtoken",
            "refreshed",
            "me",
            "check",
            "logout",
            "gone"
        ]
    );
    let detail = |name: &str| {
        o.steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.detail.clone())
            .expect("step")
    };
    assert!(
        detail("idtoken").contains("sub alice, expires in "),
        "{}",
        detail("idtoken")
    );
    assert!(
        detail("refreshed").contains("Bearer, expires in 1h"),
        "{}",
        detail("refreshed")
    );
    assert!(
        detail("me").contains("sub alice, 2 claim(s)"),
        "{}",
        detail("me")
    );
    assert!(
        detail("check").contains("active, sub alice, client probe-ropc"),
        "{}",
        detail("check")
    );
    assert!(
        detail("logout").contains("inactive after revocation"),
        "{}",
        detail("logout")
    );
    assert!(detail("gone").contains("inactive"), "{}", detail("gone"));
    // No token or secret in anything the coordinator would see.
    let all = format!("{o:?}");
    assert!(!all.contains("alice-password") && !all.contains("probe-ropc-secret"));

    // The same refresh token again after the provider rotated it is dead
    // (oidc-provider rotates confidential clients' tokens on use? if not,
    // it still works): either way the class is never `internal`.
    let o = run(
        &format!(
            "  - id: bad\n    kind: refresh\n    issuer: {}\n    client_id: probe-ropc\n    client_secret: {{ secret: ropc_secret }}\n    refresh_token: not-a-refresh-token\n",
            peer.issuer
        ),
        &store,
        &ProbeMemory::default(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(o.detail.contains("invalid_grant"), "{}", o.detail);
}

#[tokio::test]
async fn userinfo_missing_claim_and_bad_token() {
    let peer = OidcPeer::start().await;
    let (_dir, store) = secrets(&[
        ("ropc_secret", "probe-ropc-secret"),
        ("alice_pw", "alice-password"),
    ]);
    let memory = ProbeMemory::default();
    let (o, outputs) =
        run_outputs(&ropc(&peer.issuer, "alice_pw", "openid"), &store, &memory).await;
    assert!(o.success(), "{o:?}");
    let token = outputs["access_token"].as_str().expect("token").to_string();

    // Scope openid only: no `email` claim.
    let (o, outputs) = run_outputs(
        &format!(
            "  - id: ui\n    kind: userinfo\n    issuer: {}\n    token: {token}\n    required_claims: [sub, email]\n",
            peer.issuer
        ),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(
        o.detail.contains("missing claim(s) email (got sub)"),
        "{}",
        o.detail
    );
    assert_eq!(outputs["sub"], "alice");

    let o = run(
        &format!(
            "  - id: ui\n    kind: userinfo\n    issuer: {}\n    token: not-a-valid-access-token\n",
            peer.issuer
        ),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(
        o.detail.contains("401") && o.detail.contains("invalid_token"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn revoke_that_leaves_the_token_active_is_assertion() {
    let peer = OidcPeer::start().await;
    let (_dir, store) = secrets(&[
        ("ropc_secret", "probe-ropc-secret"),
        ("alice_pw", "alice-password"),
    ]);
    let memory = ProbeMemory::default();
    let (o, outputs) =
        run_outputs(&ropc(&peer.issuer, "alice_pw", "openid"), &store, &memory).await;
    assert!(o.success(), "{o:?}");
    let token = outputs["access_token"].as_str().expect("token").to_string();
    // Fault fixture: a revocation endpoint that says 200 and does nothing;
    // the real peer's introspection then shows the token alive.
    let ignore = FaultServer::start(|_| Reply::status(200, "")).await;
    let o = run(
        &format!(
            "  - id: rv\n    kind: revoke\n    issuer: {}\n    revocation_endpoint: {}\n    client_id: probe-ropc\n    client_secret: {{ secret: ropc_secret }}\n    token: {token}\n",
            peer.issuer,
            ignore.url("/revoke")
        ),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(
        o.detail
            .contains("step `introspect`: token still active after revocation (active, sub alice"),
        "{}",
        o.detail
    );
    assert!(!o.detail.contains(&token));

    // Introspection of a live token with expect_active: false is the same finding.
    let o = run(
        &format!(
            "  - id: in\n    kind: introspect\n    issuer: {}\n    client_id: probe-ropc\n    client_secret: {{ secret: ropc_secret }}\n    token: {token}\n    expect_active: false\n",
            peer.issuer
        ),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");

    // And a token the server never issued is inactive: token_invalid.
    let o = run(
        &format!(
            "  - id: in2\n    kind: introspect\n    issuer: {}\n    client_id: probe-ropc\n    client_secret: {{ secret: ropc_secret }}\n    token: never-issued-token\n",
            peer.issuer
        ),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
    assert!(o.detail.contains("not active"), "{}", o.detail);
}

// ---------------------------------------------------------------------------
// jwt_validate with crafted tokens
// ---------------------------------------------------------------------------

/// Fault fixture: a JWKS endpoint serving whatever key set the test puts in.
struct JwksFixture {
    server: FaultServer,
    body: Arc<Mutex<String>>,
}

impl JwksFixture {
    async fn start(keys: &[&TestKey]) -> JwksFixture {
        let body = Arc::new(Mutex::new(String::new()));
        let shared = body.clone();
        let server =
            FaultServer::start(move |_| Reply::json(&shared.lock().expect("lock").clone())).await;
        let f = JwksFixture { server, body };
        f.serve(keys);
        f
    }

    fn serve(&self, keys: &[&TestKey]) {
        let set = json!({ "keys": keys.iter().map(|k| k.ec_jwk()).collect::<Vec<_>>() });
        *self.body.lock().expect("lock") = set.to_string();
    }

    fn url(&self) -> String {
        self.server.url("/jwks")
    }
}

fn validate_yaml(jwks: &str, token: &str, extra: &str) -> String {
    format!(
        "  - id: jv\n    kind: jwt_validate\n    jwks_uri: {jwks}\n    token: {token}\n    audience: api\n{extra}"
    )
}

fn claims(exp_in: i64) -> Json {
    let now = now() as i64;
    json!({ "iss": "https://issuer.test", "sub": "svc", "aud": ["api", "other"], "iat": now, "exp": now + exp_in })
}

#[tokio::test]
async fn jwt_validate_accepts_a_good_token_and_reports_lifetime() {
    let key = TestKey::ec("k1");
    let jwks = JwksFixture::start(&[&key]).await;
    let token = key.sign(&claims(3600));
    let store = SecretStore::new(None);
    let (o, outputs) = run_outputs(
        &validate_yaml(&jwks.url(), &token, "    required_claims: [sub]\n"),
        &store,
        &ProbeMemory::default(),
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(step_names(&o), ["validate"]);
    assert!(
        o.steps[0]
            .detail
            .starts_with("ES256 kid k1, sub svc, expires in "),
        "{}",
        o.steps[0].detail
    );
    assert_eq!(outputs["claims"]["sub"], "svc");
    assert_eq!(outputs["kid"], "k1");
    assert!(
        outputs["remaining_lifetime_seconds"]
            .as_u64()
            .is_some_and(|s| s > 3500)
    );

    // Valid, but too close to expiry for this check.
    let short = key.sign(&claims(120));
    let o = run(
        &validate_yaml(&jwks.url(), &short, "    min_remaining_lifetime: 10m\n"),
        &store,
        &ProbeMemory::default(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(
        o.detail.contains("below min_remaining_lifetime 10m"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn jwt_validate_refuses_forged_and_stale_tokens() {
    let key = TestKey::ec("k1");
    let rogue = TestKey::ec("rogue");
    let jwks = JwksFixture::start(&[&key]).await;
    let store = SecretStore::new(None);
    let memory = ProbeMemory::default();

    let header_b64 = |h: Json| URL_SAFE_NO_PAD.encode(h.to_string());
    let payload_b64 = URL_SAFE_NO_PAD.encode(claims(3600).to_string());
    let unsigned = format!(
        "{}.{payload_b64}.",
        header_b64(json!({"alg": "none", "kid": "k1"}))
    );
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(3600),
        &EncodingKey::from_secret(b"shared-secret").expect("hmac key"),
    )
    .expect("hs256");
    // A real signature by k1 over a changed payload.
    let good = key.sign(&claims(3600));
    let mut parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = URL_SAFE_NO_PAD.encode(
        json!({"iss": "https://issuer.test", "sub": "admin", "aud": "api", "exp": now() + 3600})
            .to_string(),
    );
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");

    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown key",
            rogue.sign(&claims(3600)),
            "",
            "unknown kid `rogue` after JWKS refresh",
        ),
        ("alg none", unsigned, "", "alg none refused"),
        ("HS256", hs256, "", "alg HS256 refused"),
        ("expired", key.sign(&claims(-600)), "", "expired 10m"),
        (
            "not yet valid",
            key.sign(&{
                let mut c = claims(3600);
                c["nbf"] = json!(now() + 900);
                c
            }),
            "",
            "not valid yet: nbf is 1",
        ),
        ("tampered", tampered, "", "bad signature"),
        (
            "wrong issuer",
            key.sign(&claims(3600)),
            "    issuer: https://other.test\n",
            "iss mismatch: got \"https://issuer.test\" want \"https://other.test\"",
        ),
        (
            "missing claim",
            key.sign(&claims(3600)),
            "    required_claims: [sub, email]\n",
            "missing required claim(s): email",
        ),
        (
            "nonce",
            key.sign(&claims(3600)),
            "    nonce: n-123\n",
            "no nonce claim",
        ),
        (
            "not a jwt",
            "opaque-token-value".to_string(),
            "",
            "not a JWT",
        ),
    ];
    for (what, token, extra, want) in cases {
        let yaml = validate_yaml(&jwks.url(), &token, extra);
        // `issuer` with `jwks_uri` checks iss without discovery.
        let o = run(&yaml, &store, &memory).await;
        assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{what}: {o:?}");
        assert!(o.detail.contains(want), "{what}: {}", o.detail);
        assert!(!o.detail.contains(&token), "{what}: token in detail");
    }
}

#[tokio::test]
async fn jwks_is_refetched_once_for_an_unknown_kid_and_rate_limited() {
    let old = TestKey::ec("old");
    let new = TestKey::ec("new");
    let jwks = JwksFixture::start(&[&old]).await;
    let store = SecretStore::new(None);
    // Refetches allowed at any age here, to see them happen.
    let mut memory = ProbeMemory::default();
    memory.jwks = JwksCache::with_min_refetch(Duration::ZERO);

    let o = run(
        &validate_yaml(&jwks.url(), &old.sign(&claims(600)), ""),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(jwks.server.requests(), 1);
    // Cached: no request.
    let o = run(
        &validate_yaml(&jwks.url(), &old.sign(&claims(600)), ""),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(jwks.server.requests(), 1);

    // The issuer rotates; a token with the new kid makes us look again, once.
    jwks.serve(&[&new]);
    let o = run(
        &validate_yaml(&jwks.url(), &new.sign(&claims(600)), ""),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(jwks.server.requests(), 2);
    let o = run(
        &validate_yaml(&jwks.url(), &old.sign(&claims(600)), ""),
        &store,
        &memory,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
    assert!(
        o.detail.contains("unknown kid `old` after JWKS refresh"),
        "{}",
        o.detail
    );
    assert_eq!(jwks.server.requests(), 3);

    // With the default rate limit, a burst of unknown kids costs no requests.
    let limited = ProbeMemory::default();
    let o = run(
        &validate_yaml(&jwks.url(), &new.sign(&claims(600)), ""),
        &store,
        &limited,
    )
    .await;
    assert!(o.success(), "{o:?}");
    let before = jwks.server.requests();
    for _ in 0..3 {
        let o = run(
            &validate_yaml(&jwks.url(), &old.sign(&claims(600)), ""),
            &store,
            &limited,
        )
        .await;
        assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
        assert!(
            o.detail.contains("refetch at most every 10s"),
            "{}",
            o.detail
        );
    }
    assert_eq!(jwks.server.requests(), before);
}

#[tokio::test]
async fn jwt_validate_finds_the_jwks_by_discovery() {
    let peer = OidcPeer::start().await;
    let (_dir, store) = secrets(&[("cc_secret", "probe-cc-secret")]);
    let memory = ProbeMemory::default();
    let (o, outputs) = run_outputs(
        &format!(
            "  - id: cc\n    kind: client_credentials\n    issuer: {}\n    client_id: probe-cc\n    client_secret: {{ secret: cc_secret }}\n    resource: urn:authpulse:api\n",
            peer.issuer
        ),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    let token = outputs["access_token"].as_str().expect("token").to_string();
    let o = run(
        &format!(
            "  - id: jv\n    kind: jwt_validate\n    issuer: {}\n    audience: urn:authpulse:api\n    token: {token}\n",
            peer.issuer
        ),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(step_names(&o), ["discovery", "validate"]);

    // After a restart the peer signs with new keys: the old token's kid is
    // gone from its JWKS.
    let mut peer = peer;
    peer.restart().await;
    let o = run(
        &format!(
            "  - id: jv2\n    kind: jwt_validate\n    issuer: {}\n    token: {token}\n",
            peer.issuer
        ),
        &store,
        &ProbeMemory::default(),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
    assert!(o.detail.contains("unknown kid"), "{}", o.detail);
}

// ---------------------------------------------------------------------------
// oidc_discovery drift
// ---------------------------------------------------------------------------

#[tokio::test]
async fn discovery_reports_key_rotation_as_information() {
    let mut peer = OidcPeer::start().await;
    let yaml = format!(
        "  - id: d\n    kind: oidc_discovery\n    issuer: {}\n",
        peer.issuer
    );
    let store = SecretStore::new(None);
    let memory = ProbeMemory::default();
    let (o, outputs) = run_outputs(&yaml, &store, &memory).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(outputs["keys_rotated"], false);
    let (o, outputs) = run_outputs(&yaml, &store, &memory).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(outputs["keys_rotated"], false);
    assert!(!o.detail.contains("rotated"), "{}", o.detail);

    // Same port, same issuer and endpoints; new signing keys.
    peer.restart().await;
    let (o, outputs) = run_outputs(&yaml, &store, &memory).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(outputs["keys_rotated"], true);
    assert_eq!(outputs["endpoints_changed"], false);
    let jwks = &o.steps[1].detail;
    assert!(jwks.contains("; signing keys rotated: +"), "{jwks}");
    // Two keys out, two in.
    let rotated = jwks.split("rotated: ").nth(1).expect("rotation");
    assert_eq!(rotated.matches('+').count(), 2, "{jwks}");
    assert_eq!(rotated.matches(" -").count(), 2, "{jwks}");
}

#[tokio::test]
async fn discovery_fails_on_a_changed_token_endpoint_unless_allowed() {
    let a = OidcPeer::start().await;
    let b = OidcPeer::start().await;
    let client = reqwest::Client::new();
    let doc_a = authpulse_tests::get_text(
        &client,
        format!("{}/.well-known/openid-configuration", a.issuer),
    )
    .await;
    // Fault fixture: serves A's real document, later with its token
    // endpoint moved to B (a real token endpoint on another port), as if
    // the provider had been re-pointed.
    let doc = Arc::new(Mutex::new(doc_a.clone()));
    let shared = doc.clone();
    let disco = FaultServer::start(move |_| Reply::json(&shared.lock().expect("lock"))).await;
    let yaml = format!(
        "  - id: d\n    kind: oidc_discovery\n    issuer: {}\n    discovery_url: {}\n",
        a.issuer,
        disco.url("/.well-known/openid-configuration")
    );
    let store = SecretStore::new(None);
    let memory = ProbeMemory::default();
    let o = run(&yaml, &store, &memory).await;
    assert!(o.success(), "first run records: {o:?}");

    let a_token = format!("{}/token", a.issuer);
    let b_token = format!("{}/token", b.issuer);
    let moved = doc_a.replace(&format!("\"{a_token}\""), &format!("\"{b_token}\""));
    assert_ne!(moved, doc_a);
    *doc.lock().expect("lock") = moved;
    let (o, outputs) = run_outputs(&yaml, &store, &memory).await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert_eq!(
        o.failure.as_ref().map(|f| f.message.clone()),
        Some(format!(
            "step `discovery`: token_endpoint changed from {a_token} to {b_token}"
        ))
    );
    assert_eq!(outputs["endpoints_changed"], true);
    // The JWKS was still checked.
    assert_eq!(o.steps.len(), 2);

    // Reported once: the new state is the baseline now.
    let o = run(&yaml, &store, &memory).await;
    assert!(o.success(), "{o:?}");

    // Moving back while allowed is information only.
    *doc.lock().expect("lock") = doc_a.clone();
    let o = run(
        &format!("{yaml}    allow_endpoint_changes: [token_endpoint]\n"),
        &store,
        &memory,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.detail.contains(&format!(
            "token_endpoint changed from {b_token} to {a_token} (allowed)"
        )),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn catalog_checks_for_token_kinds() {
    let bad = [
        (
            "  - id: x\n    kind: client_credentials\n    client_id: c\n",
            "set `issuer` (the endpoint is found by discovery) or `token_endpoint`",
        ),
        (
            "  - id: x\n    kind: jwt_validate\n    token: t\n    jwks_uri: https://i.test/jwks\n    algorithms: [HS256]\n",
            "shared-secret algorithm",
        ),
        (
            "  - id: x\n    kind: jwt_validate\n    token: t\n    jwks_uri: https://i.test/jwks\n    algorithms: [none]\n",
            "never allowed",
        ),
        (
            "  - id: x\n    kind: client_credentials\n    issuer: https://i.test\n    client_id: c\n    client_auth: private_key_jwt\n",
            "required by `client_auth: private_key_jwt`",
        ),
        (
            "  - id: x\n    kind: oidc_discovery\n    issuer: https://i.test\n    allow_endpoint_changes: [scopes_supported]\n",
            "not a metadata URL field",
        ),
    ];
    for (yaml, want) in bad {
        let err = catalog::load_str("t.yaml", &format!("probes:\n{yaml}"))
            .err()
            .unwrap_or_else(|| panic!("accepted: {yaml}"));
        assert!(err.to_string().contains(want), "{yaml}: {err}");
    }
}
