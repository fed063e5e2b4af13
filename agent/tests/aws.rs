//! The AWS kinds against a private moto server (tests/src/moto.rs) with
//! IAM enforcement on: signatures are checked against real IAM users' keys
//! and their policies decide. Cognito runs against moto's user pools.
use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::moto::{ACCOUNT, Moto};

/// Runs the one probe in `yaml` with the given secrets (name, value).
async fn run(yaml: &str, secrets: &[(&str, &str)]) -> ProbeOutcome {
    authpulse_tests::crypto();
    let dir = TempDir::new("aws-secrets");
    for (name, value) in secrets {
        std::fs::write(dir.path().join(name), value).expect("secret");
    }
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    let store = SecretStore::new(Some(dir.path().to_path_buf()));
    let o = probes::run(&cat.probes[0], &net, &store, &Default::default()).await;
    // Shown for failing tests (and with --nocapture): what an SRE would read.
    eprintln!("outcome: {}", o.detail);
    o
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

/// An IAM user `probe` allowed sts:GetCallerIdentity, sts:AssumeRole and
/// iam:ListUsers (nothing else), its access key, and a role it may
/// assume. Returns (key id, secret, role ARN); IAM enforcement is on after.
async fn iam_user(moto: &Moto) -> (String, String, String) {
    let v = moto
        .setup(
            r#"
iam = client("iam")
iam.create_user(UserName="probe")
k = iam.create_access_key(UserName="probe")["AccessKey"]
iam.put_user_policy(UserName="probe", PolicyName="probe", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Resource": "*",
                   "Action": ["sts:GetCallerIdentity", "sts:AssumeRole", "iam:ListUsers"]}]}))
role = iam.create_role(RoleName="probe-role", AssumeRolePolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
iam.put_role_policy(RoleName="probe-role", PolicyName="id", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Resource": "*", "Action": ["sts:GetCallerIdentity"]}]}))
print(json.dumps({"key": k["AccessKeyId"], "secret": k["SecretAccessKey"], "role": role["Role"]["Arn"]}))
"#,
        )
        .await;
    moto.enforce_auth().await;
    let s = |k: &str| v[k].as_str().expect(k).to_string();
    (s("key"), s("secret"), s("role"))
}

fn sts(moto: &Moto, extra: &str) -> String {
    format!(
        "  - id: s\n    kind: aws_sts\n    timeout: 10s\n    region: eu-west-1\n    endpoint: {}\n    access_key_id: {{ secret: aws_key }}\n    secret_access_key: {{ secret: aws_secret }}\n{extra}",
        moto.url
    )
}

