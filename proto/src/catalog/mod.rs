//! The catalog: probes, SLOs, gates and components as typed, validated values. It is the
//! user-facing contract (YAML/TOML files in git) and, for probes, also travels
//! on the wire as JSON inside an assignment, parsed by the same code on both
//! sides so that the agent can never run something the coordinator rejected.
mod endpoints;
pub mod kinds;
mod load;
pub mod source_map;
pub mod template;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use endpoints::{
    aws_endpoint, aws_signing_region, discovery_url, display_url, secret_env_name,
};
pub use kinds::*;
pub use load::{
    CatalogError, CatalogErrors, kind_from_json, load_files, load_str, probe_from_json,
};

/// A loaded and validated catalog (possibly merged from several files).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    pub probes: Vec<ProbeDef>,
    pub slos: Vec<SloDef>,
    pub gates: Vec<GateDef>,
    /// Status-page components; empty = one component per SLO.
    pub components: Vec<ComponentDef>,
}

impl Catalog {
    pub fn probe(&self, id: &str) -> Option<&ProbeDef> {
        self.probes.iter().find(|p| p.id == id)
    }

    /// Probes an agent in `region` must run.
    pub fn probes_for_region<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a ProbeDef> {
        self.probes.iter().filter(move |p| p.runs_in(region))
    }
}

/// The fields every probe has, whatever its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCommon {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Regions whose agents run it; absent = every region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Keys of [`ProbeCommon`]; everything else in a probe entry belongs to its kind.
pub(crate) const COMMON_KEYS: &[&str] = &[
    "id",
    "description",
    "regions",
    "interval",
    "timeout",
    "labels",
];

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One probe: the common envelope plus its kind-specific body.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeDef {
    pub common: ProbeCommon,
    pub spec: KindSpec,
    /// Where it was defined, for error messages; not sent on the wire.
    pub source: Option<SourceLoc>,
}

impl std::ops::Deref for ProbeDef {
    type Target = ProbeCommon;
    fn deref(&self) -> &ProbeCommon {
        &self.common
    }
}

impl ProbeDef {
    pub fn kind(&self) -> &'static str {
        self.spec.kind()
    }

    pub fn runs_in(&self, region: &str) -> bool {
        self.common
            .regions
            .as_ref()
            .is_none_or(|rs| rs.iter().any(|r| r == region))
    }

    /// The wire form (one JSON object, `kind` plus all fields), parsed back
    /// with [`probe_from_json`].
    pub fn to_json(&self) -> String {
        let mut obj = match serde_json::to_value(&self.common) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&self.spec) {
            obj.extend(m);
        }
        serde_json::Value::Object(obj).to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLoc {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl std::fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Declares every probe kind once: the `KindSpec` variant, its catalog
/// name and its body type. Deserialization goes through the loader (which
/// dispatches on `kind` so error paths reach inside the body); `journey` is
/// parsed there too, step by step.
macro_rules! kinds {
    ($($variant:ident($spec:ty) = $name:literal,)*) => {
        /// Kind-specific probe bodies. Each variant is one `agent/src/probes/<kind>.rs`.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(tag = "kind")]
        pub enum KindSpec {
            $(#[serde(rename = $name)] $variant($spec),)*
            #[serde(rename = "journey")]
            Journey(JourneySpec),
        }

        /// Every probe kind the catalog accepts.
        pub const KINDS: &[&str] = &[$($name,)* "journey"];

        impl KindSpec {
            pub fn kind(&self) -> &'static str {
                match self {
                    $(KindSpec::$variant(_) => $name,)*
                    KindSpec::Journey(_) => "journey",
                }
            }

            /// Parses a body of a kind other than `journey`; `None` for an
            /// unknown kind.
            pub(crate) fn leaf_from_body(
                kind: &str,
                body: serde_json::Value,
            ) -> Option<Result<KindSpec, (Vec<source_map::Seg>, String)>> {
                match kind {
                    $($name => Some(load::typed(body).map(KindSpec::$variant)),)*
                    _ => None,
                }
            }

            /// The kind's own load-time checks (journeys check their steps
            /// in `validate`).
            pub(crate) fn validate_body(&self) -> kinds::Issues {
                use kinds::Validate;
                match self {
                    $(KindSpec::$variant(s) => s.validate(),)*
                    KindSpec::Journey(_) => Vec::new(),
                }
            }
        }
    };
}

kinds! {
    Http(HttpSpec) = "http",
    Tcp(TcpSpec) = "tcp",
    Tls(TlsCheckSpec) = "tls",
    Dns(DnsSpec) = "dns",
    OidcDiscovery(OidcDiscoverySpec) = "oidc_discovery",
    ClientCredentials(ClientCredentialsSpec) = "client_credentials",
    Password(PasswordSpec) = "password",
    Refresh(RefreshSpec) = "refresh",
    AuthorizationCode(AuthorizationCodeSpec) = "authorization_code",
    Introspect(IntrospectSpec) = "introspect",
    Userinfo(UserinfoSpec) = "userinfo",
    Revoke(RevokeSpec) = "revoke",
    JwtValidate(JwtValidateSpec) = "jwt_validate",
    Ldap(LdapSpec) = "ldap",
    AwsSts(AwsStsSpec) = "aws_sts",
    AwsCognito(AwsCognitoSpec) = "aws_cognito",
    AwsIamPermission(AwsIamPermissionSpec) = "aws_iam_permission",
    Scim(ScimSpec) = "scim",
    Permission(PermissionSpec) = "permission",
}

/// A value given inline or as a reference to a secret that only the agent
/// resolves (`{ secret: NAME }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Secret { secret: String },
    Plain(String),
}

