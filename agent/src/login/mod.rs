//! The login engine: walks an interactive login page by page the way a
//! person in a browser does, for any probe kind that signs in through HTML
//! (OIDC `authorization_code` today, SAML next). Each page is read and
//! classified ([`page`]), acted on (username, password, one-time code,
//! the affirmative button of a consent or "stay signed in?" page
//! ([`buttons`]), a form that posts itself, a meta refresh, or the page's
//! `login_steps` entry ([`script`])), and submitted as a browser would
//! ([`form`]), with the run's cookie jar, until the caller's stop condition
//! holds: a redirect to its URL, or a self-posting form aimed at it. Every
//! submission is judged by the page it leads to: the same credential form
//! again is `auth_rejected` with the IdP's own message, an error status or
//! error page is `http_status`/`protocol` quoting the IdP, a page that needs
//! JavaScript or that the engine cannot read is `protocol` describing it,
//! and a page limit bounds loops. Work is recorded as the caller's steps
//! (`login`, `totp`, `consent`), and optionally saved page by page with
//! secrets hidden ([`save`]).
pub mod buttons;
pub mod form;
pub mod keys;
pub mod page;
pub mod save;
pub mod script;

use authpulse_proto::catalog::TlsSpec;
use authpulse_proto::v1::FailureClass;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;
use url::Url;

use crate::http::{Request, Timings};
use crate::probes::{Failure, RunContext, StepOutcome, ms};
use page::{Class, Hints, Page, Parsed, ReadOptions};

/// Redirects and form posts in one login, all pages together.
const MAX_HOPS: usize = 40;

/// Where a walk ends.
pub trait StopAt: Sync {
    /// A redirect (or link) to this URL ends the walk; it is not fetched.
    fn url(&self, url: &Url) -> bool;
    /// A self-posting form to this URL ends the walk (SAML ACS,
    /// `response_mode=form_post`); it is not submitted.
    fn form(&self, _action: &Url) -> bool {
        false
    }
}

/// Stops at one URL, compared on scheme, host, port and path (the query
/// carries the answer): a redirect to it (OAuth `redirect_uri`) or a form
/// posting to it (`form_post`, the SAML ACS).
pub struct StopAtUrl<'a>(pub &'a Url);

impl StopAt for StopAtUrl<'_> {
    fn url(&self, u: &Url) -> bool {
        let r = self.0;
        u.scheme() == r.scheme()
            && u.host_str() == r.host_str()
            && u.port_or_known_default() == r.port_or_known_default()
            && u.path() == r.path()
    }
    fn form(&self, action: &Url) -> bool {
        self.url(action)
    }
}

/// How a walk ended.
#[derive(Debug)]
pub enum Reached {
    Redirect(Url),
    Post {
        url: Url,
        fields: Vec<(String, String)>,
    },
}

/// What the engine needs to sign in.
pub struct Config<'a> {
    /// Probe kind, for the steps it records.
    pub kind: &'static str,
    pub username: &'a str,
    pub password: &'a str,
    pub totp: Option<&'a totp_rs::Totp>,
    pub hints: Hints<'a>,
    pub form_selector: Option<scraper::Selector>,
    pub consent_button: Option<scraper::Selector>,
    pub steps: Vec<script::CompiledStep>,
    pub max_pages: usize,
    pub tls: &'a TlsSpec,
    /// The name of the step that records the first request (`authorize`
    /// for OAuth, `sso` for SAML).
    pub start_step: &'static str,
}

/// The first request of a walk.
pub enum Start {
    Get(Url),
    /// A form post (the SAML HTTP-POST binding's AuthnRequest).
    Post {
        url: Url,
        fields: Vec<(String, String)>,
    },
}

enum Landing {
    Page(Page),
    Stop(Url),
}

type Fail = (Failure, Timings);

struct Browser<'a> {
    stop: &'a dyn StopAt,
    tls: &'a TlsSpec,
    hops: usize,
}

