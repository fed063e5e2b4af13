//! What the AWS probes share: credentials from the catalog (plain, secret
//! or templated from an earlier AssumeRole step), endpoint resolution per
//! service and region (overridable for VPC/FIPS endpoints and emulators),
//! SigV4 signing with the aws-sigv4 crate onto our own timed requests, the
//! two wire encodings identity APIs use (Query: form in, XML out; JSON:
//! `X-Amz-Target`), and AWS error bodies (XML `<Code>` or JSON `__type`)
//! turned into our failure classes.
use std::time::SystemTime;

use authpulse_proto::catalog::{TlsSpec, Value};
use authpulse_proto::v1::FailureClass;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use url::Url;

use crate::http::{Request, Response};
use crate::probes::{Failure, RunContext, snippet};
use crate::secrets;

/// Static or temporary AWS credentials for one run.
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Credentials {
    /// Resolves the catalog fields; every part is registered for redaction
    /// (a templated key from an AssumeRole step is already).
    pub fn resolve(
        access_key_id: &Value,
        secret_access_key: &Value,
        session_token: Option<&Value>,
        ctx: &RunContext<'_>,
    ) -> Result<Credentials, Failure> {
        let get = |v: &Value, what: &str| {
            let s = secrets::resolve(v, ctx.secrets, &ctx.redactor)
                .map_err(|e| Failure::new(FailureClass::Config, e.to_string()))?;
            if s.trim().is_empty() {
                return Err(Failure::new(
                    FailureClass::Config,
                    format!("{what} is empty"),
                ));
            }
            Ok(s.trim().to_string())
        };
        let creds = Credentials {
            access_key_id: get(access_key_id, "access_key_id")?,
            secret_access_key: get(secret_access_key, "secret_access_key")?,
            session_token: session_token.map(|t| get(t, "session_token")).transpose()?,
        };
        ctx.redactor.remember(&creds.secret_access_key);
        if let Some(t) = &creds.session_token {
            ctx.redactor.remember(t);
        }
        Ok(creds)
    }
}

/// The region a request to `service` is signed for (see
/// [`authpulse_proto::catalog::aws_signing_region`]).
pub fn signing_region(service: &str, region: &str) -> String {
    authpulse_proto::catalog::aws_signing_region(service, region)
}

/// `custom` if given, else the public endpoint of `service` in `region`, as
/// the catalog reference derives it; a bad URL is a `config` failure.
pub fn endpoint(custom: Option<&str>, service: &str, region: &str) -> Result<Url, Failure> {
    authpulse_proto::catalog::aws_endpoint(custom, service, region)
        .map_err(|e| Failure::new(FailureClass::Config, e))
}

/// `host[:port]` of an endpoint, for details.
pub fn authority(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

/// Signs `req` in place (SigV4, headers): adds `x-amz-date`,
/// `authorization` and, with temporary credentials, `x-amz-security-token`.
pub fn sign(
    req: &mut Request<'_>,
    creds: &Credentials,
    service: &str,
    region: &str,
) -> Result<(), Failure> {
    let internal = |e: &dyn std::fmt::Display| {
        Failure::new(FailureClass::Internal, format!("SigV4 signing: {e}"))
    };
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "authpulse-catalog",
    )
    .into();
    let mut settings = SigningSettings::default();
    if service == "s3" {
        // S3 signs the path as sent and wants the payload hash header.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let region = signing_region(service, region);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| internal(&e))?
        .into();
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let body = req.body.as_deref().unwrap_or(&[]);
    let signable = SignableRequest::new(
        req.method.as_str(),
        req.url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| internal(&e))?;
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| internal(&e))?
        .into_parts();
    let mut add = HeaderMap::new();
    for (name, value) in instructions.headers() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| internal(&e))?;
        let mut value = HeaderValue::from_str(value).map_err(|e| internal(&e))?;
        if name == header::AUTHORIZATION || name.as_str() == "x-amz-security-token" {
            value.set_sensitive(true);
        }
        add.insert(name, value);
    }
    req.headers.extend(add);
    Ok(())
}

/// A Query-protocol call (IAM, STS, EC2…): a form POST with `Action` and
/// `Version`; answers are XML.
pub fn query_request<'a>(
    url: Url,
    action: &str,
    version: &str,
    params: &[(String, String)],
    tls: &'a TlsSpec,
) -> Request<'a> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", action);
    form.append_pair("Version", version);
    for (k, v) in params {
        form.append_pair(k, v);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    Request {
        method: Method::POST,
        url,
        headers,
        body: Some(Bytes::from(form.finish())),
        follow_redirects: false,
        tls,
    }
}

/// A JSON-protocol call (Cognito, DynamoDB, KMS…): POST with `X-Amz-Target`.
pub fn json_request<'a>(
    url: Url,
    target: &str,
    json_version: &str,
    body: &serde_json::Value,
    tls: &'a TlsSpec,
) -> Result<Request<'a>, Failure> {
    let mut headers = HeaderMap::new();
    let content_type = format!("application/x-amz-json-{json_version}");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .map_err(|_| Failure::new(FailureClass::Config, "invalid json_version"))?,
    );
    headers.insert(
        HeaderName::from_static("x-amz-target"),
        HeaderValue::from_str(target).map_err(|_| {
            Failure::new(FailureClass::Config, format!("invalid target `{target}`"))
        })?,
    );
    Ok(Request {
        method: Method::POST,
        url,
        headers,
        body: Some(Bytes::from(body.to_string())),
        follow_redirects: false,
        tls,
    })
}

