//! SAML 2.0 for the service provider authpulse plays in `saml_login` and
//! for `saml_metadata`: reading IdP metadata ([`metadata`]), building the
//! AuthnRequest for the HTTP-Redirect and HTTP-POST bindings ([`request`]),
//! and validating the IdP's `SAMLResponse` ([`response`]): decryption and
//! XML signatures through the bergshamra library (never hand-written
//! canonicalisation), then the protocol checks on the elements the
//! signature covers. Everything here reads untrusted XML: DTDs are refused
//! (no entity expansion), sizes are capped before parsing, and text is read
//! whole (comments inside a NameID can't truncate it).
pub mod metadata;
pub mod request;
pub mod response;

use std::time::UNIX_EPOCH;

pub const NS_MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const NS_SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// Largest SAML document (response or metadata) read, decoded.
pub const MAX_XML_BYTES: usize = 4 * 1024 * 1024;

/// XML that can't be read as the SAML structure it should be.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(pub String);

/// Parses untrusted XML: no DTD (so no entities), bounded size and nodes.
pub fn parse(xml: &str) -> Result<roxmltree::Document<'_>, XmlError> {
    if xml.len() > MAX_XML_BYTES {
        return Err(XmlError(format!(
            "the XML is {} bytes, more than the {MAX_XML_BYTES} read",
            xml.len()
        )));
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 200_000,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, opts)
        .map_err(|e| XmlError(format!("not well-formed XML (or it has a DTD): {e}")))
}

/// An `xs:dateTime` instant (SAML requires UTC) as unix seconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    Some(secs)
}

/// Now, in unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// All the text below `node`, concatenated (comments and PIs skipped).
pub fn text_of(node: roxmltree::Node) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Escapes text for an XML attribute value or element content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A certificate PEM file's certificates as DER (at least one).
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for item in rustls_pemfile::certs(&mut text.as_bytes()) {
        match item {
            Ok(der) => out.push(der.to_vec()),
            Err(e) => return Err(format!("not a PEM certificate file: {e}")),
        }
    }
    if out.is_empty() {
        return Err("holds no PEM CERTIFICATE block".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtds_and_entities_are_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><r>&b;</r>"#;
        assert!(parse(bomb).is_err());
    }

    #[test]
    fn text_is_read_whole_across_comments() {
        let doc = parse("<n>alice@example.test<!-- x -->.evil</n>").expect("xml");
        assert_eq!(text_of(doc.root_element()), "alice@example.test.evil");
    }

    #[test]
    fn instants_parse_with_and_without_fractions() {
        assert_eq!(parse_instant("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_instant("1970-01-01T00:01:00.250Z"), Some(60));
        assert_eq!(parse_instant("yesterday"), None);
    }
}
