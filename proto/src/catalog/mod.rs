//! The catalog: probes, SLOs, gates and components as typed, validated values. It is the
//! user-facing contract (YAML/TOML files in git) and, for probes, also travels
//! on the wire as JSON inside an assignment, parsed by the same code on both
//! sides so that the agent can never run something the coordinator rejected.
mod endpoints;
pub mod kinds;
mod load;
pub mod maintenance;
pub mod modules;
pub mod ownership;
pub mod print;
pub mod reference;
pub mod schema;
pub mod source_map;
pub mod sources;
mod steps;
pub mod suggest;
pub mod template;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use schema::HumanDuration;

pub use endpoints::{
    aws_endpoint, aws_signing_region, discovery_url, display_url, secret_env_name,
};
pub use kinds::*;
pub use load::{
    CatalogError, CatalogErrors, file_to_json, kind_from_json, load_files, load_str,
    probe_from_json,
};
pub use maintenance::{MaintenanceAlerts, MaintenanceDef, MaintenanceGates};
pub use reference::{REFERENCE_PATH, reference_markdown};
pub use schema::{SCHEMA_PATH, json_schema, json_schema_text};
pub use sources::expand_sources;

/// A loaded and validated catalog (possibly merged from several files).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    pub probes: Vec<ProbeDef>,
    pub slos: Vec<SloDef>,
    pub gates: Vec<GateDef>,
    /// Status-page components; empty = one component per SLO.
    pub components: Vec<ComponentDef>,
    /// Scheduled maintenances of components.
    pub maintenances: Vec<MaintenanceDef>,
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

/// The keys every probe has, whatever its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeCommon {
    /// Unique probe id: `[a-z0-9-]`, at most 63 characters, starting and
    /// ending with a letter or digit. Results, metrics, SLOs and
    /// `authpulse probe ID` name the probe by it.
    #[schemars(regex(pattern = schema::ID_PATTERN))]
    pub id: String,
    /// Free text, shown in the runbook (`authpulse docs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Regions whose agents run the probe (region names as ids); absent =
    /// every region. An empty list is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub regions: Option<Vec<String>>,
    /// How often the probe runs, at least `1s`. Runs are spread over the
    /// interval by a stable per-probe offset; a newly assigned probe first
    /// runs within 5 s.
    #[serde(with = "humantime_serde", default = "default_interval")]
    #[schemars(with = "HumanDuration")]
    pub interval: Duration,
    /// Bounds the whole run, phase by phase; above 0 and not above
    /// `interval`.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "HumanDuration")]
    pub timeout: Duration,
    /// The team or person who owns the probe (e.g. `team-identity`):
    /// alert routing and the runbook (`authpulse docs`) name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// An http(s) link to what to do when the probe fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// Free string labels (Prometheus label names, at most 16, none of the
    /// names authpulse sets itself such as `slo` or `severity`): shown in
    /// the runbook and on the probe's results in the API.
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
    "owner",
    "runbook_url",
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
        serde_json::Value::Object(self.to_map()).to_string()
    }

    /// What an agent is sent: [`to_json`](Self::to_json) without the
    /// ownership keys, which only the coordinator reads (so agents older
    /// than those keys still accept every assignment).
    pub fn to_wire_json(&self) -> String {
        let mut obj = self.to_map();
        obj.remove("owner");
        obj.remove("runbook_url");
        serde_json::Value::Object(obj).to_string()
    }

    /// The probe as one JSON object: the common keys and its kind's body.
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut obj = match serde_json::to_value(&self.common) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&self.spec) {
            obj.extend(m);
        }
        obj
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

            /// `(kind, variant name, body schema)` of every kind but
            /// `journey`, for the catalog's JSON Schema.
            pub(crate) fn leaf_schemas(
                g: &mut schemars::SchemaGenerator,
            ) -> Vec<(&'static str, &'static str, schemars::Schema)> {
                vec![$(($name, stringify!($variant), <$spec as JsonSchema>::json_schema(g)),)*]
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
    SamlLogin(SamlLoginSpec) = "saml_login",
    SamlMetadata(SamlMetadataSpec) = "saml_metadata",
}

