//! `permission`: one authorization decision (OPA, OpenFGA, SpiceDB or a
//! generic JSON endpoint) that must come back allow or deny. A `deny`
//! expectation answered with allow is a privilege escalation.
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::super::{TlsSpec, Value};
use super::{Issues, Validate, check_tls, check_url, is_templated, key};

/// The authorization engine asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PermissionEngine {
    /// `POST <url>/v1/data/<path>` with `{"input": …}`.
    Opa,
    /// `POST <url>/stores/<store_id>/check` with a tuple key.
    Openfga,
    /// `POST <url>/v1/permissions/check` (SpiceDB HTTP gateway).
    Spicedb,
    /// Any JSON endpoint: `body` sent, `decision` JSONPath read.
    Generic,
}

impl PermissionEngine {
    pub fn name(self) -> &'static str {
        match self {
            PermissionEngine::Opa => "opa",
            PermissionEngine::Openfga => "openfga",
            PermissionEngine::Spicedb => "spicedb",
            PermissionEngine::Generic => "generic",
        }
    }
}

/// The decision a `permission` check must come back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed; denied is `permission_mismatch` (someone lost access).
    Allow,
    /// Denied; allowed is `escalation`, a privilege escalation that pages at once.
    Deny,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// `permission`: one authorization decision (OPA, OpenFGA, SpiceDB or a
/// generic JSON endpoint) compared with `expect`. One step, `check`. Keys
/// of another engine than `engine` are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionSpec {
    /// The engine asked.
    pub engine: PermissionEngine,
    /// The engine's base URL (for `opa` without `path`: the full data API URL;
    /// for `generic`: the endpoint).
    pub url: String,
    /// The decision the engine must come back with.
    pub expect: Decision,
    /// Bearer token sent as `Authorization: Bearer …` (SpiceDB preshared
    /// key, OpenFGA API token, OPA token); usually `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Value>,
    /// Extra request headers (values may be secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Value>,
    /// TLS client settings.
    #[serde(default, skip_serializing_if = "is_default_tls")]
    pub tls: TlsSpec,

    // --- opa
    /// opa: the policy path below `/v1/data/` (`app/authz/allow` or
    /// `app.authz.allow`); required unless `url` already ends in
    /// `/v1/data/<path>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// opa: the document sent as `input` (any JSON; templatable, e.g.
    /// `{ user: "{{ steps.login.claims.sub }}" }`). Default: `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Json>,

    // --- openfga
    /// openfga (required): the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// openfga: the authorization model (default: the store's latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_model_id: Option<String>,
    /// openfga (required): `type:id` of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// openfga (required): the relation checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// openfga (required): `type:id` of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,

    // --- spicedb
    /// spicedb (required): `type:id` of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// spicedb (required): the permission checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// spicedb (required): `type:id`, or a set `type:id#relation`, of the
    /// subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// spicedb: ask for a fully consistent answer instead of the cached
    /// default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub fully_consistent: bool,

    // --- generic
    /// generic: the request method.
    #[serde(default = "default_method")]
    pub method: String,
    /// generic: the JSON body sent (templatable); none = no body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    /// generic (required): JSONPath to the decision in the response, e.g.
    /// `$.decision.effect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// generic: decision values that mean allow (anything else is deny).
    #[serde(default = "default_allow_values")]
    pub allow_values: Vec<Json>,
}

fn is_default_tls(t: &TlsSpec) -> bool {
    *t == TlsSpec::default()
}
fn default_method() -> String {
    "POST".into()
}
fn default_allow_values() -> Vec<Json> {
    vec![Json::Bool(true)]
}

impl PermissionSpec {
    /// Fields that belong to an engine, with the engine they belong to.
    fn engine_fields(&self) -> Vec<(&'static str, PermissionEngine, bool)> {
        use PermissionEngine::*;
        vec![
            ("path", Opa, self.path.is_some()),
            ("input", Opa, self.input.is_some()),
            ("store_id", Openfga, self.store_id.is_some()),
            (
                "authorization_model_id",
                Openfga,
                self.authorization_model_id.is_some(),
            ),
            ("user", Openfga, self.user.is_some()),
            ("relation", Openfga, self.relation.is_some()),
            ("object", Openfga, self.object.is_some()),
            ("resource", Spicedb, self.resource.is_some()),
            ("permission", Spicedb, self.permission.is_some()),
            ("subject", Spicedb, self.subject.is_some()),
            ("fully_consistent", Spicedb, self.fully_consistent),
            ("method", Generic, self.method != default_method()),
            ("body", Generic, self.body.is_some()),
            ("decision", Generic, self.decision.is_some()),
            (
                "allow_values",
                Generic,
                self.allow_values != default_allow_values(),
            ),
        ]
    }
}

impl Validate for PermissionSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        check_url(&mut out, vec![key("url")], &self.url);
        check_tls(&mut out, &self.tls);
        for (field, engine, set) in self.engine_fields() {
            if set && engine != self.engine {
                out.push((
                    vec![key(field)],
                    format!(
                        "`{field}` is for engine `{}`, not `{}`",
                        engine.name(),
                        self.engine.name()
                    ),
                ));
            }
        }
        let mut require = |field: &str, value: &Option<String>| {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                out.push((
                    vec![key(field)],
                    format!("engine `{}` needs `{field}`", self.engine.name()),
                ));
            }
        };
        match self.engine {
            PermissionEngine::Opa => {
                if self.path.is_none()
                    && !is_templated(&self.url)
                    && !self.url.contains("/v1/data/")
                {
                    out.push((
                        vec![key("path")],
                        "engine `opa` needs `path` (e.g. `app/authz/allow`) or a `url` \
                         ending in /v1/data/<path>"
                            .into(),
                    ));
                }
            }
            PermissionEngine::Openfga => {
                require("store_id", &self.store_id);
                require("user", &self.user);
                require("relation", &self.relation);
                require("object", &self.object);
            }
            PermissionEngine::Spicedb => {
                require("resource", &self.resource);
                require("permission", &self.permission);
                require("subject", &self.subject);
                for (field, v) in [("resource", &self.resource), ("subject", &self.subject)] {
                    if let Some(v) = v
                        && !is_templated(v)
                        && !v.trim().is_empty()
                        && split_object_ref(v).is_none()
                    {
                        out.push((vec![key(field)], format!("`{v}`: expected `type:id`")));
                    }
                }
            }
            PermissionEngine::Generic => {
                match &self.decision {
                    None => out.push((
                        vec![key("decision")],
                        "engine `generic` needs `decision`: a JSONPath to the decision \
                         in the response (e.g. `$.allowed`)"
                            .into(),
                    )),
                    Some(p) => {
                        if let Err(e) = serde_json_path::JsonPath::parse(p) {
                            out.push((vec![key("decision")], format!("invalid JSONPath: {e}")));
                        }
                    }
                }
                if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_alphabetic()) {
                    out.push((
                        vec![key("method")],
                        format!("`{}` is not an HTTP method", self.method),
                    ));
                }
                if self.allow_values.is_empty() {
                    out.push((
                        vec![key("allow_values")],
                        "at least one value must mean allow".into(),
                    ));
                }
            }
        }
        out
    }
}

/// `type:id` (and an optional `#relation` suffix on the id) split in two.
pub fn split_object_ref(raw: &str) -> Option<(&str, &str)> {
    let (t, id) = raw.split_once(':')?;
    (!t.is_empty() && !id.is_empty()).then_some((t, id))
}
