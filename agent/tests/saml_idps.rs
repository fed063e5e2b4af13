//! `saml_login` and `saml_metadata` against real SAML identity providers
//! nobody on the team wrote, installed unmodified from the package
//! registries and configured from tests/peers/saml (tests/src/saml_idp.rs):
//! SimpleSAMLphp (Debian) and djangosaml2idp on pysaml2 (PyPI). For each:
//! a login validated end to end (metadata, AuthnRequest, login page,
//! signature, conditions, attributes), the POST binding, a signed
//! AuthnRequest, IdP-initiated SSO, a wrong password, an expired and an
//! untrusted signing certificate, a wrong audience, an assertion tampered
//! after the IdP signed it, and metadata expiry and drift.
use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeMemory, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::saml_idp::{self, Options, SamlIdp, Which};

struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = TempDir::new("ap-saml");
        for (name, value) in [("alice_pw", "alice-pw"), ("wrong_pw", "not-alice-pw-7731")] {
            std::fs::write(dir.path().join(name), value).expect("secret");
        }
        Env { dir }
    }

    fn secret(&self, name: &str, value: &str) {
        std::fs::write(self.dir.path().join(name), value).expect("secret");
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("file");
        p.display().to_string()
    }

    fn store(&self) -> SecretStore {
        SecretStore::new(Some(self.dir.path().to_path_buf()))
    }

    async fn run_with(&self, yaml: &str, memory: &ProbeMemory) -> ProbeOutcome {
        authpulse_tests::crypto();
        let cat = catalog::load_str("t.yaml", &format!("probes:\n{yaml}"))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let net = NetContext::new().expect("net");
        probes::run(&cat.probes[0], &net, &self.store(), memory).await
    }

    async fn run(&self, yaml: &str) -> ProbeOutcome {
        self.run_with(yaml, &ProbeMemory::default()).await
    }
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

fn message(o: &ProbeOutcome) -> String {
    o.failure
        .as_ref()
        .map(|f| f.message.clone())
        .unwrap_or_default()
}

fn steps(o: &ProbeOutcome) -> Vec<&str> {
    o.steps.iter().map(|s| s.name.as_str()).collect()
}

/// A `saml_login` probe for `idp` with `extra` keys (indented 4).
fn login(idp: &SamlIdp, password: &str, extra: &str) -> String {
    format!(
        "  - id: sso\n    kind: saml_login\n    interval: 60s\n    timeout: 20s\n    \
         idp_metadata_url: {}\n    sp_entity_id: {}\n    acs_url: {}\n    username: alice\n    \
         password: {{ secret: {password} }}\n{extra}",
        idp.metadata_url, idp.sp_entity_id, idp.acs_url
    )
}

const EXPECT: &str = "    expect:\n      attributes:\n        \
                      mail: alice@example.test\n        eduPersonAffiliation: [member, staff]\n";

/// Asks for the username as NameID and expects it (both IdPs support
/// `unspecified`; SimpleSAMLphp's default is transient).
const BY_USERNAME: &str = "    name_id_format: urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\n    \
                           expect:\n      name_id: \"^alice$\"\n      attributes:\n        \
                           mail: alice@example.test\n        eduPersonAffiliation: [member, staff]\n      \
                           authn_context: urn:oasis:names:tc:SAML:2.0:ac:classes:Password\n";

/// The IdP signs what `saml_login` requires by default (either part).
fn signing(which: Which) -> Options {
    match which {
        Which::SimpleSamlPhp => Options::default(),
        Which::DjangoSaml2Idp => Options {
            sign_assertion: Some(true),
            sign_response: Some(true),
            ..Options::default()
        },
    }
}

