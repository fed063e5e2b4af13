//! Kind-specific probe bodies beyond `http` and `oidc_discovery`, one file
//! per family of kinds, and the checks each body runs at load time through
//! [`Validate`]. The shared checks here (URLs, TLS settings, regexes) accept
//! journey templates (`{{ steps.x.y }}`) wherever a value is only known at
//! run time.
pub mod authorization_code;
pub mod aws;
pub mod journey;
pub mod ldap;
pub mod net;
pub mod oauth;
pub mod permission;
pub mod saml;
pub mod scim;

pub use authorization_code::*;
pub use aws::*;
pub use journey::*;
pub use ldap::*;
pub use net::*;
pub use oauth::*;
pub use permission::*;
pub use saml::*;
pub use scim::*;

use super::TlsSpec;
use super::source_map::Seg;

/// Problems found in one probe body: key path below the body, message.
pub type Issues = Vec<(Vec<Seg>, String)>;

/// Load-time checks a kind's body runs beyond what its types express.
pub trait Validate {
    fn validate(&self) -> Issues {
        Vec::new()
    }
}

pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// True when the value is filled in at run time by a journey template.
pub fn is_templated(raw: &str) -> bool {
    raw.contains("{{")
}

/// An http(s) URL with a host, unless templated.
pub(crate) fn check_url(out: &mut Issues, path: Vec<Seg>, raw: &str) {
    if is_templated(raw) {
        return;
    }
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => out.push((
            path,
            format!(
                "`{raw}`: scheme must be http or https with a host, not `{}`",
                u.scheme()
            ),
        )),
        Err(e) => out.push((path, format!("`{raw}` is not a URL: {e}"))),
    }
}

pub(crate) fn check_tls(out: &mut Issues, tls: &TlsSpec) {
    if let Some(name) = &tls.server_name
        && (name.is_empty() || name.contains(['/', ' ', ':']))
    {
        out.push((
            vec![key("tls"), key("server_name")],
            format!("`{name}` is not a valid server name"),
        ));
    }
}

pub(crate) fn check_regex(out: &mut Issues, path: Vec<Seg>, re: &str) {
    if let Err(e) = regex::Regex::new(re) {
        out.push((path, format!("invalid regular expression: {e}")));
    }
}
