//! `ldap`: binds as a synthetic user the way an application would, then
//! optionally searches and checks a group membership. Steps: `connect` (DNS
//! and TCP, done here so the phase is timed on its own), `tls` (ldaps:// or
//! StartTLS, through ldap3 on that socket), `bind`, `search`, `member_of`.
//! Every operation is bounded by the run deadline. A rejected bind
//! (invalidCredentials/inappropriateAuthentication) is `auth_rejected`; any
//! other LDAP result code is `protocol` with the code's name; an expectation
//! not met (too few entries, missing attribute, not a member) is `assertion`.
//! Outputs: `dn` (the bound DN), `groups` (the user's `memberOf` values, when
//! membership was checked), `entries` (DNs the search returned, at most 20).
use std::net::SocketAddr;

use authpulse_proto::catalog::{LdapMembership, LdapScope, LdapSearch, LdapSpec};
use authpulse_proto::v1::FailureClass;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, StdStream};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure, ms};
use crate::http::{Alpn, NetContext, Timings};
use crate::secrets;

/// At most this many entry DNs are published as the `entries` output.
const MAX_ENTRY_OUTPUTS: usize = 20;

impl Probe for LdapSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let target = match Target::parse(self) {
            Ok(t) => t,
            Err(m) => return config_failure(ctx, "ldap", m),
        };
        let password = match secrets::resolve(&self.password, ctx.secrets, &ctx.redactor) {
            Ok(p) if p.is_empty() => {
                return config_failure(
                    ctx,
                    "ldap",
                    "the password is empty: that would be an anonymous bind, which proves nothing",
                );
            }
            Ok(p) => p,
            Err(e) => return config_failure(ctx, "ldap", e.to_string()),
        };
        let deadline = ctx.deadline();
        let mut steps = Vec::new();

        let (tcp, step) = connect(&target, deadline).await;
        steps.push(step);
        let Some(tcp) = tcp else {
            return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
        };

        let (ldap, tls_step) = open(ctx.session.net(), self, &target, tcp, deadline).await;
        steps.extend(tls_step);
        let Some(mut ldap) = ldap else {
            return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
        };

        let bind = bind(&mut ldap, &self.bind_dn, &password, deadline).await;
        let bound = bind.failure.is_none();
        steps.push(bind);
        if bound {
            ctx.output("dn", self.bind_dn.clone());
            if let Some(search) = &self.search {
                let (step, dns) = run_search(&mut ldap, search, deadline).await;
                steps.push(step);
                if let Some(dns) = dns {
                    ctx.output("entries", dns);
                }
            }
            if let Some(group) = &self.member_of
                && steps.iter().all(|s| s.failure.is_none())
            {
                let (step, groups) =
                    member_of(&mut ldap, &self.bind_dn, group, self.membership, deadline).await;
                steps.push(step);
                if let Some(groups) = groups {
                    ctx.output("groups", groups);
                }
            }
        }
        // Best effort: a polite close, never worth failing or waiting for.
        let _ = tokio::time::timeout_at(deadline, ldap.unbind()).await;
        ProbeOutcome::from_steps(steps, ctx.started.elapsed())
    }
}

/// Where to connect and how, from the URL.
struct Target {
    host: String,
    port: u16,
    ldaps: bool,
}

impl Target {
    fn parse(spec: &LdapSpec) -> Result<Target, String> {
        let url = url::Url::parse(&spec.url).map_err(|e| format!("url `{}`: {e}", spec.url))?;
        let ldaps = match url.scheme() {
            "ldap" => false,
            "ldaps" => true,
            other => return Err(format!("url `{}`: unsupported scheme `{other}`", spec.url)),
        };
        if ldaps && spec.starttls {
            return Err("starttls is for ldap:// URLs; ldaps:// is TLS from the start".into());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("url `{}` has no host", spec.url))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
        Ok(Target { host, port, ldaps })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: "ldap".into(),
        failure,
        timings,
        detail,
    }
}

fn failed(name: &str, failure: Failure, timings: Timings) -> StepOutcome {
    step(name, Some(failure), timings, String::new())
}