/// A string given inline, or a reference to a secret that only the agent
/// resolves: `{ secret: NAME }`, read from the environment variable
/// `AUTHPULSE_SECRET_<NAME>` (upper case, `-` and `.` become `_`) or the file
/// `<secrets_dir>/<NAME>`. Write credentials as references: an inline value
/// travels to agents and is stored with the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "StringOrSecret")]
pub enum Value {
    /// A reference to a secret, resolved on the agent only.
    Secret {
        /// The secret's name.
        secret: String,
    },
    /// The value itself (in a journey step it may hold templates).
    Plain(String),
}

/// TLS client settings of probes that speak TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Extra PEM CA bundle (a file on the agent) trusted in addition to the
    /// system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (handshake signatures are still
    /// checked). Timings stay meaningful; trust does not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub insecure_skip_verify: bool,
    /// SNI and the name the certificate must be valid for, when it differs
    /// from the host of the URL. Default: that host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// `http`: one HTTP request and assertions on its response. Steps
/// `request`; timings `dns`, `connect`, `tls`, `ttfb`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// The URL requested: `http://` or `https://` with a host.
    pub url: String,
    /// The request method, in upper case.
    #[serde(default = "default_method")]
    #[schemars(regex(pattern = r"^[A-Z]+$"))]
    pub method: String,
    /// Request headers; a value may be `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Value>,
    /// The request body, sent as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Follow redirects (up to 10).
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
    /// What the response must look like; with nothing set, any 2xx passes.
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpExpect {
    /// Accepted status codes (100–599). Absent: any 2xx. A mismatch fails
    /// with class `http_status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<u16>>,
    /// Strings the body must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_contains: Vec<String>,
    /// Strings the body must not contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_not_contains: Vec<String>,
    /// A regular expression (Rust syntax) the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_matches: Option<String>,
    /// Header name → regular expression its value must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Assertions on a JSON body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<JsonAssertion>,
    /// A run that takes longer in total fails with class `assertion`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<HumanDuration>")]
    pub max_latency: Option<Duration>,
}

/// One assertion on a JSON body: `path` with one of `equals`, `matches` or
/// `exists: false`; a bare `path` must match something.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonAssertion {
    /// An RFC 9535 JSONPath, e.g. `$.status`.
    pub path: String,
    /// The value the first match must equal (any JSON value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// A regular expression a string match must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// `false` asserts the path matches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// `oidc_discovery`: the OpenID Connect discovery document and the JWKS it
/// points to. Steps `discovery` and `jwks`, each with its own timings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcDiscoverySpec {
    /// The issuer URL; must equal the document's `issuer` exactly.
    pub issuer: String,
    /// Where the document is. Default: `<issuer>/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// Metadata fields that must be present; `*_endpoint` and `*_uri` ones
    /// must be https URLs (http allowed when the issuer is http).
    #[serde(default = "default_required_endpoints")]
    pub required_endpoints: Vec<String>,
    /// Keys the JWKS must hold that can verify signatures (`use` absent or
    /// `sig`, not symmetric, parseable); at least 1.
    #[serde(default = "default_min_keys")]
    #[schemars(range(min = 1))]
    pub min_signing_keys: usize,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
    /// A run that takes longer in total fails with class `assertion`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<HumanDuration>")]
    pub max_latency: Option<Duration>,
    /// Compare the issuer, the endpoint URLs and the signing key ids with
    /// the last run's: a key rotation is reported (the run succeeds), a
    /// changed or removed URL fails with `protocol` unless
    /// `allow_endpoint_changes` allows it.
    #[serde(default = "default_true")]
    pub drift: bool,
    /// `true` (any), `false` (none), or the metadata fields (e.g.
    /// `[token_endpoint]`; `issuer`, `*_endpoint`, `*_uri`) whose URL may
    /// change between runs without failing.
    #[serde(default, skip_serializing_if = "AllowedChanges::is_none")]
    #[schemars(!skip_serializing_if)]
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

