//! `scim`: the provisioning lifecycle of a synthetic user against a SCIM 2.0
//! service provider, as an HR or IGA system drives it. Steps: `cleanup`
//! (list users filtered by `userName sw "<prefix>"` and delete those whose
//! `meta.created` is older than `orphan_max_age`: what crashed or timed-out
//! runs left behind; counted in `authpulse_agent_scim_orphans_deleted_total`),
//! `create` (`<prefix><random>`), `read`, `patch` (title), `deactivate`
//! (active=false), `verify` (both changes visible), `delete` and `gone`
//! (GET answers 404). Once the user exists, `delete` is attempted even if a
//! step in between failed. Outputs: `user_id`, `user_name`. Classes: 401/403
//! `auth_rejected`, another status than the one SCIM prescribes
//! `http_status`, a body that isn't the expected resource `protocol`, a
//! change that didn't take `assertion`.
use std::time::{Duration, SystemTime};

use authpulse_proto::catalog::ScimSpec;
use authpulse_proto::v1::FailureClass;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Value as Json, json};
use url::Url;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure, ms, snippet};
use crate::http::{Request, Response, Timings};
use crate::secrets;
use crate::telemetry;

const KIND: &str = "scim";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Orphan listing reads at most this many pages of this size per run.
const PAGE_SIZE: usize = 100;
const MAX_PAGES: usize = 10;

impl Probe for ScimSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let token = match secrets::resolve(&self.token, ctx.secrets, &ctx.redactor) {
            Ok(t) => t,
            Err(e) => return config_failure(ctx, KIND, e.to_string()),
        };
        let client = match Client::new(self, &token) {
            Ok(c) => c,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let mut steps = vec![cleanup(&client, ctx).await];

        let (create, user) = create(&client, ctx).await;
        steps.push(create);
        let Some(user) = user else {
            return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
        };
        ctx.output("user_id", user.id.clone());
        ctx.output("user_name", user.name.clone());

        // Each lifecycle step runs only if those before it (from `create`
        // on: a failed cleanup doesn't stop the lifecycle) passed; `delete`
        // runs regardless.
        let title = format!("authpulse probe {}", user.name);
        let from = steps.len() - 1;
        let ok = |steps: &[StepOutcome]| steps[from..].iter().all(|s| s.failure.is_none());
        steps.push(read(&client, ctx, &user).await);
        if ok(&steps) {
            let op = json!({"op": "replace", "path": "title", "value": title});
            steps.push(patch(&client, ctx, &user, "patch", op).await);
        }
        if ok(&steps) {
            let op = json!({"op": "replace", "path": "active", "value": false});
            steps.push(patch(&client, ctx, &user, "deactivate", op).await);
        }
        if ok(&steps) {
            steps.push(verify(&client, ctx, &user, &title).await);
        }
        if self.delete {
            steps.push(delete(&client, ctx, &user).await);
            if ok(&steps) {
                steps.push(gone(&client, ctx, &user).await);
            }
        }
        ProbeOutcome::from_steps(steps, ctx.started.elapsed())
    }
}

/// The synthetic user of this run.
struct User {
    id: String,
    name: String,
    url: Url,
}

/// The service provider's `/Users` endpoint and how to talk to it.
struct Client<'s> {
    spec: &'s ScimSpec,
    users: Url,
    auth: HeaderValue,
}

impl<'s> Client<'s> {
    fn new(spec: &'s ScimSpec, token: &str) -> Result<Client<'s>, String> {
        let users = Url::parse(&format!("{}/Users", spec.base_url.trim_end_matches('/')))
            .map_err(|e| format!("base_url `{}`: {e}", spec.base_url))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token is not a valid header value".to_string())?;
        auth.set_sensitive(true);
        Ok(Client { spec, users, auth })
    }

    fn user_url(&self, id: &str) -> Url {
        let mut url = self.users.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id);
        }
        url
    }

    async fn send(
        &self,
        ctx: &mut RunContext<'_>,
        method: Method,
        url: Url,
        body: Option<Json>,
    ) -> Result<Response, Failed> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, self.auth.clone());
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/scim+json, application/json"),
        );
        if body.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/scim+json"),
            );
        }
        let req = Request {
            method,
            url,
            headers,
            body: body.map(|b| Bytes::from(b.to_string())),
            follow_redirects: false,
            tls: &self.spec.tls,
        };
        ctx.session
            .send(req)
            .await
            .map_err(|e| (Failure::new(e.class, e.message.clone()), e.timings))
    }
}

/// A failure with the timings of what ran before it.
type Failed = (Failure, Timings);

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: KIND.into(),
        failure,
        timings,
        detail,
    }
}

fn failed(name: &str, (failure, timings): Failed) -> StepOutcome {
    step(name, Some(failure), timings, String::new())
}