#[tokio::test]
async fn caller_identity_ok() {
    let moto = Moto::start().await;
    let (key, secret, _) = iam_user(&moto).await;
    let o = run(
        &sts(
            &moto,
            &format!("    expect_account: \"{ACCOUNT}\"\n    expect_arn: \":user/probe$\"\n"),
        ),
        &[("aws_key", &key), ("aws_secret", &secret)],
    )
    .await;
    assert!(o.success(), "{o:?}\n{}", moto.log());
    assert_eq!(o.steps.len(), 1);
    assert_eq!(o.steps[0].name, "caller_identity");
    assert!(
        o.steps[0].detail.starts_with(&format!(
            "arn:aws:iam::{ACCOUNT}:user/probe (account {ACCOUNT})"
        )),
        "{}",
        o.steps[0].detail
    );
    assert!(o.timings.connect.is_some() && o.timings.ttfb.is_some());

    let o = run(
        &sts(&moto, "    expect_account: \"999999999999\"\n"),
        &[("aws_key", &key), ("aws_secret", &secret)],
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(
        o.detail.contains(&format!("in account {ACCOUNT}")) && o.detail.contains("999999999999"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn bad_secret_and_unknown_key_are_auth_rejected() {
    let moto = Moto::start().await;
    let (key, _, _) = iam_user(&moto).await;
    let wrong = "wrongwrongwrongwrongwrongwrongwrongwrong";
    let o = run(&sts(&moto, ""), &[("aws_key", &key), ("aws_secret", wrong)]).await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(
        o.detail.contains("403 SignatureDoesNotMatch"),
        "{}",
        o.detail
    );
    assert!(
        o.detail.contains("sts:GetCallerIdentity at 127.0.0.1:"),
        "{}",
        o.detail
    );
    assert!(!format!("{o:?}").contains(wrong));

    let o = run(
        &sts(&moto, ""),
        &[("aws_key", "AKIAUNKNOWNUNKNOWN00"), ("aws_secret", wrong)],
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(o.detail.contains("InvalidClientTokenId"), "{}", o.detail);
}

#[tokio::test]
async fn assume_role_credentials_feed_a_later_step() {
    let moto = Moto::start().await;
    let (key, secret, role) = iam_user(&moto).await;
    // Step 1 assumes the role; step 2 signs with the temporary credentials
    // it published and must be the assumed role.
    let yaml = format!(
        "  - id: j\n    kind: journey\n    timeout: 10s\n    steps:\n\
         \x20     - name: assume\n        kind: aws_sts\n        region: eu-west-1\n        endpoint: {url}\n\
         \x20       access_key_id: {{ secret: aws_key }}\n        secret_access_key: {{ secret: aws_secret }}\n\
         \x20       role_arn: \"{role}\"\n        duration: 15m\n\
         \x20     - name: as_role\n        kind: aws_sts\n        region: eu-west-1\n        endpoint: {url}\n\
         \x20       access_key_id: \"{{{{ steps.assume.access_key_id }}}}\"\n\
         \x20       secret_access_key: \"{{{{ steps.assume.secret_access_key }}}}\"\n\
         \x20       session_token: \"{{{{ steps.assume.session_token }}}}\"\n\
         \x20       expect_arn: \":assumed-role/probe-role/authpulse-probe$\"\n",
        url = moto.url
    );
    let o = run(&yaml, &[("aws_key", &key), ("aws_secret", &secret)]).await;
    assert!(o.success(), "{o:?}\n{}", moto.log());
    assert_eq!(o.steps.len(), 2);
    assert!(
        o.steps[0].detail.contains(&format!(
            "assumed {role} as arn:aws:sts::{ACCOUNT}:assumed-role/probe-role/authpulse-probe"
        )),
        "{}",
        o.steps[0].detail
    );
    assert!(
        o.steps[1]
            .detail
            .contains(":assumed-role/probe-role/authpulse-probe"),
        "{}",
        o.steps[1].detail
    );
}

fn permission(moto: &Moto, action: &str, expect: &str) -> String {
    format!(
        "  - id: p\n    kind: aws_iam_permission\n    timeout: 10s\n    endpoint: {}\n    access_key_id: {{ secret: aws_key }}\n    secret_access_key: {{ secret: aws_secret }}\n    action: \"{action}\"\n    expect: {expect}\n",
        moto.url
    )
}

#[tokio::test]
async fn permissions_allowed_denied_and_escalation() {
    let moto = Moto::start().await;
    let (key, secret, _) = iam_user(&moto).await;
    let secrets = [("aws_key", key.as_str()), ("aws_secret", secret.as_str())];

    let o = run(&permission(&moto, "iam:ListUsers", "allow"), &secrets).await;
    assert!(o.success(), "{o:?}\n{}", moto.log());
    assert!(
        o.steps[0]
            .detail
            .starts_with("iam:ListUsers allowed as expected (200 OK)"),
        "{}",
        o.steps[0].detail
    );

    let o = run(&permission(&moto, "iam:ListRoles", "deny"), &secrets).await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.steps[0].detail.contains("denied as expected")
            && o.steps[0].detail.contains("AccessDenied"),
        "{}",
        o.steps[0].detail
    );

    let o = run(&permission(&moto, "iam:ListRoles", "allow"), &secrets).await;
    assert_eq!(class(&o), Some(FailureClass::PermissionMismatch), "{o:?}");
    assert!(
        o.detail
            .contains("iam:ListRoles was denied but must be allowed: 403 AccessDenied"),
        "{}",
        o.detail
    );

    let o = run(&permission(&moto, "iam:ListUsers", "deny"), &secrets).await;
    assert_eq!(class(&o), Some(FailureClass::Escalation), "{o:?}");
    assert!(
        o.detail
            .contains("iam:ListUsers was ALLOWED but must be denied"),
        "{}",
        o.detail
    );

    // Another service and encoding: STS over Query, allowed.
    let o = run(
        &permission(&moto, "sts:GetCallerIdentity", "allow"),
        &secrets,
    )
    .await;
    assert!(o.success(), "{o:?}");

    // S3 over REST (GET /, S3's signing rules): s3:ListAllMyBuckets is not granted.
    let o = run(&permission(&moto, "s3:ListBuckets", "deny"), &secrets).await;
    assert!(o.success(), "{o:?}\n{}", moto.log());
    assert!(
        o.steps[0].detail.contains("AccessDenied"),
        "{}",
        o.steps[0].detail
    );

    // Refused credentials decide nothing.
    let o = run(
        &permission(&moto, "iam:ListUsers", "deny"),
        &[
            ("aws_key", &key),
            ("aws_secret", "wrong-secret-wrong-secret"),
        ],
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
}

#[tokio::test]
async fn throttling_and_server_errors_are_http_status() {
    let throttled = FaultServer::start(|_| {
        Reply::status(
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>req-7</RequestId></ErrorResponse>",
        )
    })
    .await;
    let yaml = format!(
        "  - id: s\n    kind: aws_sts\n    endpoint: {}\n    access_key_id: AKIAEXAMPLEEXAMPLE00\n    secret_access_key: {{ secret: aws_secret }}\n",
        throttled.url("")
    );
    let o = run(&yaml, &[("aws_secret", "s3cr3t-s3cr3t")]).await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus), "{o:?}");
    assert!(
        o.detail
            .contains("400 Throttling: Rate exceeded (request id req-7)"),
        "{}",
        o.detail
    );

    let down = FaultServer::start(|_| Reply::status(503, "Service Unavailable")).await;
    let yaml = format!(
        "  - id: p\n    kind: aws_iam_permission\n    endpoint: {}\n    access_key_id: AKIAEXAMPLEEXAMPLE00\n    secret_access_key: {{ secret: aws_secret }}\n    action: iam:ListUsers\n    expect: deny\n",
        down.url("")
    );
    let o = run(&yaml, &[("aws_secret", "s3cr3t-s3cr3t")]).await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus), "{o:?}");
    assert!(
        o.detail.contains("no allow/deny decision: 503"),
        "{}",
        o.detail
    );
}

/// A user pool in eu-west-1 with a client allowing USER_PASSWORD_AUTH (and
/// one with a secret) and a confirmed user `probe`. Returns (pool id,
/// client id, secret client id, its secret).
async fn user_pool(moto: &Moto) -> (String, String, String, String) {
    let v = moto
        .setup(
            r#"
c = client("cognito-idp", region="eu-west-1")
pool = c.create_user_pool(PoolName="probes")["UserPool"]["Id"]
cl = c.create_user_pool_client(UserPoolId=pool, ClientName="app",
                               ExplicitAuthFlows=["USER_PASSWORD_AUTH"])["UserPoolClient"]
sc = c.create_user_pool_client(UserPoolId=pool, ClientName="backend", GenerateSecret=True,
                               ExplicitAuthFlows=["USER_PASSWORD_AUTH"])["UserPoolClient"]
c.admin_create_user(UserPoolId=pool, Username="probe", TemporaryPassword="Temp-pw-123!",
                    MessageAction="SUPPRESS")
c.admin_set_user_password(UserPoolId=pool, Username="probe", Password="Probe-pw-123!",
                          Permanent=True)
print(json.dumps({"pool": pool, "client": cl["ClientId"],
                  "secret_client": sc["ClientId"], "secret": sc["ClientSecret"]}))
"#,
        )
        .await;
    let s = |k: &str| v[k].as_str().expect(k).to_string();
    (s("pool"), s("client"), s("secret_client"), s("secret"))
}

fn cognito(moto: &Moto, pool: &str, client: &str, extra: &str) -> String {
    format!(
        "  - id: c\n    kind: aws_cognito\n    timeout: 10s\n    endpoint: {}\n    user_pool_id: {pool}\n    client_id: {client}\n    username: probe\n    password: {{ secret: cognito_pw }}\n{extra}",
        moto.url
    )
}

#[tokio::test]
async fn cognito_login_and_token_validation() {
    let moto = Moto::start().await;
    let (pool, client, secret_client, client_secret) = user_pool(&moto).await;
    let pw = [("cognito_pw", "Probe-pw-123!")];
    let o = run(&cognito(&moto, &pool, &client, ""), &pw).await;
    assert!(o.success(), "{o:?}\n{}", moto.log());
    assert_eq!(
        o.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["initiate_auth", "validate"]
    );
    assert!(
        o.steps[0].detail.starts_with("signed in as probe"),
        "{}",
        o.steps[0].detail
    );
    assert!(
        o.steps[1].detail.starts_with("ID token RS256 ok")
            && o.steps[1].detail.contains("access token RS256 ok"),
        "{}",
        o.steps[1].detail
    );

    // With a client secret (SECRET_HASH).
    let o = run(
        &cognito(
            &moto,
            &pool,
            &secret_client,
            "    client_secret: { secret: cognito_client_secret }\n",
        ),
        &[
            ("cognito_pw", "Probe-pw-123!"),
            ("cognito_client_secret", &client_secret),
        ],
    )
    .await;
    assert!(o.success(), "{o:?}");

    // Outputs reach later steps: the username from the validated ID token.
    let echo = FaultServer::start(|_| Reply::status(200, "ok")).await;
    let yaml = format!(
        "  - id: j\n    kind: journey\n    timeout: 10s\n    steps:\n\
         \x20     - name: login\n        kind: aws_cognito\n        endpoint: {}\n        user_pool_id: {pool}\n\
         \x20       client_id: {client}\n        username: probe\n        password: {{ secret: cognito_pw }}\n\
         \x20     - name: echo\n        kind: http\n        url: \"{}\"\n",
        moto.url,
        echo.url("/who/{{ steps.login.username }}/{{ steps.login.claims.token_use }}")
    );
    let o = run(&yaml, &pw).await;
    assert!(o.success(), "{o:?}");
    assert!(
        o.steps[1].detail.contains("/who/probe/id"),
        "{}",
        o.steps[1].detail
    );
}

#[tokio::test]
async fn cognito_wrong_password_and_wrong_issuer() {
    let moto = Moto::start().await;
    let (pool, client, _, _) = user_pool(&moto).await;
    let wrong = "Wrong-pw-999!";
    let o = run(
        &cognito(&moto, &pool, &client, ""),
        &[("cognito_pw", wrong)],
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(
        o.detail.contains("InitiateAuth for probe") && o.detail.contains("NotAuthorizedException"),
        "{}",
        o.detail
    );
    assert!(!format!("{o:?}").contains(wrong));

    // The tokens are fine, but not from the issuer we were told to expect.
    let o = run(
        &cognito(
            &moto,
            &pool,
            &client,
            "    issuer: https://auth.example.com/pool\n",
        ),
        &[("cognito_pw", "Probe-pw-123!")],
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::TokenInvalid), "{o:?}");
    assert!(
        o.detail.starts_with("step `validate`: ID token:"),
        "{}",
        o.detail
    );
    assert!(
        o.detail.contains("https://auth.example.com/pool"),
        "{}",
        o.detail
    );
}
