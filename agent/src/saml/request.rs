//! The AuthnRequest authpulse sends as a service provider, and its two
//! bindings: HTTP-Redirect (DEFLATE, base64 and URL-encoded in the query;
//! signed over the query string with `SigAlg`/`Signature`, SAML Bindings
//! §3.4.4.1) and HTTP-POST (base64 in a form field; signed as an enveloped
//! XML signature made by bergshamra). The SP key is a secret: errors name
//! what is wrong with it, never its bytes.
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;
use url::Url;
use url::form_urlencoded::byte_serialize;

use super::{NS_SAML, NS_SAMLP, escape};

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// What goes into the request.
pub struct Params<'a> {
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub destination: &'a str,
    pub name_id_format: Option<&'a str>,
    pub force_authn: bool,
}

/// A built request: its ID (for `InResponseTo`) and its XML.
pub struct AuthnRequest {
    pub id: String,
    pub xml: String,
}

/// A fresh request ID: an xs:ID must not start with a digit.
fn new_id() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    format!("_{}", hex::encode(bytes))
}

pub fn build(p: &Params) -> AuthnRequest {
    let id = new_id();
    let instant = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let force = if p.force_authn {
        " ForceAuthn=\"true\""
    } else {
        ""
    };
    let policy = match p.name_id_format {
        Some(f) => format!(
            "<samlp:NameIDPolicy Format=\"{}\" AllowCreate=\"true\"/>",
            escape(f)
        ),
        // No policy: the IdP's default format (an empty Format is refused
        // by some, e.g. djangosaml2idp).
        None => String::new(),
    };
    let xml = format!(
        "<samlp:AuthnRequest xmlns:samlp=\"{NS_SAMLP}\" xmlns:saml=\"{NS_SAML}\" ID=\"{id}\" \
         Version=\"2.0\" IssueInstant=\"{instant}\" Destination=\"{dest}\" \
         AssertionConsumerServiceURL=\"{acs}\" \
         ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\"{force}>\
         <saml:Issuer>{issuer}</saml:Issuer>{policy}</samlp:AuthnRequest>",
        dest = escape(p.destination),
        acs = escape(p.acs_url),
        issuer = escape(p.sp_entity_id),
    );
    AuthnRequest { id, xml }
}

/// The SP's RSA key, for the HTTP-Redirect query signature and the POST
/// binding's XML signature.
pub struct SpKey {
    pem: String,
    rsa: aws_lc_rs::signature::RsaKeyPair,
}

impl SpKey {
    /// From PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<SpKey, String> {
        use rustls::pki_types::PrivateKeyDer;
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .map_err(|_| "sp_key is not a readable PEM file".to_string())?
            .ok_or_else(|| "sp_key holds no PEM private key".to_string())?;
        let rsa = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                aws_lc_rs::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
            }
            PrivateKeyDer::Pkcs1(k) => {
                aws_lc_rs::signature::RsaKeyPair::from_der(k.secret_pkcs1_der())
            }
            _ => return Err("sp_key must be an RSA key (PKCS#8 or PKCS#1 PEM)".into()),
        }
        .map_err(|e| format!("sp_key is not a usable RSA private key: {e}"))?;
        Ok(SpKey {
            pem: pem.to_string(),
            rsa,
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    fn sign_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.rsa.public_modulus_len()];
        self.rsa
            .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .map_err(|_| "signing the AuthnRequest with sp_key failed".to_string())?;
        Ok(sig)
    }
}

