//! `tcp`: resolves `host` (hickory, no cache, timed as `dns`), connects to
//! the first address that accepts (timed as `connect`), then optionally
//! writes `send` and reads until the bytes received match `expect` (a
//! banner or a reply), timed as `ttfb` to the first byte. Also owns the
//! resolve-and-connect helper the `tls` kind shares, so both kinds time and
//! classify DNS and connect failures the same way.
use std::net::{IpAddr, SocketAddr};

use authpulse_proto::catalog::{TcpSpec, split_host_port};
use authpulse_proto::v1::FailureClass;
use hickory_resolver::TokioResolver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms, snippet};
use crate::http::Timings;

/// How much of a reply we read while waiting for `expect` to match.
const MAX_REPLY_BYTES: usize = 64 * 1024;

impl Probe for TcpSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let mut steps = Vec::new();
        let (host, port) = match split_host_port(&self.address) {
            Ok(hp) => hp,
            Err(e) => {
                steps.push(step(
                    "connect",
                    Some(Failure::new(FailureClass::Config, e)),
                    Timings::default(),
                    String::new(),
                ));
                return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
            }
        };
        let expect = match self.expect.as_deref().map(regex::Regex::new).transpose() {
            Ok(re) => re,
            Err(e) => {
                let f = Failure::new(FailureClass::Config, format!("expect: {e}"));
                steps.push(step("connect", Some(f), Timings::default(), String::new()));
                return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
            }
        };
        let (stream, peer) =
            match connect(ctx.session.resolver(), &host, port, ctx.deadline()).await {
                Ok(c) => {
                    let detail = format!("connected to {} in {}", c.peer, ms(c.timings.total));
                    steps.push(step("connect", None, c.timings, detail));
                    (c.stream, c.peer)
                }
                Err((f, timings)) => {
                    steps.push(step("connect", Some(f), timings, String::new()));
                    return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
                }
            };
        ctx.output("peer", peer.to_string());
        if self.send.is_some() || expect.is_some() {
            let (outcome, received) =
                exchange(stream, peer, self.send.as_deref(), expect.as_ref(), ctx).await;
            if let Some(text) = received {
                ctx.output("received", text);
            }
            steps.push(outcome);
        }
        ProbeOutcome::from_steps(steps, ctx.started.elapsed())
    }
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: "tcp".into(),
        failure,
        timings,
        detail,
    }
}

/// Writes `send`, then reads until `expect` matches, the peer closes, or
/// the deadline passes. Returns the step and the text received.
async fn exchange(
    mut stream: TcpStream,
    peer: SocketAddr,
    send: Option<&str>,
    expect: Option<&regex::Regex>,
    ctx: &RunContext<'_>,
) -> (StepOutcome, Option<String>) {
    let started = Instant::now();
    let mut timings = Timings::default();
    let deadline = ctx.deadline();
    let done = |failure: Option<Failure>, timings: Timings, detail: String| {
        step("exchange", failure, timings, detail)
    };
    if let Some(text) = send {
        let write = tokio::time::timeout_at(deadline, stream.write_all(text.as_bytes())).await;
        let failure = match write {
            Err(_) => Some(Failure::new(
                FailureClass::Timeout,
                format!("timed out writing `send` to {peer}"),
            )),
            Ok(Err(e)) => Some(Failure::new(
                FailureClass::Connect,
                format!("writing `send` to {peer} failed: {e}"),
            )),
            Ok(Ok(())) => None,
        };
        if failure.is_some() {
            timings.total = started.elapsed();
            return (done(failure, timings, String::new()), None);
        }
    }
    let Some(re) = expect else {
        timings.total = started.elapsed();
        let detail = format!("sent {} byte(s)", send.map_or(0, str::len));
        return (done(None, timings, detail), None);
    };
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let waited = Instant::now();
    let failure = loop {
        if re.is_match(&String::from_utf8_lossy(&received)) {
            break None;
        }
        if received.len() >= MAX_REPLY_BYTES {
            break Some(Failure::new(
                FailureClass::Assertion,
                format!(
                    "{MAX_REPLY_BYTES} bytes from {peer} without a match for /{re}/: {}",
                    snippet(&received)
                ),
            ));
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => {
                break Some(Failure::new(
                    FailureClass::Timeout,
                    format!(
                        "timed out waiting for a reply matching /{re}/ from {peer} ({} byte(s) received: {:?})",
                        received.len(),
                        snippet(&received)
                    ),
                ));
            }
            Ok(Ok(0)) => {
                break Some(Failure::new(
                    FailureClass::Assertion,
                    format!(
                        "{peer} closed the connection after {} byte(s) without a match for /{re}/: {:?}",
                        received.len(),
                        snippet(&received)
                    ),
                ));
            }
            Ok(Ok(n)) => {
                if received.is_empty() {
                    timings.ttfb = Some(waited.elapsed());
                }
                received.extend_from_slice(&buf[..n]);
            }
            Ok(Err(e)) => {
                break Some(Failure::new(
                    FailureClass::Connect,
                    format!("reading from {peer} failed: {e}"),
                ));
            }
        }
    };
    timings.total = started.elapsed();
    let text = super::one_line(&received);
    let detail = format!("reply matches /{re}/ after {}", ms(timings.total));
    (done(failure, timings, detail), Some(text))
}

