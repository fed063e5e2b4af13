//! SAML 2.0 IdP metadata: reading one IdP's `EntityDescriptor` (alone or in
//! an `EntitiesDescriptor` aggregate) into what a service provider needs:
//! the entity id, SSO and SLO endpoints by binding, and the signing and
//! encryption certificates with their validity. The document is untrusted:
//! it is parsed without DTDs, size-capped by the HTTP layer, and every
//! certificate is parsed before it is used.
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roxmltree::{Document, Node};

use super::{NS_DSIG, NS_MD, XmlError, parse};

/// One certificate of a `KeyDescriptor`.
#[derive(Clone, Debug)]
pub struct Certificate {
    pub der: Vec<u8>,
    /// `signing`, `encryption`, or both when the descriptor has no `use`.
    pub signing: bool,
    pub encryption: bool,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, hex, for drift and messages.
    pub fingerprint: String,
}

impl Certificate {
    /// Parses DER; `Err` says why it is not a usable X.509 certificate.
    pub fn from_der(der: Vec<u8>, signing: bool, encryption: bool) -> Result<Certificate, String> {
        use sha2::Digest;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let v = cert.validity();
        let subject = cert.subject().to_string();
        let not_before = v.not_before.timestamp();
        let not_after = v.not_after.timestamp();
        let fingerprint = hex::encode(sha2::Sha256::digest(&der));
        Ok(Certificate {
            der,
            signing,
            encryption,
            subject,
            not_before,
            not_after,
            fingerprint,
        })
    }

    /// Short identity for messages: subject and the fingerprint's start.
    pub fn describe(&self) -> String {
        format!(
            "{} (sha256 {})",
            if self.subject.is_empty() {
                "(no subject)"
            } else {
                &self.subject
            },
            &self.fingerprint[..16.min(self.fingerprint.len())]
        )
    }

    pub fn days_left(&self, now_unix: i64) -> f64 {
        (self.not_after - now_unix) as f64 / 86_400.0
    }
}

/// An IdP, as its metadata describes it.
#[derive(Clone, Debug)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// Binding short name (`redirect`, `post`, …) → Location.
    pub sso: BTreeMap<String, String>,
    pub slo: BTreeMap<String, String>,
    pub certificates: Vec<Certificate>,
    /// The document has a `Signature` on the root or the chosen entity.
    pub signed: bool,
    /// `validUntil` on the root or the entity, when present (unix seconds).
    pub valid_until: Option<i64>,
}

impl IdpMetadata {
    pub fn signing_certificates(&self) -> impl Iterator<Item = &Certificate> {
        self.certificates.iter().filter(|c| c.signing)
    }
}

/// The short name of a SAML binding URI (`…:HTTP-Redirect` → `redirect`).
pub fn binding_name(uri: &str) -> String {
    match uri.rsplit(':').next().unwrap_or(uri) {
        "HTTP-Redirect" => "redirect".into(),
        "HTTP-POST" => "post".into(),
        "HTTP-Artifact" => "artifact".into(),
        "SOAP" => "soap".into(),
        "HTTP-POST-SimpleSign" => "post_simplesign".into(),
        other => other.to_ascii_lowercase(),
    }
}

fn is(node: &Node, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == name
}

fn children<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children().filter(move |c| is(c, ns, name))
}

/// Reads the IdP entity `want` (or the document's only IdP entity).
pub fn read(xml: &str, want: Option<&str>) -> Result<IdpMetadata, XmlError> {
    let doc: Document = parse(xml)?;
    let root = doc.root_element();
    let entities: Vec<Node> = if is(&root, NS_MD, "EntityDescriptor") {
        vec![root]
    } else if is(&root, NS_MD, "EntitiesDescriptor") {
        root.descendants()
            .filter(|n| is(n, NS_MD, "EntityDescriptor"))
            .collect()
    } else {
        return Err(XmlError(format!(
            "the root element is <{}>, not a SAML metadata EntityDescriptor or EntitiesDescriptor",
            root.tag_name().name()
        )));
    };
    let idps: Vec<Node> = entities
        .into_iter()
        .filter(|e| children(*e, NS_MD, "IDPSSODescriptor").next().is_some())
        .collect();
    let entity = match want {
        Some(id) => idps
            .iter()
            .find(|e| e.attribute("entityID") == Some(id))
            .copied()
            .ok_or_else(|| {
                let seen: Vec<&str> = idps
                    .iter()
                    .filter_map(|e| e.attribute("entityID"))
                    .take(5)
                    .collect();
                XmlError(format!(
                    "no IdP entity {id:?} in the metadata (IdP entities: {seen:?})"
                ))
            })?,
        None => match idps.as_slice() {
            [one] => *one,
            [] => {
                return Err(XmlError(
                    "the metadata describes no IdP (no IDPSSODescriptor)".into(),
                ));
            }
            many => {
                return Err(XmlError(format!(
                    "the metadata describes {} IdPs; set the entity id to choose one",
                    many.len()
                )));
            }
        },
    };
    let entity_id = entity
        .attribute("entityID")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| XmlError("the IdP's EntityDescriptor has no entityID".into()))?
        .to_string();
    let mut sso = BTreeMap::new();
    let mut slo = BTreeMap::new();
    let mut certificates = Vec::new();
    for idp in children(entity, NS_MD, "IDPSSODescriptor") {
        for (map, name) in [
            (&mut sso, "SingleSignOnService"),
            (&mut slo, "SingleLogoutService"),
        ] {
            for svc in children(idp, NS_MD, name) {
                if let (Some(b), Some(l)) = (svc.attribute("Binding"), svc.attribute("Location")) {
                    map.entry(binding_name(b)).or_insert_with(|| l.to_string());
                }
            }
        }
        for kd in children(idp, NS_MD, "KeyDescriptor") {
            let (signing, encryption) = match kd.attribute("use") {
                Some("signing") => (true, false),
                Some("encryption") => (false, true),
                _ => (true, true),
            };
            for x in kd
                .descendants()
                .filter(|n| is(n, NS_DSIG, "X509Certificate"))
            {
                let b64: String = x
                    .descendants()
                    .filter(|n| n.is_text())
                    .filter_map(|n| n.text())
                    .flat_map(|t| t.chars().filter(|c| !c.is_whitespace()))
                    .collect();
                let der = STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| XmlError(format!("an X509Certificate is not base64: {e}")))?;
                let cert = Certificate::from_der(der, signing, encryption)
                    .map_err(|e| XmlError(format!("a KeyDescriptor certificate is {e}")))?;
                certificates.push(cert);
            }
        }
    }
    let signed = [root, entity]
        .iter()
        .any(|n| children(*n, NS_DSIG, "Signature").next().is_some());
    let valid_until = [entity, root]
        .iter()
        .filter_map(|n| n.attribute("validUntil"))
        .filter_map(super::parse_instant)
        .min();
    Ok(IdpMetadata {
        entity_id,
        sso,
        slo,
        certificates,
        signed,
        valid_until,
    })
}
