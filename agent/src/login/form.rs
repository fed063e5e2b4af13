//! Forms as a browser sees them, and their submission as a browser makes
//! it. Reads every `<form>` of a parsed page into plain data (scraper's DOM
//! is not `Send`, so it never lives across an await): controls are owned by
//! their ancestor form or by the form their `form="id"` attribute names;
//! each keeps its document position so the clicked button's `name=value`
//! lands where a browser puts it. Builds the request for one submission:
//! successful controls only (checked boxes and radios, selected options or
//! the first one, textareas, hidden inputs), `formaction`/`formmethod`/
//! `formenctype` of the clicked button over the form's own, an empty or
//! missing action meaning the page's own URL, other actions resolved against
//! `<base href>`, and urlencoded, multipart or text/plain bodies.
use std::collections::HashMap;

use http::Method;
use rand::RngExt;
use scraper::{ElementRef, Html, Selector};
use url::Url;

/// One input, select or textarea with a name.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    /// `type` of an input in lower case (`text` when absent), or
    /// `select` / `textarea`.
    pub kind: String,
    /// What a browser sends without anyone typing: `None` for an unchecked
    /// box; one entry per selected option of a `<select multiple>`.
    pub values: Vec<String>,
    /// A person can see and type into it (not hidden, not `hidden`).
    pub visible: bool,
    pub autocomplete: String,
    pub id: String,
    pub position: usize,
}

impl Field {
    /// An input a person types text into.
    pub fn is_text_like(&self) -> bool {
        self.visible
            && matches!(
                self.kind.as_str(),
                "text" | "email" | "tel" | "number" | "search" | "url" | ""
            )
    }
}

/// A submit button (`<button>`, `<input type=submit|image>`).
#[derive(Clone, Debug)]
pub struct Button {
    /// Index of the form it submits.
    pub form: usize,
    pub name: String,
    pub value: String,
    /// Visible text (or `value` of an input), whitespace collapsed.
    pub text: String,
    pub id: String,
    /// `aria-label`, `title` and classes: more words for telling buttons apart.
    pub extra: String,
    pub formaction: Option<String>,
    pub formmethod: Option<String>,
    pub formenctype: Option<String>,
    pub position: usize,
}

impl Button {
    /// What a person reads on it, for details and error messages.
    pub fn label(&self) -> String {
        let shown = if self.text.is_empty() {
            &self.value
        } else {
            &self.text
        };
        if shown.is_empty() {
            format!("(unlabelled, name `{}`)", self.name)
        } else {
            shown.clone()
        }
    }
}

#[derive(Clone, Debug)]
pub struct Form {
    pub index: usize,
    pub id: String,
    /// The `action` attribute as written (`None` when absent).
    pub action: Option<String>,
    pub method: String,
    pub enctype: String,
    pub fields: Vec<Field>,
    /// Indices into the page's button list.
    pub buttons: Vec<usize>,
    /// Matches the catalog's `form_selector` (true when none is set).
    pub selected: bool,
    /// Parsed from a `<noscript>` block (a page that posts itself by script).
    pub in_noscript: bool,
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn has_password(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.visible && f.kind == "password")
    }

    /// Only hidden inputs (what a script posts without anyone seeing it).
    pub fn all_hidden(&self) -> bool {
        self.fields.iter().all(|f| !f.visible)
    }

    /// One line for error messages and saved pages.
    pub fn describe(&self, buttons: &[Button], base: &Url, page: &Url) -> String {
        let target = resolve_action(self.action.as_deref(), base, page)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|| "?".into());
        let fields: Vec<String> = self
            .fields
            .iter()
            .filter(|f| f.visible)
            .map(|f| format!("{}:{}", f.name, f.kind))
            .collect();
        let labels: Vec<String> = self
            .buttons
            .iter()
            .filter_map(|&i| buttons.get(i))
            .map(|b| format!("`{}`", b.label()))
            .collect();
        format!(
            "form {} {target} [inputs {}; buttons {}]",
            self.method,
            if fields.is_empty() {
                "none".into()
            } else {
                fields.join(", ")
            },
            if labels.is_empty() {
                "none".into()
            } else {
                labels.join(", ")
            }
        )
    }
}

/// The forms and buttons of one document.
#[derive(Clone, Debug, Default)]
pub struct Forms {
    pub forms: Vec<Form>,
    pub buttons: Vec<Button>,
}

