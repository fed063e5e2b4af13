//! SAML 2.0 kinds: `saml_login` (SP-initiated or IdP-initiated Web SSO
//! through the login engine, then the assertion's checks) and
//! `saml_metadata` (the IdP's metadata, its certificates' expiry and drift).
//! The login keys (`username`, `password`, `totp`, `login_steps`, …) are the
//! same as `authorization_code`'s, repeated flat for the reason given at the
//! top of `oauth.rs`.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::schema::HumanDuration;
use super::super::source_map::Seg;
use super::super::{TlsSpec, Value};
use super::authorization_code::{
    LoginStep, default_max_pages, default_totp_digits, default_totp_period, is_default_max_pages,
    is_default_totp_digits, is_default_totp_period, login_script,
};
use super::oauth::{AllowedChanges, default_clock_skew, default_true, is_default_clock_skew};
use super::{Issues, Validate, check_regex, check_tls, check_url, is_templated, key};

/// How the AuthnRequest travels to the IdP's single sign-on service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SamlBinding {
    /// HTTP-Redirect: deflated, in the query string (signed there with
    /// `SigAlg`/`Signature` when `sign_request` is on).
    #[default]
    Redirect,
    /// HTTP-POST: a form posted to the SSO URL (signed inside the XML when
    /// `sign_request` is on).
    Post,
}

/// Which part of the response must carry a valid signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SamlSigned {
    /// The Response or the Assertion (or both).
    #[default]
    Either,
    /// The Response.
    Response,
    /// The Assertion.
    Assertion,
    /// Both.
    Both,
}

/// An attribute's expected values: one value that must be among the
/// attribute's values, or a list that must all be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AttributeExpect {
    One(String),
    All(Vec<String>),
}

impl AttributeExpect {
    pub fn values(&self) -> Vec<&str> {
        match self {
            AttributeExpect::One(v) => vec![v.as_str()],
            AttributeExpect::All(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// What the validated assertion must say; a mismatch fails with `assertion`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlExpect {
    /// A regular expression the Subject's NameID must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id: Option<String>,
    /// Attribute name (`Name`, or `FriendlyName`) → value(s) it must hold.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttributeExpect>,
    /// Attributes that must be present, whatever their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_attributes: Vec<String>,
    /// The `AuthnContextClassRef` the AuthnStatement must carry (e.g.
    /// `urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authn_context: Option<String>,
}

/// `saml_login`: a browserless SAML 2.0 Web SSO login where authpulse is the
/// service provider: AuthnRequest → the IdP's login pages (the login engine)
/// → the self-posting `SAMLResponse` form, read but never posted → the
/// response's signature, status, issuer, destination, audience,
/// `InResponseTo` and time conditions, then `expect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlLoginSpec {
    /// The IdP's metadata URL: its entity id, SSO URL and signing
    /// certificates. One of `idp_metadata_url`, `idp_metadata_file`, or
    /// `idp_sso_url` with `idp_certificate_file` and `idp_entity_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_metadata_url: Option<String>,
    /// The IdP's metadata as a file on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_metadata_file: Option<PathBuf>,
    /// Which entity of a metadata aggregate (`EntitiesDescriptor`) is the IdP,
    /// and the `Issuer` the response must carry. Default: the metadata's only
    /// IdP entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_entity_id: Option<String>,
    /// The SSO URL for `binding`; set, it overrides the metadata's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sso_url: Option<String>,
    /// PEM file on the agent with the IdP's signing certificate(s); set, they
    /// are trusted instead of the metadata's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_certificate_file: Option<PathBuf>,
    /// Start at this IdP-initiated SSO URL instead of sending an
    /// AuthnRequest (`InResponseTo` is then not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_initiated_url: Option<String>,
    /// How the AuthnRequest is sent.
    #[serde(default, skip_serializing_if = "is_default_binding")]
    #[schemars(!skip_serializing_if)]
    pub binding: SamlBinding,
    /// The SP entity id authpulse plays, registered at the IdP: the
    /// AuthnRequest's Issuer and the Audience the assertion must name.
    pub sp_entity_id: String,
    /// The SP's assertion consumer service URL, registered at the IdP. Never
    /// requested: the login stops at the form the IdP posts to it. The
    /// response's Destination and Recipient must equal it.
    pub acs_url: String,
    /// The SP's PEM private key (`{ secret: NAME }`), to sign AuthnRequests
    /// (`sign_request`) and decrypt encrypted assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_key: Option<Value>,
    /// Sign the AuthnRequest with `sp_key` (RSA-SHA256).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub sign_request: bool,
    /// `NameIDPolicy` Format to ask for (e.g.
    /// `urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id_format: Option<String>,
    /// Ask for a fresh login (`ForceAuthn="true"`), not an existing session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub force_authn: bool,
    /// Which part of the response must be signed by the IdP.
    #[serde(default, skip_serializing_if = "is_default_signed")]
    #[schemars(!skip_serializing_if)]
    pub require_signature: SamlSigned,
    /// Leeway for `NotBefore`, `NotOnOrAfter` and `IssueInstant`.
    #[serde(
        default = "default_clock_skew",
        with = "humantime_serde",
        skip_serializing_if = "is_default_clock_skew"
    )]
    #[schemars(with = "HumanDuration")]
    #[schemars(!skip_serializing_if)]
    pub clock_skew: Duration,
    /// What the assertion must say.
    #[serde(default)]
    pub expect: SamlExpect,
    /// The synthetic user's name.
    pub username: String,
    /// The synthetic user's password, usually `{ secret: NAME }`.
    pub password: Value,
    /// CSS selector of the login form (default: the first form with a
    /// password input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_selector: Option<String>,
    /// `name` of the username input (default: the engine's guess).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_field: Option<String>,
    /// `name` of the password input (default: the password input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_field: Option<String>,
    /// Base32 TOTP secret (`{ secret: NAME }`) for a one-time-code page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<Value>,
    /// `name` of the one-time-code input (default: the engine's guess).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_field: Option<String>,
    /// Digits of the one-time code, 6 to 8.
    #[serde(
        default = "default_totp_digits",
        skip_serializing_if = "is_default_totp_digits"
    )]
    #[schemars(!skip_serializing_if)]
    #[schemars(range(min = 6, max = 8))]
    pub totp_digits: u8,
    /// The TOTP time step, at least `1s`.
    #[serde(
        default = "default_totp_period",
        with = "humantime_serde",
        skip_serializing_if = "is_default_totp_period"
    )]
    #[schemars(with = "HumanDuration")]
    #[schemars(!skip_serializing_if)]
    pub totp_period: Duration,
    /// CSS selector of the button to click on consent and interstitial pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_button: Option<String>,
    /// Pages scripted by hand (as for `authorization_code`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub login_steps: Vec<LoginStep>,
    /// Pages one login may walk, 1 to 50.
    #[serde(
        default = "default_max_pages",
        skip_serializing_if = "is_default_max_pages"
    )]
    #[schemars(!skip_serializing_if)]
    #[schemars(range(min = 1, max = 50))]
    pub max_pages: u8,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

