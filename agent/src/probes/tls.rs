//! `tls`: connects (see [`super::tcp::connect`]), does a rustls handshake
//! with SNI `server_name`, and checks the certificate the way an SRE wants
//! to hear about it before users do: the chain verifies for the name
//! (system roots plus `ca_file`), it has at least `min_days_remaining` days
//! left, and its SANs include `expect_sans`. The handshake always completes
//! (verification is recorded, not enforced, and nothing is ever sent over
//! the connection) so that an expired or wrong-name certificate is still
//! read and reported with its dates, issuer and names. Steps: `connect`,
//! `handshake`, `certificate`.
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authpulse_proto::catalog::{TlsCheckSpec, split_host_port};
use authpulse_proto::v1::FailureClass;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::time::Instant;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms};
use crate::http::{NetContext, Timings};

impl Probe for TlsCheckSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let mut steps = Vec::new();
        let config_fail = |steps: &mut Vec<StepOutcome>, m: String| {
            steps.push(step(
                "connect",
                Some(Failure::new(FailureClass::Config, m)),
                Timings::default(),
                String::new(),
            ));
        };
        let (host, port) = match split_host_port(&self.address) {
            Ok(hp) => hp,
            Err(e) => {
                config_fail(&mut steps, e);
                return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
            }
        };
        let name = self.server_name.clone().unwrap_or_else(|| host.clone());
        let server_name = match ServerName::try_from(name.clone()) {
            Ok(n) => n,
            Err(e) => {
                config_fail(&mut steps, format!("invalid TLS server name `{name}`: {e}"));
                return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
            }
        };
        let (config, verdict) = match client_config(ctx.session.net(), self) {
            Ok(c) => c,
            Err(e) => {
                config_fail(&mut steps, e);
                return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
            }
        };

        let conn =
            match super::tcp::connect(ctx.session.resolver(), &host, port, ctx.deadline()).await {
                Ok(c) => {
                    let detail = format!("connected to {} in {}", c.peer, ms(c.timings.total));
                    steps.push(step("connect", None, c.timings, detail));
                    c
                }
                Err((f, timings)) => {
                    steps.push(step("connect", Some(f), timings, String::new()));
                    return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
                }
            };
        let target = format!("{name} at {}", conn.peer);

        let started = Instant::now();
        let handshake = tokio_rustls::TlsConnector::from(config).connect(server_name, conn.stream);
        let result = tokio::time::timeout_at(ctx.deadline(), handshake).await;
        let timings = Timings {
            tls: Some(started.elapsed()),
            total: started.elapsed(),
            ..Timings::default()
        };
        let tls = match result {
            Err(_) => {
                let f = Failure::new(
                    FailureClass::Timeout,
                    format!("timed out during TLS handshake ({target})"),
                );
                steps.push(step("handshake", Some(f), timings, String::new()));
                return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
            }
            Ok(Err(e)) => {
                let f = Failure::new(
                    FailureClass::Tls,
                    format!("TLS handshake with {target} failed: {e}"),
                );
                steps.push(step("handshake", Some(f), timings, String::new()));
                return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
            }
            Ok(Ok(s)) => s,
        };
        let session = tls.get_ref().1;
        let version = session
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let leaf = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        if let Some(chain) = session.peer_certificates() {
            ctx.session.certificates.saw(chain);
        }
        steps.push(step(
            "handshake",
            None,
            timings,
            format!("{version} in {}", ms(timings.total)),
        ));
        ctx.output("tls_version", version);
        // Nothing is ever written on this connection: close it now.
        drop(tls);

        let checked = check_certificate(self, &name, leaf.as_ref(), &verdict, ctx);
        steps.push(match checked {
            Ok(detail) => step("certificate", None, Timings::default(), detail),
            Err(f) => step("certificate", Some(f), Timings::default(), String::new()),
        });
        ProbeOutcome::from_steps(steps, ctx.started.elapsed())
    }
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: "tls".into(),
        failure,
        timings,
        detail,
    }
}

