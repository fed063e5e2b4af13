//! The Probes section: the table of every probe and one section per probe
//! with the endpoint it talks to (derived as the agent derives it, URL
//! passwords hidden), what a check must answer, a journey's steps and what
//! depends on it (SLOs, gates).
use authpulse_proto::catalog::{Catalog, KindSpec, PermissionEngine, ProbeDef};

use super::secrets::credentials;
use super::{
    Doc, Usage, cell, code, duration, gate_link, list_or_none, probe_link, slo_link, text,
};

pub(super) fn probes(doc: &mut Doc, catalog: &Catalog, usage: &Usage) {
    doc.line("## Probes");
    doc.blank();
    if catalog.probes.is_empty() {
        doc.line("No probes.");
        doc.blank();
        return;
    }
    doc.table_head(&[
        "probe", "kind", "target", "regions", "interval", "timeout", "SLOs", "gates",
    ]);
    for p in &catalog.probes {
        doc.row(&[
            probe_link(&p.id),
            p.kind().to_string(),
            cell(&target(&p.spec)),
            regions(p),
            duration(p.interval),
            duration(p.timeout),
            list_or_none(usage.slos(&p.id).iter().map(|s| slo_link(s)).collect()),
            list_or_none(
                usage
                    .gates_of_probe(&p.id)
                    .iter()
                    .map(|g| gate_link(g))
                    .collect(),
            ),
        ]);
    }
    doc.blank();
    for p in &catalog.probes {
        probe_section(doc, p, usage);
    }
}

fn probe_section(doc: &mut Doc, p: &ProbeDef, usage: &Usage) {
    doc.line(format!("### Probe {}", code(&p.id)));
    doc.blank();
    if let Some(d) = &p.description {
        doc.line(text(d));
        doc.blank();
    }
    doc.table_head(&["field", "value"]);
    doc.row(&["kind".into(), code(p.kind())]);
    doc.row(&["target".into(), cell(&target(&p.spec))]);
    if let Some(check) = expectation(&p.spec) {
        doc.row(&["expects".into(), check]);
    }
    doc.row(&["regions".into(), regions(p)]);
    doc.row(&["interval".into(), duration(p.interval)]);
    doc.row(&["timeout".into(), duration(p.timeout)]);
    if !p.labels.is_empty() {
        let labels: Vec<String> = p
            .labels
            .iter()
            .map(|(k, v)| code(&format!("{k}={v}")))
            .collect();
        doc.row(&["labels".into(), labels.join(", ")]);
    }
    let creds = credentials(&p.spec);
    if !creds.is_empty() {
        doc.row(&["credentials".into(), creds.join("<br>")]);
    }
    doc.row(&[
        "SLOs".into(),
        list_or_none(usage.slos(&p.id).iter().map(|s| slo_link(s)).collect()),
    ]);
    doc.row(&[
        "gates".into(),
        list_or_none(
            usage
                .gates_of_probe(&p.id)
                .iter()
                .map(|g| gate_link(g))
                .collect(),
        ),
    ]);
    if let Some(src) = &p.source {
        doc.row(&["defined at".into(), code(&src.to_string())]);
    }
    doc.blank();
    if let KindSpec::Journey(j) = &p.spec {
        doc.line(
            "Steps, in order, in one HTTP session; after a failed step only `always` steps run:",
        );
        doc.blank();
        doc.table_head(&["#", "step", "kind", "target", "runs", "must"]);
        for (i, step) in j.steps.iter().enumerate() {
            let must = match (&step.expect_failure, expectation(&step.spec)) {
                (Some(class), _) => format!("fail with `{class}`"),
                (None, Some(e)) => e,
                (None, None) => "succeed".to_string(),
            };
            doc.row(&[
                (i + 1).to_string(),
                code(&step.name),
                step.spec.kind().to_string(),
                cell(&target(&step.spec)),
                if step.always {
                    "always".into()
                } else {
                    "if all before succeeded".into()
                },
                must,
            ]);
        }
        doc.blank();
    }
}

fn regions(p: &ProbeDef) -> String {
    match &p.regions {
        None => "all".to_string(),
        Some(rs) => rs.iter().map(|r| code(r)).collect::<Vec<_>>().join(", "),
    }
}

/// What a permission check must answer (an allow where deny is expected is
/// an escalation and pages at once).
fn expectation(spec: &KindSpec) -> Option<String> {
    match spec {
        KindSpec::Permission(s) => Some(match s.expect.name() {
            "deny" => "answer `deny` (an allow is an escalation: pages at once)".to_string(),
            other => format!("answer `{other}`"),
        }),
        KindSpec::AwsIamPermission(s) => Some(match s.expect {
            authpulse_proto::catalog::IamDecision::Deny => {
                format!(
                    "`{}` denied (allowed is an escalation: pages at once)",
                    s.action
                )
            }
            authpulse_proto::catalog::IamDecision::Allow => format!("`{}` allowed", s.action),
        }),
        _ => None,
    }
}

