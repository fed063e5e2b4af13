//! `authorization_code`: a user's login through the browser flow, without a
//! browser. Builds the authorization request (PKCE S256, `state`, `nonce`,
//! scope `openid` by default) from discovery, walks every redirect itself
//! with the run's cookie jar, finds the login form in the HTML (scraper),
//! fills in username and password (keeping hidden inputs), answers a
//! one-time-code form with a TOTP generated at run time, approves consent
//! pages by posting them as they are, and stops at the redirect to
//! `redirect_uri` without fetching it. The callback's `state` and `iss`
//! (RFC 9207) are checked, the code is exchanged with its verifier
//! ([`crate::oauth`]) and the ID token validated ([`crate::jwt`]: signature,
//! `iss`, `aud`, `exp`, `nonce`, `at_hash`). Steps: `discovery` (when
//! endpoints come from the issuer), `authorize`, `login`, `totp`,
//! `consent` (when those pages appear), `callback`, `token`, `validate`.
//! Publishes `access_token`, `id_token`, `refresh_token` (secrets),
//! `token_type`, `expires_in`, `scope`, `claims` and `sub`.
use authpulse_proto::catalog::{AuthorizationCodeSpec, TlsSpec};
use authpulse_proto::v1::FailureClass;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rand::RngExt;
use serde_json::Value as Json;
use sha2::Digest;
use url::Url;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure, ms, snippet};
use crate::http::{Request, Timings};
use crate::oauth::{self, ClientAuth, Endpoints, finish};

const KIND: &str = "authorization_code";
/// Redirects and form posts in one login, all pages together.
const MAX_HOPS: usize = 30;
/// Consent-like pages (and auto-submitting forms) answered in a row.
const MAX_CONSENT_PAGES: usize = 3;
/// Input names that hold a one-time code when `totp_field` is not set.
const OTP_NAMES: &[&str] = &[
    "otp",
    "totp",
    "code",
    "one_time_code",
    "otp_code",
    "totp_code",
    "mfa_code",
    "verification_code",
    "passcode",
    "token",
];
/// Input names that hold the username when `username_field` is not set.
const USERNAME_NAMES: &[&str] = &[
    "username",
    "login",
    "email",
    "user",
    "user_name",
    "j_username",
    "identifier",
    "loginfmt",
    "userid",
];

impl Probe for AuthorizationCodeSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let auth =
            match ClientAuth::resolve(&crate::client_config!(self), ctx.secrets, &ctx.redactor) {
                Ok(a) => a,
                Err(e) => return config_failure(ctx, KIND, e.message),
            };
        let password = match crate::secrets::resolve(&self.password, ctx.secrets, &ctx.redactor) {
            Ok(p) => p,
            Err(e) => return config_failure(ctx, KIND, e.to_string()),
        };
        let totp = match self.totp.as_ref().map(|v| totp(self, v, ctx)).transpose() {
            Ok(t) => t,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let redirect = match Url::parse(&self.redirect_uri) {
            Ok(u) => u,
            Err(e) => {
                return config_failure(
                    ctx,
                    KIND,
                    format!("redirect_uri `{}`: {e}", self.redirect_uri),
                );
            }
        };

        let mut steps = Vec::new();
        let mut endpoints = Endpoints::new(KIND, self.issuer.as_deref(), &self.tls);
        let Some(authorization_endpoint) = endpoints
            .url(
                ctx,
                &mut steps,
                self.authorization_endpoint.as_deref(),
                "authorization_endpoint",
            )
            .await
        else {
            return finish(ctx, steps);
        };
        let Some(token_endpoint) = endpoints
            .url(
                ctx,
                &mut steps,
                self.token_endpoint.as_deref(),
                "token_endpoint",
            )
            .await
        else {
            return finish(ctx, steps);
        };

        let pkce = Pkce::new();
        let authorize_url = authorize_url(self, &authorization_endpoint, &pkce);
        let mut browser = Browser {
            redirect: &redirect,
            tls: &self.tls,
            hops: 0,
        };
        let creds = Credentials {
            username: &self.username,
            password: &password,
            totp: totp.as_ref(),
        };
        let Some(callback) =
            login_flow(self, ctx, &mut browser, &mut steps, authorize_url, &creds).await
        else {
            return finish(ctx, steps);
        };

        let code = match check_callback(self, &callback, &pkce.state) {
            Ok((code, detail)) => {
                ctx.redactor.remember(&code);
                steps.push(step("callback", None, Timings::default(), detail));
                code
            }
            Err(f) => {
                steps.push(step("callback", Some(f), Timings::default(), String::new()));
                return finish(ctx, steps);
            }
        };

        let params = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        let Some(tokens) =
            oauth::token_step(ctx, &endpoints, &mut steps, &token_endpoint, &auth, &params).await
        else {
            return finish(ctx, steps);
        };

        validate_id_token(self, ctx, &mut endpoints, &mut steps, &tokens, &pkce, &auth).await;
        finish(ctx, steps)
    }
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: KIND.into(),
        failure,
        timings,
        detail,
    }
}