/// A service level objective over one or more probes (or journey steps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloDef {
    /// Unique SLO id: `[a-z0-9-]`, at most 63 characters.
    #[schemars(regex(pattern = schema::ID_PATTERN))]
    pub id: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Probe ids, or `journey-id/step-name` for one step of a journey (good
    /// = that step succeeded; for a latency SLI, within the threshold on
    /// its own duration). At least one.
    #[schemars(length(min = 1))]
    pub probes: Vec<String>,
    /// The target in percent, strictly between 0 and 100, e.g. `99.9`.
    #[schemars(range(min = 0, max = 100))]
    pub objective: f64,
    /// Rolling (a duration of at least `1m`, e.g. `28d`; minute-aligned),
    /// or a calendar period `{ calendar: day | week | month, time_zone }`
    /// whose budget resets at local midnight (of the 1st, of Monday).
    pub window: Window,
    /// What a good run is: `availability` (a successful run) or
    /// `{ latency: { threshold: 800ms } }` (successful and not slower).
    #[serde(default)]
    pub sli: Sli,
    /// How runs count (OpenSLO names): `occurrences` (good runs / runs) or
    /// `{ timeslices: { slice, target } }` (good slices / slices with data).
    #[serde(default)]
    pub budgeting: Budgeting,
    /// N regions: a global slice (one minute for occurrences) counts as bad
    /// only when at least N of the regions that reported in it saw it bad;
    /// for occurrences, a slice below quorum counts all its runs as good.
    /// Per-region numbers are unaffected. At least 1.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub quorum: Option<u32>,
    /// How much data the SLO needs before its numbers count (missing data
    /// is not failure, but too little of it is `insufficient_data`).
    #[serde(default, skip_serializing_if = "Coverage::is_default")]
    #[schemars(!skip_serializing_if)]
    pub coverage: Coverage,
    /// Which burn-rate alerts this SLO raises (both by default).
    #[serde(default, skip_serializing_if = "SloAlerting::is_default")]
    #[schemars(!skip_serializing_if)]
    pub alerting: SloAlerting,
    /// The team or person who owns the SLO; absent: the owner its probes
    /// share, if they all have the same one. Alerts carry it as the label
    /// `owner`, and PagerDuty routing can pick a routing key by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// An http(s) link to the runbook: the `runbook_url` annotation of the
    /// SLO's alerts; absent: the one its probes share, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// Free string labels (Prometheus label names, at most 16, none that
    /// authpulse sets itself): added to the SLO's alerts, its PagerDuty
    /// events' custom details, and its `authpulse_slo_*` series.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub source: Option<SourceLoc>,
}

/// Per-SLO opt-out of the multi-window burn-rate alerts: `page` (fast burn)
/// and `ticket` (slow burn) are both on unless set to `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloAlerting {
    /// Raise the page-level (fast burn: 1h/5m, 6h/30m) alerts.
    #[serde(default = "default_true")]
    pub page: bool,
    /// Raise the ticket-level (slow burn: 1d/2h, 3d/6h) alerts.
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
/// (per probe and region with history before that window: window /
/// interval) that reported. Below `min` the SLO's state is
/// `insufficient_data`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// The span coverage is measured over; at least `2m`.
    #[serde(with = "humantime_serde", default = "default_coverage_window")]
    #[schemars(with = "HumanDuration")]
    pub window: Duration,
    /// The minimum share of expected runs, a ratio in [0, 1].
    #[serde(default = "default_coverage_min")]
    #[schemars(range(min = 0, max = 1))]
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

/// An SLO window: a rolling duration or a calendar period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Window {
    /// A rolling window, e.g. `28d`; at least `1m`.
    Rolling(
        #[serde(with = "humantime_serde")]
        #[schemars(with = "HumanDuration")]
        Duration,
    ),
    /// A calendar period.
    Calendar(CalendarWindow),
}

/// A calendar SLO window: the budget resets at local midnight of the day,
/// of Monday (ISO week) or of the 1st (month), DST included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarWindow {
    /// The period.
    pub calendar: CalendarUnit,
    /// An IANA time zone, e.g. `Europe/Berlin`. Default: UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// A calendar period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalendarUnit {
    Day,
    Week,
    Month,
}

/// What a good run is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sli {
    /// Good = a successful run.
    #[default]
    Availability,
    /// Good = a successful run whose total duration is at most `threshold`.
    Latency {
        /// The slowest good run, above 0 (e.g. `800ms`).
        #[serde(with = "humantime_serde")]
        #[schemars(with = "HumanDuration")]
        threshold: Duration,
    },
}

