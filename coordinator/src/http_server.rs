//! The HTTP listener and what request paths share about the database. The
//! listener serves the API router over HTTP/1.1 with the limits that keep
//! one caller from holding the server: a connection must finish each
//! request head within `http.header_read_timeout` (a client that sends half
//! a request line and stops is closed, as is an idle keep-alive connection
//! after that long), at most `http.max_connections` connections are open
//! (more are answered 503 and closed at once), and request bodies are
//! capped by the router ([`crate::api::MAX_BODY_BYTES`]).
//! [`StorageGuard`] puts one deadline (`http.storage_timeout`) on the store
//! work of a request, so a gate, `/readyz` or an API read answers 500/503
//! within it while the database is unreachable instead of waiting on the
//! pool; it logs when storage goes away and comes back, and exports
//! `authpulse_coordinator_storage_up` and `…_storage_errors_total`.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;
use crate::store::StoreError;

/// What a connection over the cap gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\ncontent-length: 42\r\n\r\n{\"error\":\"too many open HTTP connections\"}";

/// How long the accept loop backs off after an accept error (out of file
/// descriptors, typically), so it doesn't spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `stop` is cancelled, then lets open
/// requests finish (idle connections close at once) and returns when every
/// connection is gone.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    stop: CancellationToken,
) {
    metrics::describe_gauge!(
        "authpulse_coordinator_http_connections",
        "Open HTTP connections"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_http_connections_refused_total",
        "HTTP connections closed at accept because http.max_connections were open"
    );
    let max = u32::try_from(config.max_connections)
        .unwrap_or(u32::MAX)
        .min(Semaphore::MAX_PERMITS as u32)
        .max(1);
    let permits = Arc::new(Semaphore::new(max as usize));
    let header_read_timeout = config.header_read_timeout;
    let mut refused_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("authpulse_coordinator_http_connections_refused_total").increment(1);
            if !refused_logged {
                // Once per burst: a flood must not flood the log too.
                tracing::warn!(%peer, max_connections = max,
                    "too many open HTTP connections; closing new ones until some end");
                refused_logged = true;
            }
            // Best effort, never blocking: the answer fits the socket buffer.
            let _ = stream.try_write(BUSY);
            continue;
        };
        refused_logged = false;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        metrics::gauge!("authpulse_coordinator_http_connections").increment(1.0);
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            // Timeouts and resets by clients: not ours to report loudly.
                            tracing::debug!(%peer, error = %e, "HTTP connection ended");
                        }
                        break;
                    }
                    _ = stop.cancelled(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            metrics::gauge!("authpulse_coordinator_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    // Every permit back = every connection closed.
    let _ = permits.acquire_many(max).await;
}

/// Why a request's store work failed, as the caller is told: no details
/// (they are logged), the same words whatever the database said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// No answer within the deadline, or no connection.
    #[error("storage unavailable")]
    Unavailable,
    /// The database answered with an error.
    #[error("storage error")]
    Failed,
}

/// Bodies declared larger than the limit are read and thrown away up to
/// this many bytes before the 413 goes out: a server that answers and
/// closes with unread bytes in its receive buffer makes the kernel reset
/// the connection, and the client sees "connection reset" instead of the
/// 413 that says what was wrong. Beyond this, the client is abusive and
/// gets the reset.
const MAX_DRAIN_BYTES: u64 = 8 << 20;