struct Credentials<'a> {
    username: &'a str,
    password: &'a str,
    totp: Option<&'a totp_rs::Totp>,
}

/// The TOTP generator for the secret `v` (base32, spaces and padding allowed).
fn totp(
    spec: &AuthorizationCodeSpec,
    v: &authpulse_proto::catalog::Value,
    ctx: &RunContext<'_>,
) -> Result<totp_rs::Totp, String> {
    let raw = crate::secrets::resolve(v, ctx.secrets, &ctx.redactor).map_err(|e| e.to_string())?;
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .collect::<String>()
        .to_ascii_uppercase();
    let secret = totp_rs::Secret::try_from_base32(&cleaned)
        .map_err(|_| "totp: the secret is not base32".to_string())?;
    // Not `build()`: it refuses the 80-bit secrets many IdPs still issue.
    Ok(totp_rs::Builder::new()
        .with_secret(secret)
        .with_digits(spec.totp_digits)
        .with_step_duration(spec.totp_period.as_secs().max(1))
        .build_noncompliant())
}

/// PKCE verifier (RFC 7636, 43 characters), `state` and `nonce`, fresh per run.
struct Pkce {
    verifier: String,
    challenge: String,
    state: String,
    nonce: String,
}

impl Pkce {
    fn new() -> Pkce {
        let mut rng = rand::rng();
        let mut random = || URL_SAFE_NO_PAD.encode(rng.random::<[u8; 32]>());
        let verifier = random();
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
            state: random(),
            nonce: random(),
        }
    }
}

fn authorize_url(spec: &AuthorizationCodeSpec, endpoint: &Url, pkce: &Pkce) -> Url {
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &spec.client_id)
            .append_pair("redirect_uri", &spec.redirect_uri)
            .append_pair("scope", &spec.scope.join(" "))
            .append_pair("state", &pkce.state)
            .append_pair("nonce", &pkce.nonce)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(p) = &spec.prompt {
            q.append_pair("prompt", p);
        }
        for (k, v) in &spec.authorize_params {
            q.append_pair(k, v);
        }
    }
    url
}