fn sel(s: &str) -> Option<Selector> {
    Selector::parse(s).ok()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Document position of `el` (the same numbering [`read_forms`] uses).
pub fn position_of(html: &Html, el: &ElementRef) -> Option<usize> {
    html.root_element()
        .descendants()
        .position(|n| n.id() == el.id())
}

/// Every form of `html`. `form_selector` marks the forms it matches;
/// `in_noscript` marks forms read from a `<noscript>` block.
pub fn read_forms(html: &Html, form_selector: Option<&Selector>, in_noscript: bool) -> Forms {
    let mut out = Forms::default();
    let (Some(form_sel), Some(control_sel), Some(option_sel)) = (
        sel("form"),
        sel("input, select, textarea, button"),
        sel("option"),
    ) else {
        return out;
    };
    // Document order of every node, for placing the clicked button.
    let order: HashMap<_, usize> = html
        .root_element()
        .descendants()
        .enumerate()
        .map(|(i, n)| (n.id(), i))
        .collect();
    let mut by_node = HashMap::new();
    let mut by_id = HashMap::new();
    for (index, el) in html.select(&form_sel).enumerate() {
        let v = el.value();
        let id = v.attr("id").unwrap_or("").to_string();
        by_node.insert(el.id(), index);
        if !id.is_empty() {
            by_id.entry(id.clone()).or_insert(index);
        }
        out.forms.push(Form {
            index,
            id,
            action: v.attr("action").map(str::to_string),
            method: match v.attr("method").map(|m| m.trim().to_ascii_uppercase()) {
                Some(m) if m == "GET" => "GET".into(),
                _ => "POST".into(),
            },
            enctype: v
                .attr("enctype")
                .map(|e| e.trim().to_ascii_lowercase())
                .unwrap_or_default(),
            fields: Vec::new(),
            buttons: Vec::new(),
            selected: form_selector.is_none_or(|s| s.matches(&el)),
            in_noscript,
        });
    }
    for control in html.select(&control_sel) {
        let el = control.value();
        // The form attribute wins over the ancestor, as in a browser.
        let owner = match el.attr("form") {
            Some(id) => by_id.get(id).copied(),
            None => control
                .ancestors()
                .find_map(|a| by_node.get(&a.id()).copied()),
        };
        let Some(owner) = owner else { continue };
        if el.attr("disabled").is_some() || inside_disabled_fieldset(&control) {
            continue;
        }
        let position = order.get(&control.id()).copied().unwrap_or(0);
        let tag = el.name();
        let kind = match tag {
            "input" => el
                .attr("type")
                .unwrap_or("text")
                .trim()
                .to_ascii_lowercase(),
            "button" => el
                .attr("type")
                .unwrap_or("submit")
                .trim()
                .to_ascii_lowercase(),
            other => other.to_string(),
        };
        let name = el.attr("name").unwrap_or("").to_string();
        if matches!(kind.as_str(), "submit" | "image") {
            let value = el.attr("value").unwrap_or("").to_string();
            let text = if tag == "button" {
                collapse(&control.text().collect::<String>())
            } else {
                collapse(el.attr("value").or(el.attr("alt")).unwrap_or(""))
            };
            let extra = [el.attr("aria-label"), el.attr("title"), el.attr("class")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let index = out.buttons.len();
            out.buttons.push(Button {
                form: owner,
                name,
                value,
                text,
                id: el.attr("id").unwrap_or("").to_string(),
                extra,
                formaction: el.attr("formaction").map(str::to_string),
                formmethod: el.attr("formmethod").map(str::to_string),
                formenctype: el.attr("formenctype").map(str::to_string),
                position,
            });
            if let Some(f) = out.forms.get_mut(owner) {
                f.buttons.push(index);
            }
            continue;
        }
        if name.is_empty() || matches!(kind.as_str(), "button" | "reset" | "file") {
            continue;
        }
        let values = match kind.as_str() {
            "checkbox" | "radio" => el
                .attr("checked")
                .map(|_| vec![el.attr("value").unwrap_or("on").to_string()])
                .unwrap_or_default(),
            "select" => {
                let options: Vec<ElementRef> = control
                    .select(&option_sel)
                    .filter(|o| o.value().attr("disabled").is_none())
                    .collect();
                let option_value = |o: &ElementRef| {
                    o.value()
                        .attr("value")
                        .map(str::to_string)
                        .unwrap_or_else(|| collapse(&o.text().collect::<String>()))
                };
                let chosen: Vec<String> = options
                    .iter()
                    .filter(|o| o.value().attr("selected").is_some())
                    .map(option_value)
                    .collect();
                if !chosen.is_empty() {
                    if el.attr("multiple").is_some() {
                        chosen
                    } else {
                        chosen.into_iter().take(1).collect()
                    }
                } else if el.attr("multiple").is_some() {
                    Vec::new()
                } else {
                    options.first().map(option_value).into_iter().collect()
                }
            }
            "textarea" => vec![control.text().collect()],
            _ => vec![el.attr("value").unwrap_or("").to_string()],
        };
        let visible = kind != "hidden"
            && el.attr("hidden").is_none()
            && !el
                .attr("style")
                .is_some_and(|s| s.replace(' ', "").contains("display:none"));
        let field = Field {
            name,
            kind,
            values,
            visible,
            autocomplete: el
                .attr("autocomplete")
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
            id: el.attr("id").unwrap_or("").to_string(),
            position,
        };
        if let Some(f) = out.forms.get_mut(owner) {
            f.fields.push(field);
        }
    }
    out
}

fn inside_disabled_fieldset(control: &ElementRef) -> bool {
    control.ancestors().any(|a| {
        a.value()
            .as_element()
            .is_some_and(|e| e.name() == "fieldset" && e.attr("disabled").is_some())
    })
}

/// `<base href>` resolved against the page URL, else the page URL.
pub fn base_url(html: &Html, page: &Url) -> Url {
    sel("base[href]")
        .and_then(|s| html.select(&s).next())
        .and_then(|b| b.value().attr("href"))
        .and_then(|h| page.join(h.trim()).ok())
        .unwrap_or_else(|| page.clone())
}

/// An empty or missing action targets the document's own URL; any other is
/// resolved against the base URL. `None` for an action that is not a URL.
pub fn resolve_action(action: Option<&str>, base: &Url, page: &Url) -> Option<Url> {
    match action.map(str::trim) {
        None | Some("") => {
            let mut u = page.clone();
            u.set_fragment(None);
            Some(u)
        }
        Some(a) => base.join(a).ok(),
    }
}

/// A request ready to send, and the pairs it carries (for saved pages).
#[derive(Clone, Debug)]
pub struct Submission {
    pub method: Method,
    pub url: Url,
    pub enctype: String,
    /// `(content type, body)` for a POST.
    pub body: Option<(String, Vec<u8>)>,
    pub pairs: Vec<(String, String)>,
}

/// The form data set of `form` submitted by `button` (or by Enter, without
/// a submitter), with `fills` typed into the named inputs (replacing the
/// first input of that name, or appended when the form has none).
pub fn submit(
    form: &Form,
    button: Option<&Button>,
    fills: &[(String, String)],
    base: &Url,
    page: &Url,
) -> Result<Submission, String> {
    let mut entries: Vec<(usize, String, String)> = Vec::new();
    let mut filled = vec![false; fills.len()];
    for f in &form.fields {
        if let Some(i) = fills
            .iter()
            .enumerate()
            .position(|(i, (n, _))| !filled[i] && n == &f.name)
        {
            filled[i] = true;
            entries.push((f.position, f.name.clone(), fills[i].1.clone()));
            continue;
        }
        for v in &f.values {
            entries.push((f.position, f.name.clone(), v.clone()));
        }
    }
    if let Some(b) = button
        && !b.name.is_empty()
    {
        entries.push((b.position, b.name.clone(), b.value.clone()));
    }
    entries.sort_by_key(|(p, _, _)| *p);
    let mut pairs: Vec<(String, String)> = entries.into_iter().map(|(_, n, v)| (n, v)).collect();
    for (i, (n, v)) in fills.iter().enumerate() {
        if !filled[i] {
            pairs.push((n.clone(), v.clone()));
        }
    }

    let action = button
        .and_then(|b| b.formaction.as_deref())
        .or(form.action.as_deref());
    let url = resolve_action(action, base, page)
        .ok_or_else(|| format!("the form's action `{}` is not a URL", action.unwrap_or("")))?;
    let method = match button
        .and_then(|b| b.formmethod.as_deref())
        .map(|m| m.trim().to_ascii_uppercase())
    {
        Some(m) if m == "GET" => Method::GET,
        Some(m) if m == "POST" => Method::POST,
        _ if form.method == "GET" => Method::GET,
        _ => Method::POST,
    };
    let enctype = button
        .and_then(|b| b.formenctype.as_deref())
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_else(|| form.enctype.clone());
    if method == Method::GET {
        let mut url = url;
        url.set_fragment(None);
        let query = urlencoded(&pairs);
        url.set_query(Some(&query));
        return Ok(Submission {
            method,
            url,
            enctype: "application/x-www-form-urlencoded".into(),
            body: None,
            pairs,
        });
    }
    let (enctype, body) = match enctype.as_str() {
        "multipart/form-data" => {
            let boundary = format!(
                "----authpulseFormBoundary{}",
                hex::encode(rand::rng().random::<[u8; 12]>())
            );
            (
                format!("multipart/form-data; boundary={boundary}"),
                multipart(&pairs, &boundary),
            )
        }
        "text/plain" => {
            let mut body = String::new();
            for (n, v) in &pairs {
                body.push_str(&format!("{n}={v}\r\n"));
            }
            ("text/plain".to_string(), body.into_bytes())
        }
        _ => (
            "application/x-www-form-urlencoded".to_string(),
            urlencoded(&pairs).into_bytes(),
        ),
    };
    Ok(Submission {
        method,
        url,
        enctype: enctype.clone(),
        body: Some((enctype, body)),
        pairs,
    })
}

fn urlencoded(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

/// RFC 7578 as browsers write it: names with `"` and line breaks escaped.
fn multipart(pairs: &[(String, String)], boundary: &str) -> Vec<u8> {
    let escape = |s: &str| {
        s.replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut body = Vec::new();
    for (n, v) in pairs {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n",
                escape(n)
            )
            .as_bytes(),
        );
        body.extend_from_slice(v.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}