/// Step `connect`: DNS (unless the host is an address) and TCP, each
/// timed, trying addresses in order.
async fn connect(target: &Target, deadline: Instant) -> (Option<TcpStream>, StepOutcome) {
    let started = Instant::now();
    let mut timings = Timings::default();
    let addrs: Vec<SocketAddr> = if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
        vec![SocketAddr::new(ip, target.port)]
    } else {
        let lookup = tokio::time::timeout_at(
            deadline,
            tokio::net::lookup_host((target.host.as_str(), target.port)),
        )
        .await;
        timings.dns = Some(started.elapsed());
        timings.total = started.elapsed();
        match lookup {
            Err(_) => {
                let f = Failure::new(
                    FailureClass::Timeout,
                    format!("timed out during DNS lookup of {}", target.host),
                );
                return (None, failed("connect", f, timings));
            }
            Ok(Err(e)) => {
                let f = Failure::new(
                    FailureClass::Dns,
                    format!("DNS lookup of {} failed: {e}", target.host),
                );
                return (None, failed("connect", f, timings));
            }
            Ok(Ok(addrs)) => addrs.collect(),
        }
    };
    if addrs.is_empty() {
        timings.total = started.elapsed();
        let f = Failure::new(
            FailureClass::Dns,
            format!("DNS lookup of {} returned no addresses", target.host),
        );
        return (None, failed("connect", f, timings));
    }
    let connect_started = Instant::now();
    let mut last_err = String::new();
    for addr in &addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                timings.connect = Some(connect_started.elapsed());
                timings.total = started.elapsed();
                let f = Failure::new(
                    FailureClass::Timeout,
                    format!("timed out during TCP connect ({addr})"),
                );
                return (None, failed("connect", f, timings));
            }
            Ok(Ok(s)) => {
                timings.connect = Some(connect_started.elapsed());
                timings.total = started.elapsed();
                let _ = s.set_nodelay(true);
                let detail = format!("connected to {addr} in {}", ms(timings.total));
                return (Some(s), step("connect", None, timings, detail));
            }
            Ok(Err(e)) if addrs.len() == 1 => last_err = e.to_string(),
            Ok(Err(e)) => last_err = format!("{addr}: {e}"),
        }
    }
    timings.connect = Some(connect_started.elapsed());
    timings.total = started.elapsed();
    let f = Failure::new(
        FailureClass::Connect,
        format!("connect to {} failed: {last_err}", target.addr()),
    );
    (None, failed("connect", f, timings))
}

/// Hands the socket to ldap3, which runs the TLS handshake (ldaps://) or
/// StartTLS then the handshake; step `tls` times that. Plain ldap:// has no
/// step of its own. Returns the operation handle with its connection
/// driven in the background.
async fn open(
    net: &NetContext,
    spec: &LdapSpec,
    target: &Target,
    tcp: TcpStream,
    deadline: Instant,
) -> (Option<Ldap>, Option<StepOutcome>) {
    let tls = target.ldaps || spec.starttls;
    let mut settings = LdapConnSettings::new().set_starttls(spec.starttls);
    let tcp = match tcp.into_std() {
        Ok(s) => s,
        Err(e) => {
            let f = Failure::new(FailureClass::Internal, format!("socket handover: {e}"));
            return (None, Some(failed("tls", f, Timings::default())));
        }
    };
    settings = settings.set_std_stream(StdStream::Tcp(tcp));
    if tls {
        // No ALPN: LDAP has none.
        match net.client_config(&spec.tls, Alpn::None) {
            Ok(c) => settings = settings.set_config(c),
            Err(m) => {
                let f = Failure::new(FailureClass::Config, m);
                return (None, Some(failed("tls", f, Timings::default())));
            }
        }
    }
    // With a socket given, ldap3 uses the URL's host only as the TLS server
    // name: put the name to verify there.
    let name = spec.tls.server_name.as_deref().unwrap_or(&target.host);
    let host = if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_string()
    };
    let scheme = if target.ldaps { "ldaps" } else { "ldap" };
    let url = format!("{scheme}://{host}:{}", target.port);

    let started = Instant::now();
    let opened =
        tokio::time::timeout_at(deadline, LdapConnAsync::with_settings(settings, &url)).await;
    let mut timings = Timings::default();
    if tls {
        timings.tls = Some(started.elapsed());
    }
    timings.total = started.elapsed();
    let how = if spec.starttls {
        "StartTLS"
    } else {
        "TLS handshake"
    };
    let (conn, ldap) = match opened {
        Err(_) => {
            let f = Failure::new(
                FailureClass::Timeout,
                format!("timed out during the {how} with {}", target.addr()),
            );
            return (None, Some(failed("tls", f, timings)));
        }
        Ok(Err(e)) => {
            let f = tls_failure(how, &target.addr(), e);
            let name = if tls { "tls" } else { "connect" };
            return (None, Some(failed(name, f, timings)));
        }
        Ok(Ok(pair)) => pair,
    };
    // In the probe run's span, so ldap3's connection logs name the probe.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        // Ends when the handle is dropped or the server closes.
        let _ = conn.drive().await;
    }));
    let step = tls.then(|| {
        step(
            "tls",
            None,
            timings,
            format!("{how} with {} in {}", target.addr(), ms(timings.total)),
        )
    });
    (Some(ldap), step)
}