/// authorize → login → (totp) → (consent) until the redirect to
/// `redirect_uri`. Each phase is a step; `None` when one failed.
async fn login_flow(
    spec: &AuthorizationCodeSpec,
    ctx: &mut RunContext<'_>,
    browser: &mut Browser<'_>,
    steps: &mut Vec<StepOutcome>,
    authorize_url: Url,
    creds: &Credentials<'_>,
) -> Option<Url> {
    // authorize: to the login page (or straight back, with an SSO session).
    let landing = match browser.go(ctx, Method::GET, authorize_url, None).await {
        Ok((l, t)) => {
            let detail = describe(&l, &t);
            steps.push(step("authorize", None, t, detail));
            l
        }
        Err((f, t)) => {
            steps.push(step("authorize", Some(f), t, String::new()));
            return None;
        }
    };
    let page = match landing {
        Landing::Callback(u) => return Some(u),
        Landing::Page(p) => p,
    };
    if let Some(f) = status_failure(
        &page,
        "the authorization endpoint",
        FailureClass::HttpStatus,
    ) {
        fail_last(steps, f);
        return None;
    }

    // login: find and fill the form.
    let parsed = parse_page(&page, spec.form_selector.as_deref());
    let form = match login_form(spec, &page, &parsed) {
        Ok(f) => f,
        Err(f) => {
            steps.push(step("login", Some(f), Timings::default(), String::new()));
            return None;
        }
    };
    let fields = match fill_login(spec, form, creds, &page.url) {
        Ok(f) => f,
        Err(f) => {
            steps.push(step("login", Some(f), Timings::default(), String::new()));
            return None;
        }
    };
    let (landing, timings) = match browser.submit(ctx, form, fields).await {
        Ok(x) => x,
        Err((f, t)) => {
            steps.push(step("login", Some(f), t, String::new()));
            return None;
        }
    };
    let mut page = match landing {
        Landing::Callback(u) => {
            steps.push(step(
                "login",
                None,
                timings,
                format!("as {}", creds.username),
            ));
            return Some(u);
        }
        Landing::Page(p) => p,
    };
    let rejected = |what: &str, p: &Page, parsed: &Parsed| {
        Failure::new(
            FailureClass::AuthRejected,
            format!(
                "{what} rejected at {}: {}",
                p.url,
                parsed
                    .message
                    .clone()
                    .unwrap_or_else(|| "the form came back".into())
            ),
        )
    };
    let parsed = parse_page(&page, spec.form_selector.as_deref());
    let failure =
        status_failure(&page, "the login page", FailureClass::AuthRejected).or_else(|| {
            parsed.forms.iter().any(|f| f.has_password).then(|| {
                rejected(
                    &format!("credentials for `{}`", creds.username),
                    &page,
                    &parsed,
                )
            })
        });
    let login_ok = failure.is_none();
    steps.push(step(
        "login",
        failure,
        timings,
        format!("as {}", creds.username),
    ));
    if !login_ok {
        return None;
    }

    // totp: a one-time-code form after the password.
    if let Some(form) = otp_form(spec, &parsed) {
        let Some(totp) = creds.totp else {
            let f = Failure::new(
                FailureClass::Config,
                format!(
                    "{} asks for a one-time code (field `{}`) but no `totp` secret is configured",
                    page.url, form.otp_field
                ),
            );
            steps.push(step("totp", Some(f), Timings::default(), String::new()));
            return None;
        };
        let code = totp.generate(oauth::unix_now()).to_string();
        ctx.redactor.remember(&code);
        let mut fields = form.form.prefilled();
        set_field(&mut fields, &form.otp_field, &code);
        let (landing, timings) = match browser.submit(ctx, form.form, fields).await {
            Ok(x) => x,
            Err((f, t)) => {
                steps.push(step("totp", Some(f), t, String::new()));
                return None;
            }
        };
        page = match landing {
            Landing::Callback(u) => {
                steps.push(step("totp", None, timings, "code accepted".into()));
                return Some(u);
            }
            Landing::Page(p) => p,
        };
        let again = parse_page(&page, spec.form_selector.as_deref());
        let failure = status_failure(&page, "the one-time code page", FailureClass::AuthRejected)
            .or_else(|| {
                otp_form(spec, &again)
                    .is_some()
                    .then(|| rejected("one-time code", &page, &again))
            });
        let ok = failure.is_none();
        steps.push(step("totp", failure, timings, "code accepted".into()));
        if !ok {
            return None;
        }
    }

    // consent: forms without a password field, posted as they are.
    let mut timings = Timings::default();
    let mut pages = 0;
    loop {
        let parsed = parse_page(&page, spec.form_selector.as_deref());
        let failure = if let Some(f) =
            status_failure(&page, "a page after login", FailureClass::HttpStatus)
        {
            Some(f)
        } else if pages >= MAX_CONSENT_PAGES {
            Some(Failure::new(
                FailureClass::Protocol,
                format!(
                    "still no redirect to {} after {pages} consent page(s); now at {}",
                    spec.redirect_uri, page.url
                ),
            ))
        } else if parsed.forms.iter().any(|f| f.has_password) {
            Some(Failure::new(
                FailureClass::Protocol,
                format!(
                    "asked to log in again at {} after a successful login",
                    page.url
                ),
            ))
        } else {
            match consent_form(&parsed) {
                None => Some(Failure::new(
                    FailureClass::Protocol,
                    format!(
                        "stuck at {} ({}): no form to continue and no redirect to {}: {}",
                        page.url,
                        page.status,
                        spec.redirect_uri,
                        parsed
                            .message
                            .clone()
                            .unwrap_or_else(|| snippet(page.body.as_bytes()))
                    ),
                )),
                Some(form) => {
                    pages += 1;
                    let fields = form.prefilled();
                    match browser.submit(ctx, form, fields).await {
                        Err((f, t)) => {
                            timings.absorb(&t);
                            Some(f)
                        }
                        Ok((Landing::Callback(u), t)) => {
                            timings.absorb(&t);
                            timings.total += t.total;
                            let detail = format!("{pages} page(s) approved");
                            steps.push(step("consent", None, timings, detail));
                            return Some(u);
                        }
                        Ok((Landing::Page(p), t)) => {
                            timings.absorb(&t);
                            timings.total += t.total;
                            page = p;
                            continue;
                        }
                    }
                }
            }
        };
        steps.push(step("consent", failure, timings, String::new()));
        return None;
    }
}

