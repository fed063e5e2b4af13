//! Delivery of alert events: Alertmanager (API v2), PagerDuty (Events v2)
//! and a signed webhook. Each notifier has its own queue and task, so a slow
//! or failing receiver never delays evaluation or the other receivers, and
//! events reach each receiver in order. 429 and 5xx answers (and connection
//! errors) are retried with exponential backoff, [`MAX_TRIES`] times,
//! waiting longer when the receiver's `Retry-After` asks for it.
//! Secrets (routing keys, HMAC secret) are read from files at start and
//! never logged. Each event travels with its SLO's [`Routing`] (owner,
//! runbook, labels) so receivers can route per team.
use std::time::Duration;

use anyhow::Context;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use std::collections::HashMap;
use std::sync::Arc;

use super::routing::Routing;
use super::{AlertingConfig, Event, Severity};
use crate::clock::rfc3339_ms;

/// The public PagerDuty Events v2 endpoint.
pub fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_string()
}

pub const ALERTNAME: &str = "AuthpulseSLOBurn";
/// The Alertmanager `alertname` of escalation pages (label `rule="escalation"`).
pub const ESCALATION_ALERTNAME: &str = "AuthpulseEscalation";
pub const SIGNATURE_HEADER: &str = "X-Authpulse-Signature";
pub const MAX_TRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest a receiver's `Retry-After` may hold a notification back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A secret read from a file; `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Secret> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} from {}", path.display()))?;
        let text = text.trim();
        anyhow::ensure!(!text.is_empty(), "{what} file {} is empty", path.display());
        Ok(Secret(text.to_string()))
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Alertmanager,
    PagerDuty {
        /// For alerts no route matches; none: those are not sent.
        default_key: Option<Secret>,
        /// (route, its key), first match wins.
        routes: Vec<(super::routing::PagerDutyRoute, Secret)>,
    },
    Webhook {
        secret: Option<Secret>,
    },
}

/// An event and the routing of its SLO at the time it was raised.
#[derive(Clone, Debug)]
struct Notice {
    event: Event,
    routing: Arc<Routing>,
}

#[derive(Clone, Debug)]
struct Notifier {
    name: &'static str,
    url: String,
    kind: Kind,
}

fn check_url(url: &str, what: &str) -> anyhow::Result<()> {
    let u = reqwest::Url::parse(url).with_context(|| format!("{what}: invalid URL `{url}`"))?;
    anyhow::ensure!(
        matches!(u.scheme(), "http" | "https"),
        "{what}: `{url}` is not an http(s) URL"
    );
    Ok(())
}

/// The queues of the configured notifiers.
pub struct Dispatch {
    queues: Vec<(bool, mpsc::UnboundedSender<Notice>)>,
}