fn tls_failure(how: &str, addr: &str, e: LdapError) -> Failure {
    match e {
        LdapError::LdapResult { result } => Failure::new(
            FailureClass::Tls,
            format!(
                "{addr} refused StartTLS: {} ({}){}",
                rc_name(result.rc),
                result.rc,
                text(&result.text)
            ),
        ),
        other => Failure::new(
            FailureClass::Tls,
            format!(
                "{how} with {addr} failed: {}",
                crate::http::error_chain(&other)
            ),
        ),
    }
}

/// Step `bind`: a simple bind as the synthetic user.
async fn bind(ldap: &mut Ldap, dn: &str, password: &str, deadline: Instant) -> StepOutcome {
    let started = Instant::now();
    let result = tokio::time::timeout_at(deadline, ldap.simple_bind(dn, password)).await;
    let timings = op_timings(started);
    match result {
        Err(_) => failed(
            "bind",
            Failure::new(FailureClass::Timeout, format!("timed out binding as {dn}")),
            timings,
        ),
        Ok(Err(e)) => failed("bind", op_failure("bind", e), timings),
        Ok(Ok(res)) if res.rc == 0 => step(
            "bind",
            None,
            timings,
            format!("bound as {dn} in {}", ms(timings.total)),
        ),
        // 48 inappropriateAuthentication, 49 invalidCredentials: the
        // directory said no to these credentials.
        Ok(Ok(res)) if matches!(res.rc, 48 | 49) => failed(
            "bind",
            Failure::new(
                FailureClass::AuthRejected,
                format!(
                    "bind as {dn} rejected: {} ({}){}",
                    rc_name(res.rc),
                    res.rc,
                    text(&res.text)
                ),
            ),
            timings,
        ),
        Ok(Ok(res)) => failed(
            "bind",
            Failure::new(
                FailureClass::Protocol,
                format!(
                    "bind as {dn} failed: {} ({}){}",
                    rc_name(res.rc),
                    res.rc,
                    text(&res.text)
                ),
            ),
            timings,
        ),
    }
}