/// TLS settings for probes that speak HTTPS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Extra PEM CA bundle trusted in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification. Timings stay meaningful; trust does not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// SNI / verification name when it differs from the URL host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    #[serde(default)]
    pub tls: TlsSpec,
    #[serde(default)]
    pub expect: HttpExpect,
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_true() -> bool {
    true
}

/// Assertions on an HTTP response. With nothing set, any 2xx passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpExpect {
    /// Accepted status codes; absent = 200..=299.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_contains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_not_contains: Vec<String>,
    /// A regular expression the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_matches: Option<String>,
    /// Header name → regular expression its value must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<JsonAssertion>,
    /// Total time above this fails the run with class `assertion`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_latency: Option<Duration>,
}

/// `path` is an RFC 9535 JSONPath; with no other field it must match something.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonAssertion {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Regular expression matched against a string value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// `false` asserts the path matches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcDiscoverySpec {
    pub issuer: String,
    /// Defaults to `<issuer>/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// Metadata fields that must be present (and be URLs for `*_endpoint`/`*_uri`).
    #[serde(default = "default_required_endpoints")]
    pub required_endpoints: Vec<String>,
    /// Usable signing keys the JWKS must hold.
    #[serde(default = "default_min_keys")]
    pub min_signing_keys: usize,
    #[serde(default)]
    pub tls: TlsSpec,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_latency: Option<Duration>,
    /// Compare the issuer, endpoint URLs and signing keys with the last
    /// run's: a key rotation is reported (success), a changed URL fails
    /// with `protocol` unless allowed below.
    #[serde(default = "default_true")]
    pub drift: bool,
    /// `true`, or the metadata fields (e.g. `[token_endpoint]`) whose URL
    /// may change between runs without failing.
    #[serde(default, skip_serializing_if = "AllowedChanges::is_none")]
    pub allow_endpoint_changes: AllowedChanges,
}

fn default_slice() -> Duration {
    Duration::from_secs(60)
}

fn default_required_endpoints() -> Vec<String> {
    ["authorization_endpoint", "token_endpoint", "jwks_uri"]
        .map(String::from)
        .to_vec()
}
fn default_min_keys() -> usize {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloDef {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    pub probes: Vec<String>,
    /// Percent, e.g. 99.9.
    pub objective: f64,
    pub window: Window,
    #[serde(default)]
    pub sli: Sli,
    #[serde(default)]
    pub budgeting: Budgeting,
    /// Global slice is bad only when at least this many regions see it bad.
    #[serde(default)]
    pub quorum: Option<u32>,
    /// How much data the SLO needs before its numbers count (missing data
    /// is not failure, but too little of it is `insufficient_data`).
    #[serde(default, skip_serializing_if = "Coverage::is_default")]
    pub coverage: Coverage,
    /// Which burn-rate alerts this SLO raises (both by default).
    #[serde(default, skip_serializing_if = "SloAlerting::is_default")]
    pub alerting: SloAlerting,
    #[serde(skip)]
    pub source: Option<SourceLoc>,
}

/// Per-SLO opt-out of the multi-window burn-rate alerts: `page` (fast burn)
/// and `ticket` (slow burn) are both on unless set to `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloAlerting {
    #[serde(default = "default_true")]
    pub page: bool,
    #[serde(default = "default_true")]
    pub ticket: bool,
}