impl Browser<'_> {
    /// Requests `url` and follows redirects (303, and 301/302 after a POST,
    /// become GET) until a page, or a URL the stop condition accepts.
    async fn go(
        &mut self,
        ctx: &mut RunContext<'_>,
        mut method: Method,
        mut url: Url,
        mut body: Option<(String, Vec<u8>)>,
    ) -> Result<(Landing, Timings), Fail> {
        let mut timings = Timings::default();
        loop {
            if self.stop.url(&url) {
                return Ok((Landing::Stop(url), timings));
            }
            self.hops += 1;
            if self.hops > MAX_HOPS {
                let f = Failure::new(
                    FailureClass::Protocol,
                    format!("more than {MAX_HOPS} redirects and forms in one login; last {url}"),
                );
                return Err((f, timings));
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
            );
            if let Some((ct, _)) = &body
                && let Ok(v) = HeaderValue::from_str(ct)
            {
                headers.insert(header::CONTENT_TYPE, v);
            }
            let req = Request {
                method: method.clone(),
                url: url.clone(),
                headers,
                body: body.as_ref().map(|(_, b)| Bytes::from(b.clone())),
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
                url = match url.join(loc) {
                    Ok(u) => u,
                    Err(e) => {
                        let f = Failure::new(
                            FailureClass::Protocol,
                            format!("{url} redirects to an invalid Location `{loc}`: {e}"),
                        );
                        return Err((f, timings));
                    }
                };
                if resp.status == StatusCode::SEE_OTHER || method == Method::POST {
                    method = Method::GET;
                    body = None;
                }
                continue;
            }
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            return Ok((
                Landing::Page(Page {
                    url,
                    status: resp.status,
                    body: text,
                }),
                timings,
            ));
        }
    }
}

/// At most `n` characters of `s`, on one line.
pub(crate) fn clip(s: &str, n: usize) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() <= n {
        one
    } else {
        format!("{}…", one.chars().take(n).collect::<String>())
    }
}

fn step(
    kind: &str,
    name: &str,
    failure: Option<Failure>,
    timings: Timings,
    detail: String,
) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: kind.into(),
        failure,
        timings,
        detail,
    }
}

/// The steps of one walk: consecutive work of one phase is one step.
struct Steps<'s> {
    kind: &'static str,
    list: &'s mut Vec<StepOutcome>,
}

impl Steps<'_> {
    fn add(&mut self, name: &str, t: Timings, detail: &str) {
        if let Some(last) = self.list.last_mut()
            && last.name == name
            && last.failure.is_none()
        {
            last.timings.absorb(&t);
            last.timings.total += t.total;
            if !detail.is_empty() && !last.detail.contains(detail) {
                last.detail = format!("{}, {detail}", last.detail);
            }
            return;
        }
        self.list
            .push(step(self.kind, name, None, t, detail.to_string()));
    }

    /// Work continuing the previous step (auto-posts, refreshes).
    fn extend(&mut self, t: Timings) {
        if let Some(last) = self.list.last_mut() {
            last.timings.absorb(&t);
            last.timings.total += t.total;
        }
    }

    /// `f` on the step `name`: the last one when it is that step, else a new one.
    fn fail(&mut self, name: &str, f: Failure, t: Timings) {
        if let Some(last) = self.list.last_mut()
            && last.name == name
            && last.failure.is_none()
        {
            last.timings.absorb(&t);
            last.timings.total += t.total;
            last.failure = Some(f);
            return;
        }
        self.list
            .push(step(self.kind, name, Some(f), t, String::new()));
    }

    /// `f` on the last step (the page it led to was bad).
    fn fail_last(&mut self, f: Failure) {
        match self.list.last_mut() {
            Some(last) if last.failure.is_none() => last.failure = Some(f),
            _ => self.list.push(step(
                self.kind,
                "login",
                Some(f),
                Timings::default(),
                String::new(),
            )),
        }
    }
}

/// A value typed into a form.
#[derive(Clone, Debug)]
enum Fill {
    Username,
    Password,
    Totp,
    /// A `login_steps` value.
    Text(String),
}