/// Step `search`: entries and attributes the bound user must see. The size
/// limit is `min_entries` so a broad filter stays cheap; hitting it
/// (sizeLimitExceeded) is fine when enough entries came back.
async fn run_search(
    ldap: &mut Ldap,
    search: &LdapSearch,
    deadline: Instant,
) -> (StepOutcome, Option<Vec<String>>) {
    let scope = match search.scope {
        LdapScope::Base => Scope::Base,
        LdapScope::One => Scope::OneLevel,
        LdapScope::Sub => Scope::Subtree,
    };
    let attrs: Vec<&str> = if search.attributes.is_empty() {
        // "1.1": no attributes, only DNs.
        vec!["1.1"]
    } else {
        search.attributes.iter().map(String::as_str).collect()
    };
    let limit = i32::try_from(search.min_entries.max(1)).unwrap_or(i32::MAX);
    let started = Instant::now();
    let result = tokio::time::timeout_at(
        deadline,
        ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(limit))
            .search(&search.base, scope, &search.filter, attrs),
    )
    .await;
    let timings = op_timings(started);
    let what = format!("search {} under {}", search.filter, search.base);
    let (entries, res) = match result {
        Err(_) => {
            let f = Failure::new(FailureClass::Timeout, format!("timed out during {what}"));
            return (failed("search", f, timings), None);
        }
        Ok(Err(e)) => return (failed("search", op_failure(&what, e), timings), None),
        Ok(Ok(ldap3::SearchResult(entries, res))) => (entries, res),
    };
    let entries: Vec<SearchEntry> = entries.into_iter().map(SearchEntry::construct).collect();
    // 4 sizeLimitExceeded: we asked for no more than we need.
    if res.rc != 0 && !(res.rc == 4 && entries.len() >= search.min_entries) {
        let f = Failure::new(
            FailureClass::Protocol,
            format!(
                "{what}: {} ({}){}",
                rc_name(res.rc),
                res.rc,
                text(&res.text)
            ),
        );
        return (failed("search", f, timings), None);
    }
    let dns: Vec<String> = entries
        .iter()
        .take(MAX_ENTRY_OUTPUTS)
        .map(|e| e.dn.clone())
        .collect();
    if entries.len() < search.min_entries {
        let f = Failure::new(
            FailureClass::Assertion,
            format!(
                "{what} returned {} entries, expected at least {}",
                entries.len(),
                search.min_entries
            ),
        );
        return (failed("search", f, timings), Some(dns));
    }
    for entry in &entries {
        for attr in &search.attributes {
            // Binary values (jpegPhoto, certificates) land in bin_attrs.
            let present = entry
                .attrs
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(attr) && !v.is_empty())
                || entry
                    .bin_attrs
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(attr) && !v.is_empty());
            if !present {
                let f = Failure::new(
                    FailureClass::Assertion,
                    format!("{what}: entry {} has no `{attr}`", entry.dn),
                );
                return (failed("search", f, timings), Some(dns));
            }
        }
    }
    let detail = format!(
        "{} entr{} in {}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        ms(timings.total)
    );
    (step("search", None, timings, detail), Some(dns))
}

/// Step `member_of`: is the bound user in `group`? Through the user's
/// `memberOf` attribute, the group's `member`/`uniqueMember`, or (auto)
/// either. Returns the `memberOf` values read, if any were.
async fn member_of(
    ldap: &mut Ldap,
    user_dn: &str,
    group: &str,
    mode: LdapMembership,
    deadline: Instant,
) -> (StepOutcome, Option<Vec<String>>) {
    let started = Instant::now();
    let want = normalize_dn(group);
    let mut groups = None;
    if matches!(mode, LdapMembership::Auto | LdapMembership::Attribute) {
        let result = tokio::time::timeout_at(
            deadline,
            ldap.search(user_dn, Scope::Base, "(objectClass=*)", vec!["memberOf"]),
        )
        .await;
        let what = format!("reading memberOf of {user_dn}");
        let values = match result {
            Err(_) => {
                let f = Failure::new(FailureClass::Timeout, format!("timed out {what}"));
                return (failed("member_of", f, op_timings(started)), None);
            }
            Ok(Err(e)) => {
                return (
                    failed("member_of", op_failure(&what, e), op_timings(started)),
                    None,
                );
            }
            Ok(Ok(ldap3::SearchResult(entries, res))) if res.rc == 0 => entries
                .into_iter()
                .map(SearchEntry::construct)
                .flat_map(|e| {
                    e.attrs
                        .into_iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
                        .flat_map(|(_, v)| v)
                })
                .collect::<Vec<_>>(),
            Ok(Ok(ldap3::SearchResult(_, res))) => {
                let f = Failure::new(
                    FailureClass::Protocol,
                    format!(
                        "{what}: {} ({}){}",
                        rc_name(res.rc),
                        res.rc,
                        text(&res.text)
                    ),
                );
                return (failed("member_of", f, op_timings(started)), None);
            }
        };
        let found = values.iter().any(|v| normalize_dn(v) == want);
        groups = Some(values);
        if found {
            let detail = format!("member of {group} (memberOf)");
            return (step("member_of", None, op_timings(started), detail), groups);
        }
    }
    if matches!(mode, LdapMembership::Auto | LdapMembership::Group) {
        let escaped = ldap3::ldap_escape(user_dn);
        let filter = format!("(|(member={escaped})(uniqueMember={escaped}))");
        let result = tokio::time::timeout_at(
            deadline,
            ldap.search(group, Scope::Base, &filter, vec!["1.1"]),
        )
        .await;
        let what = format!("searching {group} for member {user_dn}");
        match result {
            Err(_) => {
                let f = Failure::new(FailureClass::Timeout, format!("timed out {what}"));
                return (failed("member_of", f, op_timings(started)), groups);
            }
            Ok(Err(e)) => {
                return (
                    failed("member_of", op_failure(&what, e), op_timings(started)),
                    groups,
                );
            }
            Ok(Ok(ldap3::SearchResult(_, res))) if res.rc == 32 => {
                let f = Failure::new(
                    FailureClass::Assertion,
                    format!(
                        "group {group} does not exist (noSuchObject), so {user_dn} is not a member"
                    ),
                );
                return (failed("member_of", f, op_timings(started)), groups);
            }
            Ok(Ok(ldap3::SearchResult(entries, res))) if res.rc == 0 => {
                if !entries.is_empty() {
                    let detail = format!("member of {group} (group entry)");
                    return (step("member_of", None, op_timings(started), detail), groups);
                }
            }
            Ok(Ok(ldap3::SearchResult(_, res))) => {
                let f = Failure::new(
                    FailureClass::Protocol,
                    format!(
                        "{what}: {} ({}){}",
                        rc_name(res.rc),
                        res.rc,
                        text(&res.text)
                    ),
                );
                return (failed("member_of", f, op_timings(started)), groups);
            }
        }
    }
    let via = match mode {
        LdapMembership::Auto => "neither its memberOf nor the group's member/uniqueMember",
        LdapMembership::Attribute => "its memberOf",
        LdapMembership::Group => "the group's member/uniqueMember",
    };
    let listed = match &groups {
        Some(g) if !g.is_empty() => format!("; memberOf: {}", g.join(" | ")),
        Some(_) => "; memberOf is empty".to_string(),
        None => String::new(),
    };
    let f = Failure::new(
        FailureClass::Assertion,
        format!("{user_dn} is not a member of {group} ({via} lists it){listed}"),
    );
    (failed("member_of", f, op_timings(started)), groups)
}