/// Replaces the failure of the last step (the page it landed on was bad).
fn fail_last(steps: &mut [StepOutcome], f: Failure) {
    if let Some(last) = steps.last_mut() {
        last.failure = Some(f);
    }
}

/// A 4xx or 5xx page: 5xx is always `http_status`; 4xx gets `client_class`.
fn status_failure(page: &Page, what: &str, client_class: FailureClass) -> Option<Failure> {
    let class = if page.status.is_server_error() {
        FailureClass::HttpStatus
    } else if page.status.is_client_error() {
        client_class
    } else {
        return None;
    };
    Some(Failure::new(
        class,
        format!(
            "{what} {} answered {}: {}",
            page.url,
            page.status,
            snippet(page.body.as_bytes())
        ),
    ))
}

fn describe(l: &Landing, t: &Timings) -> String {
    match l {
        Landing::Callback(_) => {
            format!("redirected straight back (SSO session) in {}", ms(t.total))
        }
        Landing::Page(p) => format!("{} {} in {}", p.status, p.url, ms(t.total)),
    }
}

/// The callback's `code`, after checking `error`, `state` and `iss`.
fn check_callback(
    spec: &AuthorizationCodeSpec,
    callback: &Url,
    state: &str,
) -> Result<(String, String), Failure> {
    let get = |k: &str| {
        callback
            .query_pairs()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = get("error") {
        let description = get("error_description")
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let class = if error == "access_denied" {
            FailureClass::AuthRejected
        } else {
            FailureClass::Protocol
        };
        return Err(Failure::new(
            class,
            format!("the IdP redirected back with error={error}{description}"),
        ));
    }
    let protocol = |m: String| Failure::new(FailureClass::Protocol, m);
    match get("state") {
        Some(s) if s == state => {}
        Some(_) => {
            return Err(protocol(
                "state mismatch in the callback: not the state of this login".into(),
            ));
        }
        None => return Err(protocol("the callback has no `state`".into())),
    }
    let iss = get("iss");
    if let (Some(got), Some(want)) = (&iss, &spec.issuer)
        && got != want
    {
        return Err(protocol(format!(
            "iss in the callback is {got:?}, expected {want:?} (RFC 9207: a response from another IdP)"
        )));
    }
    let code = get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| protocol("the callback has neither `code` nor `error`".into()))?;
    let detail = if iss.is_some() {
        "code received; state and iss match".to_string()
    } else {
        "code received; state matches".to_string()
    };
    Ok((code, detail))
}

/// With scope `openid`: the ID token must be there and valid for this
/// login (issuer, audience = client, nonce, at_hash when present).
async fn validate_id_token(
    spec: &AuthorizationCodeSpec,
    ctx: &mut RunContext<'_>,
    endpoints: &mut Endpoints<'_>,
    steps: &mut Vec<StepOutcome>,
    tokens: &oauth::TokenResponse,
    pkce: &Pkce,
    auth: &ClientAuth,
) {
    let Some(id_token) = &tokens.id_token else {
        if spec.scope.iter().any(|s| s == "openid") {
            let f = Failure::new(
                FailureClass::Protocol,
                "scope includes openid but the token response has no id_token",
            );
            steps.push(step("validate", Some(f), Timings::default(), String::new()));
        }
        return;
    };
    let mut rules = crate::jwt::Expectations {
        issuer: spec.issuer.clone(),
        audience: Some(auth.client_id().to_string()),
        algorithms: spec.algorithms.clone(),
        clock_skew: spec.clock_skew,
        required_claims: vec!["sub".into(), "iat".into()],
        nonce: Some(pkce.nonce.clone()),
        ..Default::default()
    };
    if let Ok((_, claims)) = crate::jwt::decode_unverified(id_token)
        && claims.contains_key("at_hash")
    {
        rules.access_token = Some(tokens.access_token.clone());
    }
    if let Some(v) = oauth::validate_step(
        ctx,
        endpoints,
        steps,
        "validate",
        spec.jwks_uri.as_deref(),
        id_token,
        &rules,
    )
    .await
    {
        if let Some(sub) = v.claims.get("sub").cloned() {
            ctx.output("sub", sub);
        }
        ctx.output("claims", Json::Object(v.claims));
    }
}

