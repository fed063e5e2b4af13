//! The SAML identity provider peers (tests/peers/saml, tests/src/saml_idp.rs)
//! start, serve their metadata, and walk a browserless SP-initiated login by
//! hand: HTTP-Redirect AuthnRequest → login form → wrong password (form
//! again, with an error) → right password → self-posting form to the ACS
//! with a SAMLResponse. It documents for the probe what the pages look like.
//! With AUTHPULSE_SAML_SAMPLES_DIR set, each IdP's login page and decoded
//! SAMLResponse are written there.
use std::io::Write;

use authpulse_tests::saml_idp::{self, Options, SamlIdp, Which};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use scraper::{Html, Selector};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

/// A minimal unsigned AuthnRequest on the HTTP-Redirect binding: raw
/// DEFLATE, base64, URL-encoded as SAMLRequest.
fn authn_request_url(idp: &SamlIdp, relay_state: &str) -> String {
    request_url(idp, relay_state, None)
}

/// The same, signed on the HTTP-Redirect binding when `sp_key_pem` is given:
/// `Signature` = RSA-SHA256 over the URL-encoded
/// `SAMLRequest=…&RelayState=…&SigAlg=…`, exactly as sent.
fn request_url(idp: &SamlIdp, relay_state: &str, sp_key_pem: Option<&str>) -> String {
    let id = format!(
        "_req{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let t = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    let now = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let xml = format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{sp}</saml:Issuer></samlp:AuthnRequest>"#,
        dest = idp.sso_url,
        acs = idp.acs_url,
        sp = idp.sp_entity_id,
    );
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(xml.as_bytes()).expect("deflate");
    let deflated = enc.finish().expect("deflate");
    let mut url = reqwest::Url::parse(&idp.sso_url).expect("sso url");
    url.query_pairs_mut()
        .append_pair("SAMLRequest", &B64.encode(deflated))
        .append_pair("RelayState", relay_state);
    if let Some(key) = sp_key_pem {
        url.query_pairs_mut().append_pair(
            "SigAlg",
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        );
        let signed = url.query().expect("query").to_string();
        let key = rcgen::KeyPair::from_pem(key).expect("SP key");
        let sig = rcgen::SigningKey::sign(&key, signed.as_bytes()).expect("sign");
        url.query_pairs_mut()
            .append_pair("Signature", &B64.encode(sig));
    }
    url.to_string()
}

/// A form of the page: its resolved action and its named inputs.
struct Form {
    action: reqwest::Url,
    fields: Vec<(String, String)>,
}

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The first form that has an input named `marker`.
fn form_with(page_url: &reqwest::Url, html: &str, marker: &str) -> Option<Form> {
    let doc = Html::parse_document(html);
    let forms = Selector::parse("form").expect("selector");
    let inputs = Selector::parse("input[name]").expect("selector");
    doc.select(&forms).find_map(|form| {
        let fields: Vec<(String, String)> = form
            .select(&inputs)
            .map(|i| {
                let v = i.value();
                (
                    v.attr("name").unwrap_or_default().to_string(),
                    v.attr("value").unwrap_or_default().to_string(),
                )
            })
            .collect();
        if !fields.iter().any(|(n, _)| n == marker) {
            return None;
        }
        let action = page_url
            .join(form.value().attr("action").unwrap_or(""))
            .expect("form action");
        Some(Form { action, fields })
    })
}

async fn fetch(resp: reqwest::Response) -> (reqwest::Url, u16, String) {
    let url = resp.url().clone();
    let status = resp.status().as_u16();
    (url, status, resp.text().await.expect("body"))
}

async fn post_login(
    client: &reqwest::Client,
    form: &Form,
    user: &str,
    pw: &str,
) -> (reqwest::Url, u16, String) {
    let mut fields = form.fields.clone();
    fields.retain(|(n, _)| n != "username" && n != "password");
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), pw.into()));
    // application/x-www-form-urlencoded, as a browser posts a form.
    let mut body = reqwest::Url::parse("http://form.invalid/").expect("url");
    body.query_pairs_mut().extend_pairs(&fields);
    fetch(
        client
            .post(form.action.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.query().unwrap_or_default().to_string())
            .send()
            .await
            .expect("POST login"),
    )
    .await
}

fn decode_response(form: &Form) -> String {
    let b64 = form.get("SAMLResponse").expect("SAMLResponse field");
    String::from_utf8(B64.decode(b64.trim()).expect("base64 SAMLResponse")).expect("utf-8")
}

fn sample(name: &str, text: &str) {
    if let Some(dir) = std::env::var_os("AUTHPULSE_SAML_SAMPLES_DIR") {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        std::fs::write(dir.join(name), text).expect("write sample");
    }
}

async fn metadata(idp: &SamlIdp) -> String {
    let c = reqwest::Client::new();
    authpulse_tests::get_text(&c, idp.metadata_url.as_str()).await
}

