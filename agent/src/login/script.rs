//! `login_steps`: pages described by hand. Compiles each step's `on` (a URL
//! regular expression, or a CSS selector that must match an element of the
//! page) and `click` selector once per run, resolves `fill` values (secrets
//! included) once, and finds the first step that matches a page together
//! with the form it acts on and the button it clicks. The catalog has
//! already validated the expressions; a failure here is still reported as
//! `config`, never a panic.
use regex::Regex;
use scraper::{Html, Selector};
use url::Url;

use super::form::{self, Forms};
use authpulse_proto::catalog::LoginStep;

pub enum On {
    Url(Regex),
    Css(Selector),
}

pub struct CompiledStep {
    pub index: usize,
    pub on: On,
    /// `(input name, value, secret name)`: the secret's name marks the value
    /// in saved pages.
    pub fill: Vec<(String, String, Option<String>)>,
    pub click: Option<Selector>,
    pub click_text: Option<String>,
}

/// The step that matched a page and what it acts on.
#[derive(Clone, Debug)]
pub struct ScriptHit {
    pub step: usize,
    /// The form to submit, or why none could be found.
    pub form: Result<usize, String>,
    pub button: Option<usize>,
}

/// Compiles `steps`; `resolve` turns a catalog value into its text (and the
/// secret's name, when it is one).
pub fn compile(
    steps: &[LoginStep],
    mut resolve: impl FnMut(
        &authpulse_proto::catalog::Value,
    ) -> Result<(String, Option<String>), String>,
) -> Result<Vec<CompiledStep>, String> {
    let mut out = Vec::new();
    for (index, s) in steps.iter().enumerate() {
        let on =
            if s.on_is_url() {
                On::Url(Regex::new(&s.on).map_err(|e| {
                    format!("login_steps[{index}].on: invalid regular expression: {e}")
                })?)
            } else {
                On::Css(Selector::parse(&s.on).map_err(|e| {
                    format!(
                        "login_steps[{index}].on: `{}` is not a valid CSS selector: {e}",
                        s.on
                    )
                })?)
            };
        let click = s
            .click
            .as_deref()
            .map(|c| {
                Selector::parse(c).map_err(|e| {
                    format!("login_steps[{index}].click: `{c}` is not a valid CSS selector: {e}")
                })
            })
            .transpose()?;
        let mut fill = Vec::new();
        for (name, value) in &s.fill {
            let (v, secret) =
                resolve(value).map_err(|e| format!("login_steps[{index}].fill.{name}: {e}"))?;
            fill.push((name.clone(), v, secret));
        }
        out.push(CompiledStep {
            index,
            on,
            fill,
            click,
            click_text: s.click.clone(),
        });
    }
    Ok(out)
}

/// The first step whose `on` matches this page.
pub fn matching(
    steps: &[CompiledStep],
    html: &Html,
    url: &Url,
    forms: &Forms,
) -> Option<ScriptHit> {
    let step = steps.iter().find(|s| match &s.on {
        On::Url(re) => re.is_match(url.as_str()),
        On::Css(sel) => html.select(sel).next().is_some(),
    })?;
    let mut button = None;
    if let (Some(sel), Some(text)) = (&step.click, &step.click_text) {
        let found = html
            .select(sel)
            .filter_map(|el| form::position_of(html, &el))
            .find_map(|p| forms.buttons.iter().position(|b| b.position == p));
        match found {
            Some(b) => button = Some(b),
            None => {
                return Some(ScriptHit {
                    step: step.index,
                    form: Err(format!("`click: {text}` matches no submit button")),
                    button: None,
                });
            }
        }
    }
    let form = match button.and_then(|b| forms.buttons.get(b)) {
        Some(b) => Ok(b.form),
        None => {
            let by_field = step.fill.first().and_then(|(name, _, _)| {
                forms
                    .forms
                    .iter()
                    .find(|f| f.field(name).is_some())
                    .map(|f| f.index)
            });
            match (by_field, forms.forms.len()) {
                (Some(i), _) => Ok(i),
                (None, 1) => Ok(0),
                (None, n) => Err(format!(
                    "no form to submit: {n} form(s) on the page and none has input `{}`",
                    step.fill.first().map(|f| f.0.as_str()).unwrap_or("")
                )),
            }
        }
    };
    Some(ScriptHit {
        step: step.index,
        form,
        button,
    })
}
