//! What a login page is. Parses one HTML page into plain data (title, forms
//! and buttons, `<base href>`, meta refresh, scripts, the text blocks and
//! error containers that carry an IdP's messages, and which `login_steps`
//! entry or `consent_button` matches it) and classifies it: an identifier
//! page (username only), a password page (with or without a username; a
//! hidden one is fine), a one-time-code page, a page that posts itself
//! (form_post, SAML-style, `<noscript>` continue), a meta refresh, a page of
//! buttons (consent, "stay signed in?"), a page that needs JavaScript, or a
//! dead end. Also extracts the IdP's own message from a page: an error
//! container that is new since the previous rendering, else the text that
//! is new, else (for error pages) the page's text without its links.
use scraper::{ElementRef, Html, Node, Selector};
use url::Url;

use super::form::{self, Button, Form};
use super::script::{CompiledStep, ScriptHit};

/// Input names (last segment, lower case) that hold the username.
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
    "user_id",
    "login_hint",
    "uid",
];
/// Input names (last segment, lower case) that hold a one-time code.
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
    "otp_token",
];
/// Elements whose text is an error or alert message, most specific first.
const ERROR_CONTAINERS: &str = "[role=alert], .errorlist, .error, .errors, .alert-danger, \
    .alert-error, .alert-warning, #error, .error-message, .kc-feedback-text, #input-error, \
    .form-error, .invalid-feedback, .field-error, .text-danger, .message-error, .alert, \
    .notification, .message, .flash";

/// A fetched page.
#[derive(Clone, Debug)]
pub struct Page {
    pub url: Url,
    pub status: http::StatusCode,
    pub body: String,
}

/// What the engine needs of the catalog to read a page.
pub struct ReadOptions<'a> {
    pub form_selector: Option<&'a Selector>,
    pub consent_button: Option<&'a Selector>,
    pub steps: &'a [CompiledStep],
}

#[derive(Clone, Debug)]
pub struct Parsed {
    pub url: Url,
    pub title: String,
    pub base: Url,
    pub forms: Vec<Form>,
    pub buttons: Vec<Button>,
    /// Every non-empty text node (whitespace collapsed), scripts excluded.
    pub texts: Vec<String>,
    /// Texts of error containers, most specific first.
    pub containers: Vec<String>,
    /// The page's text without links, scripts and styles.
    pub body_text: String,
    pub refresh: Option<Url>,
    pub scripts: usize,
    /// A script or `onload` that submits a form.
    pub self_submits: bool,
    /// A `<noscript>` block that talks about JavaScript.
    pub asks_for_js: bool,
    pub script: Option<ScriptHit>,
    /// The button `consent_button` matches.
    pub consent_pick: Option<usize>,
}

impl Parsed {
    pub fn form_target(&self, form: &Form, button: Option<&Button>) -> Option<Url> {
        let action = button
            .and_then(|b| b.formaction.as_deref())
            .or(form.action.as_deref());
        form::resolve_action(action, &self.base, &self.url)
    }

