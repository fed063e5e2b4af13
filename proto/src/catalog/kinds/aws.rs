//! AWS identity kinds: `aws_sts` (GetCallerIdentity, optionally after
//! AssumeRole), `aws_cognito` (InitiateAuth with a user's password, then the
//! tokens checked against the pool's JWKS) and `aws_iam_permission` (one
//! real SigV4-signed call that must be allowed or denied). Every endpoint is
//! overridable (a VPC endpoint, a FIPS endpoint, a local emulator).
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::{TlsSpec, Value};
use super::{Issues, Validate, check_regex, check_tls, check_url, is_templated, key};

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_session_name() -> String {
    "authpulse-probe".to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsStsSpec {
    #[serde(default = "default_region")]
    pub region: String,
    /// Defaults to `https://sts.<region>.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub access_key_id: Value,
    pub secret_access_key: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Value>,
    /// When set, AssumeRole first and call GetCallerIdentity with the
    /// temporary credentials (which are published for later steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default = "default_session_name")]
    pub role_session_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Value>,
    /// Lifetime of the temporary credentials (AWS accepts 15m..12h).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    /// The 12-digit account GetCallerIdentity must report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_account: Option<String>,
    /// A regular expression the caller ARN must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_arn: Option<String>,
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for AwsStsSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        check_region(&mut out, &self.region);
        if let Some(e) = &self.endpoint {
            check_url(&mut out, vec![key("endpoint")], e);
        }
        if let Some(arn) = &self.role_arn
            && !is_templated(arn)
            && !arn.starts_with("arn:")
        {
            out.push((
                vec![key("role_arn")],
                format!("`{arn}` is not an ARN (arn:aws:iam::<account>:role/<name>)"),
            ));
        }
        let n = self.role_session_name.len();
        if !(2..=64).contains(&n) {
            out.push((
                vec![key("role_session_name")],
                "must be 2 to 64 characters".into(),
            ));
        }
        if let Some(d) = self.duration
            && !(900..=43200).contains(&d.as_secs())
        {
            out.push((
                vec![key("duration")],
                "AssumeRole accepts 15m to 12h".into(),
            ));
        }
        if let Some(re) = &self.expect_arn
            && !is_templated(re)
        {
            check_regex(&mut out, vec![key("expect_arn")], re);
        }
        check_tls(&mut out, &self.tls);
        out
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCognitoSpec {
    /// Defaults to the region prefix of `user_pool_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `<region>_<id>`.
    pub user_pool_id: String,
    pub client_id: String,
    /// For app clients with a secret (sent as SECRET_HASH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    pub username: String,
    pub password: Value,
    /// Defaults to `https://cognito-idp.<region>.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The tokens' expected `iss`. Defaults to
    /// `https://cognito-idp.<region>.amazonaws.com/<user_pool_id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Defaults to `<endpoint>/<user_pool_id>/.well-known/jwks.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Check the tokens' signatures and claims (on by default).
    #[serde(default = "default_true")]
    pub validate_tokens: bool,
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_true() -> bool {
    true
}

impl AwsCognitoSpec {
    /// The explicit region, else the prefix of the pool id (`eu-west-1_AbC`).
    pub fn region(&self) -> Option<String> {
        self.region.clone().or_else(|| {
            self.user_pool_id
                .split_once('_')
                .map(|(r, _)| r.to_string())
                .filter(|r| !r.is_empty())
        })
    }
}

impl Validate for AwsCognitoSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        match self.region() {
            Some(r) => check_region(&mut out, &r),
            None if !is_templated(&self.user_pool_id) => out.push((
                vec![key("region")],
                format!(
                    "no region given and none in user_pool_id `{}` (expected <region>_<id>)",
                    self.user_pool_id
                ),
            )),
            None => {}
        }
        for (name, value) in [
            ("endpoint", &self.endpoint),
            ("issuer", &self.issuer),
            ("jwks_url", &self.jwks_url),
        ] {
            if let Some(v) = value {
                check_url(&mut out, vec![key(name)], v);
            }
        }
        check_tls(&mut out, &self.tls);
        out
    }
}

/// The outcome an `aws_iam_permission` call must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IamDecision {
    Allow,
    Deny,
}

