//! `authpulse gate`: one question to the coordinator's gate endpoint (or
//! several with --wait), answered for a person and as an exit status.
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// What one request came back with.
enum Answer {
    /// A decision: `pass` or `fail`, with the JSON it came in.
    Decision { pass: bool, body: Value },
    /// Anything else: unreachable, refused, not a decision. `permanent`
    /// answers (unknown gate, bad token) are not worth asking again.
    Unknown { why: String, permanent: bool },
}

impl Answer {
    fn code(&self) -> ExitCode {
        match self {
            Answer::Decision { pass: true, .. } => ExitCode::SUCCESS,
            Answer::Decision { pass: false, .. } => ExitCode::from(1),
            Answer::Unknown { .. } => ExitCode::from(2),
        }
    }
}

pub async fn run(
    id: &str,
    coordinator: &str,
    wait: Option<Duration>,
    poll: Duration,
    token: Option<&str>,
    json: bool,
) -> ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("authpulse-cli/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authpulse: cannot build an HTTP client: {e}");
            return ExitCode::from(2);
        }
    };
    let url = format!(
        "{}/api/v1/gates/{}",
        coordinator.trim_end_matches('/'),
        percent_encode(id)
    );
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    let mut last_shown = String::new();
    loop {
        let answer = ask(&client, &url, token).await;
        let done = match &answer {
            Answer::Decision { pass: true, .. } => true,
            Answer::Unknown {
                permanent: true, ..
            } => true,
            _ => deadline.is_none_or(|d| tokio::time::Instant::now() + poll > d),
        };
        if done {
            show(id, &answer, json);
            return answer.code();
        }
        // Waiting: say what blocks, once per change, on stderr.
        let now = summary(id, &answer);
        if now != last_shown {
            eprintln!("waiting: {now}");
            last_shown = now;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Path segments are catalog ids ([a-z0-9-]); anything else is escaped
/// so it can't change the path.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn ask(client: &reqwest::Client, url: &str, token: Option<&str>) -> Answer {
    let mut req = client.get(url).header("accept", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t.trim());
    }
    let response = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Answer::Unknown {
                why: format!("coordinator unreachable: {}", error_chain(&e)),
                permanent: false,
            };
        }
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body: Option<Value> = serde_json::from_str(&text).ok();
    let message = body
        .as_ref()
        .and_then(|b| b["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(200).collect());
    match (status, body.as_ref().and_then(|b| b["decision"].as_str())) {
        (200, Some("pass")) => Answer::Decision {
            pass: true,
            body: body.unwrap_or_default(),
        },
        (200 | 503, Some("fail")) => Answer::Decision {
            pass: false,
            body: body.unwrap_or_default(),
        },
        (401 | 403, _) => Answer::Unknown {
            why: format!(
                "HTTP {status}: token refused: {message} (pass --token or AUTHPULSE_TOKEN with scope `gate`)"
            ),
            permanent: true,
        },
        (404, _) => Answer::Unknown {
            why: format!("HTTP 404: {message}"),
            permanent: true,
        },
        _ => Answer::Unknown {
            why: format!("HTTP {status}: not a gate decision: {message}"),
            permanent: false,
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn summary(id: &str, answer: &Answer) -> String {
    match answer {
        Answer::Decision { pass, body } => {
            let reasons: Vec<&str> = body["reasons"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "gate {id}: {}{}",
                if *pass { "PASS" } else { "FAIL" },
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", reasons.join("; "))
                }
            )
        }
        Answer::Unknown { why, .. } => format!("gate {id}: UNKNOWN — {why}"),
    }
}

fn show(id: &str, answer: &Answer, json: bool) {
    match answer {
        Answer::Decision { body, .. } if json => println!("{body}"),
        Answer::Decision { pass, body } => {
            println!(
                "gate {id}: {} (evaluated {})",
                if *pass { "PASS" } else { "FAIL" },
                body["evaluated_at"].as_str().unwrap_or("?")
            );
            for r in body["reasons"].as_array().into_iter().flatten() {
                println!("  - {}", r.as_str().unwrap_or_default());
            }
            for n in body["notes"].as_array().into_iter().flatten() {
                println!("  note: {}", n.as_str().unwrap_or_default());
            }
            for s in body["slos"].as_array().into_iter().flatten() {
                let n = |k: &str| {
                    s[k].as_f64()
                        .map(|x| format!("{x:.4}"))
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "  {}: {} sli {} budget remaining {} burn 1h {}",
                    s["id"].as_str().unwrap_or("?"),
                    s["state"].as_str().unwrap_or("?"),
                    n("sli_value"),
                    n("error_budget_remaining"),
                    s["burn_rates"]["1h"]
                        .as_f64()
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        Answer::Unknown { why, .. } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"gate": id, "decision": "unknown", "error": why})
                );
            }
            eprintln!("gate {id}: UNKNOWN — {why}");
        }
    }
}
