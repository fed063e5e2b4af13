//! `aws_sts`: proves a set of AWS credentials works. With `role_arn`, step
//! `assume_role` (sts:AssumeRole) first gets temporary credentials, which
//! are published as secret outputs (`access_key_id`, `secret_access_key`,
//! `session_token`, plus `expiration` and `assumed_role_arn`) for later
//! journey steps. Then step `caller_identity` (sts:GetCallerIdentity, with
//! the assumed credentials if any) checks who AWS says we are against
//! `expect_account`/`expect_arn` and publishes `account`, `arn`, `user_id`.
//! Refused credentials are `auth_rejected`, throttling and 5xx
//! `http_status`, an unexpected identity `assertion`.
use authpulse_proto::catalog::AwsStsSpec;
use authpulse_proto::v1::FailureClass;
use url::Url;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure, ms, snippet};
use crate::aws::{self, AwsError, Credentials};
use crate::http::{Response, Timings};
use crate::secrets;

const VERSION: &str = "2011-06-15";

impl Probe for AwsStsSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let creds = match Credentials::resolve(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.as_ref(),
            ctx,
        ) {
            Ok(c) => c,
            Err(f) => return config_failure(ctx, "aws_sts", f.message),
        };
        let url = match aws::endpoint(self.endpoint.as_deref(), "sts", &self.region) {
            Ok(u) => u,
            Err(f) => return config_failure(ctx, "aws_sts", f.message),
        };
        let mut steps = Vec::new();
        let mut creds = creds;
        if let Some(role) = &self.role_arn {
            let (step, assumed) = assume_role(self, ctx, &url, &creds, role).await;
            steps.push(step);
            match assumed {
                Some(c) => creds = c,
                None => return ProbeOutcome::from_steps(steps, ctx.started.elapsed()),
            }
        }
        steps.push(caller_identity(self, ctx, &url, &creds).await);
        ProbeOutcome::from_steps(steps, ctx.started.elapsed())
    }
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: "aws_sts".into(),
        failure,
        timings,
        detail,
    }
}

/// Signs and sends one STS call; `Err` is the finished failed step.
async fn call(
    spec: &AwsStsSpec,
    ctx: &mut RunContext<'_>,
    url: &Url,
    creds: &Credentials,
    (name, action): (&str, &str),
    params: &[(String, String)],
) -> Result<Response, StepOutcome> {
    let mut req = aws::query_request(url.clone(), action, VERSION, params, &spec.tls);
    if let Err(f) = aws::sign(&mut req, creds, "sts", &spec.region) {
        return Err(step(name, Some(f), Timings::default(), String::new()));
    }
    let resp = match ctx.session.send(req).await {
        Ok(r) => r,
        Err(e) => {
            return Err(step(
                name,
                Some(Failure::new(e.class, e.message.clone())),
                e.timings,
                String::new(),
            ));
        }
    };
    if !resp.status.is_success() {
        let f = AwsError::parse(&resp).failure(&format!("sts:{action} at {}", aws::authority(url)));
        return Err(step(name, Some(f), resp.timings, String::new()));
    }
    Ok(resp)
}