// ---------------------------------------------------------------------------
// The browser: redirects walked by hand, stopping at the redirect_uri.
// ---------------------------------------------------------------------------

struct Page {
    url: Url,
    status: StatusCode,
    body: String,
}

enum Landing {
    Page(Page),
    /// The redirect to `redirect_uri`, not fetched.
    Callback(Url),
}

struct Browser<'a> {
    redirect: &'a Url,
    tls: &'a TlsSpec,
    hops: usize,
}

type Fail = (Failure, Timings);

impl Browser<'_> {
    fn is_callback(&self, u: &Url) -> bool {
        u.scheme() == self.redirect.scheme()
            && u.host_str() == self.redirect.host_str()
            && u.port_or_known_default() == self.redirect.port_or_known_default()
            && u.path() == self.redirect.path()
    }

    /// Requests `url` and follows redirects (303, and 301/302 after a POST,
    /// become GET) until a page, or the redirect to `redirect_uri`.
    async fn go(
        &mut self,
        ctx: &mut RunContext<'_>,
        mut method: Method,
        mut url: Url,
        mut form: Option<String>,
    ) -> Result<(Landing, Timings), Fail> {
        let mut timings = Timings::default();
        loop {
            if self.is_callback(&url) {
                return Ok((Landing::Callback(url), timings));
            }
            self.hops += 1;
            if self.hops > MAX_HOPS {
                return Err((
                    Failure::new(
                        FailureClass::Protocol,
                        format!(
                            "more than {MAX_HOPS} redirects and forms in one login; last {url}"
                        ),
                    ),
                    timings,
                ));
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
            );
            if form.is_some() {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            let req = Request {
                method: method.clone(),
                url: url.clone(),
                headers,
                body: form.clone().map(Bytes::from),
                follow_redirects: false,
                tls: self.tls,
            };
            let resp = match ctx.session.send(req).await {
                Ok(r) => r,
                Err(e) => {
                    timings.absorb(&e.timings);
                    timings.total += e.timings.total;
                    return Err((Failure::new(e.class, e.message), timings));
                }
            };
            timings.absorb(&resp.timings);
            timings.total += resp.timings.total;
            let location = resp
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok());
            if resp.status.is_redirection()
                && let Some(loc) = location
            {
                url = url.join(loc).map_err(|e| {
                    (
                        Failure::new(
                            FailureClass::Protocol,
                            format!("{url} redirects to an invalid Location `{loc}`: {e}"),
                        ),
                        timings,
                    )
                })?;
                if resp.status == StatusCode::SEE_OTHER || method == Method::POST {
                    method = Method::GET;
                    form = None;
                }
                continue;
            }
            let body = String::from_utf8_lossy(&resp.body).into_owned();
            return Ok((
                Landing::Page(Page {
                    url,
                    status: resp.status,
                    body,
                }),
                timings,
            ));
        }
    }

    /// Submits `form` with `fields` the way a browser would.
    async fn submit(
        &mut self,
        ctx: &mut RunContext<'_>,
        form: &Form,
        fields: Vec<(String, String)>,
    ) -> Result<(Landing, Timings), Fail> {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        if form.method == "GET" {
            let mut url = form.action.clone();
            url.set_query(Some(&encoded));
            self.go(ctx, Method::GET, url, None).await
        } else {
            self.go(ctx, Method::POST, form.action.clone(), Some(encoded))
                .await
        }
    }
}

// ---------------------------------------------------------------------------
// HTML: forms read into plain data (scraper's DOM is not Send, so it never
// lives across an await).
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Field {
    name: String,
    /// `type` of an input in lower case (`text` when absent), or `select`/`textarea`.
    kind: String,
    value: Option<String>,
}

#[derive(Clone, Debug)]
struct Form {
    action: Url,
    method: String,
    fields: Vec<Field>,
    /// The name and value of the submit button that would be clicked.
    submit: Option<(String, String)>,
    has_submit: bool,
    has_password: bool,
    /// Matches `form_selector` (or no selector is set).
    selected: bool,
    /// Action, button labels and values, for telling approve from deny.
    label: String,
}