/// The status must be one of `ok`; 401/403 mean the token was refused.
fn expect_status(resp: &Response, ok: &[u16], what: &str) -> Result<(), Failed> {
    let status = resp.status.as_u16();
    if ok.contains(&status) {
        return Ok(());
    }
    let class = if matches!(status, 401 | 403) {
        FailureClass::AuthRejected
    } else {
        FailureClass::HttpStatus
    };
    let wanted = ok
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    Err((
        Failure::new(
            class,
            format!(
                "{what} answered {} (expected {wanted}): {}",
                resp.status,
                scim_detail(&resp.body)
            ),
        ),
        resp.timings,
    ))
}

/// A SCIM error's `detail` (and `scimType`) if the body is one, else a snippet.
fn scim_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<Json>(body) {
        Ok(v) if v.get("detail").is_some() => {
            let detail = v["detail"].as_str().unwrap_or_default();
            match v.get("scimType").and_then(Json::as_str) {
                Some(t) => format!("{t}: {detail}"),
                None => detail.to_string(),
            }
        }
        _ => snippet(body),
    }
}

fn resource(resp: &Response, what: &str) -> Result<serde_json::Map<String, Json>, Failed> {
    match serde_json::from_slice::<Json>(&resp.body) {
        Ok(Json::Object(m)) => Ok(m),
        _ => Err((
            Failure::new(
                FailureClass::Protocol,
                format!(
                    "{what}: body is not a SCIM resource: {}",
                    snippet(&resp.body)
                ),
            ),
            resp.timings,
        )),
    }
}

/// Step `cleanup`: delete synthetic users earlier runs left behind.
async fn cleanup(client: &Client<'_>, ctx: &mut RunContext<'_>) -> StepOutcome {
    const NAME: &str = "cleanup";
    let prefix = &client.spec.user_name_prefix;
    let started = tokio::time::Instant::now();
    let mut timings = Timings::default();
    // Every exit reports the step's wall time.
    let done = |mut t: Timings| {
        t.total = started.elapsed();
        t
    };
    let mut candidates = Vec::new();
    let mut undated = 0usize;
    let mut start = 1usize;
    for _ in 0..MAX_PAGES {
        let mut url = client.users.clone();
        url.query_pairs_mut()
            .append_pair("filter", &format!("userName sw \"{prefix}\""))
            .append_pair("startIndex", &start.to_string())
            .append_pair("count", &PAGE_SIZE.to_string());
        let what = format!("GET {}", client.users);
        let resp = match client.send(ctx, Method::GET, url, None).await {
            Ok(r) => r,
            Err((f, t)) => {
                timings.absorb(&t);
                return failed(NAME, (f, done(timings)));
            }
        };
        timings.absorb(&resp.timings);
        if let Err((f, _)) = expect_status(&resp, &[200], &what) {
            return failed(NAME, (f, done(timings)));
        }
        let list = match resource(&resp, &what) {
            Ok(l) => l,
            Err((f, _)) => return failed(NAME, (f, timings)),
        };
        let page = list
            .get("Resources")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for user in &page {
            let (Some(id), Some(name)) = (
                user.get("id").and_then(Json::as_str),
                user.get("userName").and_then(Json::as_str),
            ) else {
                continue;
            };
            // Never trust the filter alone: a provider that ignores it
            // would hand us every user.
            if !name.starts_with(prefix.as_str()) {
                continue;
            }
            let created = user
                .pointer("/meta/created")
                .and_then(Json::as_str)
                .and_then(parse_time);
            match created {
                Some(c) => candidates.push((id.to_string(), name.to_string(), c)),
                None => undated += 1,
            }
        }
        let total = list.get("totalResults").and_then(Json::as_u64).unwrap_or(0) as usize;
        start += page.len();
        if page.is_empty() || start > total {
            break;
        }
    }
    let now = SystemTime::now();
    let max_age = client.spec.orphan_max_age;
    let old: Vec<_> = candidates
        .iter()
        .filter(|(_, _, c)| now.duration_since(*c).unwrap_or(Duration::ZERO) >= max_age)
        .collect();
    let mut deleted = 0u64;
    for (id, name, _) in &old {
        let url = client.user_url(id);
        let what = format!("DELETE of orphan {name}");
        match client.send(ctx, Method::DELETE, url, None).await {
            Ok(resp) => {
                timings.absorb(&resp.timings);
                // 404: another agent's run got there first.
                match expect_status(&resp, &[200, 204, 404], &what) {
                    Ok(()) if resp.status.as_u16() != 404 => deleted += 1,
                    Ok(()) => {}
                    Err((f, _)) => {
                        count_orphans(ctx, deleted);
                        return failed(NAME, (f, done(timings)));
                    }
                }
            }
            Err((f, t)) => {
                timings.absorb(&t);
                count_orphans(ctx, deleted);
                return failed(NAME, (f, done(timings)));
            }
        }
    }
    count_orphans(ctx, deleted);
    let mut detail = format!(
        "{} user(s) named {prefix}*, deleted {deleted} older than {}",
        candidates.len() + undated,
        humantime::format_duration(max_age)
    );
    if undated > 0 {
        detail.push_str(&format!("; {undated} without meta.created left alone"));
    }
    step(NAME, None, done(timings), detail)
}