/// How runs are counted against the budget (OpenSLO budgeting methods).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Budgeting {
    /// OpenSLO `Occurrences`: the SLI is good runs / runs.
    #[default]
    Occurrences,
    /// OpenSLO `Timeslices`: a slice is good when its good ratio is at
    /// least `target`; the SLI is good slices / slices with data.
    Timeslices {
        /// Slice length, whole minutes (aggregates are per minute).
        #[serde(with = "humantime_serde", default = "default_slice")]
        #[schemars(with = "HumanDuration")]
        slice: Duration,
        /// The good ratio a slice needs, in (0, 1], e.g. `0.95`.
        target: f64,
    },
}

/// A status-page component (a Statuspage "component"): a capability users
/// see, e.g. "Login", whose status follows the SLOs it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentDef {
    /// Unique component id (`[a-z0-9-]`, at most 63 characters): a path
    /// segment of public status URLs.
    #[schemars(regex(pattern = schema::ID_PATTERN))]
    pub id: String,
    /// The name shown on the status page; not empty.
    pub name: String,
    /// Free text shown with the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SLO ids whose states make the component's status; at least one.
    #[schemars(length(min = 1))]
    pub slos: Vec<String>,
    #[serde(skip)]
    pub source: Option<SourceLoc>,
}

/// A deploy gate: pipelines ask the coordinator whether it is safe to
/// proceed; it blocks when any `block_when` condition holds for any of its
/// SLOs, or (with `on_stale: fail`, the default) when an SLO's data is
/// missing or older than `stale_after`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateDef {
    /// Unique gate id (`[a-z0-9-]`, at most 63 characters): what
    /// `authpulse gate ID` asks for.
    #[schemars(regex(pattern = schema::ID_PATTERN))]
    pub id: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SLO ids the gate watches; at least one.
    #[schemars(length(min = 1))]
    pub slos: Vec<String>,
    /// The conditions that block, any of them for any SLO; at least one,
    /// e.g. `[page_alert, budget_exhausted]`.
    #[serde(default)]
    #[schemars(required, length(min = 1))]
    pub block_when: Vec<BlockWhen>,
    /// An SLO whose newest result is older than this (or that has no data,
    /// or too little: `insufficient_data`) is stale. At least `1s`, and
    /// longer than the interval of every probe the gate's SLOs read.
    #[serde(with = "humantime_serde", default = "default_stale_after")]
    #[schemars(with = "HumanDuration")]
    pub stale_after: Duration,
    /// What a stale SLO does: `fail` blocks the gate, `pass` ignores it.
    #[serde(default)]
    pub on_stale: OnStale,
    /// Answer this gate's decision (`GET`/`POST /api/v1/gates/ID`) without
    /// a token, for webhook callers that can't send headers (Flagger). Only
    /// this gate: the rest of the API keeps its tokens. The decision shows
    /// SLO ids, their numbers and the reasons; keep it `false` if those are
    /// not for everyone who can reach the coordinator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// The team or person who owns the gate (shown in its decision and the
    /// runbook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// An http(s) link to what to do when the gate blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// Free string labels, as for SLOs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub source: Option<SourceLoc>,
}

fn default_stale_after() -> Duration {
    Duration::from_secs(300)
}

/// One gate condition: a bare name (`page_alert`) or a one-key mapping
/// with its parameter (`{ budget_below: 0.2 }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Remaining error budget below this ratio in [0, 1] (0.2 = 20 % left).
    BudgetBelow(#[schemars(range(min = 0, max = 1))] f64),
    /// An escalation result within this long (above 0, e.g. `30m`).
    EscalationWithin(
        #[serde(with = "humantime_serde")]
        #[schemars(with = "HumanDuration")]
        Duration,
    ),
    /// The SLI over the last `window` below `value`.
    SliBelow(SliBelow),
}

/// `sli_below`: the SLI over a recent window below a ratio.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SliBelow {
    /// Whole minutes between `1m` and `3d` (SLIs come from per-minute
    /// aggregates; use `budget_below` for longer spans).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub window: Duration,
    /// A ratio in (0, 1], e.g. `0.99` for 99 %.
    #[schemars(range(min = 0, max = 1))]
    pub value: f64,
}

/// What a gate does with a stale SLO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    /// Block the gate (stale data is no evidence of health).
    #[default]
    Fail,
    /// Ignore the stale SLO.
    Pass,
}