/// Reads the leaf certificate, publishes what it says, and applies the
/// checks in order: chain and name, expiry threshold, expected SANs.
fn check_certificate(
    spec: &TlsCheckSpec,
    name: &str,
    leaf: Option<&CertificateDer<'static>>,
    verdict: &Verdict,
    ctx: &mut RunContext<'_>,
) -> Result<String, Failure> {
    let tls_fail = |m: String| Failure::new(FailureClass::Tls, m);
    let Some(leaf) = leaf else {
        return Err(tls_fail(format!("{name}: the server sent no certificate")));
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        Failure::new(
            FailureClass::Protocol,
            format!("{name}: cannot parse the server certificate: {e}"),
        )
    })?;
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    // Whole days, toward zero: 4.9 days left is 4 (below a threshold of
    // 5), 2.1 days past is "expired 2 days ago".
    let days_remaining = (not_after - now) / 86_400;
    let not_after_text = rfc3339(not_after);
    let issuer = cert.issuer().to_string();
    let sans = sans(&cert);
    ctx.output("not_after", not_after_text.clone());
    ctx.output("days_remaining", days_remaining);
    ctx.output("issuer", issuer.clone());
    ctx.output("subject", cert.subject().to_string());
    ctx.output("sans", json!(sans));

    if !spec.insecure_skip_verify
        && let Some(reason) = verdict.error()
    {
        let expired = if not_after < now {
            format!(
                " (expired {} day(s) ago, not after {not_after_text})",
                -days_remaining
            )
        } else {
            String::new()
        };
        return Err(tls_fail(format!(
            "certificate of {name} does not verify: {reason}{expired}; issuer: {issuer}"
        )));
    }
    if days_remaining < i64::from(spec.min_days_remaining) {
        let when = if not_after < now {
            format!("expired {} day(s) ago", -days_remaining)
        } else {
            format!("expires in {days_remaining} days")
        };
        return Err(tls_fail(format!(
            "certificate of {name} {when} (not after {not_after_text}, min_days_remaining {}); issuer: {issuer}",
            spec.min_days_remaining
        )));
    }
    let missing: Vec<&str> = spec
        .expect_sans
        .iter()
        .filter(|want| !sans.iter().any(|have| same_name(have, want)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(tls_fail(format!(
            "certificate of {name} lacks expected SAN(s) {}; it has: {}",
            missing.join(", "),
            sans.join(", ")
        )));
    }
    Ok(format!(
        "{days_remaining} days left (not after {not_after_text}), issuer {issuer}"
    ))
}

/// DNS names and IP addresses from the subjectAltName extension.
fn sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// DNS names compare case-insensitively; IP addresses by value.
fn same_name(have: &str, want: &str) -> bool {
    match (have.parse::<IpAddr>(), want.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => have
            .trim_end_matches('.')
            .eq_ignore_ascii_case(want.trim_end_matches('.')),
    }
}

fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A client config whose verifier records the verdict for [`check_certificate`].
fn client_config(
    net: &NetContext,
    spec: &TlsCheckSpec,
) -> Result<(Arc<rustls::ClientConfig>, Verdict), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = net.trust_roots(spec.ca_file.as_deref(), "ca_file")?;
    // Without any trust anchor (no system CAs, no ca_file) nothing can
    // verify; that is recorded as the verdict, not a config error, so that
    // `insecure_skip_verify` still works on such a host.
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .ok();
    let verdict = Verdict::default();
    let verifier = Arc::new(Recording {
        inner,
        provider: provider.clone(),
        verdict: verdict.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((Arc::new(config), verdict))
}

/// What normal verification said about the presented chain.
#[derive(Clone, Debug, Default)]
struct Verdict(Arc<Mutex<Option<String>>>);

impl Verdict {
    fn error(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
    fn set(&self, e: String) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(e);
        }
    }
}

/// Runs rustls' WebPKI verification and records its result instead of
/// aborting the handshake. Handshake signatures are still checked for real.
#[derive(Debug)]
struct Recording {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    verdict: Verdict,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.inner {
            None => self
                .verdict
                .set("no trusted CA certificates (no system roots and no ca_file)".into()),
            Some(v) => {
                if let Err(e) =
                    v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                {
                    self.verdict.set(e.to_string());
                }
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