fn count_orphans(ctx: &RunContext<'_>, n: u64) {
    if n > 0 {
        let probe = ctx.scope.split('/').next().unwrap_or_default().to_string();
        metrics::counter!(telemetry::SCIM_ORPHANS_DELETED, "probe" => probe).increment(n);
    }
}

/// Step `create`: POST a new user `<prefix><random>`.
async fn create(client: &Client<'_>, ctx: &mut RunContext<'_>) -> (StepOutcome, Option<User>) {
    const NAME: &str = "create";
    let suffix: [u8; 6] = {
        use rand::RngExt;
        rand::rng().random()
    };
    let name = format!("{}{}", client.spec.user_name_prefix, hex::encode(suffix));
    let mut body = json!({
        "schemas": [USER_SCHEMA],
        "userName": name,
        "active": true,
        "displayName": "authpulse synthetic probe",
        "name": {"givenName": "authpulse", "familyName": "probe"},
    });
    if let Json::Object(b) = &mut body {
        for (k, v) in &client.spec.attributes {
            b.insert(k.clone(), v.clone());
        }
    }
    let what = format!("POST {}", client.users);
    let resp = match client
        .send(ctx, Method::POST, client.users.clone(), Some(body))
        .await
    {
        Ok(r) => r,
        Err(f) => return (failed(NAME, f), None),
    };
    let checked = expect_status(&resp, &[201], &what).and_then(|()| resource(&resp, &what));
    let created = match checked {
        Ok(c) => c,
        // 200 is wrong by RFC 7644 §3.3 but common; accept it if the body is the user.
        Err(_) if resp.status.as_u16() == 200 => match resource(&resp, &what) {
            Ok(c) => c,
            Err(f) => return (failed(NAME, f), None),
        },
        Err(f) => return (failed(NAME, f), None),
    };
    let Some(id) = created
        .get("id")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
    else {
        let f = Failure::new(
            FailureClass::Protocol,
            format!(
                "{what}: the created user has no `id`: {}",
                snippet(&resp.body)
            ),
        );
        return (failed(NAME, (f, resp.timings)), None);
    };
    let user = User {
        id: id.to_string(),
        url: client.user_url(id),
        name,
    };
    let detail = format!(
        "created {} (id {}) in {}",
        user.name,
        user.id,
        ms(resp.timings.total)
    );
    (step(NAME, None, resp.timings, detail), Some(user))
}

/// GET the user; `Err` is a failed step's failure.
async fn get_user(
    client: &Client<'_>,
    ctx: &mut RunContext<'_>,
    user: &User,
) -> Result<(serde_json::Map<String, Json>, Timings), Failed> {
    let what = format!("GET {}", user.url);
    let resp = client
        .send(ctx, Method::GET, user.url.clone(), None)
        .await?;
    expect_status(&resp, &[200], &what)?;
    let r = resource(&resp, &what)?;
    let same_user = r.get("id").and_then(Json::as_str) == Some(user.id.as_str())
        && r.get("userName")
            .and_then(Json::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(&user.name));
    if !same_user {
        return Err((
            Failure::new(
                FailureClass::Protocol,
                format!(
                    "{what} returned another resource (id {}, userName {})",
                    r.get("id").unwrap_or(&Json::Null),
                    r.get("userName").unwrap_or(&Json::Null)
                ),
            ),
            resp.timings,
        ));
    }
    Ok((r, resp.timings))
}

/// Step `read`.
async fn read(client: &Client<'_>, ctx: &mut RunContext<'_>, user: &User) -> StepOutcome {
    match get_user(client, ctx, user).await {
        Ok((_, t)) => step("read", None, t, format!("read back in {}", ms(t.total))),
        Err(f) => failed("read", f),
    }
}

