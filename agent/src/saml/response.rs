//! Validating the IdP's `SAMLResponse` as the service provider. Order:
//! decode and parse (size-capped, no DTD) → the Status (anything but
//! Success ends here, quoting its codes) → exactly one assertion, plain or
//! encrypted (decrypted with the SP key) → XML signatures, verified by
//! bergshamra against the IdP's certificates only (never a key the
//! document carries), each signature credited to the element it is
//! enveloped in and whose ID its Reference names, so a signature over
//! other content can't vouch for what is read → the signing certificate's
//! validity → Issuer, Destination, Recipient, Audience, `InResponseTo` and
//! the time conditions with the configured skew. Only then are the NameID,
//! session index, AuthnContext and attributes read.
use std::collections::BTreeMap;

use authpulse_proto::catalog::SamlSigned;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roxmltree::Node;

use super::metadata::Certificate;
use super::{MAX_XML_BYTES, NS_DSIG, NS_SAML, NS_SAMLP, parse, parse_instant, text_of};

/// Why a response was not accepted. Maps onto the failure classes:
/// `Status` → `protocol` (quoting the codes), `Invalid` → `token_invalid`,
/// `Malformed` → `protocol`, `Config` → `config`.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    Status(String),
    Invalid(String),
    Malformed(String),
    Config(String),
}

/// What the response must match.
pub struct Expected<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The AuthnRequest's ID; `None` for an IdP-initiated login, which
    /// answers no request (`InResponseTo` is then not checked).
    pub in_response_to: Option<&'a str>,
    /// The IdP's signing certificates.
    pub trusted: &'a [Certificate],
    /// The SP's private key (PEM), for encrypted assertions.
    pub sp_key_pem: Option<&'a str>,
    pub require: SamlSigned,
    pub clock_skew_secs: i64,
    pub now: i64,
}

/// A validated assertion's content.
#[derive(Debug, Clone, Default)]
pub struct Assertion {
    pub issuer: String,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub authn_context: Option<String>,
    /// Attribute `Name` → values; a `FriendlyName` is a second key.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// `response`, `assertion` or `response+assertion`.
    pub signed: String,
    pub encrypted: bool,
    /// The certificate that verified the signature.
    pub signer: String,
}

fn invalid(m: impl Into<String>) -> Rejection {
    Rejection::Invalid(m.into())
}
fn malformed(m: impl Into<String>) -> Rejection {
    Rejection::Malformed(m.into())
}

/// Decodes the form's `SAMLResponse` value (base64, whitespace allowed).
pub fn decode(value: &str) -> Result<String, Rejection> {
    let cleaned: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if cleaned.len() > MAX_XML_BYTES * 4 / 3 + 4 {
        return Err(malformed(format!(
            "SAMLResponse is {} characters, more than the {MAX_XML_BYTES} bytes read",
            cleaned.len()
        )));
    }
    let raw = STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| malformed(format!("SAMLResponse is not base64: {e}")))?;
    String::from_utf8(raw).map_err(|_| malformed("SAMLResponse is not UTF-8 XML"))
}

fn is(node: &Node, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == name
}

fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(c, ns, name))
}

fn descendants_named<'a, 'i>(node: Node<'a, 'i>, ns: &'a str, name: &'a str) -> Vec<Node<'a, 'i>> {
    node.descendants().filter(|c| is(c, ns, name)).collect()
}

/// The Status's codes (top level, then nested) and message, when not Success.
fn status_failure(response: Node) -> Option<String> {
    let status = child(response, NS_SAMLP, "Status")?;
    let mut codes = Vec::new();
    let mut code = child(status, NS_SAMLP, "StatusCode");
    while let Some(c) = code {
        codes.push(c.attribute("Value").unwrap_or("(no Value)").to_string());
        code = child(c, NS_SAMLP, "StatusCode");
    }
    if codes.first().map(String::as_str) == Some("urn:oasis:names:tc:SAML:2.0:status:Success") {
        return None;
    }
    let message = child(status, NS_SAMLP, "StatusMessage")
        .map(|m| format!(": {}", crate::login::clip(&text_of(m), 200)))
        .unwrap_or_default();
    let short: Vec<&str> = codes
        .iter()
        .map(|c| c.rsplit(':').next().unwrap_or(c))
        .collect();
    Some(format!("SAML status {}{message}", short.join(" / ")))
}