async fn successful_login(which: Which) {
    let idp = SamlIdp::start(which, &signing(which));
    let env = Env::new();
    let o = env.run(&login(&idp, "alice_pw", BY_USERNAME)).await;
    assert!(o.success(), "{which:?}: {o:#?}\n{}", idp.log());
    assert_eq!(
        steps(&o),
        ["metadata", "sso", "login", "assertion"],
        "{o:#?}"
    );
    let detail = &o.steps[3].detail;
    assert!(detail.contains("NameID alice"), "{detail}");
    assert!(
        detail.contains(&format!("by {}", idp.entity_id)),
        "{detail}"
    );
    // Each phase has its own timings.
    assert!(o.steps[1].timings.total > std::time::Duration::ZERO);
    assert!(o.steps[2].timings.total > std::time::Duration::ZERO);
}

async fn post_binding(which: Which) {
    let idp = SamlIdp::start(which, &signing(which));
    let env = Env::new();
    let o = env
        .run(&login(
            &idp,
            "alice_pw",
            &format!("    binding: post\n{EXPECT}"),
        ))
        .await;
    assert!(o.success(), "{which:?}: {o:#?}\n{}", idp.log());
}

async fn signed_request(which: Which, binding: &str) {
    let (sp_cert, sp_key) = saml_idp::sp_cert();
    let idp = SamlIdp::start(
        which,
        &Options {
            sp_cert: Some(sp_cert),
            validate_authnrequest: Some(true),
            ..signing(which)
        },
    );
    let env = Env::new();
    env.secret("sp_key", &sp_key);
    let yaml = |sign: bool| {
        login(
            &idp,
            "alice_pw",
            &format!(
                "    binding: {binding}\n    sp_key: {{ secret: sp_key }}\n    sign_request: {sign}\n"
            ),
        )
    };
    let o = env.run(&yaml(true)).await;
    assert!(o.success(), "{which:?} signed: {o:#?}\n{}", idp.log());
    // The same IdP refuses the unsigned request: the check is real.
    let o = env.run(&yaml(false)).await;
    assert!(
        !o.success(),
        "{which:?} accepted an unsigned AuthnRequest: {o:#?}"
    );
}

async fn wrong_password(which: Which) {
    let idp = SamlIdp::start(which, &signing(which));
    let env = Env::new();
    let o = env.run(&login(&idp, "wrong_pw", "")).await;
    assert_eq!(
        class(&o),
        Some(FailureClass::AuthRejected),
        "{which:?}: {o:#?}"
    );
    assert!(!message(&o).contains("not-alice-pw"), "{}", message(&o));
}

async fn expired_signing_certificate(which: Which) {
    let idp = SamlIdp::start(
        which,
        &Options {
            signing: Some(saml_idp::signing_cert(true)),
            ..signing(which)
        },
    );
    let env = Env::new();
    let o = env.run(&login(&idp, "alice_pw", "")).await;
    assert_eq!(
        class(&o),
        Some(FailureClass::TokenInvalid),
        "{which:?}: {o:#?}"
    );
    assert!(message(&o).contains("expired"), "{}", message(&o));
}

async fn untrusted_signing_certificate(which: Which) {
    let idp = SamlIdp::start(which, &signing(which));
    let env = Env::new();
    let (other, _) = saml_idp::signing_cert(false);
    let file = env.file("other.pem", &other);
    let o = env
        .run(&login(
            &idp,
            "alice_pw",
            &format!("    idp_certificate_file: {file}\n"),
        ))
        .await;
    assert_eq!(
        class(&o),
        Some(FailureClass::TokenInvalid),
        "{which:?}: {o:#?}"
    );
    assert!(message(&o).contains("does not verify"), "{}", message(&o));
    // With the IdP's real certificate in the same file shape, it passes.
    let good = env.file("good.pem", &idp.cert_pem);
    let o = env
        .run(&login(
            &idp,
            "alice_pw",
            &format!("    idp_certificate_file: {good}\n"),
        ))
        .await;
    assert!(o.success(), "{which:?}: {o:#?}");
}

