//! `scim`: the lifecycle of a synthetic user against a SCIM 2.0 service
//! provider (create, read, patch, deactivate, verify, delete, verify gone),
//! with cleanup of synthetic users that earlier runs left behind.
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::schema::HumanDuration;
use super::super::{TlsSpec, Value};
use super::{Issues, Validate, check_tls, check_url, key};

pub const DEFAULT_SCIM_PREFIX: &str = "authpulse-probe-";

/// `scim`: the provisioning lifecycle of a synthetic user against a SCIM
/// 2.0 service provider (cleanup of old synthetic users, create, read,
/// patch, deactivate, verify, delete, gone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimSpec {
    /// The SCIM base URL; `/Users` is appended.
    pub base_url: String,
    /// Bearer token of the provisioning client (a secret).
    pub token: Value,
    /// Synthetic users are named `<prefix><random>`; users with this prefix
    /// older than `orphan_max_age` are deleted before each run. Make it
    /// unique to the probe: everything under it is fair game. At least 4
    /// characters, no quotes or backslashes.
    #[serde(default = "default_prefix")]
    #[schemars(length(min = 4), regex(pattern = r#"^[^"\\]*$"#))]
    pub user_name_prefix: String,
    /// Users with the prefix older than this are deleted before each run.
    /// Keep it well above the probe timeout, so that runs of the same probe
    /// on other agents are never cut short.
    #[serde(default = "default_orphan_max_age", with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub orphan_max_age: Duration,
    /// Extra attributes for the created user (e.g. `name`, `emails`,
    /// `schemas` with an enterprise extension) merged into the POST body;
    /// `id`, `userName`, `active`, `title` and `meta` are the probe's own.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Delete the user at the end (default). With `false` the user stays,
    /// deactivated, for later journey steps (e.g. a login that must now be
    /// rejected); a later run's orphan cleanup removes it.
    #[serde(default = "default_true")]
    pub delete: bool,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_prefix() -> String {
    DEFAULT_SCIM_PREFIX.to_string()
}
fn default_orphan_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_true() -> bool {
    true
}

impl Validate for ScimSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        check_url(&mut out, vec![key("base_url")], &self.base_url);
        // A short prefix would make the orphan cleanup delete real users.
        if self.user_name_prefix.chars().count() < 4 {
            out.push((
                vec![key("user_name_prefix")],
                "must be at least 4 characters: users with this prefix get deleted".into(),
            ));
        }
        if self.user_name_prefix.contains('"') || self.user_name_prefix.contains('\\') {
            out.push((
                vec![key("user_name_prefix")],
                "must not contain quotes or backslashes (it goes into a SCIM filter)".into(),
            ));
        }
        // The probe owns these: its cleanup and checks depend on them.
        for owned in ["id", "userName", "active", "title", "meta"] {
            if self.attributes.contains_key(owned) {
                out.push((
                    vec![key("attributes"), key(owned)],
                    format!("`{owned}` is set by the probe itself"),
                ));
            }
        }
        check_tls(&mut out, &self.tls);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::{KindSpec, load_str};

    #[test]
    fn defaults_and_prefix_checks() {
        let base = "probes:\n  - id: s\n    kind: scim\n    base_url: https://idp.example.com/scim/v2\n    token: { secret: t }\n";
        let cat = load_str("t.yaml", base).expect("valid");
        let KindSpec::Scim(s) = &cat.probes[0].spec else {
            panic!("not scim")
        };
        assert_eq!(s.user_name_prefix, super::DEFAULT_SCIM_PREFIX);
        assert_eq!(s.orphan_max_age, std::time::Duration::from_secs(3600));
        assert!(s.delete);

        let e = load_str("t.yaml", &format!("{base}    user_name_prefix: a\n"))
            .expect_err("short prefix")
            .to_string();
        assert!(e.contains("at least 4 characters"), "{e}");
        let e = load_str("t.yaml", &format!("{base}    user_name_prefix: 'ab\"cd'\n"))
            .expect_err("quote")
            .to_string();
        assert!(e.contains("must not contain quotes"), "{e}");
        let e = load_str(
            "t.yaml",
            &format!("{base}    attributes: {{ userName: bob, emails: [] }}\n"),
        )
        .expect_err("owned attribute")
        .to_string();
        assert!(e.contains("`userName` is set by the probe itself"), "{e}");
    }
}