/// Which elements (by ID) carry a valid enveloped signature in `xml`, and
/// by which certificate; `Err` for a signature that is present on the
/// Response or the Assertion but does not verify.
fn signatures(
    xml: &str,
    trusted: &[Certificate],
    wanted_ids: &[&str],
) -> Result<BTreeMap<String, usize>, Rejection> {
    let doc = parse(xml).map_err(|e| malformed(e.0))?;
    // The Signature elements in document order, as bergshamra lists them;
    // each is credited to its parent's ID.
    let parents: Vec<Option<String>> = doc
        .descendants()
        .filter(|n| is(n, NS_DSIG, "Signature"))
        .map(|s| {
            s.parent_element()
                .and_then(|p| p.attribute("ID"))
                .map(str::to_string)
        })
        .collect();
    let mut signed: BTreeMap<String, usize> = BTreeMap::new();
    if parents.is_empty() {
        return Ok(signed);
    }
    // The library is built with legacy algorithms (IdPs still encrypt with
    // 3DES); signatures and digests must still be SHA-1 or stronger.
    for m in doc
        .descendants()
        .filter(|n| is(n, NS_DSIG, "SignatureMethod") || is(n, NS_DSIG, "DigestMethod"))
    {
        let alg = m
            .attribute("Algorithm")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if alg.contains("md5") || alg.contains("ripemd") {
            return Err(invalid(format!(
                "a signature uses the broken algorithm {alg}"
            )));
        }
    }
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    for (i, cert) in trusted.iter().enumerate() {
        let key = bergshamra::keys::loader::load_x509_cert_der(&cert.der)
            .map_err(|e| Rejection::Config(format!("IdP certificate {}: {e}", cert.describe())))?;
        let mut keys = bergshamra::KeysManager::new();
        keys.add_key(key);
        let ctx = bergshamra::DsigContext::new(keys);
        let results = bergshamra::verify_all(&ctx, xml)
            .map_err(|e| invalid(format!("the response's signatures can't be processed: {e}")))?;
        if results.len() != parents.len() {
            return Err(malformed(format!(
                "found {} signatures but the verifier saw {}",
                parents.len(),
                results.len()
            )));
        }
        for (parent, result) in parents.iter().zip(results) {
            let Some(id) = parent else { continue };
            if !wanted_ids.contains(&id.as_str()) || signed.contains_key(id) {
                continue;
            }
            match result {
                bergshamra::VerifyResult::Valid { references, .. } => {
                    let target = format!("#{id}");
                    if references
                        .iter()
                        .any(|r| r.uri == target && r.digest_verified)
                    {
                        signed.insert(id.clone(), i);
                        reasons.remove(id);
                    } else {
                        reasons.insert(
                            id.clone(),
                            "its signature does not cover the element it is in".into(),
                        );
                    }
                }
                bergshamra::VerifyResult::Invalid { reason } => {
                    reasons.entry(id.clone()).or_insert(reason);
                }
            }
        }
    }
    if let Some((id, reason)) = reasons.into_iter().next() {
        let certs: Vec<String> = trusted.iter().map(Certificate::describe).collect();
        return Err(invalid(format!(
            "the signature on element {id} does not verify with the IdP's certificate(s) {}: {reason}",
            certs.join(", ")
        )));
    }
    Ok(signed)
}