fn is_default_binding(b: &SamlBinding) -> bool {
    *b == SamlBinding::default()
}
fn is_default_signed(s: &SamlSigned) -> bool {
    *s == SamlSigned::default()
}

/// `saml_metadata`: the IdP's SAML metadata: well-formed, the expected
/// entity, a signature that verifies when signed (required with
/// `metadata_certificate_file`), SSO endpoints, signing certificates valid
/// for at least `min_cert_days`, and drift since the last run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlMetadataSpec {
    /// The metadata URL.
    pub url: String,
    /// The IdP entity to check (needed for an `EntitiesDescriptor` with
    /// several IdPs); set, the entity id must equal it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Fail (`assertion`) when a signing or encryption certificate expires in
    /// fewer days.
    #[serde(default = "default_min_cert_days")]
    pub min_cert_days: u32,
    /// PEM file on the agent with the certificate the metadata must be
    /// signed with; set, an unsigned or wrongly signed document fails with
    /// `token_invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_certificate_file: Option<PathBuf>,
    /// Compare the entity id, the SSO/SLO endpoints and the certificate set
    /// with the last run's: a certificate change is reported (the run
    /// succeeds), a changed entity id or endpoint fails with `protocol`
    /// unless `allow_endpoint_changes` allows it.
    #[serde(default = "default_true")]
    pub drift: bool,
    /// `true` (any), `false` (none), or the tracked names (`entity_id`,
    /// `sso:<binding>`, `slo:<binding>`, binding as in `redirect`, `post`,
    /// `artifact`, `soap`) that may change without failing.
    #[serde(default, skip_serializing_if = "AllowedChanges::is_none")]
    #[schemars(!skip_serializing_if)]
    pub allow_endpoint_changes: AllowedChanges,
    /// A run that takes longer in total fails with class `assertion`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<HumanDuration>")]
    pub max_latency: Option<Duration>,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_min_cert_days() -> u32 {
    14
}

fn not_blank(out: &mut Issues, name: &str, v: &Option<String>) {
    if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
        out.push((vec![key(name)], "must not be empty".into()));
    }
}