    /// The forms seen, one line each (for `protocol` failures).
    pub fn describe_forms(&self) -> String {
        if self.forms.is_empty() {
            return "no forms".into();
        }
        self.forms
            .iter()
            .map(|f| f.describe(&self.buttons, &self.base, &self.url))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// "<url> (title "…")".
    pub fn where_(&self) -> String {
        if self.title.is_empty() {
            self.url.to_string()
        } else {
            format!("{} (title \"{}\")", self.url, self.title)
        }
    }

    /// The IdP's message on this page: an error container that `before`
    /// (the previous rendering of the same form) did not show, else text
    /// blocks it did not have.
    pub fn message_since(&self, before: Option<&Parsed>) -> Option<String> {
        let seen_container = |t: &str| before.is_some_and(|b| b.containers.iter().any(|c| c == t));
        if let Some(c) = self.containers.iter().find(|c| !seen_container(c)) {
            return Some(super::clip(c, 300));
        }
        let before = before?;
        let fresh: Vec<&str> = self
            .texts
            .iter()
            .filter(|t| t.chars().filter(|c| c.is_alphabetic()).count() >= 3)
            .filter(|t| !before.texts.contains(t))
            .map(String::as_str)
            .take(4)
            .collect();
        (!fresh.is_empty()).then(|| super::clip(&fresh.join(" / "), 300))
    }

    /// The message of an error page: its error containers, else its text.
    pub fn error_text(&self) -> String {
        if let Some(c) = self.containers.first() {
            return super::clip(c, 300);
        }
        let text = if self.body_text.is_empty() {
            &self.title
        } else {
            &self.body_text
        };
        super::clip(text, 300)
    }
}

fn sel(s: &str) -> Option<Selector> {
    Selector::parse(s).ok()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads `page`.
pub fn read(page: &Page, opts: &ReadOptions<'_>) -> Parsed {
    let html = Html::parse_document(&page.body);
    let base = form::base_url(&html, &page.url);
    let mut found = form::read_forms(&html, opts.form_selector, false);
    let mut asks_for_js = false;
    // With scripting on (as html5ever parses), <noscript> holds raw text:
    // forms in it are read from that text.
    if let Some(ns) = sel("noscript") {
        for block in html.select(&ns) {
            let raw: String = block.text().collect();
            let lower = raw.to_ascii_lowercase();
            if lower.contains("javascript") {
                asks_for_js = true;
            }
            if lower.contains("<form") {
                let inner = Html::parse_document(&raw);
                let extra = form::read_forms(&inner, opts.form_selector, true);
                let (form_offset, button_offset) = (found.forms.len(), found.buttons.len());
                for mut f in extra.forms {
                    f.index += form_offset;
                    f.buttons.iter_mut().for_each(|b| *b += button_offset);
                    found.forms.push(f);
                }
                for mut b in extra.buttons {
                    b.form += form_offset;
                    found.buttons.push(b);
                }
            }
        }
    }

    let mut texts = Vec::new();
    let mut body_parts = Vec::new();
    let mut scripts = 0;
    let mut self_submits = false;
    for node in html.root_element().descendants() {
        match node.value() {
            Node::Element(e) if e.name() == "script" => {
                scripts += 1;
                if let Some(el) = ElementRef::wrap(node) {
                    let code: String = el.text().collect();
                    if code.contains(".submit()") || code.contains(".requestSubmit(") {
                        self_submits = true;
                    }
                }
            }
            Node::Element(e)
                if e.name() == "body" && e.attr("onload").is_some_and(|s| s.contains("submit")) =>
            {
                self_submits = true;
            }
            Node::Text(t) => {
                let mut in_link = false;
                let mut skip = false;
                for a in node.ancestors() {
                    if let Some(e) = a.value().as_element() {
                        match e.name() {
                            "script" | "style" | "template" | "noscript" | "title" => skip = true,
                            "a" => in_link = true,
                            _ => {}
                        }
                    }
                }
                if skip {
                    continue;
                }
                let t = collapse(t);
                if t.is_empty() {
                    continue;
                }
                if !in_link {
                    body_parts.push(t.clone());
                }
                texts.push(t);
            }
            _ => {}
        }
    }

    let mut containers: Vec<String> = Vec::new();
    if let Some(s) = sel(ERROR_CONTAINERS) {
        for el in html.select(&s) {
            let class = el.value().attr("class").unwrap_or("");
            // Success and info banners are not errors.
            if class.contains("success") || class.contains("info") {
                continue;
            }
            let t = collapse(&el.text().collect::<String>());
            if !t.is_empty() && !containers.contains(&t) {
                containers.push(t);
            }
        }
    }

    let title = sel("title")
        .and_then(|s| html.select(&s).next())
        .map(|t| collapse(&t.text().collect::<String>()))
        .unwrap_or_default();
    let refresh = sel("meta[http-equiv]")
        .into_iter()
        .flat_map(|s| html.select(&s).collect::<Vec<_>>())
        .find(|m| {
            m.value()
                .attr("http-equiv")
                .is_some_and(|h| h.eq_ignore_ascii_case("refresh"))
        })
        .and_then(|m| m.value().attr("content").map(str::to_string))
        .and_then(|c| refresh_target(&c, &base));

    let consent_pick = opts.consent_button.and_then(|s| {
        html.select(s)
            .filter_map(|el| form::position_of(&html, &el))
            .find_map(|p| found.buttons.iter().position(|b| b.position == p))
    });
    let script = super::script::matching(opts.steps, &html, &page.url, &found);

    Parsed {
        url: page.url.clone(),
        title,
        base,
        forms: found.forms,
        buttons: found.buttons,
        texts,
        containers,
        body_text: collapse(&body_parts.join(" ")),
        refresh,
        scripts,
        self_submits,
        asks_for_js,
        script,
        consent_pick,
    }
}

/// `5; url=/next` -> the URL (a refresh without a URL reloads: ignored).
fn refresh_target(content: &str, base: &Url) -> Option<Url> {
    let (_, rest) = content.split_once([';', ','])?;
    let rest = rest.trim();
    let target = rest
        .strip_prefix("url=")
        .or_else(|| rest.strip_prefix("URL="))
        .or_else(|| rest.strip_prefix("Url="))
        .unwrap_or(rest)
        .trim()
        .trim_matches(['\'', '"']);
    (!target.is_empty())
        .then(|| base.join(target).ok())
        .flatten()
}

/// The catalog's field names, when set.
#[derive(Clone, Copy, Default)]
pub struct Hints<'a> {
    pub username_field: Option<&'a str>,
    pub password_field: Option<&'a str>,
    pub totp_field: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Class {
    /// A form asking for the username only.
    Identifier {
        form: usize,
        field: String,
    },
    /// A form with a password input (`user` when it also shows a username).
    Password {
        form: usize,
        user: Option<String>,
        pass: String,
    },
    /// A form asking for a one-time code.
    Otp {
        form: usize,
        field: String,
    },
    /// A form a script posts by itself.
    AutoPost {
        form: usize,
    },
    Refresh(Url),
    /// Buttons to choose from (consent, "stay signed in?", continue).
    Buttons,
    /// Scripts and no usable form.
    NeedsJs,
    /// Nothing to do: an error page or a page the engine does not know.
    DeadEnd,
}

impl Class {
    /// Identifier < password < one-time code: a credential page at the same
    /// or an earlier stage after submitting one means it was rejected.
    pub fn stage(&self) -> Option<u8> {
        match self {
            Class::Identifier { .. } => Some(0),
            Class::Password { .. } => Some(1),
            Class::Otp { .. } => Some(2),
            _ => None,
        }
    }
}

/// Last segment of a field name (`auth-username`, `user[email]`,
/// `form.login` -> `username`, `email`, `login`), lower case.
fn last_segment(name: &str) -> String {
    name.to_ascii_lowercase()
        .trim_end_matches(']')
        .rsplit(['-', '.', '[', ':'])
        .next()
        .unwrap_or("")
        .to_string()
}

fn username_like(f: &form::Field) -> bool {
    f.is_text_like()
        && (USERNAME_NAMES.contains(&last_segment(&f.name).as_str())
            || matches!(
                f.autocomplete.as_str(),
                "username" | "email" | "webauthn username"
            )
            || f.autocomplete.starts_with("username")
            || f.kind == "email")
}

fn otp_like(f: &form::Field) -> bool {
    f.visible
        && f.kind != "checkbox"
        && f.kind != "radio"
        && (f.autocomplete == "one-time-code"
            || OTP_NAMES.contains(&last_segment(&f.name).as_str())
            || f.name.to_ascii_lowercase().contains("otp"))
}

/// What `p` is.
pub fn classify(p: &Parsed, hints: Hints<'_>) -> Class {
    let credential_forms = || p.forms.iter().filter(|f| f.selected);
    if let Some(name) = hints.totp_field
        && let Some(f) = credential_forms().find(|f| f.field(name).is_some_and(|x| x.visible))
    {
        return Class::Otp {
            form: f.index,
            field: name.to_string(),
        };
    }
    for f in credential_forms() {
        let pass = match hints.password_field {
            Some(n) => f.field(n).map(|x| x.name.clone()),
            None => f
                .fields
                .iter()
                .find(|x| x.visible && x.kind == "password")
                .map(|x| x.name.clone()),
        };
        let Some(pass) = pass else { continue };
        let user = match hints.username_field {
            Some(n) => f.field(n).filter(|x| x.visible).map(|x| x.name.clone()),
            None => f
                .fields
                .iter()
                .find(|x| username_like(x))
                .or_else(|| f.fields.iter().find(|x| x.is_text_like()))
                .map(|x| x.name.clone()),
        };
        return Class::Password {
            form: f.index,
            user,
            pass,
        };
    }
    for f in credential_forms() {
        if let Some(x) = f.fields.iter().find(|x| otp_like(x)) {
            return Class::Otp {
                form: f.index,
                field: x.name.clone(),
            };
        }
    }
    for f in credential_forms() {
        let typed: Vec<&form::Field> = f.fields.iter().filter(|x| x.is_text_like()).collect();
        if let [only] = typed.as_slice() {
            let named = hints.username_field.is_some_and(|n| n == only.name);
            if named || username_like(only) {
                return Class::Identifier {
                    form: f.index,
                    field: only.name.clone(),
                };
            }
        }
    }
    if let Some(u) = &p.refresh {
        return Class::Refresh(u.clone());
    }
    for f in &p.forms {
        let target = p.form_target(f, None);
        let to_logout = target
            .as_ref()
            .is_some_and(|t| super::buttons::target_refuses(t.path()));
        if f.all_hidden()
            && !f.fields.is_empty()
            && f.buttons.len() <= 1
            && !to_logout
            && (p.self_submits || f.in_noscript || (f.buttons.is_empty() && p.scripts > 0))
        {
            return Class::AutoPost { form: f.index };
        }
    }
    if !p.buttons.is_empty() {
        return Class::Buttons;
    }
    let usable = p
        .forms
        .iter()
        .any(|f| f.fields.iter().any(|x| x.visible) || !f.buttons.is_empty());
    if !usable && p.scripts > 0 && (p.asks_for_js || p.body_text.chars().count() < 400) {
        return Class::NeedsJs;
    }
    Class::DeadEnd
}