/// What to do on a page.
enum Plan {
    Submit {
        /// The step it belongs to; `None` continues the previous one.
        phase: Option<&'static str>,
        form: usize,
        button: Option<usize>,
        fills: Vec<(String, Fill)>,
        detail: String,
    },
    Follow(Url),
    Stop(Reached),
}

/// The last submission, to judge the page it led to.
struct Last {
    class: Class,
    parsed: Parsed,
}

/// Walks from `start` until `stop` holds. Records a `cfg.start_step` step
/// for the first request, then `login`, `totp` and `consent` steps into
/// `steps`; `None` when a step failed (its failure says why).
pub async fn walk(
    cfg: &Config<'_>,
    stop: &dyn StopAt,
    ctx: &mut RunContext<'_>,
    steps: &mut Vec<StepOutcome>,
    start: Start,
    mut recorder: Option<&mut save::Recorder>,
) -> Option<Reached> {
    let mut steps = Steps {
        kind: cfg.kind,
        list: steps,
    };
    let mut browser = Browser {
        stop,
        tls: cfg.tls,
        hops: 0,
    };
    let opts = ReadOptions {
        form_selector: cfg.form_selector.as_ref(),
        consent_button: cfg.consent_button.as_ref(),
        steps: &cfg.steps,
    };
    let first = match start {
        Start::Get(url) => browser.go(ctx, Method::GET, url, None).await,
        Start::Post { url, fields } => {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&fields)
                .finish()
                .into_bytes();
            let ct = "application/x-www-form-urlencoded".to_string();
            browser.go(ctx, Method::POST, url, Some((ct, body))).await
        }
    };
    let mut landing = match first {
        Ok((l, t)) => {
            let detail = match &l {
                Landing::Stop(_) => {
                    format!("redirected straight back (SSO session) in {}", ms(t.total))
                }
                Landing::Page(p) => format!("{} {} in {}", p.status, p.url, ms(t.total)),
            };
            steps.add(cfg.start_step, t, &detail);
            l
        }
        Err((f, t)) => {
            steps.fail(cfg.start_step, f, t);
            return None;
        }
    };
    let mut last: Option<Last> = None;
    let mut pages = 0;
    loop {
        let page = match landing {
            Landing::Stop(u) => {
                if let Some(r) = recorder.as_deref_mut() {
                    r.answer(json!({ "stopped_at": redact_query(&u) }));
                }
                return Some(Reached::Redirect(u));
            }
            Landing::Page(p) => p,
        };
        let parsed = page::read(&page, &opts);
        let class = page::classify(&parsed, cfg.hints);
        tracing::debug!(
            url = %page.url, status = page.status.as_u16(), title = %parsed.title,
            class = ?class, forms = parsed.forms.len(), "login page"
        );
        if let Some(r) = recorder.as_deref_mut() {
            r.page(
                &page,
                json!({
                    "title": parsed.title,
                    "class": format!("{class:?}"),
                    "forms": parsed.forms.iter()
                        .map(|f| f.describe(&parsed.buttons, &parsed.base, &parsed.url))
                        .collect::<Vec<_>>(),
                }),
            );
        }
        if let Some(f) = judge(cfg, &page, &parsed, &class, last.as_ref()) {
            steps.fail_last(f);
            return None;
        }
        pages += 1;
        if pages > cfg.max_pages {
            let f = Failure::new(
                FailureClass::Protocol,
                format!(
                    "no end of the login after {} pages; last {}: {}",
                    cfg.max_pages,
                    parsed.where_(),
                    parsed.describe_forms()
                ),
            );
            steps.fail_last(f);
            return None;
        }
        let plan = match plan(cfg, stop, &parsed, &class, last.is_some()) {
            Ok(p) => p,
            Err((name, f)) => {
                steps.fail(name, f, Timings::default());
                return None;
            }
        };
        match plan {
            Plan::Stop(reached) => {
                if let Some(r) = recorder.as_deref_mut() {
                    r.action(json!({ "stop": "a form posting to the stop URL (not submitted)" }));
                }
                return Some(reached);
            }
            Plan::Follow(url) => {
                if let Some(r) = recorder.as_deref_mut() {
                    r.action(json!({ "follow": url.as_str() }));
                }
                match browser.go(ctx, Method::GET, url, None).await {
                    Ok((l, t)) => {
                        steps.extend(t);
                        landing = l;
                    }
                    Err((f, t)) => {
                        steps.extend(t);
                        steps.fail_last(f);
                        return None;
                    }
                }
            }
            Plan::Submit {
                phase,
                form,
                button,
                fills,
                detail,
            } => {
                let Some(the_form) = parsed.forms.get(form) else {
                    steps.fail_last(Failure::new(
                        FailureClass::Internal,
                        "form index out of range",
                    ));
                    return None;
                };
                let button_ref = button.and_then(|b| parsed.buttons.get(b));
                let mut typed = Vec::new();
                for (name, fill) in &fills {
                    let value = match fill {
                        Fill::Username => cfg.username.to_string(),
                        Fill::Password => cfg.password.to_string(),
                        Fill::Totp => match cfg.totp {
                            Some(t) => {
                                let code = t.generate(crate::oauth::unix_now()).to_string();
                                ctx.redactor.remember(&code);
                                if let Some(r) = recorder.as_deref_mut() {
                                    r.secrets.add("totp code", &code);
                                }
                                code
                            }
                            None => String::new(),
                        },
                        Fill::Text(v) => v.clone(),
                    };
                    typed.push((name.clone(), value));
                }
                let submission =
                    match form::submit(the_form, button_ref, &typed, &parsed.base, &parsed.url) {
                        Ok(s) => s,
                        Err(m) => {
                            let f = Failure::new(
                                FailureClass::Protocol,
                                format!("cannot submit the form at {}: {m}", parsed.where_()),
                            );
                            steps.fail(phase.unwrap_or("login"), f, Timings::default());
                            return None;
                        }
                    };
                tracing::debug!(
                    method = %submission.method, url = %submission.url,
                    fields = ?submission.pairs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                    button = button_ref.map(|b| b.label()).unwrap_or_default(),
                    "login submit"
                );
                if let Some(r) = recorder.as_deref_mut() {
                    r.action(json!({
                        "form": the_form.describe(&parsed.buttons, &parsed.base, &parsed.url),
                        "button": button_ref.map(|b| b.label()),
                        "method": submission.method.as_str(),
                        "url": submission.url.as_str(),
                        "enctype": submission.enctype,
                        "fields": submission.pairs.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                    }));
                }
                // Any form posting to the stop URL ends the walk unsent,
                // whatever the page looked like (SimpleSAMLphp's auto-post
                // page keeps its button in <noscript> and its script apart).
                if submission.method == Method::POST && stop.form(&submission.url) {
                    if let Some(r) = recorder.as_deref_mut() {
                        r.action(
                            json!({ "stop": "a form posting to the stop URL (not submitted)" }),
                        );
                    }
                    return Some(Reached::Post {
                        url: submission.url,
                        fields: submission.pairs,
                    });
                }
                let result = browser
                    .go(ctx, submission.method, submission.url, submission.body)
                    .await;
                let (l, t) = match result {
                    Ok(x) => x,
                    Err((f, t)) => {
                        match phase {
                            Some(p) => steps.fail(p, f, t),
                            None => {
                                steps.extend(t);
                                steps.fail_last(f);
                            }
                        }
                        return None;
                    }
                };
                match phase {
                    Some(p) => steps.add(p, t, &detail),
                    None => steps.extend(t),
                }
                last = Some(Last {
                    class: class.clone(),
                    parsed,
                });
                landing = l;
            }
        }
    }
}