/// A connected socket and what getting it cost.
pub(crate) struct Connected {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub timings: Timings,
}

/// Resolves `host` (unless it is an address) and connects to `port` on the
/// first address that accepts, both bounded by `deadline`. Failures carry
/// the timings of the phases that completed.
pub(crate) async fn connect(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Connected, (Failure, Timings)> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let addrs = match resolve(resolver, host, deadline, &mut timings).await {
        Ok(a) => a,
        Err(f) => {
            timings.total = started.elapsed();
            return Err((f, timings));
        }
    };
    let target = format!("{host}:{port}");
    let connecting = Instant::now();
    let mut last_err = String::new();
    for ip in addrs {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                timings.connect = Some(connecting.elapsed());
                timings.total = started.elapsed();
                return Err((
                    Failure::new(
                        FailureClass::Timeout,
                        format!("timed out during TCP connect ({addr})"),
                    ),
                    timings,
                ));
            }
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                timings.connect = Some(connecting.elapsed());
                timings.total = started.elapsed();
                return Ok(Connected {
                    stream,
                    peer: addr,
                    timings,
                });
            }
            Ok(Err(e)) => last_err = format!("{addr}: {e}"),
        }
    }
    timings.connect = Some(connecting.elapsed());
    timings.total = started.elapsed();
    Err((
        Failure::new(
            FailureClass::Connect,
            format!("connect to {target} failed: {last_err}"),
        ),
        timings,
    ))
}

/// The addresses of `host` through the agent's hickory resolver (system
/// configuration, no cache: every run measures a real lookup, like `http`).
async fn resolve(
    resolver: &TokioResolver,
    host: &str,
    deadline: Instant,
    timings: &mut Timings,
) -> Result<Vec<IpAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let started = Instant::now();
    let lookup = tokio::time::timeout_at(deadline, resolver.lookup_ip(host)).await;
    timings.dns = Some(started.elapsed());
    match lookup {
        Err(_) => Err(Failure::new(
            FailureClass::Timeout,
            format!("timed out during DNS lookup ({host})"),
        )),
        Ok(Err(e)) => Err(Failure::new(
            FailureClass::Dns,
            format!("DNS lookup of {host} failed: {e}"),
        )),
        Ok(Ok(l)) => {
            let addrs: Vec<IpAddr> = l.iter().collect();
            if addrs.is_empty() {
                Err(Failure::new(
                    FailureClass::Dns,
                    format!("DNS lookup of {host} returned no addresses"),
                ))
            } else {
                Ok(addrs)
            }
        }
    }
}

/// A resolver from the system configuration (resolv.conf, hosts), cache off.
pub(crate) fn system_resolver() -> Result<TokioResolver, String> {
    let mut builder = TokioResolver::builder_tokio().map_err(|e| e.to_string())?;
    builder.options_mut().cache_size = 0;
    builder.build().map_err(|e| e.to_string())
}