/// Step `assume_role`: temporary credentials for `role`.
async fn assume_role(
    spec: &AwsStsSpec,
    ctx: &mut RunContext<'_>,
    url: &Url,
    creds: &Credentials,
    role: &str,
) -> (StepOutcome, Option<Credentials>) {
    let mut params = vec![
        ("RoleArn".to_string(), role.to_string()),
        (
            "RoleSessionName".to_string(),
            spec.role_session_name.clone(),
        ),
    ];
    if let Some(d) = spec.duration {
        params.push(("DurationSeconds".into(), d.as_secs().to_string()));
    }
    if let Some(ext) = &spec.external_id {
        match secrets::resolve(ext, ctx.secrets, &ctx.redactor) {
            Ok(v) => params.push(("ExternalId".into(), v)),
            Err(e) => {
                let f = Failure::new(FailureClass::Config, e.to_string());
                return (
                    step("assume_role", Some(f), Timings::default(), String::new()),
                    None,
                );
            }
        }
    }
    let resp = match call(
        spec,
        ctx,
        url,
        creds,
        ("assume_role", "AssumeRole"),
        &params,
    )
    .await
    {
        Ok(r) => r,
        Err(s) => return (s, None),
    };
    let body = String::from_utf8_lossy(&resp.body);
    let field = |tag| aws::xml_text(&body, tag).filter(|v| !v.is_empty());
    let (Some(key), Some(secret), Some(token)) = (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("SessionToken"),
    ) else {
        let f = Failure::new(
            FailureClass::Protocol,
            format!(
                "sts:AssumeRole answered {} without Credentials: {}",
                resp.status,
                snippet(&resp.body)
            ),
        );
        return (
            step("assume_role", Some(f), resp.timings, String::new()),
            None,
        );
    };
    ctx.secret_output("access_key_id", &key);
    ctx.secret_output("secret_access_key", &secret);
    ctx.secret_output("session_token", &token);
    let expiration = field("Expiration");
    if let Some(exp) = &expiration {
        ctx.output("expiration", exp.clone());
    }
    // AssumedRoleUser/Arn comes after the credentials in the answer.
    let assumed_arn = body
        .find("<AssumedRoleUser>")
        .and_then(|i| aws::xml_text(&body[i..], "Arn"));
    if let Some(arn) = &assumed_arn {
        ctx.output("assumed_role_arn", arn.clone());
    }
    let detail = format!(
        "assumed {role} as {} (expires {}) in {}",
        assumed_arn.as_deref().unwrap_or("?"),
        expiration.as_deref().unwrap_or("?"),
        ms(resp.timings.total)
    );
    (
        step("assume_role", None, resp.timings, detail),
        Some(Credentials {
            access_key_id: key,
            secret_access_key: secret,
            session_token: Some(token),
        }),
    )
}

/// Step `caller_identity`: who these credentials are, checked against the
/// expectations.
async fn caller_identity(
    spec: &AwsStsSpec,
    ctx: &mut RunContext<'_>,
    url: &Url,
    creds: &Credentials,
) -> StepOutcome {
    const NAME: &str = "caller_identity";
    let resp = match call(spec, ctx, url, creds, (NAME, "GetCallerIdentity"), &[]).await {
        Ok(r) => r,
        Err(s) => return s,
    };
    let body = String::from_utf8_lossy(&resp.body);
    let fail = |class, msg: String| {
        step(
            NAME,
            Some(Failure::new(class, msg)),
            resp.timings,
            String::new(),
        )
    };
    let (Some(account), Some(arn), Some(user_id)) = (
        aws::xml_text(&body, "Account"),
        aws::xml_text(&body, "Arn"),
        aws::xml_text(&body, "UserId"),
    ) else {
        return fail(
            FailureClass::Protocol,
            format!(
                "sts:GetCallerIdentity answered {} without Account/Arn/UserId: {}",
                resp.status,
                snippet(&resp.body)
            ),
        );
    };
    ctx.output("account", account.clone());
    ctx.output("arn", arn.clone());
    ctx.output("user_id", user_id.clone());
    if let Some(want) = &spec.expect_account
        && want != &account
    {
        return fail(
            FailureClass::Assertion,
            format!("caller is in account {account} ({arn}), expected {want}"),
        );
    }
    if let Some(re) = &spec.expect_arn {
        let re = match regex::Regex::new(re) {
            Ok(r) => r,
            Err(e) => return fail(FailureClass::Config, format!("expect_arn: {e}")),
        };
        if !re.is_match(&arn) {
            return fail(
                FailureClass::Assertion,
                format!("caller ARN {arn} does not match /{re}/"),
            );
        }
    }
    step(
        NAME,
        None,
        resp.timings,
        format!("{arn} (account {account}) in {}", ms(resp.timings.total)),
    )
}