/// What an AWS error means for a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The credentials themselves were refused (unknown key, bad
    /// signature, expired token, wrong password).
    AuthRejected,
    /// Valid credentials, but policy denies the action.
    AccessDenied,
    /// Rate limited.
    Throttled,
    /// The service failed (5xx).
    Server,
    Other,
}

/// An AWS error response, from either encoding.
#[derive(Clone, Debug)]
pub struct AwsError {
    pub status: StatusCode,
    /// `InvalidClientTokenId`, `AccessDenied`, `NotAuthorizedException`… or
    /// empty when the body carried none.
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl AwsError {
    pub fn parse(resp: &Response) -> AwsError {
        let body = String::from_utf8_lossy(&resp.body);
        let header = |name: &str| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut code = String::new();
        let mut message = String::new();
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(&resp.body) {
            let field = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| m.get(*n).and_then(|v| v.as_str()))
                    .unwrap_or_default()
                    .to_string()
            };
            code = field(&["__type", "code", "Code"]);
            message = field(&["message", "Message"]);
        } else if body.trim_start().starts_with('<') {
            code = xml_text(&body, "Code").unwrap_or_default();
            message = xml_text(&body, "Message").unwrap_or_default();
        }
        if code.is_empty()
            && let Some(t) = header("x-amzn-errortype")
        {
            code = t;
        }
        // `com.amazonaws.cognito#NotAuthorizedException`, `X:http://…`.
        let code = code
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        if message.is_empty() && code.is_empty() {
            message = snippet(&resp.body);
        }
        let request_id = header("x-amzn-requestid")
            .or_else(|| header("x-amz-request-id"))
            .or_else(|| xml_text(&body, "RequestId"));
        AwsError {
            status: resp.status,
            code,
            message,
            request_id,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self.code.as_str() {
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "InvalidAccessKeyId"
            | "UnrecognizedClientException"
            | "MissingAuthenticationToken"
            | "AuthFailure"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidToken"
            | "NotAuthorizedException"
            | "UserNotFoundException"
            | "UserNotConfirmedException"
            | "PasswordResetRequiredException" => ErrorKind::AuthRejected,
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "AuthorizationError"
            | "Forbidden" => ErrorKind::AccessDenied,
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "SlowDown" => ErrorKind::Throttled,
            _ if self.status == StatusCode::TOO_MANY_REQUESTS => ErrorKind::Throttled,
            _ if self.status.is_server_error() => ErrorKind::Server,
            _ => ErrorKind::Other,
        }
    }

    /// `403 InvalidClientTokenId: The security token … (request id …)`.
    pub fn describe(&self) -> String {
        let mut out = self.status.as_u16().to_string();
        if !self.code.is_empty() {
            out.push(' ');
            out.push_str(&self.code);
        }
        if !self.message.is_empty() {
            out.push_str(": ");
            out.push_str(&self.message);
        }
        if let Some(id) = &self.request_id {
            out.push_str(&format!(" (request id {id})"));
        }
        out
    }

    /// The failure for calls where any error fails the run; AccessDenied
    /// counts as a rejection of these credentials for this call.
    pub fn failure(&self, call: &str) -> Failure {
        let class = match self.kind() {
            ErrorKind::AuthRejected | ErrorKind::AccessDenied => FailureClass::AuthRejected,
            ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Other => FailureClass::HttpStatus,
        };
        Failure::new(class, format!("{call} answered {}", self.describe()))
    }
}

/// The text of the first `<tag>` element (AWS XML answers are shallow and
/// namespace-free inside; a full parser would add a dependency for this).
pub fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut from = 0;
    while let Some(i) = body[from..].find(&open) {
        let start = from + i + open.len();
        let rest = &body[start..];
        // `<Code>` or `<Code attr…>`, not `<CodeXyz>`.
        match rest.chars().next() {
            Some('>') | Some(' ') => {
                let gt = rest.find('>')?;
                let content = &rest[gt + 1..];
                let end = content.find(&close)?;
                return Some(unescape(content[..end].trim()));
            }
            _ => from = start,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_finds_the_element() {
        let x = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                 <Message>User: a &amp; b</Message></Error><RequestId>r-1</RequestId></ErrorResponse>";
        assert_eq!(xml_text(x, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(xml_text(x, "Message").as_deref(), Some("User: a & b"));
        assert_eq!(xml_text(x, "RequestId").as_deref(), Some("r-1"));
        assert_eq!(xml_text(x, "Missing"), None);
        assert_eq!(
            xml_text("<CodeX>1</CodeX><Code a=\"b\">2</Code>", "Code").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn endpoints_and_signing_regions() {
        let e = |c, s, r| endpoint(c, s, r).expect("url").to_string();
        assert_eq!(
            e(None, "sts", "eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com/"
        );
        assert_eq!(e(None, "iam", "eu-west-1"), "https://iam.amazonaws.com/");
        assert_eq!(
            e(None, "sts", "cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(
            e(Some("http://127.0.0.1:5000"), "sts", "eu-west-1"),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(signing_region("iam", "eu-west-1"), "us-east-1");
        assert_eq!(signing_region("sts", "eu-west-1"), "eu-west-1");
    }
}