impl Form {
    /// What a browser sends without typing anything: hidden and prefilled
    /// values, checked boxes, selected options, the clicked button.
    fn prefilled(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .fields
            .iter()
            .filter(|f| !matches!(f.kind.as_str(), "submit" | "button" | "image" | "reset"))
            .filter_map(|f| f.value.clone().map(|v| (f.name.clone(), v)))
            .collect();
        if let Some((n, v)) = &self.submit {
            out.push((n.clone(), v.clone()));
        }
        out
    }
}

struct Parsed {
    forms: Vec<Form>,
    /// An error or alert message on the page, if it shows one.
    message: Option<String>,
}

fn parse_page(page: &Page, selector: Option<&str>) -> Parsed {
    let html = scraper::Html::parse_document(&page.body);
    let sel = |s: &str| scraper::Selector::parse(s).ok();
    let wanted = selector.and_then(sel);
    let (Some(form_sel), Some(control_sel)) = (sel("form"), sel("input, select, textarea, button"))
    else {
        return Parsed {
            forms: Vec::new(),
            message: None,
        };
    };
    let option_sel = sel("option");
    let mut forms = Vec::new();
    for form in html.select(&form_sel) {
        let action = form
            .attr("action")
            .filter(|a| !a.trim().is_empty())
            .and_then(|a| page.url.join(a.trim()).ok())
            .unwrap_or_else(|| page.url.clone());
        let method = form
            .attr("method")
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| m == "GET")
            .unwrap_or_else(|| "POST".into());
        let mut fields = Vec::new();
        let mut submit = None;
        let mut has_submit = false;
        let mut label = action.path().to_string();
        for control in form.select(&control_sel) {
            let el = control.value();
            let tag = el.name();
            let name = el.attr("name").unwrap_or("").to_string();
            let kind = match tag {
                "input" => el.attr("type").unwrap_or("text").to_ascii_lowercase(),
                "button" => el.attr("type").unwrap_or("submit").to_ascii_lowercase(),
                other => other.to_string(),
            };
            if el.attr("disabled").is_some() {
                continue;
            }
            let is_submit = matches!(kind.as_str(), "submit" | "image");
            if is_submit {
                let text: String = control.text().collect::<String>();
                let value = el.attr("value").unwrap_or("").to_string();
                label.push(' ');
                label.push_str(&format!("{text} {name} {value}"));
                // The first submit that does not decline is the one clicked.
                if !has_submit || (submit.is_none() && !declines(&format!("{text} {name} {value}")))
                {
                    has_submit = true;
                    if !name.is_empty() && !declines(&format!("{text} {name} {value}")) {
                        submit = Some((name.clone(), value));
                    }
                }
                continue;
            }
            if name.is_empty() {
                continue;
            }
            let value = match kind.as_str() {
                "checkbox" | "radio" => el
                    .attr("checked")
                    .map(|_| el.attr("value").unwrap_or("on").to_string()),
                "select" => option_sel.as_ref().and_then(|os| {
                    let options: Vec<_> = control.select(os).collect();
                    options
                        .iter()
                        .find(|o| o.value().attr("selected").is_some())
                        .or(options.first())
                        .map(|o| {
                            o.value()
                                .attr("value")
                                .map(str::to_string)
                                .unwrap_or_else(|| o.text().collect::<String>().trim().to_string())
                        })
                }),
                "textarea" => Some(control.text().collect()),
                _ => el.attr("value").map(str::to_string),
            };
            fields.push(Field { name, kind, value });
        }
        let has_password = fields.iter().any(|f| f.kind == "password");
        let selected = match &wanted {
            Some(w) => w.matches(&form),
            None => true,
        };
        forms.push(Form {
            action,
            method,
            fields,
            submit,
            has_submit,
            has_password,
            selected,
            label,
        });
    }
    Parsed {
        forms,
        message: page_message(&html),
    }
}

/// The text of the first element that looks like an error or alert.
fn page_message(html: &scraper::Html) -> Option<String> {
    let sel = scraper::Selector::parse(
        "[role=alert], .error, .alert, .alert-error, .errors, #error, .error-message, \
         .kc-feedback-text, #input-error, .form-error",
    )
    .ok()?;
    html.select(&sel)
        .map(|e| e.text().collect::<Vec<_>>().join(" "))
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|t| !t.is_empty())
        .map(|t| snippet(t.as_bytes()))
}

fn declines(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["deny", "cancel", "abort", "reject", "decline", "no thanks"]
        .iter()
        .any(|w| t.contains(w))
}

