//! `--save-pages DIR`: one numbered pair of files per page a login walks,
//! `NN-page.html` (the page as received) and `NN-page.json` (URL, status,
//! title, the class the engine gave it, the forms seen, the form and button
//! chosen, the fields sent and the status of the answer). Every secret the
//! run knows (password, `login_steps` secrets, the TOTP secret and the codes
//! generated from it, tokens) is replaced by `<secret NAME>` in both files,
//! in every spelling it could take there: raw, URL-encoded (`+` and `%20`),
//! JSON-escaped and HTML-escaped. Writing is best effort: a full disk never
//! fails a login, it is logged.
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

/// Values to hide and the names to show instead.
#[derive(Default)]
pub struct Secrets {
    values: Vec<(String, String)>,
}

impl Secrets {
    pub fn add(&mut self, name: &str, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|(_, v)| v == value) {
            self.values.push((name.to_string(), value.to_string()));
            // Longest first, so a secret containing another is fully hidden.
            self.values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every spelling of every secret replaced.
    pub fn hide(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.values {
            let mark = format!("<secret {name}>");
            for spelling in spellings(value) {
                if !spelling.is_empty() && out.contains(&spelling) {
                    out = out.replace(&spelling, &mark);
                }
            }
        }
        out
    }
}

/// The forms a value takes in HTML, URLs and JSON.
pub fn spellings(value: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let percent = form.replace('+', "%20");
    let json = serde_json::to_string(value)
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    let html_named = value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    let html_numeric: String = value
        .chars()
        .map(|c| match c {
            '&' | '<' | '>' | '"' | '\'' => format!("&#{};", c as u32),
            c => c.to_string(),
        })
        .collect();
    let mut all = vec![
        value.to_string(),
        form,
        percent,
        json,
        html_named,
        html_numeric,
    ];
    all.sort();
    all.dedup();
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all
}

pub struct Recorder {
    dir: PathBuf,
    pub secrets: Secrets,
    count: usize,
    pending: Option<(PathBuf, Json)>,
}

impl Recorder {
    pub fn new(dir: &Path) -> Recorder {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the --save-pages directory");
        }
        Recorder {
            dir: dir.to_path_buf(),
            secrets: Secrets::default(),
            count: 0,
            pending: None,
        }
    }

    fn write(&self, path: &Path, text: &str) {
        if let Err(e) = std::fs::write(path, self.secrets.hide(text)) {
            tracing::warn!(file = %path.display(), error = %e, "cannot save a login page");
        }
    }

    /// A page arrived: the previous page's record learns its answer, and
    /// this page is written.
    pub fn page(&mut self, page: &super::page::Page, info: Json) {
        self.answer(json!({ "status": page.status.as_u16(), "url": page.url.as_str() }));
        self.count += 1;
        let stem = format!("{:02}-page", self.count);
        self.write(&self.dir.join(format!("{stem}.html")), &page.body);
        let mut record = json!({
            "url": page.url.as_str(),
            "status": page.status.as_u16(),
        });
        if let (Json::Object(r), Json::Object(extra)) = (&mut record, info) {
            r.extend(extra);
        }
        self.pending = Some((self.dir.join(format!("{stem}.json")), record));
    }

    /// What the engine did on the current page.
    pub fn action(&mut self, action: Json) {
        if let Some((_, Json::Object(r))) = &mut self.pending {
            r.insert("action".into(), action);
        }
    }

    /// The answer to the current page's action (or the end of the walk).
    pub fn answer(&mut self, response: Json) {
        if let Some((path, mut record)) = self.pending.take() {
            if let Json::Object(r) = &mut record {
                r.insert("response".into(), response);
            }
            let text = serde_json::to_string_pretty(&record).unwrap_or_default();
            self.write(&path, &text);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.answer(Json::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_is_hidden() {
        let mut s = Secrets::default();
        let pw = "p@ss w&rd\"<é>+%'";
        s.add("pw", pw);
        for spelling in spellings(pw) {
            let text = format!("before {spelling} after");
            let hidden = s.hide(&text);
            assert_eq!(hidden, "before <secret pw> after", "{spelling}");
        }
    }
}