impl Validate for SamlLoginSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        let metadata =
            self.idp_metadata_url.is_some() as u8 + self.idp_metadata_file.is_some() as u8;
        if metadata > 1 {
            out.push((
                vec![key("idp_metadata_file")],
                "give `idp_metadata_url` or `idp_metadata_file`, not both".into(),
            ));
        }
        if metadata == 0 {
            for (name, missing) in [
                (
                    "idp_sso_url",
                    self.idp_sso_url.is_none() && self.idp_initiated_url.is_none(),
                ),
                ("idp_certificate_file", self.idp_certificate_file.is_none()),
                ("idp_entity_id", self.idp_entity_id.is_none()),
            ] {
                if missing {
                    out.push((
                        vec![key(name)],
                        "needed without `idp_metadata_url` or `idp_metadata_file` \
                         (the IdP's SSO URL, signing certificate and entity id come \
                         from its metadata otherwise)"
                            .to_string(),
                    ));
                }
            }
        }
        for (name, v) in [
            ("idp_metadata_url", &self.idp_metadata_url),
            ("idp_sso_url", &self.idp_sso_url),
            ("idp_initiated_url", &self.idp_initiated_url),
        ] {
            if let Some(u) = v {
                check_url(&mut out, vec![key(name)], u);
            }
        }
        for (name, v) in [
            ("sp_entity_id", &self.sp_entity_id),
            ("acs_url", &self.acs_url),
        ] {
            if v.trim().is_empty() {
                out.push((vec![key(name)], "must not be empty".into()));
            }
        }
        // Any absolute URL: the probe never requests it.
        if !is_templated(&self.acs_url)
            && !self.acs_url.trim().is_empty()
            && let Err(e) = url::Url::parse(&self.acs_url)
        {
            out.push((
                vec![key("acs_url")],
                format!("`{}` is not an absolute URL: {e}", self.acs_url),
            ));
        }
        if self.sign_request && self.sp_key.is_none() {
            out.push((
                vec![key("sign_request")],
                "needs `sp_key` (the SP's private key)".into(),
            ));
        }
        if self.sign_request && self.idp_initiated_url.is_some() {
            out.push((
                vec![key("sign_request")],
                "an IdP-initiated login sends no AuthnRequest to sign".into(),
            ));
        }
        not_blank(&mut out, "idp_entity_id", &self.idp_entity_id);
        not_blank(&mut out, "name_id_format", &self.name_id_format);
        if let Some(re) = &self.expect.name_id {
            check_regex(&mut out, vec![key("expect"), key("name_id")], re);
        }
        not_blank(&mut out, "form_selector", &self.form_selector);
        not_blank(&mut out, "username_field", &self.username_field);
        not_blank(&mut out, "password_field", &self.password_field);
        not_blank(&mut out, "totp_field", &self.totp_field);
        if let Some(sel) = &self.form_selector
            && !sel.trim().is_empty()
            && let Err(e) = scraper::Selector::parse(sel)
        {
            out.push((
                vec![key("form_selector")],
                format!("`{sel}` is not a valid CSS selector: {e}"),
            ));
        }
        if !(6..=8).contains(&self.totp_digits) {
            out.push((vec![key("totp_digits")], "must be 6, 7 or 8".into()));
        }
        if self.totp_period.as_secs() == 0 {
            out.push((vec![key("totp_period")], "must be at least 1s".into()));
        }
        login_script(&mut out, &self.login_steps, &self.consent_button);
        if !(1..=50).contains(&self.max_pages) {
            out.push((vec![key("max_pages")], "must be between 1 and 50".into()));
        }
        check_tls(&mut out, &self.tls);
        out
    }
}

/// Names `allow_endpoint_changes` may list for `saml_metadata`.
pub fn saml_tracked_name(name: &str) -> bool {
    const BINDINGS: &[&str] = &["redirect", "post", "artifact", "soap", "post_simplesign"];
    name == "entity_id"
        || ["sso:", "slo:"]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|b| BINDINGS.contains(&b)))
}

impl Validate for SamlMetadataSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        check_url(&mut out, vec![key("url")], &self.url);
        not_blank(&mut out, "entity_id", &self.entity_id);
        if let AllowedChanges::Fields(fields) = &self.allow_endpoint_changes {
            for (i, f) in fields.iter().enumerate() {
                if !saml_tracked_name(f) {
                    out.push((
                        vec![key("allow_endpoint_changes"), Seg::Index(i)],
                        format!(
                            "`{f}` is not a tracked name: entity_id, sso:<binding> or \
                             slo:<binding> (redirect, post, artifact, soap, post_simplesign)"
                        ),
                    ));
                }
            }
        }
        check_tls(&mut out, &self.tls);
        out
    }
}