/// Validates `xml` (a decoded SAMLResponse) against `want`.
pub fn validate(xml: &str, want: &Expected) -> Result<Assertion, Rejection> {
    let doc = parse(xml).map_err(|e| malformed(e.0))?;
    let response = doc.root_element();
    if !is(&response, NS_SAMLP, "Response") {
        return Err(malformed(format!(
            "the SAMLResponse's root is <{}>, not samlp:Response",
            response.tag_name().name()
        )));
    }
    if let Some(status) = status_failure(response) {
        return Err(Rejection::Status(status));
    }
    let response_id = response
        .attribute("ID")
        .ok_or_else(|| malformed("the Response has no ID"))?
        .to_string();
    // One assertion, directly in the Response; any other one anywhere is
    // a wrapping attempt or a response we don't understand.
    let plain = descendants_named(response, NS_SAML, "Assertion");
    let encrypted = descendants_named(response, NS_SAML, "EncryptedAssertion");
    if plain.len() + encrypted.len() != 1 {
        return Err(invalid(format!(
            "the Response holds {} assertions and {} encrypted assertions; exactly one is accepted",
            plain.len(),
            encrypted.len()
        )));
    }
    if plain
        .iter()
        .chain(&encrypted)
        .any(|a| a.parent_element() != Some(response))
    {
        return Err(invalid("the assertion is not a child of the Response"));
    }
    let is_encrypted = !encrypted.is_empty();
    let decrypted: Option<String> = if is_encrypted {
        let pem = want.sp_key_pem.ok_or_else(|| {
            Rejection::Config("the assertion is encrypted and no `sp_key` is configured".into())
        })?;
        let key = bergshamra::keys::loader::load_pem_auto(pem.as_bytes(), None)
            .map_err(|_| Rejection::Config("sp_key can't be loaded for decryption".into()))?;
        let mut keys = bergshamra::KeysManager::new();
        keys.add_key(key);
        let ctx = bergshamra::EncContext::new(keys);
        let plain = bergshamra::decrypt(&ctx, xml).map_err(|e| {
            invalid(format!(
                "the encrypted assertion can't be decrypted with sp_key: {e}"
            ))
        })?;
        Some(plain)
    } else {
        None
    };
    let assertion_xml = decrypted.as_deref().unwrap_or(xml);
    let adoc = parse(assertion_xml).map_err(|e| malformed(e.0))?;
    let aroot = adoc.root_element();
    let assertions = descendants_named(aroot, NS_SAML, "Assertion");
    let [assertion] = assertions.as_slice() else {
        return Err(invalid(format!(
            "after decryption the Response holds {} assertions; exactly one is accepted",
            assertions.len()
        )));
    };
    let assertion = *assertion;
    let assertion_id = assertion
        .attribute("ID")
        .ok_or_else(|| malformed("the Assertion has no ID"))?
        .to_string();

    let trusted: Vec<Certificate> = want.trusted.to_vec();
    if trusted.is_empty() {
        return Err(Rejection::Config(
            "no IdP signing certificate to verify the response with".into(),
        ));
    }
    let mut signed = signatures(xml, &trusted, &[&response_id, &assertion_id])?;
    if is_encrypted {
        // The assertion's own signature is inside the ciphertext.
        let inner = signatures(assertion_xml, &trusted, &[&assertion_id])?;
        if let Some(i) = inner.get(&assertion_id) {
            signed.insert(assertion_id.clone(), *i);
        }
    }
    let response_signed = signed.contains_key(&response_id);
    let assertion_signed = signed.contains_key(&assertion_id);
    let ok = match want.require {
        SamlSigned::Either => response_signed || assertion_signed,
        SamlSigned::Response => response_signed,
        SamlSigned::Assertion => assertion_signed,
        SamlSigned::Both => response_signed && assertion_signed,
    };
    if !ok {
        let what = match want.require {
            SamlSigned::Either => "the Response or the Assertion",
            SamlSigned::Response => "the Response",
            SamlSigned::Assertion => "the Assertion",
            SamlSigned::Both => "both the Response and the Assertion",
        };
        return Err(invalid(format!(
            "{what} must be signed by the IdP; signed here: {}",
            match (response_signed, assertion_signed) {
                (true, _) => "the Response only",
                (_, true) => "the Assertion only",
                _ => "nothing",
            }
        )));
    }
    let mut signer = String::new();
    for i in signed.values() {
        let cert = &trusted[*i];
        let skew = want.clock_skew_secs;
        if cert.not_after + skew < want.now {
            return Err(invalid(format!(
                "signed with certificate {} that expired {} ({:.0} days ago)",
                cert.describe(),
                instant(cert.not_after),
                -cert.days_left(want.now)
            )));
        }
        if cert.not_before - skew > want.now {
            return Err(invalid(format!(
                "signed with certificate {} not valid before {}",
                cert.describe(),
                instant(cert.not_before)
            )));
        }
        signer = cert.describe();
    }

    check_envelope(response, want)?;
    let mut out = read_assertion(assertion, want)?;
    out.signed = match (response_signed, assertion_signed) {
        (true, true) => "response+assertion",
        (true, false) => "response",
        _ => "assertion",
    }
    .to_string();
    out.encrypted = is_encrypted;
    out.signer = signer;
    Ok(out)
}