impl Default for SloAlerting {
    fn default() -> Self {
        SloAlerting {
            page: true,
            ticket: true,
        }
    }
}

impl SloAlerting {
    fn is_default(&self) -> bool {
        *self == SloAlerting::default()
    }
}

/// Data coverage: over the last `window`, the share of expected probe runs
/// (per probe and region: window / interval) that reported. Below `min`
/// the SLO's state is `insufficient_data`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    #[serde(with = "humantime_serde", default = "default_coverage_window")]
    pub window: Duration,
    #[serde(default = "default_coverage_min")]
    pub min: f64,
}

fn default_coverage_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_coverage_min() -> f64 {
    0.9
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage {
            window: default_coverage_window(),
            min: default_coverage_min(),
        }
    }
}

impl Coverage {
    fn is_default(&self) -> bool {
        *self == Coverage::default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Window {
    Rolling(#[serde(with = "humantime_serde")] Duration),
    Calendar(CalendarWindow),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarWindow {
    pub calendar: CalendarUnit,
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarUnit {
    Day,
    Week,
    Month,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sli {
    #[default]
    Availability,
    Latency {
        #[serde(with = "humantime_serde")]
        threshold: Duration,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budgeting {
    #[default]
    Occurrences,
    /// OpenSLO `Timeslices`: a slice is good when its good ratio is at
    /// least `target`; the SLI is good slices / slices with data.
    Timeslices {
        #[serde(with = "humantime_serde", default = "default_slice")]
        slice: Duration,
        target: f64,
    },
}

/// A status-page component (a Statuspage "component"): a capability users
/// see, e.g. "Login", whose status follows the SLOs it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentDef {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub slos: Vec<String>,
    #[serde(skip)]
    pub source: Option<SourceLoc>,
}

/// A deploy gate: pipelines ask the coordinator whether it is safe to
/// proceed; it blocks when any `block_when` condition holds for any of its
/// SLOs, or (with `on_stale: fail`, the default) when an SLO's data is
/// missing or older than `stale_after`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateDef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub slos: Vec<String>,
    #[serde(default)]
    pub block_when: Vec<BlockWhen>,
    /// An SLO whose newest result is older than this (or that has no data,
    /// or too little: `insufficient_data`) is stale.
    #[serde(with = "humantime_serde", default = "default_stale_after")]
    pub stale_after: Duration,
    #[serde(default)]
    pub on_stale: OnStale,
    #[serde(skip)]
    pub source: Option<SourceLoc>,
}

fn default_stale_after() -> Duration {
    Duration::from_secs(300)
}

/// One gate condition: a bare name (`page_alert`) or a one-key mapping
/// with its parameter (`{ budget_below: 0.2 }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockWhen {
    /// A page-level burn-rate alert condition holds (1h/5m or 6h/30m).
    PageAlert,
    /// A ticket-level burn-rate alert condition holds (1d/2h or 3d/6h).
    TicketAlert,
    /// The error budget is used up (remaining ≤ 0).
    BudgetExhausted,
    /// An escalation result (a denied action was allowed) within the last
    /// 5 minutes: the hold of the escalation page.
    Escalation,
    /// Remaining error budget below this ratio (0.2 = 20 % left).
    BudgetBelow(f64),
    /// An escalation result within this long.
    EscalationWithin(#[serde(with = "humantime_serde")] Duration),
    /// The SLI over the last `window` below `value` (a ratio, 0.99).
    SliBelow(SliBelow),
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliBelow {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub value: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    #[default]
    Fail,
    Pass,
}