async fn idp_initiated(which: Which) {
    let idp = SamlIdp::start(
        which,
        &Options {
            idp_initiated: true,
            ..signing(which)
        },
    );
    let env = Env::new();
    let url = idp.idp_initiated_url(&idp.sp_entity_id);
    let o = env
        .run(&login(
            &idp,
            "alice_pw",
            &format!("    idp_initiated_url: \"{url}\"\n{EXPECT}"),
        ))
        .await;
    assert!(o.success(), "{which:?}: {o:#?}\n{}", idp.log());
    // The same assertion for an SP that is not us: a wrong audience.
    let yaml = login(
        &idp,
        "alice_pw",
        &format!("    idp_initiated_url: \"{url}\"\n"),
    )
    .replace(
        &format!("sp_entity_id: {}", idp.sp_entity_id),
        "sp_entity_id: https://another-app.invalid/sp",
    );
    let o = env.run(&yaml).await;
    assert_eq!(
        class(&o),
        Some(FailureClass::TokenInvalid),
        "{which:?}: {o:#?}"
    );
    assert!(message(&o).contains("Audience"), "{}", message(&o));
}

/// The IdP's own signed response, one value changed after signing: the
/// signature must fail. The response comes from a real login whose pages
/// were saved (`--save-pages`), so the bytes are the IdP's.
async fn tampered_assertion(which: Which) {
    use authpulse_agent::saml::{metadata::Certificate, response};
    let idp = SamlIdp::start(which, &signing(which));
    let env = Env::new();
    let pages = TempDir::new("ap-saml-pages");
    let cat = catalog::load_str(
        "t.yaml",
        &format!("probes:\n{}", login(&idp, "alice_pw", "")),
    )
    .expect("catalog");
    authpulse_tests::crypto();
    let net = NetContext::new().expect("net");
    let o = probes::run_saving_pages(
        &cat.probes[0],
        &net,
        &env.store(),
        &ProbeMemory::default(),
        Some(pages.path().to_path_buf()),
    )
    .await;
    assert!(o.success(), "{o:#?}");
    let mut html = String::new();
    for e in std::fs::read_dir(pages.path()).expect("pages").flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if text.contains("SAMLResponse") && e.path().extension().is_some_and(|x| x == "html") {
            html = text;
        }
    }
    let doc = scraper::Html::parse_document(&html);
    let sel = scraper::Selector::parse("input[name=SAMLResponse]").expect("selector");
    let value = doc
        .select(&sel)
        .next()
        .and_then(|i| i.value().attr("value"))
        .expect("the saved auto-post page has the SAMLResponse");
    let xml = response::decode(value).expect("decode");
    let request = authpulse_agent::saml::parse(&xml)
        .expect("xml")
        .root_element()
        .attribute("InResponseTo")
        .expect("InResponseTo")
        .to_string();
    let der = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(saml_idp::pem_body(&idp.cert_pem))
            .expect("pem")
    };
    let trusted = [Certificate::from_der(der, true, false).expect("cert")];
    let want = response::Expected {
        idp_entity_id: &idp.entity_id,
        sp_entity_id: &idp.sp_entity_id,
        acs_url: &idp.acs_url,
        in_response_to: Some(&request),
        trusted: &trusted,
        sp_key_pem: None,
        require: catalog::SamlSigned::Either,
        clock_skew_secs: 60,
        now: authpulse_agent::saml::now_unix(),
    };
    response::validate(&xml, &want).expect("the untouched response is valid");
    assert!(xml.contains("alice@example.test"), "{xml}");
    let tampered = xml.replace("alice@example.test", "mallory@example.test");
    match response::validate(&tampered, &want) {
        Err(response::Rejection::Invalid(m)) => assert!(m.contains("does not verify"), "{m}"),
        other => panic!("{which:?}: a tampered assertion was not refused: {other:?}"),
    }
}

