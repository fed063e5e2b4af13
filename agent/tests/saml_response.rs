//! The SAMLResponse validator on responses signed here with a key made for
//! the test: the checks a real IdP can't be made to fail on demand
//! (wrapping, tampering after signing, a foreign audience, stale time
//! conditions, a replayed request id), and a property test that no input
//! panics it. The real IdPs' responses are validated end to end in
//! tests/saml_idps.rs.
use authpulse_agent::saml::metadata::Certificate;
use authpulse_agent::saml::request::{SpKey, sign_enveloped};
use authpulse_agent::saml::response::{self, Expected, Rejection};
use authpulse_proto::catalog::SamlSigned;
use base64::Engine;
use proptest::prelude::*;

const IDP: &str = "https://idp.test/metadata";
const SP: &str = "https://sp.test/sp";
const ACS: &str = "https://sp.test/acs";
const REQ: &str = "_req0123456789";

struct Signer {
    key: SpKey,
    cert: Certificate,
}

fn signer(not_after_days: i64) -> Signer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
    let mut params = rcgen::CertificateParams::new(vec!["idp.test".into()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = if not_after_days < 0 {
        rcgen::date_time_ymd(2021, 1, 1)
    } else {
        (std::time::SystemTime::now()
            + std::time::Duration::from_secs(not_after_days as u64 * 86_400))
        .into()
    };
    let cert = params.self_signed(&kp).expect("cert");
    Signer {
        key: SpKey::from_pem(&kp.serialize_pem()).expect("key"),
        cert: Certificate::from_der(cert.der().to_vec(), true, false).expect("cert"),
    }
}

fn instant(offset_secs: i64) -> String {
    let t = std::time::SystemTime::now();
    let t = if offset_secs >= 0 {
        t + std::time::Duration::from_secs(offset_secs as u64)
    } else {
        t - std::time::Duration::from_secs((-offset_secs) as u64)
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A Success response with one assertion; `audience`, `recipient` and the
/// conditions' end are parameters so tests can break one at a time.
fn response_xml(audience: &str, recipient: &str, not_on_or_after: i64) -> String {
    format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_resp1" Version="2.0" IssueInstant="{now}" Destination="{ACS}" InResponseTo="{REQ}"><saml:Issuer Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{IDP}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status><saml:Assertion ID="_assert1" Version="2.0" IssueInstant="{now}"><saml:Issuer>{IDP}</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient">alice</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{end}" Recipient="{recipient}" InResponseTo="{REQ}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{before}" NotOnOrAfter="{end}"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{now}" SessionIndex="_sess1"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement><saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3" FriendlyName="mail"><saml:AttributeValue>alice@example.test</saml:AttributeValue></saml:Attribute><saml:Attribute Name="role"><saml:AttributeValue>member</saml:AttributeValue><saml:AttributeValue>staff</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion></samlp:Response>"#,
        now = instant(0),
        before = instant(-60),
        end = instant(not_on_or_after),
    )
}

fn sign_assertion(s: &Signer, xml: &str) -> String {
    sign_enveloped(
        xml,
        "_assert1",
        &format!("<saml:Issuer>{IDP}</saml:Issuer>"),
        &s.key,
    )
    .expect("sign")
}

fn expected<'a>(trusted: &'a [Certificate], require: SamlSigned) -> Expected<'a> {
    Expected {
        idp_entity_id: IDP,
        sp_entity_id: SP,
        acs_url: ACS,
        in_response_to: Some(REQ),
        trusted,
        sp_key_pem: None,
        require,
        clock_skew_secs: 60,
        now: authpulse_agent::saml::now_unix(),
    }
}

fn invalid(r: Result<response::Assertion, Rejection>) -> String {
    match r {
        Err(Rejection::Invalid(m)) => m,
        other => panic!("expected token_invalid, got {other:?}"),
    }
}

#[test]
fn a_signed_assertion_validates_and_is_read() {
    let s = signer(365);
    let xml = sign_assertion(&s, &response_xml(SP, ACS, 300));
    let trusted = [s.cert.clone()];
    let a = response::validate(&xml, &expected(&trusted, SamlSigned::Either)).expect("valid");
    assert_eq!(a.name_id, "alice");
    assert_eq!(a.session_index.as_deref(), Some("_sess1"));
    assert_eq!(a.signed, "assertion");
    assert_eq!(a.attributes["mail"], vec!["alice@example.test"]);
    assert_eq!(a.attributes["role"], vec!["member", "staff"]);
    // The same response fails when the Response itself must be signed.
    let m = invalid(response::validate(
        &xml,
        &expected(&trusted, SamlSigned::Response),
    ));
    assert!(m.contains("the Response must be signed"), "{m}");
}

#[test]
fn a_value_changed_after_signing_fails_the_signature() {
    let s = signer(365);
    let xml = sign_assertion(&s, &response_xml(SP, ACS, 300)).replace(">alice<", ">mallory<");
    let trusted = [s.cert.clone()];
    let m = invalid(response::validate(
        &xml,
        &expected(&trusted, SamlSigned::Either),
    ));
    assert!(m.contains("does not verify"), "{m}");
}

#[test]
fn a_signature_by_another_key_fails() {
    let s = signer(365);
    let other = signer(365);
    let xml = sign_assertion(&s, &response_xml(SP, ACS, 300));
    let trusted = [other.cert.clone()];
    let m = invalid(response::validate(
        &xml,
        &expected(&trusted, SamlSigned::Either),
    ));
    assert!(m.contains("does not verify"), "{m}");
    // During a rotation both certificates are trusted: the right one wins.
    let both = [other.cert.clone(), s.cert.clone()];
    response::validate(&xml, &expected(&both, SamlSigned::Either)).expect("valid with either");
}

