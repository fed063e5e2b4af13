//! `authorization_code`: the browserless login's catalog keys (client,
//! endpoints, credentials, TOTP, the login engine's `login_steps`,
//! `consent_button` and `max_pages`) and their validation. Kept apart from
//! the other OAuth kinds because the login script is a language of its own.
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::schema::HumanDuration;
use super::super::source_map::Seg;
use super::super::{TlsSpec, Value};
use super::oauth::*;
use super::{Issues, Validate, check_tls, is_templated, key};

/// `authorization_code`: a browserless login (authorize → login form →
/// optional TOTP → consent → callback) with PKCE, then the code exchange
/// and ID token validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeSpec {
    /// Issuer for discovery and the `iss` the ID token and the callback must
    /// carry. Either `issuer` or both `authorization_endpoint` and
    /// `token_endpoint` are required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The authorization endpoint; set, it skips discovery for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint for the code exchange; set, it skips discovery for
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// JWKS for the ID token. Default: the issuer's `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    /// How the client authenticates. Default: `private_key_jwt` with
    /// `private_key`, `client_secret_basic` with `client_secret`, else `none`;
    /// needed when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for `private_key_jwt`,
    /// normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Value>,
    /// Signature algorithm of the client assertion: RS256, RS384, RS512, PS256,
    /// PS384, PS512, ES256 or ES384. Default: RS256 for an RSA key, ES256 for
    /// an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_alg: Option<String>,
    /// `kid` header of the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The registered redirect URI: any absolute URL (custom schemes too). The
    /// login stops at the redirect to it and never fetches it.
    pub redirect_uri: String,
    /// The synthetic user's name.
    pub username: String,
    /// The synthetic user's password, usually `{ secret: NAME }`.
    pub password: Value,
    /// Scopes requested; with `openid` the ID token is validated (step
    /// `validate`).
    #[serde(default = "default_openid", skip_serializing_if = "is_openid")]
    #[schemars(!skip_serializing_if)]
    pub scope: Vec<String>,
    /// `prompt` of the authorization request: `consent` (some IdPs only issue a
    /// refresh token for `offline_access` with it), `login` (forces a fresh
    /// login), …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Extra authorization request parameters (`acr_values`, `audience`, …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub authorize_params: std::collections::BTreeMap<String, String>,
    /// CSS selector of the login form (default: the first form with a
    /// password input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_selector: Option<String>,
    /// `name` of the username input. Default: an input named username, login,
    /// email, user, …, else the first text or email input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_field: Option<String>,
    /// `name` of the password input (default: the password input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_field: Option<String>,
    /// Base32 TOTP secret (`{ secret: NAME }`): when a one-time-code form
    /// appears after the password, a code is generated at run time and posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<Value>,
    /// `name` of the one-time-code input. Default: an input named otp, totp,
    /// code, one_time_code, otp_code, totp_code, mfa_code, verification_code,
    /// passcode or token.
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
    /// Signature algorithms the ID token may use: asymmetric only (`none` and
    /// HS* are refused).
    #[serde(
        default = "default_algorithms",
        skip_serializing_if = "is_default_algorithms"
    )]
    #[schemars(!skip_serializing_if)]
    pub algorithms: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`.
    #[serde(
        default = "default_clock_skew",
        with = "humantime_serde",
        skip_serializing_if = "is_default_clock_skew"
    )]
    #[schemars(with = "HumanDuration")]
    #[schemars(!skip_serializing_if)]
    pub clock_skew: Duration,
    /// CSS selector of the button to click on consent and "stay signed in?"
    /// pages. Default: the engine's choice of an affirmative button (never
    /// deny, cancel, log out, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_button: Option<String>,
    /// Pages scripted by hand where the heuristics can't know: the first step
    /// whose `on` matches a page acts on it; other pages use the heuristics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub login_steps: Vec<LoginStep>,
    /// Pages one login may walk, 1 to 50, before it ends with `protocol` naming
    /// the last URL, title and forms.
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

/// One scripted page of an interactive login: on a page that matches `on`,
/// fill the named inputs and click `click` (or submit the form as Enter would).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStep {
    /// A regular expression on the page URL when it starts with `^` or
    /// `http`, else a CSS selector that must match an element of the page.
    pub on: String,
    /// Input `name` -> value (`{ secret: NAME }` for secrets).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fill: std::collections::BTreeMap<String, Value>,
    /// CSS selector of the button to click; without it the form is submitted as
    /// Enter would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click: Option<String>,
}

impl LoginStep {
    /// `on` is a URL regular expression (else a CSS selector).
    pub fn on_is_url(&self) -> bool {
        self.on.starts_with('^') || self.on.starts_with("http")
    }
}

/// `login_steps` and `consent_button`: regexes and CSS selectors that parse.
pub(super) fn login_script(out: &mut Issues, steps: &[LoginStep], consent_button: &Option<String>) {
    if let Some(sel) = consent_button
        && let Err(e) = scraper::Selector::parse(sel)
    {
        out.push((
            vec![key("consent_button")],
            format!("`{sel}` is not a valid CSS selector: {e}"),
        ));
    }
    for (i, step) in steps.iter().enumerate() {
        let at = |k: &str| vec![key("login_steps"), Seg::Index(i), key(k)];
        if step.on_is_url() {
            if let Err(e) = regex::Regex::new(&step.on) {
                out.push((at("on"), format!("invalid regular expression: {e}")));
            }
        } else if let Err(e) = scraper::Selector::parse(&step.on) {
            out.push((
                at("on"),
                format!(
                    "`{}` is not a valid CSS selector ({e}); a URL regular expression starts with `^`",
                    step.on
                ),
            ));
        }
        if let Some(sel) = &step.click
            && let Err(e) = scraper::Selector::parse(sel)
        {
            out.push((
                at("click"),
                format!("`{sel}` is not a valid CSS selector: {e}"),
            ));
        }
        if step.fill.is_empty() && step.click.is_none() {
            out.push((
                vec![key("login_steps"), Seg::Index(i)],
                "a step needs `fill`, `click` or both".into(),
            ));
        }
        if step.fill.keys().any(|k| k.trim().is_empty()) {
            out.push((at("fill"), "input names must not be empty".into()));
        }
    }
}

pub(super) fn default_max_pages() -> u8 {
    10
}
pub(super) fn is_default_max_pages(n: &u8) -> bool {
    *n == default_max_pages()
}

fn default_openid() -> Vec<String> {
    vec!["openid".to_string()]
}
fn is_openid(s: &[String]) -> bool {
    s == default_openid().as_slice()
}
pub(super) fn default_totp_digits() -> u8 {
    6
}
pub(super) fn is_default_totp_digits(d: &u8) -> bool {
    *d == default_totp_digits()
}
pub(super) fn default_totp_period() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn is_default_totp_period(d: &Duration) -> bool {
    *d == default_totp_period()
}

impl Validate for AuthorizationCodeSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        endpoint_source(
            &mut out,
            &self.issuer,
            &[
                ("authorization_endpoint", &self.authorization_endpoint),
                ("token_endpoint", &self.token_endpoint),
            ],
        );
        opt_url(&mut out, "jwks_uri", &self.jwks_uri);
        // Any absolute URL: custom schemes (`myapp://cb`) are common for
        // native clients, and the probe never fetches it.
        if !is_templated(&self.redirect_uri)
            && let Err(e) = url::Url::parse(&self.redirect_uri)
        {
            out.push((
                vec![key("redirect_uri")],
                format!("`{}` is not an absolute URL: {e}", self.redirect_uri),
            ));
        }
        client_fields(
            &mut out,
            &self.client_auth,
            &self.client_secret,
            &self.private_key,
            &self.private_key_alg,
        );
        algorithms(&mut out, &self.algorithms);
        if !(6..=8).contains(&self.totp_digits) {
            out.push((vec![key("totp_digits")], "must be 6, 7 or 8".into()));
        }
        if self.totp_period.as_secs() == 0 {
            out.push((vec![key("totp_period")], "must be at least 1s".into()));
        }
        for (name, v) in [
            ("form_selector", &self.form_selector),
            ("username_field", &self.username_field),
            ("password_field", &self.password_field),
            ("totp_field", &self.totp_field),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push((vec![key(name)], "must not be empty".into()));
            }
        }
        if let Some(sel) = &self.form_selector
            && !sel.trim().is_empty()
            && let Err(e) = scraper::Selector::parse(sel)
        {
            out.push((
                vec![key("form_selector")],
                format!("`{sel}` is not a valid CSS selector: {e}"),
            ));
        }
        login_script(&mut out, &self.login_steps, &self.consent_button);
        if !(1..=50).contains(&self.max_pages) {
            out.push((vec![key("max_pages")], "must be between 1 and 50".into()));
        }
        check_tls(&mut out, &self.tls);
        out
    }
}
