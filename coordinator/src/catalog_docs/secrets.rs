//! Credentials in the runbook, never their values: each probe's credential
//! fields (`secret: NAME` for references, "inline value, not shown" for
//! inline text, header values only when they are references) and the
//! Secrets section listing what the agents must hold and under which
//! environment variable.
use std::collections::BTreeMap;

use authpulse_proto::catalog::{Catalog, KindSpec};

use super::{Doc, code, probe_link, push_unique};

/// Fields that hold credentials, by name (their values are
/// `{ secret: NAME }` or, discouraged, inline text).
const CREDENTIAL_FIELDS: &[&str] = &[
    "access_key_id",
    "client_secret",
    "external_id",
    "password",
    "private_key",
    "refresh_token",
    "secret_access_key",
    "session_token",
    "token",
    "totp",
];

/// Every credential of a probe (journey steps included): `path: secret:
/// NAME` for references, `path: inline value, not shown` for inline text.
/// Header values are listed only when they are references.
pub(super) fn credentials(spec: &KindSpec) -> Vec<String> {
    let mut out = Vec::new();
    match spec {
        KindSpec::Journey(j) => {
            for step in &j.steps {
                collect_credentials(&step.spec, &format!("{}.", step.name), &mut out);
            }
        }
        other => collect_credentials(other, "", &mut out),
    }
    out
}

fn collect_credentials(spec: &KindSpec, prefix: &str, out: &mut Vec<String>) {
    let Ok(serde_json::Value::Object(body)) = serde_json::to_value(spec) else {
        return;
    };
    // serde_json's map is sorted: the listing is stable.
    for (key, value) in &body {
        if key == "headers" {
            if let serde_json::Value::Object(headers) = value {
                for (name, v) in headers {
                    if let Some(secret) = secret_name(v) {
                        out.push(format!("`{prefix}headers.{name}`: secret: `{secret}`"));
                    }
                }
            }
            continue;
        }
        if !CREDENTIAL_FIELDS.contains(&key.as_str()) {
            continue;
        }
        match (secret_name(value), value) {
            (Some(secret), _) => out.push(format!("`{prefix}{key}`: secret: `{secret}`")),
            // A journey template (`{{ steps.login.access_token }}`) is not a
            // credential of its own: the value comes from an earlier step.
            (None, serde_json::Value::String(s)) if s.contains("{{") => {
                out.push(format!("`{prefix}{key}`: from an earlier step"));
            }
            (None, serde_json::Value::Null) => {}
            (None, _) => out.push(format!("`{prefix}{key}`: inline value, not shown")),
        }
    }
}

fn secret_name(v: &serde_json::Value) -> Option<&str> {
    match v {
        serde_json::Value::Object(m) if m.len() == 1 => m.get("secret")?.as_str(),
        _ => None,
    }
}

pub(super) fn secrets(doc: &mut Doc, catalog: &Catalog) {
    doc.line("## Secrets");
    doc.blank();
    // name → probes that use it (catalog order).
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &catalog.probes {
        let mut names = Vec::new();
        match &p.spec {
            KindSpec::Journey(j) => {
                for step in &j.steps {
                    secret_names(&step.spec, &mut names);
                }
            }
            other => secret_names(other, &mut names),
        }
        for name in names {
            push_unique(used.entry(name).or_default(), &p.id);
        }
    }
    if used.is_empty() {
        doc.line("The catalog references no secrets.");
        doc.blank();
        return;
    }
    doc.line(
        "Every agent that runs these probes needs each secret as the environment variable \
         below or as the file `<secrets_dir>/<name>`; values never leave the agent.",
    );
    doc.blank();
    doc.table_head(&["secret", "environment variable", "probes"]);
    for (name, probes) in &used {
        doc.row(&[
            code(name),
            code(&secret_env(name)),
            probes
                .iter()
                .map(|p| probe_link(p))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    doc.blank();
}

/// Every `{ secret: NAME }` anywhere in a (non-journey) body.
fn secret_names(spec: &KindSpec, out: &mut Vec<String>) {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        if let Some(name) = secret_name(v) {
            push_unique(out, name);
            return;
        }
        match v {
            serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    if let Ok(v) = serde_json::to_value(spec) {
        walk(&v, out);
    }
}

/// The environment variable the agent reads a reference from (contract).
pub(super) fn secret_env(name: &str) -> String {
    authpulse_proto::catalog::secret_env_name(name)
}

#[cfg(test)]
mod tests {
    use crate::catalog_docs::render;

    #[test]
    fn inline_credentials_and_userinfo_passwords_are_not_shown() {
        let catalog = authpulse_proto::catalog::load_str(
            "c.yaml",
            "probes:\n  - id: a\n    kind: password\n    token_endpoint: https://u:pw-in-url@idp.example.com/token\n\
             \x20   client_id: c\n    client_secret: inline-client-secret\n    username: alice\n\
             \x20   password: { secret: alice_pw }\n",
        )
        .expect("valid");
        let md = render(&catalog, &["c.yaml".into()]);
        assert!(!md.contains("inline-client-secret"), "{md}");
        assert!(!md.contains("pw-in-url"), "{md}");
        assert!(
            md.contains("`client_secret`: inline value, not shown"),
            "{md}"
        );
        assert!(md.contains("`password`: secret: `alice_pw`"), "{md}");
        assert!(md.contains("`AUTHPULSE_SECRET_ALICE_PW`"), "{md}");
    }
}
