//! AWS identity kinds: `aws_sts` (GetCallerIdentity, optionally after
//! AssumeRole), `aws_cognito` (InitiateAuth with a user's password, then the
//! tokens checked against the pool's JWKS) and `aws_iam_permission` (one
//! real SigV4-signed call that must be allowed or denied). Every endpoint is
//! overridable (a VPC endpoint, a FIPS endpoint, a local emulator).
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::schema::HumanDuration;
use super::super::{TlsSpec, Value};
use super::{Issues, Validate, check_regex, check_tls, check_url, is_templated, key};

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_session_name() -> String {
    "authpulse-probe".to_string()
}

/// `aws_sts`: proves a set of AWS credentials works. With `role_arn`, step
/// `assume_role` (sts:AssumeRole) first obtains temporary credentials and
/// publishes them for later steps; step `caller_identity`
/// (sts:GetCallerIdentity) then checks who AWS says the caller is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsStsSpec {
    /// Region of the STS endpoint and of the signature.
    #[serde(default = "default_region")]
    pub region: String,
    /// The STS endpoint (a VPC or FIPS endpoint, an emulator). Default:
    /// `https://sts.<region>.amazonaws.com` (`.amazonaws.com.cn` in `cn-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The access key id: `{ secret: NAME }`, or a template such as
    /// `"{{ steps.assume.access_key_id }}"` from an earlier `aws_sts` step.
    pub access_key_id: Value,
    /// The secret access key (secret or template).
    pub secret_access_key: Value,
    /// The session token of temporary credentials (secret or template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Value>,
    /// When set, AssumeRole first and call GetCallerIdentity with the
    /// temporary credentials (which are published for later steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The AssumeRole session name, 2 to 64 characters.
    #[serde(default = "default_session_name")]
    #[schemars(length(min = 2, max = 64))]
    pub role_session_name: String,
    /// The AssumeRole ExternalId (inline or secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Value>,
    /// Lifetime of the temporary credentials, `15m` to `12h`. Default: AWS's
    /// (1h).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<HumanDuration>")]
    pub duration: Option<Duration>,
    /// The 12-digit account GetCallerIdentity must report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_account: Option<String>,
    /// A regular expression the caller ARN must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_arn: Option<String>,
    /// TLS client settings.
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

/// `aws_cognito`: a user-pool login as an app does it. Step
/// `initiate_auth` (InitiateAuth with `USER_PASSWORD_AUTH`), then step
/// `validate`: both tokens against the pool's JWKS (signature, `iss`,
/// `exp`/`nbf` with 60 s skew, `aud`/`client_id`, `token_use`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsCognitoSpec {
    /// The pool's region. Default: the prefix of `user_pool_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The user pool, `<region>_<id>`.
    pub user_pool_id: String,
    /// The app client id (the client must allow `USER_PASSWORD_AUTH`).
    pub client_id: String,
    /// For app clients with a secret (sent as SECRET_HASH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    /// The synthetic user's name.
    pub username: String,
    /// The synthetic user's password (a secret).
    pub password: Value,
    /// The Cognito IdP API endpoint. Default:
    /// `https://cognito-idp.<region>.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The tokens' expected `iss` (set it for emulators). Default:
    /// `https://cognito-idp.<region>.amazonaws.com/<user_pool_id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where the pool's keys are. Default:
    /// `<endpoint>/<user_pool_id>/.well-known/jwks.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Check the tokens' signatures and claims; `false` skips step `validate`.
    #[serde(default = "default_true")]
    pub validate_tokens: bool,
    /// TLS client settings.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IamDecision {
    /// A 2xx, or an error code in `allowed_errors`; denied is
    /// `permission_mismatch`.
    Allow,
    /// AccessDenied and the like; allowed is `escalation`.
    Deny,
}

/// How the call is encoded. Default: `rest` for `s3`, `json` when `target`
/// is set, else `query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AwsProtocol {
    /// `POST` form `Action=…&Version=…` (IAM, STS, EC2, SNS, SQS, RDS…).
    Query,
    /// `POST` JSON with `X-Amz-Target` (DynamoDB, KMS, Secrets Manager…).
    Json,
    /// A plain `method` + `path` (S3).
    Rest,
}

/// `aws_iam_permission`: one real, SigV4-signed AWS call whose outcome
/// must be `expect: allow` or `expect: deny`. Step `call`. Pick calls that
/// are harmless when allowed: reads, or writes that can't succeed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsIamPermissionSpec {
    /// Region of the endpoint and of the signature (IAM is global, signed
    /// for `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// The service endpoint. Default: the service's public endpoint in
    /// `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The access key id: `{ secret: NAME }`, or a template such as
    /// `"{{ steps.assume.access_key_id }}"` from an earlier `aws_sts` step.
    pub access_key_id: Value,
    /// The secret access key (secret or template).
    pub secret_access_key: Value,
    /// The session token of temporary credentials (secret or template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Value>,
    /// The API call, `service:Operation` (`iam:ListUsers`,
    /// `sts:GetCallerIdentity`, `s3:ListBuckets`), or just `Operation`
    /// with `service`.
    pub action: String,
    /// Signing name and endpoint prefix; taken from `action` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The outcome the call must have.
    pub expect: IamDecision,
    /// How the call is encoded. Default: `rest` for `s3`, `json` when
    /// `target` is set, else `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<AwsProtocol>,
    /// Query protocol API version: known for iam, sts, ec2, sns, sqs, rds,
    /// cloudformation, autoscaling, elasticloadbalancing and ses; required
    /// for other Query services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// JSON protocol `X-Amz-Target`, e.g. `DynamoDB_20120810.ListTables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// JSON protocol content type version, `1.0` (DynamoDB) or `1.1`.
    #[serde(default = "default_json_version")]
    pub json_version: String,
    /// REST protocol method (S3 ListBuckets: `GET /`).
    #[serde(default = "default_get")]
    pub method: String,
    /// REST protocol path.
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
    /// TLS client settings.
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
