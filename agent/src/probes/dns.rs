//! `dns`: one query through hickory, to the system resolver (resolv.conf
//! and the hosts file, as applications see it) or to an explicit `server`
//! over UDP or TCP, never cached, timed as `dns`. NXDOMAIN and empty
//! answers fail with class `dns`; answers that differ from `expect` (all
//! present, or exactly these with `exact`) fail with class `assertion`.
use std::net::{IpAddr, SocketAddr};

use authpulse_proto::catalog::{DnsProtocol, DnsRecordType, DnsSpec};
use authpulse_proto::v1::FailureClass;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use serde_json::json;
use tokio::time::Instant;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms};
use crate::http::Timings;

impl Probe for DnsSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let outcome = query(self, ctx).await;
        ProbeOutcome::from_steps(vec![outcome], ctx.started.elapsed())
    }
}

async fn query(spec: &DnsSpec, ctx: &mut RunContext<'_>) -> StepOutcome {
    let rtype = spec.record_type;
    let name = spec.name.trim();
    let step = |failure: Option<Failure>, timings: Timings, detail: String| StepOutcome {
        name: "query".into(),
        kind: "dns".into(),
        failure,
        timings,
        detail,
    };
    let server = match spec.server_addr().transpose() {
        Ok(s) => s,
        Err(e) => {
            let f = Failure::new(FailureClass::Config, format!("server: {e}"));
            return step(Some(f), Timings::default(), String::new());
        }
    };
    let via = match server {
        Some(addr) => format!("{addr} ({})", protocol_name(spec.protocol)),
        None => "the system resolver".to_string(),
    };
    let resolver = match resolver(server, spec.protocol) {
        Ok(r) => r,
        Err(e) => {
            let f = Failure::new(FailureClass::Dns, format!("resolver setup: {e}"));
            return step(Some(f), Timings::default(), String::new());
        }
    };

    let started = Instant::now();
    let result =
        tokio::time::timeout_at(ctx.deadline(), resolver.lookup(name, record_type(rtype))).await;
    let elapsed = started.elapsed();
    let timings = Timings {
        dns: Some(elapsed),
        total: elapsed,
        ..Timings::default()
    };
    let what = format!("{} {name} via {via}", rtype.name());
    let lookup = match result {
        Err(_) => {
            let f = Failure::new(FailureClass::Timeout, format!("timed out querying {what}"));
            return step(Some(f), timings, String::new());
        }
        Ok(Err(e)) => return step(Some(lookup_failure(&e, &what)), timings, String::new()),
        Ok(Ok(l)) => l,
    };
    // Only records of the asked type are answers; a CNAME chain leading to
    // them is not.
    let wanted = record_type(rtype);
    let answers: Vec<String> = lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == wanted)
        .map(|r| answer_text(&r.data))
        .collect();
    ctx.output("answers", json!(answers));
    if answers.is_empty() {
        let f = Failure::new(
            FailureClass::Dns,
            format!("no {} records for {name} (via {via})", rtype.name()),
        );
        return step(Some(f), timings, String::new());
    }
    if let Err(f) = check(spec, &answers, &what) {
        return step(Some(f), timings, String::new());
    }
    let detail = format!("{what}: {} in {}", answers.join(", "), ms(elapsed));
    step(None, timings, detail)
}

fn protocol_name(p: DnsProtocol) -> &'static str {
    match p {
        DnsProtocol::Udp => "udp",
        DnsProtocol::Tcp => "tcp",
    }
}

/// A resolver without a cache: the system one, or one that asks only `server`.
fn resolver(server: Option<SocketAddr>, protocol: DnsProtocol) -> Result<TokioResolver, String> {
    let Some(addr) = server else {
        return super::tcp::system_resolver();
    };
    let mut connection = match protocol {
        DnsProtocol::Udp => ConnectionConfig::udp(),
        DnsProtocol::Tcp => ConnectionConfig::tcp(),
    };
    connection.port = addr.port();
    let ns = NameServerConfig::new(addr.ip(), true, vec![connection]);
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts = builder.options_mut();
    opts.cache_size = 0;
    // Asking a specific server means its answer, not the hosts file's.
    opts.use_hosts_file = ResolveHosts::Never;
    builder.build().map_err(|e| e.to_string())
}

fn record_type(t: DnsRecordType) -> RecordType {
    match t {
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Cname => RecordType::CNAME,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Txt => RecordType::TXT,
        DnsRecordType::Ns => RecordType::NS,
        DnsRecordType::Srv => RecordType::SRV,
        DnsRecordType::Ptr => RecordType::PTR,
        DnsRecordType::Soa => RecordType::SOA,
        DnsRecordType::Caa => RecordType::CAA,
    }
}

fn lookup_failure(e: &NetError, what: &str) -> Failure {
    if e.is_nx_domain() {
        return Failure::new(
            FailureClass::Dns,
            format!("NXDOMAIN: {what}: the name does not exist"),
        );
    }
    if e.is_no_records_found() {
        return Failure::new(FailureClass::Dns, format!("no records: {what}: {e}"));
    }
    if matches!(e, NetError::Timeout) {
        return Failure::new(
            FailureClass::Timeout,
            format!("no answer to {what}: the resolver timed out"),
        );
    }
    Failure::new(FailureClass::Dns, format!("query {what} failed: {e}"))
}

/// An answer in the form users write in `expect`.
fn answer_text(data: &RData) -> String {
    let name = |n: &hickory_resolver::proto::rr::Name| {
        n.to_string().trim_end_matches('.').to_ascii_lowercase()
    };
    match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => name(&n.0),
        RData::NS(n) => name(&n.0),
        RData::PTR(n) => name(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name(&mx.exchange)),
        RData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, name(&s.target)),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        other => other.to_string(),
    }
}

/// Normalized for comparison: addresses by value, names without case or
/// trailing dot; TXT is compared as written.
fn normalize(t: DnsRecordType, s: &str) -> String {
    let s = s.trim();
    match t {
        DnsRecordType::Txt => s.to_string(),
        DnsRecordType::A | DnsRecordType::Aaaa => s
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| s.to_string()),
        _ => s
            .split_whitespace()
            .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn check(spec: &DnsSpec, answers: &[String], what: &str) -> Result<(), Failure> {
    if spec.expect.is_empty() {
        return Ok(());
    }
    let t = spec.record_type;
    let have: Vec<String> = answers.iter().map(|a| normalize(t, a)).collect();
    let want: Vec<String> = spec.expect.iter().map(|a| normalize(t, a)).collect();
    let missing: Vec<&String> = want.iter().filter(|w| !have.contains(w)).collect();
    let extra: Vec<&String> = have.iter().filter(|h| !want.contains(h)).collect();
    let fail = |m: String| Err(Failure::new(FailureClass::Assertion, m));
    if !missing.is_empty() {
        return fail(format!(
            "{what} answered [{}]; missing expected [{}]",
            answers.join(", "),
            join(&missing)
        ));
    }
    if spec.exact && !extra.is_empty() {
        return fail(format!(
            "{what} answered [{}]; unexpected [{}] (exact: true)",
            answers.join(", "),
            join(&extra)
        ));
    }
    Ok(())
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