/// How the call is encoded. Inferred from the service when absent: `rest`
/// for `s3`, `query` otherwise; `json` needs `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwsProtocol {
    /// `POST` form `Action=…&Version=…` (IAM, STS, EC2, SNS, SQS, RDS…).
    Query,
    /// `POST` JSON with `X-Amz-Target` (DynamoDB, KMS, Secrets Manager…).
    Json,
    /// A plain `method` + `path` (S3).
    Rest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIamPermissionSpec {
    #[serde(default = "default_region")]
    pub region: String,
    /// Defaults to the service's public endpoint in `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub access_key_id: Value,
    pub secret_access_key: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Value>,
    /// The API call, `service:Operation` (`iam:ListUsers`,
    /// `sts:GetCallerIdentity`, `s3:ListBuckets`), or just `Operation`
    /// with `service`.
    pub action: String,
    /// Signing name and endpoint prefix; taken from `action` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub expect: IamDecision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<AwsProtocol>,
    /// Query protocol API version; known for common services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// JSON protocol `X-Amz-Target`, e.g. `DynamoDB_20120810.ListTables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// JSON protocol content type version, `1.0` or `1.1`.
    #[serde(default = "default_json_version")]
    pub json_version: String,
    /// REST protocol method and path (S3 ListBuckets: `GET /`).
    #[serde(default = "default_get")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// Request parameters: form fields (query), the JSON body (json) or
    /// the query string (rest).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Error codes that mean the call passed authorization and failed
    /// later (e.g. `NoSuchEntity` for a probe user that doesn't exist):
    /// they count as allowed. Any other error code fails the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_errors: Vec<String>,
    #[serde(default)]
    pub tls: TlsSpec,
}

fn default_json_version() -> String {
    "1.1".to_string()
}
fn default_get() -> String {
    "GET".to_string()
}
fn default_path() -> String {
    "/".to_string()
}

impl AwsIamPermissionSpec {
    /// `(service, operation)` from `action` and `service`.
    pub fn service_and_operation(&self) -> Option<(String, String)> {
        match (self.action.split_once(':'), &self.service) {
            (Some((svc, op)), _) if !svc.is_empty() && !op.is_empty() => {
                Some((svc.to_ascii_lowercase(), op.to_string()))
            }
            (None, Some(svc)) if !svc.is_empty() && !self.action.is_empty() => {
                Some((svc.to_ascii_lowercase(), self.action.clone()))
            }
            _ => None,
        }
    }

    pub fn effective_protocol(&self) -> AwsProtocol {
        match (self.protocol, self.service_and_operation()) {
            (Some(p), _) => p,
            (None, Some((svc, _))) if svc == "s3" => AwsProtocol::Rest,
            (None, _) if self.target.is_some() => AwsProtocol::Json,
            _ => AwsProtocol::Query,
        }
    }

    /// The Query API version: explicit, or the current one of well-known services.
    pub fn effective_api_version(&self) -> Option<String> {
        if let Some(v) = &self.api_version {
            return Some(v.clone());
        }
        let (svc, _) = self.service_and_operation()?;
        let v = match svc.as_str() {
            "iam" => "2010-05-08",
            "sts" => "2011-06-15",
            "ec2" => "2016-11-15",
            "sns" => "2010-03-31",
            "sqs" => "2012-11-05",
            "rds" => "2014-10-31",
            "cloudformation" => "2010-05-15",
            "autoscaling" => "2011-01-01",
            "elasticloadbalancing" => "2015-12-01",
            "ses" | "email" => "2010-12-01",
            _ => return None,
        };
        Some(v.to_string())
    }
}

impl Validate for AwsIamPermissionSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        check_region(&mut out, &self.region);
        if let Some(e) = &self.endpoint {
            check_url(&mut out, vec![key("endpoint")], e);
        }
        if self.service_and_operation().is_none() {
            out.push((
                vec![key("action")],
                format!(
                    "`{}`: write service:Operation (e.g. iam:ListUsers), or set `service`",
                    self.action
                ),
            ));
        }
        match self.effective_protocol() {
            AwsProtocol::Query if self.effective_api_version().is_none() => out.push((
                vec![key("api_version")],
                "the Query API version of this service is not known: set api_version".into(),
            )),
            AwsProtocol::Json if self.target.is_none() => out.push((
                vec![key("target")],
                "the JSON protocol needs the X-Amz-Target, e.g. DynamoDB_20120810.ListTables"
                    .into(),
            )),
            AwsProtocol::Json if !matches!(self.json_version.as_str(), "1.0" | "1.1") => {
                out.push((
                    vec![key("json_version")],
                    "must be \"1.0\" or \"1.1\"".into(),
                ))
            }
            AwsProtocol::Rest if !self.path.starts_with('/') => {
                out.push((vec![key("path")], "must start with /".into()))
            }
            _ => {}
        }
        check_tls(&mut out, &self.tls);
        out
    }
}