impl Dispatch {
    /// Reads secrets, checks URLs and starts one delivery task per notifier.
    pub fn start(config: &AlertingConfig, generator_url: String) -> anyhow::Result<Dispatch> {
        let mut notifiers = Vec::new();
        for base in &config.alertmanager {
            check_url(base, "alerting.alertmanager")?;
            notifiers.push(Notifier {
                name: "alertmanager",
                url: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
                kind: Kind::Alertmanager,
            });
        }
        if let Some(pd) = &config.pagerduty {
            check_url(&pd.url, "alerting.pagerduty.url")?;
            anyhow::ensure!(
                pd.routing_key_file.is_some() || !pd.routes.is_empty(),
                "alerting.pagerduty: set routing_key_file, routes, or both"
            );
            let default_key = match &pd.routing_key_file {
                Some(f) => Some(Secret::read(f, "the PagerDuty routing key")?),
                None => None,
            };
            let mut routes = Vec::new();
            for (i, r) in pd.routes.iter().enumerate() {
                anyhow::ensure!(
                    !r.matchers.is_empty(),
                    "alerting.pagerduty.routes[{i}]: `match` needs at least one label"
                );
                let key = Secret::read(
                    &r.routing_key_file,
                    &format!("the routing key of alerting.pagerduty.routes[{i}]"),
                )?;
                routes.push((r.clone(), key));
            }
            notifiers.push(Notifier {
                name: "pagerduty",
                url: pd.url.clone(),
                kind: Kind::PagerDuty {
                    default_key,
                    routes,
                },
            });
        }
        if let Some(wh) = &config.webhook {
            check_url(&wh.url, "alerting.webhook.url")?;
            let secret = match &wh.hmac_secret_file {
                Some(p) => Some(Secret::read(p, "the webhook HMAC secret")?),
                None => None,
            };
            notifiers.push(Notifier {
                name: "webhook",
                url: wh.url.clone(),
                kind: Kind::Webhook { secret },
            });
        }
        if notifiers.is_empty() {
            return Ok(Dispatch { queues: Vec::new() });
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("authpulse-coordinator/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client for alert notifications")?;
        let mut queues = Vec::new();
        for n in notifiers {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push((matches!(n.kind, Kind::Alertmanager), tx));
            tokio::spawn(deliver_all(n, client.clone(), generator_url.clone(), rx));
        }
        Ok(Dispatch { queues })
    }

    /// Queues `event` for every notifier (re-sends only for Alertmanager),
    /// with its SLO's `routing`.
    pub fn send(&self, event: &Event, routing: Routing) {
        let routing = Arc::new(routing);
        for (wants_resend, tx) in &self.queues {
            if matches!(event, Event::Resend(_)) && !wants_resend {
                continue;
            }
            let _ = tx.send(Notice {
                event: event.clone(),
                routing: routing.clone(),
            });
        }
    }
}

async fn deliver_all(
    n: Notifier,
    client: reqwest::Client,
    generator_url: String,
    mut rx: mpsc::UnboundedReceiver<Notice>,
) {
    // PagerDuty: the key each open incident was triggered with, so its
    // resolve reaches the same service even if the routing changed since.
    let mut triggered_with: HashMap<String, Option<usize>> = HashMap::new();
    while let Some(Notice { event, routing }) = rx.recv().await {
        let (body, signature) = match &n.kind {
            Kind::Alertmanager => (alertmanager_body(&event, &routing, &generator_url), None),
            Kind::PagerDuty {
                default_key,
                routes,
            } => {
                let dedup = dedup_key(&event.firing().alert);
                let route = match &event {
                    Event::Resolve { .. } => triggered_with
                        .remove(&dedup)
                        .unwrap_or_else(|| routes.iter().position(|(r, _)| r.matches(&routing))),
                    _ => {
                        let r = routes.iter().position(|(r, _)| r.matches(&routing));
                        triggered_with.insert(dedup, r);
                        r
                    }
                };
                let key = match route {
                    Some(i) => routes.get(i).map(|(_, k)| k),
                    None => default_key.as_ref(),
                };
                let Some(key) = key else {
                    metrics::counter!("authpulse_coordinator_notifications_total",
                        "notifier" => n.name, "result" => "unrouted")
                    .increment(1);
                    tracing::warn!(notifier = n.name, slo = %event.firing().alert.slo,
                        owner = routing.owner.as_deref().unwrap_or(""),
                        "no PagerDuty route matches and there is no default routing key; not sent");
                    continue;
                };
                (
                    pagerduty_body(&event, &routing, &key.0, &generator_url),
                    None,
                )
            }
            Kind::Webhook { secret } => {
                let body = webhook_body(&event, &routing, &generator_url);
                let sig = secret
                    .as_ref()
                    .map(|s| signature(s.0.as_bytes(), body.as_bytes()));
                (body, sig)
            }
        };
        let f = event.firing();
        match deliver(&client, &n, body, signature).await {
            Ok(()) => {
                metrics::counter!("authpulse_coordinator_notifications_total",
                    "notifier" => n.name, "result" => "sent")
                .increment(1);
                tracing::debug!(notifier = n.name, slo = %f.alert.slo,
                    severity = f.alert.severity.as_str(), "alert notification sent");
            }
            Err(e) => {
                metrics::counter!("authpulse_coordinator_notifications_total",
                    "notifier" => n.name, "result" => "failed")
                .increment(1);
                tracing::warn!(notifier = n.name, slo = %f.alert.slo,
                    severity = f.alert.severity.as_str(), error = %e,
                    "alert notification failed");
            }
        }
    }
}

/// POSTs `body`, retrying 429, 5xx and transport errors with backoff.
async fn deliver(
    client: &reqwest::Client,
    n: &Notifier,
    body: String,
    signature: Option<String>,
) -> Result<(), String> {
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=MAX_TRIES {
        let mut req = client
            .post(&n.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(sig) = &signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        let mut wait = backoff;
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                last = format!("HTTP {}", r.status());
                // PagerDuty (and most APIs) say when to come back on 429/503.
                let header = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok());
                wait = retry_delay(backoff, header, std::time::SystemTime::now());
            }
            Ok(r) => return Err(format!("HTTP {} (not retried)", r.status())),
            // Without the URL: a webhook URL may carry a token.
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < MAX_TRIES {
            metrics::counter!("authpulse_coordinator_notifications_total",
                "notifier" => n.name, "result" => "retried")
            .increment(1);
            tracing::debug!(notifier = n.name, attempt, error = %last,
                wait_ms = wait.as_millis() as u64, "retrying alert notification");
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
    }
    Err(format!("{last} after {MAX_TRIES} tries"))
}

/// How long to wait before the next try: our backoff, or the receiver's
/// `Retry-After` (delay seconds or an HTTP date) when it asks for longer,
/// capped at [`MAX_RETRY_AFTER`].
fn retry_delay(
    backoff: Duration,
    retry_after: Option<&str>,
    now: std::time::SystemTime,
) -> Duration {
    let asked = retry_after.and_then(|v| {
        let v = v.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let at = std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(at.timestamp_millis()).ok()?);
        Some(at.duration_since(now).unwrap_or_default())
    });
    match asked {
        Some(a) if a > backoff => a.min(MAX_RETRY_AFTER),
        _ => backoff,
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn status_word(event: &Event) -> &'static str {
    match event {
        Event::Resolve { .. } => "resolved",
        _ => "firing",
    }
}

fn summary(event: &Event) -> String {
    let a = &event.firing().alert;
    if a.is_escalation() {
        return match event {
            Event::Resolve { .. } => format!(
                "SLO {} escalation alert resolved: no privilege escalation seen for 5 minutes",
                a.slo
            ),
            _ => format!(
                "SLO {}: privilege escalation (a `deny` permission check came back allowed)",
                a.slo
            ),
        };
    }
    match event {
        Event::Resolve { .. } => format!(
            "SLO {} {} alert resolved: the burn rate is below {:.4}x",
            a.slo,
            a.severity.as_str(),
            a.factor
        ),
        _ => format!(
            "SLO {} is burning its error budget too fast ({} {})",
            a.slo,
            a.severity.as_str(),
            a.rule
        ),
    }
}

fn description(event: &Event) -> String {
    let a = &event.firing().alert;
    if a.is_escalation() {
        return format!(
            "a probe of SLO {} returned failure class escalation; the alert holds until none \
             is seen for 5 minutes (rule escalation)",
            a.slo
        );
    }
    let (long, short) = a.rule.split_once('/').unwrap_or((a.rule, ""));
    format!(
        "burn rate {:.4}x over {long} and {:.4}x over {short}; threshold {:.4}x (rule {})",
        a.burn_long, a.burn_short, a.factor, a.rule
    )
}

/// Alertmanager API v2 `POST /api/v2/alerts` body (a list of one alert).
pub fn alertmanager_body(event: &Event, routing: &Routing, generator_url: &str) -> String {
    let f = event.firing();
    let mut labels = if f.alert.is_escalation() {
        json!({
            "alertname": ESCALATION_ALERTNAME,
            "slo": f.alert.slo,
            "severity": f.alert.severity.as_str(),
            "rule": f.alert.rule,
        })
    } else {
        json!({
            "alertname": ALERTNAME,
            "slo": f.alert.slo,
            "severity": f.alert.severity.as_str(),
        })
    };
    // Catalog labels never shadow ours: names authpulse sets are refused
    // at load, and ours are written last anyway.
    let mut all = serde_json::Map::new();
    for (k, v) in &routing.labels {
        all.insert(k.clone(), json!(v));
    }
    if let Some(o) = &routing.owner {
        all.insert("owner".into(), json!(o));
    }
    if let Value::Object(ours) = labels.take() {
        all.extend(ours);
    }
    let labels = Value::Object(all);
    let mut annotations = json!({
        "summary": summary(event),
        "description": description(event),
        "rule": f.alert.rule,
    });
    if let Some(u) = &routing.runbook_url {
        annotations["runbook_url"] = json!(u);
    }
    let mut alert = json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339_ms(f.started_ms),
        "generatorURL": generator_url,
    });
    if let Event::Resolve { ended_ms, .. } = event {
        alert["endsAt"] = json!(rfc3339_ms(*ended_ms));
    }
    json!([alert]).to_string()
}