/// The callback URL with its query values hidden (codes are credentials).
fn redact_query(u: &Url) -> String {
    let mut shown = u.clone();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let keep = matches!(k.as_ref(), "state" | "iss" | "error" | "error_description");
            (
                k.into_owned(),
                if keep {
                    v.into_owned()
                } else {
                    "<redacted>".into()
                },
            )
        })
        .collect();
    if !pairs.is_empty() {
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// The page a submission led to, judged: rejected credentials, an error
/// status. `None` when the walk goes on.
fn judge(
    cfg: &Config<'_>,
    page: &Page,
    parsed: &Parsed,
    class: &Class,
    last: Option<&Last>,
) -> Option<Failure> {
    let stage = last.and_then(|l| l.class.stage());
    let back = matches!((stage, class.stage()), (Some(s), Some(c)) if c <= s);
    let rejected = |l: &Last| {
        let what = match l.class {
            Class::Identifier { .. } => format!("username `{}`", cfg.username),
            Class::Otp { .. } => "one-time code".to_string(),
            _ => format!("credentials for `{}`", cfg.username),
        };
        let message = parsed
            .message_since(Some(&l.parsed))
            .unwrap_or_else(|| "the form came back".into());
        Failure::new(
            FailureClass::AuthRejected,
            format!("{what} rejected at {}: {message}", page.url),
        )
    };
    if page.status.is_server_error() {
        return Some(Failure::new(
            FailureClass::HttpStatus,
            format!(
                "{} answered {}: {}",
                parsed.where_(),
                page.status,
                parsed.error_text()
            ),
        ));
    }
    if page.status.is_client_error() {
        if let Some(l) = last
            && stage.is_some()
            && (back || matches!(page.status.as_u16(), 401 | 403))
        {
            return Some(rejected(l));
        }
        let what = if last.is_none() {
            "the authorization endpoint"
        } else {
            "the IdP"
        };
        return Some(Failure::new(
            FailureClass::HttpStatus,
            format!(
                "{what} {} answered {}: {}",
                page.url,
                page.status,
                parsed.error_text()
            ),
        ));
    }
    if back && let Some(l) = last {
        return Some(rejected(l));
    }
    None
}

/// The action for a page, or the step name and failure that end the walk.
fn plan(
    cfg: &Config<'_>,
    stop: &dyn StopAt,
    p: &Parsed,
    class: &Class,
    after_login: bool,
) -> Result<Plan, (&'static str, Failure)> {
    let protocol = |m: String| Failure::new(FailureClass::Protocol, m);
    let phase_of = |c: &Class| match c {
        Class::Identifier { .. } | Class::Password { .. } => "login",
        Class::Otp { .. } => "totp",
        _ => "consent",
    };
    if let Some(hit) = &p.script {
        let form = hit.form.clone().map_err(|m| {
            (
                phase_of(class),
                protocol(format!(
                    "login_steps[{}] matches {}: {m}",
                    hit.step,
                    p.where_()
                )),
            )
        })?;
        let step = cfg.steps.iter().find(|s| s.index == hit.step);
        let fills = step
            .map(|s| {
                s.fill
                    .iter()
                    .map(|(n, v, _)| (n.clone(), Fill::Text(v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Plan::Submit {
            phase: Some(phase_of(class)),
            form,
            button: hit.button,
            fills,
            detail: format!("login_steps[{}]", hit.step),
        });
    }
    let credential_button = |form: usize| -> Option<usize> {
        let f = p.forms.get(form)?;
        let target = |b: &form::Button| p.form_target(f, Some(b)).map(|u| u.path().to_string());
        match buttons::choose(&p.buttons, &p.forms, &f.buttons, target, false) {
            buttons::Choice::Click(i) => Some(i),
            // No clear button: submitted as Enter would, without a submitter.
            buttons::Choice::Unclear(_) => None,
        }
    };
    match class {
        Class::Identifier { form, field } => Ok(Plan::Submit {
            phase: Some("login"),
            form: *form,
            button: credential_button(*form),
            fills: vec![(field.clone(), Fill::Username)],
            detail: format!("as {}", cfg.username),
        }),
        Class::Password { form, user, pass } => {
            let mut fills = Vec::new();
            if let Some(u) = user {
                fills.push((u.clone(), Fill::Username));
            }
            fills.push((pass.clone(), Fill::Password));
            Ok(Plan::Submit {
                phase: Some("login"),
                form: *form,
                button: credential_button(*form),
                fills,
                detail: format!("as {}", cfg.username),
            })
        }
        Class::Otp { form, field } => {
            if cfg.totp.is_none() {
                return Err((
                    "totp",
                    Failure::new(
                        FailureClass::Config,
                        format!(
                            "{} asks for a one-time code (field `{field}`) but no `totp` secret is configured",
                            p.url
                        ),
                    ),
                ));
            }
            Ok(Plan::Submit {
                phase: Some("totp"),
                form: *form,
                button: credential_button(*form),
                fills: vec![(field.clone(), Fill::Totp)],
                detail: "code accepted".into(),
            })
        }
        Class::AutoPost { form } => {
            let f = &p.forms[*form];
            let button = f.buttons.first().copied();
            let b = button.and_then(|i| p.buttons.get(i));
            if let Some(target) = p.form_target(f, b)
                && stop.form(&target)
            {
                let sub = form::submit(f, b, &[], &p.base, &p.url)
                    .map_err(|m| ("consent", protocol(m)))?;
                return Ok(Plan::Stop(Reached::Post {
                    url: target,
                    fields: sub.pairs,
                }));
            }
            Ok(Plan::Submit {
                phase: None,
                form: *form,
                button,
                fills: Vec::new(),
                detail: String::new(),
            })
        }
        Class::Refresh(u) => {
            if stop.url(u) {
                return Ok(Plan::Stop(Reached::Redirect(u.clone())));
            }
            Ok(Plan::Follow(u.clone()))
        }
        Class::Buttons => {
            let all: Vec<usize> = (0..p.buttons.len()).collect();
            let target = |b: &form::Button| {
                p.forms
                    .get(b.form)
                    .and_then(|f| p.form_target(f, Some(b)))
                    .map(|u| u.path().to_string())
            };
            let pick = match p.consent_pick {
                Some(i) => buttons::Choice::Click(i),
                None => buttons::choose(&p.buttons, &p.forms, &all, target, true),
            };
            match pick {
                buttons::Choice::Click(i) => {
                    let b = &p.buttons[i];
                    Ok(Plan::Submit {
                        phase: Some("consent"),
                        form: b.form,
                        button: Some(i),
                        fills: Vec::new(),
                        detail: format!("clicked `{}`", b.label()),
                    })
                }
                buttons::Choice::Unclear(labels) => Err((
                    "consent",
                    protocol(format!(
                        "cannot tell which button to click at {}: {} (set `consent_button` to a CSS selector)",
                        p.where_(),
                        labels.join(", ")
                    )),
                )),
            }
        }
        Class::NeedsJs => Err((
            if after_login { "consent" } else { "login" },
            protocol(format!(
                "the login page needs JavaScript: {} has no usable form and {} script(s); \
                 describe it with `login_steps` if it has an HTML fallback",
                p.where_(),
                p.scripts
            )),
        )),
        Class::DeadEnd => {
            let shows_error = !p.containers.is_empty()
                || p.title.to_ascii_lowercase().contains("error")
                || p.body_text.to_ascii_lowercase().starts_with("error")
                || p.url.query_pairs().any(|(k, _)| k == "error");
            let m = if shows_error {
                format!(
                    "the IdP shows an error at {}: {}",
                    p.where_(),
                    p.error_text()
                )
            } else if !after_login {
                format!(
                    "login form not found at {}: no form with a password field ({} form(s) on the page: {}): {}",
                    p.url,
                    p.forms.len(),
                    p.describe_forms(),
                    p.error_text()
                )
            } else {
                format!(
                    "stuck at {}: no form to continue and no redirect to the end of the login: {}; {}",
                    p.where_(),
                    p.error_text(),
                    p.describe_forms()
                )
            };
            Err((if after_login { "consent" } else { "login" }, protocol(m)))
        }
    }
}