async fn metadata_expiry_and_drift(which: Which) {
    let mut idp = SamlIdp::start(which, &signing(which));
    let env = Env::new();
    let memory = ProbeMemory::default();
    let url = idp.metadata_url.clone();
    let probe = |min_days: u32| {
        format!(
            "  - id: md\n    kind: saml_metadata\n    interval: 60s\n    timeout: 10s\n    \
             url: {url}\n    min_cert_days: {min_days}\n"
        )
    };
    let o = env.run_with(&probe(14), &memory).await;
    assert!(o.success(), "{which:?}: {o:#?}");
    assert_eq!(steps(&o), ["metadata", "certificates"]);
    // The certificate runs a year: 400 days is more than it has.
    let o = env.run_with(&probe(400), &ProbeMemory::default()).await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:#?}");
    assert!(message(&o).contains("expires in"), "{}", message(&o));
    // A new signing certificate: reported, not a failure.
    let (cert, key) = saml_idp::signing_cert(false);
    idp.set_signing_cert(&cert, &key);
    let o = env.run_with(&probe(14), &memory).await;
    assert!(o.success(), "{o:#?}");
    assert!(o.steps[1].detail.contains("certificates rotated"), "{o:#?}");
    // A new entity id: drift that fails.
    idp.set_entity_id("https://moved.example/idp");
    let o = env.run_with(&probe(14), &memory).await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:#?}");
    assert!(message(&o).contains("entity_id changed"), "{}", message(&o));
    // An expired certificate fails the threshold.
    let (cert, key) = saml_idp::signing_cert(true);
    idp.set_signing_cert(&cert, &key);
    let o = env.run_with(&probe(14), &ProbeMemory::default()).await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:#?}");
    assert!(message(&o).contains("expired"), "{}", message(&o));
}

macro_rules! for_each_idp {
    ($($name:ident => $body:expr;)*) => {
        mod simplesamlphp {
            use super::*;
            $(#[tokio::test] async fn $name() { let which = Which::SimpleSamlPhp; $body(which).await })*
        }
        mod djangosaml2idp {
            use super::*;
            $(#[tokio::test] async fn $name() { let which = Which::DjangoSaml2Idp; $body(which).await })*
        }
    };
}

for_each_idp! {
    login_is_validated_end_to_end => successful_login;
    the_post_binding_works => post_binding;
    wrong_password_is_auth_rejected => wrong_password;
    an_expired_signing_certificate_is_token_invalid => expired_signing_certificate;
    an_untrusted_signing_certificate_is_token_invalid => untrusted_signing_certificate;
    idp_initiated_login_and_a_wrong_audience => idp_initiated;
    an_assertion_tampered_after_signing_fails => tampered_assertion;
    metadata_expiry_and_drift_are_reported => metadata_expiry_and_drift;
}

#[tokio::test]
async fn simplesamlphp_signed_redirect_request() {
    signed_request(Which::SimpleSamlPhp, "redirect").await;
}

#[tokio::test]
async fn djangosaml2idp_signed_post_request() {
    signed_request(Which::DjangoSaml2Idp, "post").await;
}

async fn encrypted_assertion(which: Which) {
    let (sp_cert, sp_key) = saml_idp::sp_cert();
    let idp = SamlIdp::start(
        which,
        &Options {
            sp_cert: Some(sp_cert),
            encrypt_assertion: true,
            validate_authnrequest: Some(false),
            ..signing(which)
        },
    );
    let env = Env::new();
    env.secret("sp_key", &sp_key);
    let o = env
        .run(&login(
            &idp,
            "alice_pw",
            &format!("    sp_key: {{ secret: sp_key }}\n{EXPECT}"),
        ))
        .await;
    assert!(o.success(), "{which:?}: {o:#?}\n{}", idp.log());
    assert!(o.steps[3].detail.contains("encrypted"), "{o:#?}");
    // Without the key the probe says what is missing.
    let o = env.run(&login(&idp, "alice_pw", "")).await;
    assert_eq!(class(&o), Some(FailureClass::Config), "{o:#?}");
}

#[tokio::test]
async fn simplesamlphp_encrypted_assertion_is_decrypted() {
    encrypted_assertion(Which::SimpleSamlPhp).await;
}

#[tokio::test]
async fn djangosaml2idp_encrypted_assertion_is_decrypted() {
    encrypted_assertion(Which::DjangoSaml2Idp).await;
}
