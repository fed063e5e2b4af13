//! Where a probe of each kind goes, derived from its spec alone: the
//! issuer's discovery document, the public AWS endpoint of a service in a
//! region, the URL a permission engine is asked at, the environment variable
//! a secret reference reads, a one-line target for people and what a check
//! must answer. The agent makes its requests from these and `authpulse docs`
//! describes them, so the runbook says what the agent really does.
use url::Url;

use super::{
    DnsProtocol, IamDecision, KindSpec, OidcDiscoverySpec, PermissionEngine, PermissionSpec,
};

/// `<issuer>/.well-known/openid-configuration` (OpenID Connect Discovery 1.0
/// §4; one slash whatever the issuer ends with).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

impl OidcDiscoverySpec {
    /// The metadata document this probe fetches: `discovery_url` if given,
    /// else the issuer's well-known document.
    pub fn document_url(&self) -> String {
        self.discovery_url
            .clone()
            .unwrap_or_else(|| discovery_url(&self.issuer))
    }
}

/// The environment variable a `secret: NAME` reference is read from first
/// (contract): `AUTHPULSE_SECRET_` + the name upper-cased, `-` and `.` as `_`.
pub fn secret_env_name(name: &str) -> String {
    format!(
        "AUTHPULSE_SECRET_{}",
        name.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

/// The DNS suffix of the AWS partition `region` belongs to.
fn aws_dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// `custom` if given, else the public endpoint of `service` in `region` (IAM
/// is global: one endpoint per partition). The error names the bad URL.
pub fn aws_endpoint(custom: Option<&str>, service: &str, region: &str) -> Result<Url, String> {
    let raw = match custom {
        Some(c) => c.to_string(),
        None => match service {
            "iam" if region.starts_with("cn-") => "https://iam.cn-north-1.amazonaws.com.cn".into(),
            "iam" if region.starts_with("us-gov-") => "https://iam.us-gov.amazonaws.com".into(),
            "iam" => "https://iam.amazonaws.com".into(),
            _ => format!("https://{service}.{region}.{}", aws_dns_suffix(region)),
        },
    };
    Url::parse(&raw).map_err(|e| format!("endpoint `{raw}`: {e}"))
}

/// The region a request to `service` is signed for: IAM is global and signed
/// for its partition's home region; everything else for `region`.
pub fn aws_signing_region(service: &str, region: &str) -> String {
    match service {
        "iam" if region.starts_with("cn-") => "cn-north-1".into(),
        "iam" if region.starts_with("us-gov-") => "us-gov-west-1".into(),
        "iam" => "us-east-1".into(),
        _ => region.to_string(),
    }
}

/// `<base>/<suffix>` without doubled slashes.
fn join(base: &str, suffix: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        suffix.trim_start_matches('/')
    )
}

impl PermissionSpec {
    /// The URL each engine's documented check API is asked at; `None` for
    /// OpenFGA without a `store_id` (the check cannot be built).
    pub fn check_url(&self) -> Option<String> {
        match self.engine {
            // `app.authz.allow` and `app/authz/allow` name the same document.
            PermissionEngine::Opa => Some(match &self.path {
                Some(path) => join(
                    &self.url,
                    &format!("v1/data/{}", path.trim_matches('/').replace('.', "/")),
                ),
                None => self.url.clone(),
            }),
            PermissionEngine::Openfga => self
                .store_id
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|store| join(&self.url, &format!("stores/{store}/check"))),
            PermissionEngine::Spicedb => Some(join(&self.url, "v1/permissions/check")),
            PermissionEngine::Generic => Some(self.url.clone()),
        }
    }

    /// The HTTP method of the check: engines fix it at POST.
    pub fn check_method(&self) -> String {
        match self.engine {
            PermissionEngine::Generic => self.method.to_ascii_uppercase(),
            _ => "POST".to_string(),
        }
    }
}