/// How long draining a refused body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Middleware: a request whose `Content-Length` is over `limit` is answered
/// 413 at once, without reaching a handler, after its body was drained
/// (see [`MAX_DRAIN_BYTES`]). Bodies without a length still meet the
/// handlers' own limit.
pub async fn refuse_oversized(
    limit: usize,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(len) = declared.filter(|n| *n > limit as u64) else {
        return next.run(req).await;
    };
    if len <= MAX_DRAIN_BYTES {
        let mut body = req.into_body().into_data_stream();
        let drain = async {
            use futures_util::StreamExt;
            while let Some(Ok(_)) = body.next().await {}
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    json_error(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {} KiB", limit / 1024),
    )
}

/// The one way a coordinator HTTP handler answers an error: `{"error":
/// message}` with `status`. Messages are written for the caller; internals
/// (SQL, paths, peer addresses) are logged, never put here.
pub fn json_error(status: axum::http::StatusCode, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// A failed store call as a response: the details were logged by the
/// [`StorageGuard`]; the caller (public status feed included) gets 500 and
/// only `storage unavailable` or `storage error`.
impl axum::response::IntoResponse for StorageError {
    fn into_response(self) -> axum::response::Response {
        json_error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            &self.to_string(),
        )
    }
}

/// The deadline on request paths' store work and the storage health they
/// see. Shared by every handler (one per coordinator).
#[derive(Debug)]
pub struct StorageGuard {
    timeout: Duration,
    up: AtomicBool,
}

impl Default for StorageGuard {
    fn default() -> Self {
        StorageGuard::new(HttpConfig::default().storage_timeout)
    }
}

impl StorageGuard {
    pub fn new(timeout: Duration) -> StorageGuard {
        metrics::describe_gauge!(
            "authpulse_coordinator_storage_up",
            "1 while request paths reach the database, 0 after one found it unreachable"
        );
        metrics::describe_counter!(
            "authpulse_coordinator_storage_errors_total",
            "Request-path store calls that failed (kind: timeout, unavailable, error)"
        );
        metrics::gauge!("authpulse_coordinator_storage_up").set(1.0);
        StorageGuard {
            timeout,
            up: AtomicBool::new(true),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `work` (all the store calls of one request) under the deadline.
    /// `what` names the request in logs.
    pub async fn run<T, F>(&self, what: &'static str, work: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(v)) => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    metrics::gauge!("authpulse_coordinator_storage_up").set(1.0);
                    tracing::info!(what, "storage answers again");
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                let unavailable = unreachable(&e);
                let kind = if unavailable { "unavailable" } else { "error" };
                self.failed(what, kind, &e.to_string(), unavailable);
                Err(if unavailable {
                    StorageError::Unavailable
                } else {
                    StorageError::Failed
                })
            }
            Err(_) => {
                let detail = format!(
                    "no answer within {} (http.storage_timeout)",
                    humantime::format_duration(self.timeout)
                );
                self.failed(what, "timeout", &detail, true);
                Err(StorageError::Unavailable)
            }
        }
    }

    fn failed(&self, what: &'static str, kind: &'static str, detail: &str, unavailable: bool) {
        metrics::counter!("authpulse_coordinator_storage_errors_total", "kind" => kind)
            .increment(1);
        if unavailable && self.up.swap(false, Ordering::AcqRel) {
            metrics::gauge!("authpulse_coordinator_storage_up").set(0.0);
            tracing::error!(what, error = %detail,
                "storage unavailable: gates answer unknown and /readyz not ready until it answers again");
        } else if unavailable {
            tracing::debug!(what, error = %detail, "storage still unavailable");
        } else {
            tracing::error!(what, error = %detail, "storage request failed");
        }
    }
}

/// Errors that mean "no database" (no connection, a connection lost
/// mid-query, a server shutting down), as opposed to a database that
/// answered a query with an error.
fn unreachable(e: &StoreError) -> bool {
    let StoreError::Db(e) = e else {
        return false;
    };
    match e {
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: shutdown, cannot connect now.
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::InvalidArgument(_)
        | sqlx::Error::Configuration(_) => false,
        // I/O, TLS, protocol (a connection cut mid-message), pool timeouts.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["error"], "too many open HTTP connections");
    }

    #[tokio::test]
    async fn the_deadline_answers_for_a_store_that_hangs() {
        let guard = StorageGuard::new(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let r: Result<(), _> = guard
            .run("test", std::future::pending::<Result<(), StoreError>>())
            .await;
        assert_eq!(r, Err(StorageError::Unavailable));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!guard.up.load(Ordering::Acquire));
        // Back: the next success marks it up.
        assert_eq!(guard.run("test", async { Ok(7) }).await, Ok(7));
        assert!(guard.up.load(Ordering::Acquire));
        let r: Result<(), _> = guard
            .run("test", async { Err(StoreError::Invalid("x".into())) })
            .await;
        assert_eq!(r, Err(StorageError::Failed));
        assert!(
            guard.up.load(Ordering::Acquire),
            "an answer is not an outage"
        );
        assert_eq!(StorageError::Unavailable.to_string(), "storage unavailable");
    }
}