/// Steps `patch` and `deactivate`: one PatchOp operation. Providers answer
/// 200 with the resource or 204 without a body.
async fn patch(
    client: &Client<'_>,
    ctx: &mut RunContext<'_>,
    user: &User,
    name: &str,
    op: Json,
) -> StepOutcome {
    let body = json!({"schemas": [PATCH_SCHEMA], "Operations": [op]});
    let what = format!(
        "PATCH {} ({})",
        user.url,
        op["path"].as_str().unwrap_or_default()
    );
    let resp = match client
        .send(ctx, Method::PATCH, user.url.clone(), Some(body))
        .await
    {
        Ok(r) => r,
        Err(f) => return failed(name, f),
    };
    match expect_status(&resp, &[200, 204], &what) {
        Ok(()) => step(
            name,
            None,
            resp.timings,
            format!("{} in {}", resp.status, ms(resp.timings.total)),
        ),
        Err(f) => failed(name, f),
    }
}

/// Step `verify`: the patched title and the deactivation are visible.
async fn verify(
    client: &Client<'_>,
    ctx: &mut RunContext<'_>,
    user: &User,
    title: &str,
) -> StepOutcome {
    const NAME: &str = "verify";
    let (r, t) = match get_user(client, ctx, user).await {
        Ok(x) => x,
        Err(f) => return failed(NAME, f),
    };
    let active = match r.get("active") {
        Some(Json::Bool(b)) => Some(*b),
        // Some providers send booleans as strings.
        Some(Json::String(s)) => s
            .parse::<bool>()
            .ok()
            .or(match s.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }),
        _ => None,
    };
    if active != Some(false) {
        let f = Failure::new(
            FailureClass::Assertion,
            format!(
                "{} is still active after PATCH active=false (active: {})",
                user.name,
                r.get("active").unwrap_or(&Json::Null)
            ),
        );
        return step(NAME, Some(f), t, String::new());
    }
    if r.get("title").and_then(Json::as_str) != Some(title) {
        let f = Failure::new(
            FailureClass::Assertion,
            format!(
                "{}: title is {} after PATCH, expected {title:?}",
                user.name,
                r.get("title").unwrap_or(&Json::Null)
            ),
        );
        return step(NAME, Some(f), t, String::new());
    }
    step(NAME, None, t, "title patched, inactive".into())
}

/// Step `delete`.
async fn delete(client: &Client<'_>, ctx: &mut RunContext<'_>, user: &User) -> StepOutcome {
    let what = format!("DELETE {}", user.url);
    let resp = match client
        .send(ctx, Method::DELETE, user.url.clone(), None)
        .await
    {
        Ok(r) => r,
        Err(f) => return failed("delete", f),
    };
    match expect_status(&resp, &[200, 204], &what) {
        Ok(()) => step(
            "delete",
            None,
            resp.timings,
            format!("deleted in {}", ms(resp.timings.total)),
        ),
        Err(f) => failed("delete", f),
    }
}

/// Step `gone`: the deleted user must answer 404.
async fn gone(client: &Client<'_>, ctx: &mut RunContext<'_>, user: &User) -> StepOutcome {
    let what = format!("GET {} after DELETE", user.url);
    let resp = match client.send(ctx, Method::GET, user.url.clone(), None).await {
        Ok(r) => r,
        Err(f) => return failed("gone", f),
    };
    if resp.status.as_u16() == 200 {
        let f = Failure::new(
            FailureClass::Assertion,
            format!("{what}: {} still exists", user.name),
        );
        return step("gone", Some(f), resp.timings, String::new());
    }
    match expect_status(&resp, &[404], &what) {
        Ok(()) => step("gone", None, resp.timings, "404 as expected".into()),
        Err(f) => failed("gone", f),
    }
}

/// RFC 3339 as SCIM's `meta.created` uses it (`Z` or a `±hh:mm` offset,
/// fractional seconds optional).
fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if s.ends_with(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(&s[..s.len() - 1]).ok();
    }
    let b = s.as_bytes();
    let n = b.len();
    if n > 6 && matches!(b[n - 6], b'+' | b'-') && b[n - 3] == b':' {
        let local = humantime::parse_rfc3339_weak(&s[..n - 6]).ok()?;
        let hours: u64 = s[n - 5..n - 3].parse().ok()?;
        let minutes: u64 = s[n - 2..].parse().ok()?;
        let offset = Duration::from_secs(hours * 3600 + minutes * 60);
        // 10:00+02:00 is 08:00 UTC.
        return if b[n - 6] == b'+' {
            local.checked_sub(offset)
        } else {
            local.checked_add(offset)
        };
    }
    humantime::parse_rfc3339_weak(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scim_timestamps() {
        let utc = parse_time("2024-05-01T10:00:00Z").expect("utc");
        assert_eq!(
            parse_time("2024-05-01T10:00:00.123456Z").map(|t| t >= utc),
            Some(true)
        );
        assert_eq!(parse_time("2024-05-01T12:00:00+02:00"), Some(utc));
        assert_eq!(parse_time("2024-05-01T05:30:00-04:30"), Some(utc));
        assert_eq!(parse_time("yesterday"), None);
    }
}