/// The endpoint (or host) a probe of this kind talks to first, derived the
/// way the agent derives it.
fn target(spec: &KindSpec) -> String {
    use authpulse_agent::oauth::discovery_url;
    let by_discovery = |issuer: &Option<String>, fields: &[&str]| match issuer {
        Some(i) => format!("{} → {}", discovery_url(i), fields.join(", ")),
        None => "—".to_string(),
    };
    // An explicit endpoint, else the issuer's discovery document.
    let endpoint = |explicit: &Option<String>, issuer: &Option<String>, field: &str| {
        explicit
            .as_deref()
            .map(url_text)
            .unwrap_or_else(|| by_discovery(issuer, &[field]))
    };
    match spec {
        KindSpec::Http(s) => format!("{} {}", s.method.to_ascii_uppercase(), url_text(&s.url)),
        KindSpec::Tcp(s) => format!("tcp {}", s.address),
        KindSpec::Tls(s) => match &s.server_name {
            Some(name) => format!("tls {} (server name {name})", s.address),
            None => format!("tls {}", s.address),
        },
        KindSpec::Dns(s) => {
            let via = match (&s.server, s.protocol) {
                (Some(server), authpulse_proto::catalog::DnsProtocol::Tcp) => {
                    format!(" @ {server} (tcp)")
                }
                (Some(server), _) => format!(" @ {server}"),
                (None, _) => " (system resolver)".to_string(),
            };
            format!("dns {} {}{via}", s.record_type.name(), s.name)
        }
        KindSpec::OidcDiscovery(s) => s
            .discovery_url
            .as_deref()
            .map(url_text)
            .unwrap_or_else(|| discovery_url(&s.issuer)),
        KindSpec::ClientCredentials(s) => endpoint(&s.token_endpoint, &s.issuer, "token_endpoint"),
        KindSpec::Password(s) => endpoint(&s.token_endpoint, &s.issuer, "token_endpoint"),
        KindSpec::Refresh(s) => endpoint(&s.token_endpoint, &s.issuer, "token_endpoint"),
        KindSpec::AuthorizationCode(s) => match (&s.authorization_endpoint, &s.token_endpoint) {
            (Some(a), Some(t)) => format!("{} then {}", url_text(a), url_text(t)),
            _ => by_discovery(&s.issuer, &["authorization_endpoint", "token_endpoint"]),
        },
        KindSpec::Introspect(s) => endpoint(
            &s.introspection_endpoint,
            &s.issuer,
            "introspection_endpoint",
        ),
        KindSpec::Userinfo(s) => endpoint(&s.userinfo_endpoint, &s.issuer, "userinfo_endpoint"),
        KindSpec::Revoke(s) => endpoint(&s.revocation_endpoint, &s.issuer, "revocation_endpoint"),
        KindSpec::JwtValidate(s) => endpoint(&s.jwks_uri, &s.issuer, "jwks_uri"),
        KindSpec::Ldap(s) if s.starttls => format!("{} (StartTLS)", url_text(&s.url)),
        KindSpec::Ldap(s) => url_text(&s.url),
        KindSpec::AwsSts(s) => aws_endpoint(s.endpoint.as_deref(), "sts", &s.region),
        KindSpec::AwsCognito(s) => match s.region() {
            Some(region) => aws_endpoint(s.endpoint.as_deref(), "cognito-idp", &region),
            None => s.endpoint.as_deref().map(url_text).unwrap_or_default(),
        },
        KindSpec::AwsIamPermission(s) => match s.service_and_operation() {
            Some((service, operation)) => format!(
                "{} ({service}:{operation})",
                aws_endpoint(s.endpoint.as_deref(), &service, &s.region)
            ),
            None => s.endpoint.as_deref().map(url_text).unwrap_or_default(),
        },
        KindSpec::Scim(s) => format!("{}/Users", url_text(s.base_url.trim_end_matches('/'))),
        KindSpec::Permission(s) => permission_target(s),
        KindSpec::Journey(j) => {
            let names: Vec<&str> = j.steps.iter().map(|s| s.name.as_str()).collect();
            format!("{} steps: {}", j.steps.len(), names.join(" → "))
        }
    }
}

fn aws_endpoint(custom: Option<&str>, service: &str, region: &str) -> String {
    match authpulse_agent::aws::endpoint(custom, service, region) {
        Ok(url) => url_text(url.as_str().trim_end_matches('/')),
        Err(_) => custom.map(url_text).unwrap_or_default(),
    }
}

/// The URL each engine is asked at (as `agent/src/probes/permission.rs`
/// builds it).
fn permission_target(s: &authpulse_proto::catalog::PermissionSpec) -> String {
    let join = |suffix: &str| {
        format!(
            "POST {}/{}",
            url_text(s.url.trim_end_matches('/')),
            suffix.trim_start_matches('/')
        )
    };
    match s.engine {
        PermissionEngine::Opa => match &s.path {
            Some(path) => join(&format!(
                "v1/data/{}",
                path.trim_matches('/').replace('.', "/")
            )),
            None => format!("POST {}", url_text(&s.url)),
        },
        PermissionEngine::Openfga => join(&format!(
            "stores/{}/check",
            s.store_id.as_deref().unwrap_or("?")
        )),
        PermissionEngine::Spicedb => join("v1/permissions/check"),
        PermissionEngine::Generic => {
            format!("{} {}", s.method.to_ascii_uppercase(), url_text(&s.url))
        }
    }
}

/// A URL as shown: a password in its userinfo is replaced (a URL is not a
/// place for one, but the runbook must not repeat it if it is there).
fn url_text(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("hidden"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}