#[test]
fn md5_signatures_are_refused() {
    let s = signer(365);
    let xml = sign_assertion(&s, &response_xml(SP, ACS, 300)).replace(
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-md5",
    );
    let trusted = [s.cert.clone()];
    let m = invalid(response::validate(
        &xml,
        &expected(&trusted, SamlSigned::Either),
    ));
    assert!(m.contains("broken algorithm"), "{m}");
}

#[test]
fn an_unsigned_response_fails() {
    let s = signer(365);
    let trusted = [s.cert.clone()];
    let m = invalid(response::validate(
        &response_xml(SP, ACS, 300),
        &expected(&trusted, SamlSigned::Either),
    ));
    assert!(m.contains("signed here: nothing"), "{m}");
}

#[test]
fn a_wrapped_second_assertion_is_refused() {
    let s = signer(365);
    let signed = sign_assertion(&s, &response_xml(SP, ACS, 300));
    // Classic wrapping: the signed assertion moves into Extensions and an
    // unsigned one saying "mallory" takes its place.
    let start = signed.find("<saml:Assertion").expect("assertion");
    let end = signed.find("</saml:Assertion>").expect("end") + "</saml:Assertion>".len();
    let original = &signed[start..end];
    let evil = original
        .replace("ID=\"_assert1\"", "ID=\"_evil\"")
        .replace(">alice<", ">mallory<");
    let evil = match (evil.find("<ds:Signature"), evil.find("</ds:Signature>")) {
        (Some(a), Some(b)) => format!("{}{}", &evil[..a], &evil[b + "</ds:Signature>".len()..]),
        _ => panic!("no signature to strip"),
    };
    let wrapped = signed.replace(
        original,
        &format!("<samlp:Extensions>{original}</samlp:Extensions>{evil}"),
    );
    let trusted = [s.cert.clone()];
    let m = invalid(response::validate(
        &wrapped,
        &expected(&trusted, SamlSigned::Either),
    ));
    assert!(m.contains("exactly one"), "{m}");
}

#[test]
fn audience_recipient_request_and_time_are_checked() {
    let s = signer(365);
    let trusted = [s.cert.clone()];
    let check = |xml: String, want: &str| {
        let m = invalid(response::validate(
            &sign_assertion(&s, &xml),
            &expected(&trusted, SamlSigned::Either),
        ));
        assert!(m.contains(want), "{want}: {m}");
    };
    check(response_xml("https://other.test/sp", ACS, 300), "Audience");
    check(response_xml(SP, "https://other.test/acs", 300), "Recipient");
    check(response_xml(SP, ACS, -600), "expired");
    check(
        response_xml(SP, ACS, 300).replace(REQ, "_someone_else"),
        "not this login's AuthnRequest",
    );
    // An IdP-initiated login has no request to compare with: InResponseTo
    // is not checked (djangosaml2idp sends a marker there).
    let xml = sign_assertion(&s, &response_xml(SP, ACS, 300));
    let mut unsolicited = expected(&trusted, SamlSigned::Either);
    unsolicited.in_response_to = None;
    response::validate(&xml, &unsolicited).expect("valid without a request");
    // An SP-initiated login needs the SubjectConfirmation to answer it.
    let no_irt = response_xml(SP, ACS, 300).replace(&format!(" InResponseTo=\"{REQ}\"/>"), "/>");
    check(no_irt, "has no InResponseTo");
}

#[test]
fn an_expired_signing_certificate_fails() {
    let s = signer(-1);
    let xml = sign_assertion(&s, &response_xml(SP, ACS, 300));
    let trusted = [s.cert.clone()];
    let m = invalid(response::validate(
        &xml,
        &expected(&trusted, SamlSigned::Either),
    ));
    assert!(m.contains("expired"), "{m}");
}

#[test]
fn a_failed_status_is_reported_with_its_codes() {
    let xml = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode><samlp:StatusMessage>bad password</samlp:StatusMessage></samlp:Status></samlp:Response>"#;
    let s = signer(365);
    let trusted = [s.cert.clone()];
    match response::validate(xml, &expected(&trusted, SamlSigned::Either)) {
        Err(Rejection::Status(m)) => {
            assert!(m.contains("Responder / AuthnFailed: bad password"), "{m}")
        }
        other => panic!("expected a status failure, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any bytes in the form field: an error, never a panic.
    #[test]
    fn arbitrary_input_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        let trusted: [Certificate; 0] = [];
        if let Ok(xml) = response::decode(&b64) {
            let _ = response::validate(&xml, &expected(&trusted, SamlSigned::Either));
        }
        let _ = response::decode(&String::from_utf8_lossy(&raw));
    }

    /// A real response with one byte changed: rejected or still the same
    /// NameID, never a panic, never a different identity.
    #[test]
    fn mutated_responses_never_yield_another_identity(pos in 0usize..4000, byte in any::<u8>()) {
        use std::sync::OnceLock;
        static FIXTURE: OnceLock<(String, Certificate)> = OnceLock::new();
        let (xml, cert) = FIXTURE.get_or_init(|| {
            let s = signer(365);
            (sign_assertion(&s, &response_xml(SP, ACS, 3600)), s.cert.clone())
        });
        let mut bytes = xml.clone().into_bytes();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Ok(mutated) = String::from_utf8(bytes) {
            let trusted = [cert.clone()];
            if let Ok(a) = response::validate(&mutated, &expected(&trusted, SamlSigned::Either)) {
                prop_assert_eq!(a.name_id, "alice");
            }
        }
    }
}