fn instant(unix: i64) -> String {
    match u64::try_from(unix) {
        Ok(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
        Err(_) => format!("{unix} (unix seconds)"),
    }
}

/// The Response's own Issuer, Destination, InResponseTo and IssueInstant.
fn check_envelope(response: Node, want: &Expected) -> Result<(), Rejection> {
    if let Some(issuer) = child(response, NS_SAML, "Issuer") {
        let got = text_of(issuer);
        if got != want.idp_entity_id {
            return Err(invalid(format!(
                "the Response's Issuer is {got:?}, expected the IdP {:?}",
                want.idp_entity_id
            )));
        }
    }
    match response.attribute("Destination") {
        Some(d) if d == want.acs_url => {}
        Some(d) => {
            return Err(invalid(format!(
                "the Response's Destination is {d:?}, not this SP's acs_url {:?}",
                want.acs_url
            )));
        }
        None => {}
    }
    in_response_to(response.attribute("InResponseTo"), "the Response", want)?;
    if let Some(t) = response.attribute("IssueInstant") {
        let at = parse_instant(t).ok_or_else(|| malformed(format!("IssueInstant {t:?}")))?;
        if at - want.clock_skew_secs > want.now {
            return Err(invalid(format!(
                "the Response was issued in the future ({t}); check the clocks or clock_skew"
            )));
        }
    }
    Ok(())
}

fn in_response_to(got: Option<&str>, what: &str, want: &Expected) -> Result<(), Rejection> {
    match (got, want.in_response_to) {
        (Some(g), Some(w)) if g == w => Ok(()),
        (Some(g), Some(_)) => Err(invalid(format!(
            "{what} answers request {g:?}, not this login's AuthnRequest"
        ))),
        // IdP-initiated: there is no request of ours to answer, and some
        // IdPs (djangosaml2idp) put a marker there; nothing to check.
        (_, None) => Ok(()),
        (None, Some(_)) => Ok(()),
    }
}

/// A time window check with skew: `NotBefore` ≤ now < `NotOnOrAfter`.
fn window(node: Node, what: &str, want: &Expected) -> Result<(), Rejection> {
    let skew = want.clock_skew_secs;
    if let Some(t) = node.attribute("NotBefore") {
        let at = parse_instant(t).ok_or_else(|| malformed(format!("{what} NotBefore {t:?}")))?;
        if at - skew > want.now {
            return Err(invalid(format!("{what} is not valid before {t}")));
        }
    }
    if let Some(t) = node.attribute("NotOnOrAfter") {
        let at = parse_instant(t).ok_or_else(|| malformed(format!("{what} NotOnOrAfter {t:?}")))?;
        if at + skew <= want.now {
            return Err(invalid(format!("{what} expired at {t}")));
        }
    }
    Ok(())
}

fn read_assertion(a: Node, want: &Expected) -> Result<Assertion, Rejection> {
    let issuer = child(a, NS_SAML, "Issuer")
        .map(text_of)
        .ok_or_else(|| malformed("the Assertion has no Issuer"))?;
    if issuer != want.idp_entity_id {
        return Err(invalid(format!(
            "the Assertion's Issuer is {issuer:?}, expected the IdP {:?}",
            want.idp_entity_id
        )));
    }
    let subject = child(a, NS_SAML, "Subject").ok_or_else(|| malformed("no Subject"))?;
    if child(subject, NS_SAML, "EncryptedID").is_some() {
        return Err(Rejection::Config(
            "the NameID is encrypted (EncryptedID), which this probe does not decrypt".into(),
        ));
    }
    let name_id = child(subject, NS_SAML, "NameID").ok_or_else(|| malformed("no NameID"))?;
    // A bearer confirmation for this ACS and this request, still valid.
    let bearer: Vec<Node> = subject
        .children()
        .filter(|c| is(c, NS_SAML, "SubjectConfirmation"))
        .filter(|c| c.attribute("Method") == Some("urn:oasis:names:tc:SAML:2.0:cm:bearer"))
        .collect();
    if bearer.is_empty() {
        return Err(invalid("the Subject has no bearer SubjectConfirmation"));
    }
    let mut last = None;
    let mut confirmed = false;
    for sc in bearer {
        let Some(data) = child(sc, NS_SAML, "SubjectConfirmationData") else {
            last = Some(invalid(
                "SubjectConfirmation without SubjectConfirmationData",
            ));
            continue;
        };
        let check = || -> Result<(), Rejection> {
            match data.attribute("Recipient") {
                Some(r) if r == want.acs_url => {}
                Some(r) => {
                    return Err(invalid(format!(
                        "SubjectConfirmationData Recipient is {r:?}, not this SP's acs_url {:?}",
                        want.acs_url
                    )));
                }
                None => return Err(invalid("SubjectConfirmationData has no Recipient")),
            }
            in_response_to(
                data.attribute("InResponseTo"),
                "the SubjectConfirmation",
                want,
            )?;
            if want.in_response_to.is_some() && data.attribute("InResponseTo").is_none() {
                return Err(invalid(
                    "the SubjectConfirmation has no InResponseTo (an unsolicited response to this SP-initiated login)",
                ));
            }
            if data.attribute("NotOnOrAfter").is_none() {
                return Err(invalid("SubjectConfirmationData has no NotOnOrAfter"));
            }
            window(data, "the SubjectConfirmation", want)
        };
        match check() {
            Ok(()) => {
                confirmed = true;
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    if !confirmed {
        return Err(last.unwrap_or_else(|| invalid("no usable SubjectConfirmation")));
    }
    let conditions = child(a, NS_SAML, "Conditions");
    if let Some(c) = conditions {
        window(c, "the assertion", want)?;
        for ar in c
            .children()
            .filter(|n| is(n, NS_SAML, "AudienceRestriction"))
        {
            let audiences: Vec<String> = ar
                .children()
                .filter(|n| is(n, NS_SAML, "Audience"))
                .map(text_of)
                .collect();
            if !audiences.iter().any(|x| x == want.sp_entity_id) {
                return Err(invalid(format!(
                    "the assertion's Audience is {audiences:?}, not this SP ({:?})",
                    want.sp_entity_id
                )));
            }
        }
    }
    let authn = child(a, NS_SAML, "AuthnStatement");
    let session_index = authn
        .and_then(|s| s.attribute("SessionIndex"))
        .map(str::to_string);
    let authn_context = authn
        .and_then(|s| child(s, NS_SAML, "AuthnContext"))
        .and_then(|c| child(c, NS_SAML, "AuthnContextClassRef"))
        .map(text_of);
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for st in a
        .children()
        .filter(|n| is(n, NS_SAML, "AttributeStatement"))
    {
        for at in st.children().filter(|n| is(n, NS_SAML, "Attribute")) {
            let values: Vec<String> = at
                .children()
                .filter(|n| is(n, NS_SAML, "AttributeValue"))
                .map(text_of)
                .collect();
            for name in [at.attribute("Name"), at.attribute("FriendlyName")]
                .into_iter()
                .flatten()
            {
                attributes
                    .entry(name.to_string())
                    .or_default()
                    .extend(values.iter().cloned());
            }
        }
    }
    Ok(Assertion {
        issuer,
        name_id: text_of(name_id),
        name_id_format: name_id.attribute("Format").map(str::to_string),
        session_index,
        authn_context,
        attributes,
        ..Assertion::default()
    })
}