/// The HTTP-Redirect binding URL for `xml` at `sso`, signed when `key` is set.
pub fn redirect_url(
    sso: &Url,
    xml: &str,
    relay_state: Option<&str>,
    key: Option<&SpKey>,
) -> Result<Url, String> {
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflate
        .write_all(xml.as_bytes())
        .map_err(|e| format!("deflating the AuthnRequest: {e}"))?;
    let deflated = deflate
        .finish()
        .map_err(|e| format!("deflating the AuthnRequest: {e}"))?;
    let enc = |s: &str| byte_serialize(s.as_bytes()).collect::<String>();
    // The signature covers the query exactly as sent, in this order.
    let mut query = format!("SAMLRequest={}", enc(&STANDARD.encode(deflated)));
    if let Some(rs) = relay_state {
        query.push_str(&format!("&RelayState={}", enc(rs)));
    }
    if let Some(key) = key {
        query.push_str(&format!("&SigAlg={}", enc(RSA_SHA256)));
        let sig = key.sign_sha256(query.as_bytes())?;
        query.push_str(&format!("&Signature={}", enc(&STANDARD.encode(sig))));
    }
    let mut url = sso.clone();
    let joined = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{query}"),
        _ => query,
    };
    url.set_query(Some(&joined));
    Ok(url)
}

/// The HTTP-POST binding's `SAMLRequest` value, the XML signed (enveloped,
/// after the Issuer) when `key` is set.
pub fn post_value(req: &AuthnRequest, key: Option<&SpKey>) -> Result<String, String> {
    let xml = match key {
        None => req.xml.clone(),
        Some(key) => sign_xml(req, key)?,
    };
    Ok(STANDARD.encode(xml))
}

fn sign_xml(req: &AuthnRequest, key: &SpKey) -> Result<String, String> {
    sign_enveloped(&req.xml, &req.id, "</saml:Issuer>", key)
        .map_err(|e| format!("signing the AuthnRequest: {e}"))
}

/// `xml` with an enveloped RSA-SHA256 signature (exclusive C14N) over the
/// element whose ID is `id`, placed right after the first `after` (SAML
/// wants it after the Issuer). Made by bergshamra.
pub fn sign_enveloped(xml: &str, id: &str, after: &str, key: &SpKey) -> Result<String, String> {
    let template = format!(
        "<ds:Signature xmlns:ds=\"{ds}\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         <ds:SignatureMethod Algorithm=\"{RSA_SHA256}\"/>\
         <ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
         <ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>\
         <ds:SignatureValue></ds:SignatureValue></ds:Signature>",
        ds = super::NS_DSIG,
        id = super::escape(id),
    );
    if !xml.contains(after) {
        return Err(format!("no {after:?} to place the signature after"));
    }
    let with_template = xml.replacen(after, &format!("{after}{template}"), 1);
    let loaded = bergshamra::keys::loader::load_pem_auto(key.pem().as_bytes(), None)
        .map_err(|_| "the key can't be loaded for XML signing".to_string())?;
    let mut keys = bergshamra::KeysManager::new();
    keys.add_key(loaded);
    let ctx = bergshamra::DsigContext::new(keys);
    bergshamra::sign(&ctx, &with_template).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn params() -> Params<'static> {
        Params {
            sp_entity_id: "https://sp.example/<&>",
            acs_url: "https://sp.example/acs",
            destination: "https://idp.example/sso",
            name_id_format: None,
            force_authn: true,
        }
    }

    #[test]
    fn the_request_is_well_formed_and_escaped() {
        let r = build(&params());
        let doc = super::super::parse(&r.xml).expect("well-formed");
        let root = doc.root_element();
        assert_eq!(root.attribute("ID"), Some(r.id.as_str()));
        assert_eq!(root.attribute("ForceAuthn"), Some("true"));
        assert!(r.xml.contains("https://sp.example/&lt;&amp;&gt;"));
    }

    #[test]
    fn the_redirect_binding_round_trips() {
        let r = build(&params());
        let sso = Url::parse("https://idp.example/sso?tenant=a").expect("url");
        let url = redirect_url(&sso, &r.xml, Some("rs"), None).expect("url");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("tenant".into(), "a".into()));
        let b64 = &pairs
            .iter()
            .find(|(k, _)| k == "SAMLRequest")
            .expect("param")
            .1;
        let raw = STANDARD.decode(b64).expect("base64");
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_string(&mut xml)
            .expect("inflate");
        assert_eq!(xml, r.xml);
    }
}