fn dedup_key(a: &super::Alert) -> String {
    if a.is_escalation() {
        return format!("authpulse/{}/{}", a.slo, a.rule);
    }
    format!("authpulse/{}/{}", a.slo, a.severity.as_str())
}

/// PagerDuty Events v2 body: trigger with a payload, resolve by `dedup_key`.
pub fn pagerduty_body(
    event: &Event,
    routing: &Routing,
    routing_key: &str,
    generator_url: &str,
) -> String {
    let a = &event.firing().alert;
    let mut body = json!({
        "routing_key": routing_key,
        "dedup_key": dedup_key(a),
        "client": "authpulse",
        "client_url": generator_url,
    });
    match event {
        Event::Resolve { .. } => body["event_action"] = json!("resolve"),
        _ => {
            body["event_action"] = json!("trigger");
            body["payload"] = json!({
                "summary": summary(event),
                "source": "authpulse",
                "severity": match a.severity {
                    Severity::Page => "critical",
                    Severity::Ticket => "warning",
                },
                "timestamp": rfc3339_ms(event.firing().started_ms),
                "component": a.slo,
                "class": if a.is_escalation() { "privilege_escalation" } else { "slo_burn_rate" },
                "custom_details": {
                    "rule": a.rule,
                    "burn_rates": a.burn_rates(),
                    "factor": a.factor,
                    "description": description(event),
                    "owner": routing.owner,
                    "labels": routing.labels,
                    "runbook_url": routing.runbook_url,
                },
            });
            if let Some(o) = &routing.owner {
                body["payload"]["group"] = json!(o);
            }
            if let Some(u) = &routing.runbook_url {
                body["links"] = json!([{ "href": u, "text": "Runbook" }]);
            }
        }
    }
    body.to_string()
}