/// A URL for people: a password in it shows as `hidden`.
pub fn display_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("hidden"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

impl KindSpec {
    /// What a permission check must answer, for people (`authpulse docs`);
    /// `None` for kinds that check no decision. An allow where deny is
    /// expected is an escalation and pages at once.
    pub fn expectation(&self) -> Option<String> {
        match self {
            KindSpec::Permission(s) => Some(match s.expect.name() {
                "deny" => "answer `deny` (an allow is an escalation: pages at once)".to_string(),
                other => format!("answer `{other}`"),
            }),
            KindSpec::AwsIamPermission(s) => Some(match s.expect {
                IamDecision::Deny => format!(
                    "`{}` denied (allowed is an escalation: pages at once)",
                    s.action
                ),
                IamDecision::Allow => format!("`{}` allowed", s.action),
            }),
            _ => None,
        }
    }

    /// The endpoint (or host) a probe of this kind talks to first, in one
    /// line for people (`authpulse docs`), derived as the agent derives it;
    /// URL passwords hidden.
    pub fn target(&self) -> String {
        let by_discovery = |issuer: &Option<String>, fields: &[&str]| match issuer {
            Some(i) => format!("{} → {}", discovery_url(i), fields.join(", ")),
            None => "—".to_string(),
        };
        // An explicit endpoint, else the issuer's discovery document.
        let endpoint = |explicit: &Option<String>, issuer: &Option<String>, field: &str| {
            explicit
                .as_deref()
                .map(display_url)
                .unwrap_or_else(|| by_discovery(issuer, &[field]))
        };
        let aws = |custom: Option<&str>, service: &str, region: &str| match aws_endpoint(
            custom, service, region,
        ) {
            Ok(url) => display_url(url.as_str().trim_end_matches('/')),
            Err(_) => custom.map(display_url).unwrap_or_default(),
        };
        match self {
            KindSpec::Http(s) => {
                format!("{} {}", s.method.to_ascii_uppercase(), display_url(&s.url))
            }
            KindSpec::Tcp(s) => format!("tcp {}", s.address),
            KindSpec::Tls(s) => match &s.server_name {
                Some(name) => format!("tls {} (server name {name})", s.address),
                None => format!("tls {}", s.address),
            },
            KindSpec::Dns(s) => {
                let via = match (&s.server, s.protocol) {
                    (Some(server), DnsProtocol::Tcp) => format!(" @ {server} (tcp)"),
                    (Some(server), _) => format!(" @ {server}"),
                    (None, _) => " (system resolver)".to_string(),
                };
                format!("dns {} {}{via}", s.record_type.name(), s.name)
            }
            KindSpec::OidcDiscovery(s) => display_url(&s.document_url()),
            KindSpec::ClientCredentials(s) => {
                endpoint(&s.token_endpoint, &s.issuer, "token_endpoint")
            }
            KindSpec::Password(s) => endpoint(&s.token_endpoint, &s.issuer, "token_endpoint"),
            KindSpec::Refresh(s) => endpoint(&s.token_endpoint, &s.issuer, "token_endpoint"),
            KindSpec::AuthorizationCode(s) => {
                match (&s.authorization_endpoint, &s.token_endpoint) {
                    (Some(a), Some(t)) => format!("{} then {}", display_url(a), display_url(t)),
                    _ => by_discovery(&s.issuer, &["authorization_endpoint", "token_endpoint"]),
                }
            }
            KindSpec::Introspect(s) => endpoint(
                &s.introspection_endpoint,
                &s.issuer,
                "introspection_endpoint",
            ),
            KindSpec::Userinfo(s) => endpoint(&s.userinfo_endpoint, &s.issuer, "userinfo_endpoint"),
            KindSpec::Revoke(s) => {
                endpoint(&s.revocation_endpoint, &s.issuer, "revocation_endpoint")
            }
            KindSpec::JwtValidate(s) => endpoint(&s.jwks_uri, &s.issuer, "jwks_uri"),
            KindSpec::Ldap(s) if s.starttls => format!("{} (StartTLS)", display_url(&s.url)),
            KindSpec::Ldap(s) => display_url(&s.url),
            KindSpec::AwsSts(s) => aws(s.endpoint.as_deref(), "sts", &s.region),
            KindSpec::AwsCognito(s) => match s.region() {
                Some(region) => aws(s.endpoint.as_deref(), "cognito-idp", &region),
                None => s.endpoint.as_deref().map(display_url).unwrap_or_default(),
            },
            KindSpec::AwsIamPermission(s) => match s.service_and_operation() {
                Some((service, operation)) => format!(
                    "{} ({service}:{operation})",
                    aws(s.endpoint.as_deref(), &service, &s.region)
                ),
                None => s.endpoint.as_deref().map(display_url).unwrap_or_default(),
            },
            KindSpec::Scim(s) => format!("{}/Users", display_url(s.base_url.trim_end_matches('/'))),
            KindSpec::Permission(s) => {
                let url = s
                    .check_url()
                    .unwrap_or_else(|| join(&s.url, "stores/?/check"));
                format!("{} {}", s.check_method(), display_url(&url))
            }
            KindSpec::SamlLogin(s) => {
                let idp = s
                    .idp_initiated_url
                    .as_deref()
                    .or(s.idp_sso_url.as_deref())
                    .or(s.idp_metadata_url.as_deref())
                    .map(display_url)
                    .or_else(|| {
                        s.idp_metadata_file
                            .as_ref()
                            .map(|f| f.display().to_string())
                    })
                    .unwrap_or_default();
                format!("{idp} (SP {})", s.sp_entity_id)
            }
            KindSpec::SamlMetadata(s) => display_url(&s.url),
            KindSpec::Journey(j) => {
                let names: Vec<&str> = j.steps.iter().map(|s| s.name.as_str()).collect();
                format!("{} steps: {}", j.steps.len(), names.join(" → "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_have_one_slash() {
        for issuer in ["https://idp.example", "https://idp.example/"] {
            assert_eq!(
                discovery_url(issuer),
                "https://idp.example/.well-known/openid-configuration"
            );
        }
    }

    #[test]
    fn aws_endpoints_follow_the_partition() {
        let url = |service, region| {
            aws_endpoint(None, service, region)
                .expect("url")
                .to_string()
        };
        assert_eq!(
            url("sts", "eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            url("sts", "cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(url("iam", "eu-west-1"), "https://iam.amazonaws.com/");
        assert_eq!(
            url("iam", "us-gov-east-1"),
            "https://iam.us-gov.amazonaws.com/"
        );
        assert_eq!(aws_signing_region("iam", "cn-northwest-1"), "cn-north-1");
        assert_eq!(aws_signing_region("sts", "eu-west-1"), "eu-west-1");
        let e = aws_endpoint(Some("not a url"), "sts", "eu-west-1").expect_err("bad");
        assert!(e.contains("not a url"), "{e}");
    }

    #[test]
    fn secret_env_names_follow_the_contract() {
        assert_eq!(
            secret_env_name("corp-web.secret"),
            "AUTHPULSE_SECRET_CORP_WEB_SECRET"
        );
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            display_url("ldaps://probe:s3cret@ldap.example:636/"),
            "ldaps://probe:hidden@ldap.example:636/"
        );
        assert_eq!(display_url("not a url"), "not a url");
    }
}