/// The login form: `form_selector`'s, else the first with a password input.
fn login_form<'p>(
    spec: &AuthorizationCodeSpec,
    page: &Page,
    parsed: &'p Parsed,
) -> Result<&'p Form, Failure> {
    let protocol = |m: String| Failure::new(FailureClass::Protocol, m);
    match &spec.form_selector {
        Some(s) => {
            if scraper::Selector::parse(s).is_err() {
                return Err(Failure::new(
                    FailureClass::Config,
                    format!("form_selector `{s}` is not a valid CSS selector"),
                ));
            }
            parsed.forms.iter().find(|f| f.selected).ok_or_else(|| {
                protocol(format!(
                    "login form not found at {}: nothing matches form_selector `{s}`",
                    page.url
                ))
            })
        }
        None => parsed
            .forms
            .iter()
            .find(|f| f.has_password)
            .ok_or_else(|| {
                protocol(format!(
                    "login form not found at {}: no form with a password field ({} form(s) on the page)",
                    page.url,
                    parsed.forms.len()
                ))
            }),
    }
}

/// The login form's fields with username and password filled in.
fn fill_login(
    spec: &AuthorizationCodeSpec,
    form: &Form,
    creds: &Credentials<'_>,
    url: &Url,
) -> Result<Vec<(String, String)>, Failure> {
    let protocol = |m: String| Failure::new(FailureClass::Protocol, m);
    let text_like = |f: &&Field| matches!(f.kind.as_str(), "text" | "email" | "tel" | "");
    let user_field = match &spec.username_field {
        Some(n) => form
            .fields
            .iter()
            .find(|f| &f.name == n)
            .ok_or_else(|| protocol(format!("the login form at {url} has no field `{n}`")))?,
        None => form
            .fields
            .iter()
            .filter(text_like)
            .find(|f| USERNAME_NAMES.contains(&f.name.to_ascii_lowercase().as_str()))
            .or_else(|| form.fields.iter().find(text_like))
            .ok_or_else(|| {
                protocol(format!(
                    "the login form at {url} has no username input (set `username_field`)"
                ))
            })?,
    };
    let pass_field = match &spec.password_field {
        Some(n) => form
            .fields
            .iter()
            .find(|f| &f.name == n)
            .ok_or_else(|| protocol(format!("the login form at {url} has no field `{n}`")))?,
        None => form
            .fields
            .iter()
            .find(|f| f.kind == "password")
            .ok_or_else(|| {
                protocol(format!(
                    "the login form at {url} has no password input (set `password_field`)"
                ))
            })?,
    };
    let (user_name, pass_name) = (user_field.name.clone(), pass_field.name.clone());
    let mut fields = form.prefilled();
    set_field(&mut fields, &user_name, creds.username);
    set_field(&mut fields, &pass_name, creds.password);
    Ok(fields)
}

fn set_field(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    fields.retain(|(n, _)| n != name);
    fields.push((name.to_string(), value.to_string()));
}

struct OtpForm<'p> {
    form: &'p Form,
    otp_field: String,
}

/// A form asking for a one-time code: one with an input named `totp_field`
/// (or a usual OTP name) and no password input.
fn otp_form<'p>(spec: &AuthorizationCodeSpec, parsed: &'p Parsed) -> Option<OtpForm<'p>> {
    parsed
        .forms
        .iter()
        .filter(|f| !f.has_password)
        .find_map(|f| {
            let field = f.fields.iter().find(|fl| {
                !matches!(fl.kind.as_str(), "hidden" | "checkbox" | "radio")
                    && match &spec.totp_field {
                        Some(n) => &fl.name == n,
                        None => OTP_NAMES.contains(&fl.name.to_ascii_lowercase().as_str()),
                    }
            })?;
            Some(OtpForm {
                form: f,
                otp_field: field.name.clone(),
            })
        })
}

/// A page to get past by posting it as it is (consent, or a form that a
/// browser's script would auto-submit): the first form with a submit
/// button and no password, preferring one that does not decline.
fn consent_form(parsed: &Parsed) -> Option<&Form> {
    let candidates = || {
        parsed.forms.iter().filter(|f| {
            !f.has_password && (f.has_submit || f.fields.iter().all(|x| x.kind == "hidden"))
        })
    };
    candidates()
        .find(|f| !declines(&f.label))
        .or_else(|| candidates().find(|f| f.submit.is_some()))
}