/// Timings of one LDAP operation: its round trip counts as time to first byte.
fn op_timings(started: Instant) -> Timings {
    Timings {
        ttfb: Some(started.elapsed()),
        total: started.elapsed(),
        ..Timings::default()
    }
}

/// Errors ldap3 returns from an operation (not result codes the server
/// sent back in a successful exchange, which callers classify).
fn op_failure(what: &str, e: LdapError) -> Failure {
    match e {
        LdapError::LdapResult { result } if matches!(result.rc, 48 | 49) => Failure::new(
            FailureClass::AuthRejected,
            format!(
                "{what}: {} ({}){}",
                rc_name(result.rc),
                result.rc,
                text(&result.text)
            ),
        ),
        LdapError::LdapResult { result } => Failure::new(
            FailureClass::Protocol,
            format!(
                "{what}: {} ({}){}",
                rc_name(result.rc),
                result.rc,
                text(&result.text)
            ),
        ),
        LdapError::FilterParsing => Failure::new(
            FailureClass::Config,
            format!("{what}: invalid search filter"),
        ),
        LdapError::Timeout { .. } => {
            Failure::new(FailureClass::Timeout, format!("{what}: timed out"))
        }
        // The connection broke under the operation.
        e @ (LdapError::Io { .. }
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::EndOfStream) => Failure::new(
            FailureClass::Connect,
            format!("{what}: connection lost: {}", crate::http::error_chain(&e)),
        ),
        other => Failure::new(
            FailureClass::Protocol,
            format!("{what}: {}", crate::http::error_chain(&other)),
        ),
    }
}

fn text(t: &str) -> String {
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

/// Names of RFC 4511 result codes, as SREs will search for them.
fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        80 => "other",
        _ => "unknown result code",
    }
}

/// DNs compare case-insensitively and without the spaces some servers put
/// after commas (`cn=SRE, ou=Groups` is `cn=sre,ou=groups`).
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split('=')
                .map(|p| p.trim().to_lowercase())
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_compare_loosely() {
        assert_eq!(
            normalize_dn("CN=SRE, OU=Groups,dc=Example ,dc=org"),
            normalize_dn("cn=sre,ou=groups,dc=example,dc=org")
        );
        assert_ne!(normalize_dn("cn=sre2,dc=x"), normalize_dn("cn=sre,dc=x"));
    }
}
