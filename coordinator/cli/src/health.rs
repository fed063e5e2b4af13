//! `authpulse health`: one GET of a health endpoint, answered as an exit
//! status, for the container image's HEALTHCHECK (the runtime image ships no
//! curl or wget, and this binary is already in it). It owns only that
//! request: 0 on a 2xx answer, 1 with a one-line reason on stderr for
//! anything else (an error status, no connection, no answer in time, a URL
//! that doesn't parse) — Docker reads 0 as healthy and 1 as unhealthy, and
//! keeps the output in `docker inspect`.
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

/// The coordinator's `/healthz` as the image's default config serves it.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/healthz";

#[derive(Args)]
pub struct HealthArgs {
    /// The health endpoint to ask. The agent serves it on its `listen`
    /// address: http://127.0.0.1:9464/healthz.
    #[arg(long, env = "AUTHPULSE_HEALTH_URL", value_name = "URL", default_value = DEFAULT_URL)]
    url: String,
    /// Give up after this long (keep it below the orchestrator's own timeout so
    /// the reason is printed before the check is killed).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "3s")]
    timeout: Duration,
}

pub const EXAMPLE: &str = "\
Example:
  authpulse health                                       # the coordinator in this container
  authpulse health --url http://127.0.0.1:9464/healthz   # an agent
  AUTHPULSE_HEALTH_URL=http://127.0.0.1:9464/healthz authpulse health

Exit status: 0 the endpoint answered 2xx, 1 anything else (the reason is
printed on stderr in one line).";

pub async fn run(args: &HealthArgs) -> ExitCode {
    match check(&args.url, args.timeout).await {
        Ok(status) => {
            println!("ok: {} answered {status}", args.url);
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("unhealthy: {}: {why}", args.url);
            ExitCode::from(1)
        }
    }
}

/// The status of a 2xx answer, or why there was none.
async fn check(url: &str, timeout: Duration) -> Result<u16, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // The process being checked is local: an HTTP(S)_PROXY set for the
        // workload's outbound traffic must not carry the check elsewhere.
        .no_proxy()
        .user_agent(concat!("authpulse-health/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {}", humantime::format_duration(timeout))
        } else {
            root_cause(&e)
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The innermost error's message ("Connection refused (os error 111)"):
/// reqwest's outer layers only say that sending failed.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