/// The webhook's JSON body.
pub fn webhook_body(event: &Event, routing: &Routing, generator_url: &str) -> String {
    let f = event.firing();
    let a = &f.alert;
    let mut body: Value = json!({
        "slo": a.slo,
        "severity": a.severity.as_str(),
        "status": status_word(event),
        "rule": a.rule,
        "burn_rates": a.burn_rates(),
        "factor": a.factor,
        "summary": summary(event),
        "started_at": rfc3339_ms(f.started_ms),
        "generator_url": generator_url,
        "owner": routing.owner,
        "runbook_url": routing.runbook_url,
        "labels": routing.labels,
    });
    if let Event::Resolve { ended_ms, .. } = event {
        body["ended_at"] = json!(rfc3339_ms(*ended_ms));
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::{Alert, Firing};

    fn firing() -> Firing {
        Firing {
            alert: Alert {
                slo: "idp".into(),
                severity: Severity::Page,
                rule: "1h/5m",
                burn_long: 20.0,
                burn_short: 40.0,
                factor: 14.4,
            },
            started_ms: 0,
            last_sent_ms: 0,
        }
    }

    #[test]
    fn retry_after_seconds_or_date_wins_over_a_shorter_backoff() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let b = Duration::from_millis(250);
        assert_eq!(retry_delay(b, None, now), b);
        assert_eq!(retry_delay(b, Some("3"), now), Duration::from_secs(3));
        assert_eq!(
            retry_delay(Duration::from_secs(8), Some("3"), now),
            Duration::from_secs(8)
        );
        assert_eq!(retry_delay(b, Some("86400"), now), MAX_RETRY_AFTER);
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        assert_eq!(
            retry_delay(b, Some("Tue, 14 Nov 2023 22:13:25 GMT"), now),
            Duration::from_secs(5)
        );
        assert_eq!(
            retry_delay(b, Some("Tue, 14 Nov 2023 22:00:00 GMT"), now),
            b
        );
        assert_eq!(retry_delay(b, Some("soon"), now), b);
    }

    #[test]
    fn pagerduty_trigger_and_resolve() {
        let t: Value = serde_json::from_str(&pagerduty_body(
            &Event::Fire(firing()),
            &Routing::default(),
            "KEY",
            "u",
        ))
        .expect("json");
        assert_eq!(t["routing_key"], "KEY");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "authpulse/idp/page");
        assert_eq!(t["payload"]["source"], "authpulse");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["custom_details"]["burn_rates"]["5m"], 40.0);
        let r: Value = serde_json::from_str(&pagerduty_body(
            &Event::Resolve {
                firing: firing(),
                ended_ms: 1000,
            },
            &Routing::default(),
            "KEY",
            "u",
        ))
        .expect("json");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
    }

    #[test]
    fn alertmanager_resolve_has_ends_at() {
        let v: Value = serde_json::from_str(&alertmanager_body(
            &Event::Resolve {
                firing: firing(),
                ended_ms: 1000,
            },
            &Routing::default(),
            "http://c/api/v1/alerts",
        ))
        .expect("json");
        assert_eq!(v[0]["labels"]["alertname"], ALERTNAME);
        assert_eq!(v[0]["labels"]["severity"], "page");
        assert_eq!(v[0]["startsAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v[0]["generatorURL"], "http://c/api/v1/alerts");
    }

    #[test]
    fn escalation_bodies_carry_the_rule() {
        let f = Firing {
            alert: crate::alerting::escalation_alert("authz"),
            started_ms: 0,
            last_sent_ms: 0,
        };
        let am: Value = serde_json::from_str(&alertmanager_body(
            &Event::Fire(f.clone()),
            &Routing::default(),
            "u",
        ))
        .expect("json");
        assert_eq!(am[0]["labels"]["rule"], "escalation");
        assert_eq!(am[0]["labels"]["alertname"], ESCALATION_ALERTNAME);
        assert_eq!(am[0]["labels"]["severity"], "page");
        let pd: Value = serde_json::from_str(&pagerduty_body(
            &Event::Fire(f.clone()),
            &Routing::default(),
            "K",
            "u",
        ))
        .expect("json");
        assert_eq!(pd["dedup_key"], "authpulse/authz/escalation");
        assert_eq!(pd["payload"]["class"], "privilege_escalation");
        let wh: Value =
            serde_json::from_str(&webhook_body(&Event::Fire(f), &Routing::default(), "u"))
                .expect("json");
        assert_eq!(wh["rule"], "escalation");
        assert_eq!(wh["burn_rates"], json!({}));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            format!("{:?}", Secret("s3cr3t".into())),
            "Secret(<redacted>)"
        );
    }
}