fn check_region(out: &mut Issues, region: &str) {
    if is_templated(region) {
        return;
    }
    let ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        out.push((
            vec![key("region")],
            format!("`{region}` is not an AWS region name (e.g. eu-west-1)"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{KindSpec, load_str};

    fn load(kind: &str, body: &str) -> Result<KindSpec, String> {
        load_str(
            "t.yaml",
            &format!("probes:\n  - id: a\n    kind: {kind}\n{body}"),
        )
        .map(|c| c.probes[0].spec.clone())
        .map_err(|e| e.to_string())
    }

    const CREDS: &str = "    access_key_id: AKIA0000\n    secret_access_key: { secret: k }\n";

    #[test]
    fn iam_actions_and_protocols() {
        let Ok(KindSpec::AwsIamPermission(s)) = load(
            "aws_iam_permission",
            &format!("{CREDS}    action: iam:ListUsers\n    expect: deny\n"),
        ) else {
            panic!("valid")
        };
        assert_eq!(
            s.service_and_operation(),
            Some(("iam".into(), "ListUsers".into()))
        );
        assert_eq!(s.effective_protocol(), AwsProtocol::Query);
        assert_eq!(s.effective_api_version().as_deref(), Some("2010-05-08"));
        assert_eq!(s.region, "us-east-1");

        let Ok(KindSpec::AwsIamPermission(s)) = load(
            "aws_iam_permission",
            &format!("{CREDS}    action: s3:ListBuckets\n    expect: allow\n"),
        ) else {
            panic!("valid")
        };
        assert_eq!(s.effective_protocol(), AwsProtocol::Rest);

        let e = load(
            "aws_iam_permission",
            &format!("{CREDS}    action: ListUsers\n    expect: allow\n"),
        )
        .expect_err("no service");
        assert!(e.contains("write service:Operation"), "{e}");
        let e = load(
            "aws_iam_permission",
            &format!("{CREDS}    action: lambda:ListFunctions\n    expect: allow\n"),
        )
        .expect_err("unknown version");
        assert!(e.contains("set api_version"), "{e}");
        let e = load(
            "aws_iam_permission",
            &format!(
                "{CREDS}    action: dynamodb:ListTables\n    expect: allow\n    protocol: json\n"
            ),
        )
        .expect_err("no target");
        assert!(e.contains("X-Amz-Target"), "{e}");
        let e = load(
            "aws_iam_permission",
            &format!("{CREDS}    action: iam:ListUsers\n    expect: maybe\n"),
        )
        .expect_err("bad expect");
        assert!(e.contains("maybe"), "{e}");
    }

    #[test]
    fn sts_and_cognito_checks() {
        let e = load(
            "aws_sts",
            &format!("{CREDS}    role_arn: probe-role\n    duration: 5m\n"),
        )
        .expect_err("invalid");
        assert!(
            e.contains("is not an ARN") && e.contains("15m to 12h"),
            "{e}"
        );
        let e = load("aws_sts", &format!("{CREDS}    region: EU_WEST\n")).expect_err("region");
        assert!(e.contains("not an AWS region name"), "{e}");

        let Ok(KindSpec::AwsCognito(c)) = load(
            "aws_cognito",
            "    user_pool_id: eu-west-1_AbC\n    client_id: c\n    username: u\n    password: { secret: p }\n",
        ) else {
            panic!("valid")
        };
        assert_eq!(c.region().as_deref(), Some("eu-west-1"));
        assert!(c.validate_tokens);
        let e = load(
            "aws_cognito",
            "    user_pool_id: AbC\n    client_id: c\n    username: u\n    password: { secret: p }\n",
        )
        .expect_err("no region");
        assert!(e.contains("no region given"), "{e}");
    }
}