/// Login page, wrong password, right password, assertion; then IdP-initiated
/// SSO in the same session.
async fn login_walk(which: Which, opts: Options) {
    let idp = SamlIdp::start(which, &opts);
    let name = which.name();

    let md = metadata(&idp).await;
    assert!(
        md.contains(&format!("entityID=\"{}\"", idp.entity_id)),
        "{md}"
    );
    assert!(
        md.contains(&idp.cert_base64()),
        "metadata lacks the cert: {md}"
    );
    assert!(
        md.contains(&idp.sso_url),
        "metadata lacks the SSO URL: {md}"
    );

    let client = client();
    let (url, status, page) = fetch(
        client
            .get(authn_request_url(&idp, "rs-123"))
            .send()
            .await
            .expect("GET SSO"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let login = form_with(&url, &page, "password")
        .unwrap_or_else(|| panic!("{name}: no login form at {url}: {page}\n{}", idp.log()));
    assert!(login.get("username").is_some(), "{page}");
    sample(&format!("{name}-login.html"), &page);

    let (url, status, bad) = post_login(&client, &login, "alice", "wrong-pw").await;
    assert_eq!(status, 200, "{bad}");
    let again = form_with(&url, &bad, "password")
        .unwrap_or_else(|| panic!("{name}: no login form after a wrong password: {bad}"));
    let error = match which {
        Which::SimpleSamlPhp => "Incorrect username or password",
        Which::DjangoSaml2Idp => "Please enter a correct username and password",
    };
    assert!(bad.contains(error), "{name}: no error shown: {bad}");
    sample(&format!("{name}-login-error.html"), &bad);

    let (url, status, done) = post_login(&client, &again, "alice", "alice-pw").await;
    assert_eq!(status, 200, "{done}");
    let post = form_with(&url, &done, "SAMLResponse")
        .unwrap_or_else(|| panic!("{name}: no SAMLResponse form: {done}\n{}", idp.log()));
    assert_eq!(post.action.as_str(), idp.acs_url);
    assert_eq!(post.get("RelayState"), Some("rs-123"));
    let xml = decode_response(&post);
    sample(&format!("{name}-acs-form.html"), &done);
    sample(&format!("{name}-response.xml"), &xml);
    assert!(xml.contains(":Assertion "), "{xml}");
    assert!(xml.contains("status:Success"), "{xml}");
    assert!(xml.contains(&idp.entity_id), "{xml}");
    assert!(xml.contains("alice@example.test"), "{xml}");
    assert!(xml.contains("Alice Example"), "{xml}");
    assert!(xml.contains("InResponseTo=\"_req"), "{xml}");
    assert!(
        xml.contains(&idp.cert_base64()),
        "signed with the cert: {xml}"
    );

    // IdP-initiated: the session is there, so straight to the ACS form.
    let (url, status, page) = fetch(
        client
            .get(idp.idp_initiated_url(&idp.sp_entity_id))
            .send()
            .await
            .expect("GET IdP-initiated"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let post = form_with(&url, &page, "SAMLResponse")
        .unwrap_or_else(|| panic!("{name}: no IdP-initiated response: {page}\n{}", idp.log()));
    let xml = decode_response(&post);
    assert!(xml.contains(":Assertion "), "{xml}");
    sample(&format!("{name}-idp-initiated-response.xml"), &xml);
}

#[tokio::test]
async fn simplesamlphp_login_walk() {
    // Its defaults: response and assertion signed.
    login_walk(Which::SimpleSamlPhp, Options::default()).await;
}

#[tokio::test]
async fn djangosaml2idp_login_walk() {
    // It signs nothing unless told to.
    let opts = Options {
        sign_assertion: Some(true),
        idp_initiated: true,
        ..Options::default()
    };
    login_walk(Which::DjangoSaml2Idp, opts).await;
}

/// One SP-initiated login of `user` on a fresh client: the decoded SAMLResponse.
async fn login_response(idp: &SamlIdp, user: &str, pw: &str) -> String {
    let client = client();
    let (url, _, page) = fetch(
        client
            .get(authn_request_url(idp, "rs"))
            .send()
            .await
            .expect("GET SSO"),
    )
    .await;
    let login = form_with(&url, &page, "password")
        .unwrap_or_else(|| panic!("no login form: {page}\n{}", idp.log()));
    let (url, _, done) = post_login(&client, &login, user, pw).await;
    let post = form_with(&url, &done, "SAMLResponse")
        .unwrap_or_else(|| panic!("no SAMLResponse form: {done}\n{}", idp.log()));
    decode_response(&post)
}

/// With the SP's certificate and encryption on, the assertion arrives as an
/// EncryptedAssertion.
async fn encrypted(which: Which) {
    let (sp_cert, _sp_key) = saml_idp::sp_cert();
    let opts = Options {
        sp_cert: Some(sp_cert),
        encrypt_assertion: true,
        validate_authnrequest: Some(false),
        sign_assertion: Some(true),
        ..Options::default()
    };
    let idp = SamlIdp::start(which, &opts);
    let xml = login_response(&idp, "bob", "bob-pw").await;
    sample(&format!("{}-encrypted-response.xml", which.name()), &xml);
    assert!(xml.contains("EncryptedAssertion"), "{xml}");
    assert!(!xml.contains("bob@example.test"), "{xml}");
}

#[tokio::test]
async fn simplesamlphp_encrypts() {
    encrypted(Which::SimpleSamlPhp).await;
}

#[tokio::test]
async fn djangosaml2idp_encrypts() {
    encrypted(Which::DjangoSaml2Idp).await;
}

/// A running IdP's certificate and entity id change in its metadata.
async fn drift(which: Which) {
    let mut idp = SamlIdp::start(which, &Options::default());
    let before = metadata(&idp).await;
    assert!(before.contains(&idp.cert_base64()));
    let (cert, key) = saml_idp::signing_cert(true);
    idp.set_signing_cert(&cert, &key);
    let new_id = format!("{}/renamed", idp.base);
    idp.set_entity_id(&new_id);
    let after = metadata(&idp).await;
    assert!(after.contains(&saml_idp::pem_body(&cert)), "{after}");
    assert!(!after.contains(&first_cert(&before)), "{after}");
    assert!(after.contains(&format!("entityID=\"{new_id}\"")), "{after}");
}

/// The first X509Certificate of a metadata document.
fn first_cert(md: &str) -> String {
    let start = md.find("X509Certificate>").expect("cert") + "X509Certificate>".len();
    let end = start + md[start..].find('<').expect("cert end");
    md[start..end].to_string()
}

#[tokio::test]
async fn simplesamlphp_metadata_drift() {
    drift(Which::SimpleSamlPhp).await;
}

#[tokio::test]
async fn djangosaml2idp_metadata_drift() {
    drift(Which::DjangoSaml2Idp).await;
}

/// An IdP whose signing certificate has expired still signs with it.
async fn expired_cert(which: Which) {
    let (cert, key) = saml_idp::signing_cert(true);
    let opts = Options {
        signing: Some((cert, key)),
        sign_assertion: Some(true),
        ..Options::default()
    };
    let idp = SamlIdp::start(which, &opts);
    assert!(metadata(&idp).await.contains(&idp.cert_base64()));
    let xml = login_response(&idp, "alice", "alice-pw").await;
    assert!(xml.contains(&idp.cert_base64()), "{xml}");
}

#[tokio::test]
async fn simplesamlphp_signs_with_an_expired_cert() {
    expired_cert(Which::SimpleSamlPhp).await;
}

#[tokio::test]
async fn djangosaml2idp_signs_with_an_expired_cert() {
    expired_cert(Which::DjangoSaml2Idp).await;
}

/// With the SP's certificate known (so signed AuthnRequests required),
/// SimpleSAMLphp refuses an unsigned HTTP-Redirect request at once (its
/// error page, with HTTP 200) and shows the login form for a signed one.
#[tokio::test]
async fn simplesamlphp_checks_request_signatures() {
    let (sp_cert, sp_key) = saml_idp::sp_cert();
    let opts = Options {
        sp_cert: Some(sp_cert),
        ..Options::default()
    };
    let idp = SamlIdp::start(Which::SimpleSamlPhp, &opts);
    let client = client();
    let (url, status, page) = fetch(
        client
            .get(authn_request_url(&idp, "rs"))
            .send()
            .await
            .expect("GET SSO"),
    )
    .await;
    assert!(form_with(&url, &page, "password").is_none(), "{page}");
    assert!(
        page.contains("no signature found on message"),
        "{status}: {page}"
    );
    let (url, status, page) = fetch(
        client
            .get(request_url(&idp, "rs", Some(&sp_key)))
            .send()
            .await
            .expect("GET SSO"),
    )
    .await;
    assert!(
        form_with(&url, &page, "password").is_some(),
        "{status}: {page}\n{}",
        idp.log()
    );
}

/// djangosaml2idp 0.7 keeps only SAMLRequest of an HTTP-Redirect request, so
/// with signed requests required it refuses every Redirect request, signed
/// or not, and only after the login (HTTP 500 from /idp/login/process/).
#[tokio::test]
async fn djangosaml2idp_refuses_redirect_requests_when_signatures_required() {
    let (sp_cert, sp_key) = saml_idp::sp_cert();
    let opts = Options {
        sp_cert: Some(sp_cert),
        ..Options::default()
    };
    let idp = SamlIdp::start(Which::DjangoSaml2Idp, &opts);
    let client = client();
    let (url, _, page) = fetch(
        client
            .get(request_url(&idp, "rs", Some(&sp_key)))
            .send()
            .await
            .expect("GET SSO"),
    )
    .await;
    let login = form_with(&url, &page, "password").expect("login form");
    let (url, status, page) = post_login(&client, &login, "alice", "alice-pw").await;
    assert_eq!(status, 500, "{page}");
    assert_eq!(url.path(), "/idp/login/process/");
    assert!(form_with(&url, &page, "SAMLResponse").is_none(), "{page}");
}
