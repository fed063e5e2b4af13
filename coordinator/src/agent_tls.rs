//! mTLS on the agent gRPC port, with the TLS accept done here rather than by
//! tonic, so that every refused client is logged **on the server** with its
//! address and the reason (TLS 1.3 clients only see a vague "connection was
//! not ready" or "CertificateRequired").
//!
//! - Client certificates must chain to `tls.client_ca`, be valid now, allow
//!   TLS client authentication (extended key usage) and name exactly one
//!   agent in a URI SAN `spiffe://authpulse/region/<region>/agent/<agent-id>`
//!   ([`authpulse_proto::identity`]).
//! - The verifier wraps rustls' `WebPkiClientVerifier`; each connection gets
//!   its own, knowing the peer address, so a refusal is logged as
//!   `agent TLS handshake refused` with `peer`, `reason` and `why`, and counted
//!   in `authpulse_coordinator_tls_rejected_total{reason}`. Failures outside the
//!   certificate check (no certificate, the client refusing ours, not TLS at
//!   all, a stalled handshake) are logged and counted the same way by the
//!   accept loop. A connection closed before its ClientHello (a TCP health
//!   check) is only logged at debug level.
//! - Handshakes run in their own tasks with a [`HANDSHAKE_TIMEOUT`] and at
//!   most [`MAX_PENDING_HANDSHAKES`] at once; nothing a client does in a
//!   handshake stops the accept loop.
//! - Accepted connections reach tonic as [`AgentTlsStream`]s whose
//!   [`AgentConnectInfo`] (in the request extensions) carries the identity
//!   from the certificate; `ingest` holds the agent's `Hello` against it.
//! - Session resumption is off: every connection presents and verifies its
//!   certificate, so a revoked CA or an expired certificate takes effect at
//!   the next reconnect.
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use authpulse_proto::identity::AgentIdentity;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::config::TlsConfig;

/// A client that hasn't completed the handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; connections past it are closed at once
/// (and counted as `overloaded`).
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// Authenticated agent connections open at once (twice the default
/// `fleet.max_agents`, room for reconnects overlapping old connections);
/// past it new connections are closed at once (`too_many_connections`).
pub const MAX_CONNECTIONS: usize = 20_000;

const REJECTED: &str = "authpulse_coordinator_tls_rejected_total";

/// Registers the metric description (HELP line).
pub fn describe_metrics() {
    metrics::describe_counter!(
        REJECTED,
        "Agent connections refused during the TLS handshake, by reason \
         (unknown_ca, expired, not_yet_valid, bad_usage, no_identity, no_cert, invalid_cert, \
         client_alert, client_closed, not_tls, timeout, overloaded, handshake_failed)"
    );
}

/// What tonic puts into every request's extensions for a connection
/// accepted here.
#[derive(Clone, Debug)]
pub struct AgentConnectInfo {
    pub remote_addr: SocketAddr,
    /// The agent its client certificate names.
    pub identity: AgentIdentity,
}

/// An accepted, authenticated agent connection.
pub struct AgentTlsStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: AgentConnectInfo,
    /// This connection's place under [`MAX_CONNECTIONS`], freed on drop.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Connected for AgentTlsStream {
    type ConnectInfo = AgentConnectInfo;

    fn connect_info(&self) -> AgentConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for AgentTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AgentTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The coordinator's certificate and the client verifier, loaded once.
pub struct AgentTlsAcceptor {
    provider: Arc<CryptoProvider>,
    /// Replaced whole when the files change ([`crate::tls_rotation`]);
    /// each handshake takes the current one, open connections keep theirs.
    material: std::sync::RwLock<Arc<Material>>,
    files: TlsConfig,
}

/// The server certificate and the client trust anchors, as last loaded.
struct Material {
    resolver: Arc<dyn ResolvesServerCert>,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The served leaf certificate's notAfter, seconds since the epoch.
    not_after: Option<i64>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// All certificates in a PEM file; an error naming the file if there are none.
pub fn load_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what} {} is not valid PEM", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{what} {} holds no certificate (expected PEM `BEGIN CERTIFICATE`)",
        path.display()
    );
    Ok(certs)
}

impl AgentTlsAcceptor {
    /// Loads `cert`, `key` and `client_ca`; errors name the file and key.
    pub fn from_config(tls: &TlsConfig) -> anyhow::Result<AgentTlsAcceptor> {
        describe_metrics();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let material = Material::load(tls, &provider)?;
        crate::tls_rotation::export_not_after(material.not_after);
        Ok(AgentTlsAcceptor {
            provider,
            material: std::sync::RwLock::new(Arc::new(material)),
            files: tls.clone(),
        })
    }

    /// The files this acceptor serves from.
    pub fn files(&self) -> &TlsConfig {
        &self.files
    }

    /// Loads the files again and serves them to new handshakes; on any error
    /// the current certificate and trust anchors stay.
    pub fn reload(&self) -> anyhow::Result<Option<i64>> {
        let material = Material::load(&self.files, &self.provider)?;
        let not_after = material.not_after;
        *self
            .material
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(material);
        Ok(not_after)
    }

    fn current(&self) -> Arc<Material> {
        self.material
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Material {
    fn load(tls: &TlsConfig, provider: &Arc<CryptoProvider>) -> anyhow::Result<Material> {
        let chain = load_certs(&tls.cert, "tls.cert")?;
        let not_after = chain.first().and_then(|leaf| {
            x509_parser::parse_x509_certificate(leaf)
                .ok()
                .map(|(_, c)| c.validity().not_after.timestamp())
        });
        let key_pem = read(&tls.key, "tls.key")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| {
            format!(
                "tls.key {} holds no private key (expected PEM `BEGIN PRIVATE KEY`, \
                 `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)",
                tls.key.display()
            )
        })?;
        let certified = CertifiedKey::from_der(chain, key, provider).with_context(|| {
            format!(
                "tls.key {} does not fit tls.cert {}",
                tls.key.display(),
                tls.cert.display()
            )
        })?;

        let mut roots = RootCertStore::empty();
        for (i, ca) in load_certs(&tls.client_ca, "tls.client_ca")?
            .into_iter()
            .enumerate()
        {
            roots.add(ca).with_context(|| {
                format!(
                    "tls.client_ca {}: certificate #{} is not a usable CA certificate",
                    tls.client_ca.display(),
                    i + 1
                )
            })?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .with_context(|| format!("tls.client_ca {}", tls.client_ca.display()))?;
        Ok(Material {
            resolver: Arc::new(SingleCertAndKey::from(certified)),
            verifier,
            not_after,
        })
    }
}

impl AgentTlsAcceptor {
    /// A server config whose verifier logs refusals with `peer`. Cheap: the
    /// key, certificate and trust anchors are shared.
    fn server_config(
        &self,
        peer: SocketAddr,
        logged: Arc<AtomicBool>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let material = self.current();
        let verifier = Arc::new(AuditingVerifier {
            inner: material.verifier.clone(),
            peer,
            logged,
        });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(material.resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// One handshake; `None` when it failed (already logged and counted).
    pub async fn handshake(&self, tcp: TcpStream, peer: SocketAddr) -> Option<AgentTlsStream> {
        let logged = Arc::new(AtomicBool::new(false));
        let config = match self.server_config(peer, logged.clone()) {
            Ok(c) => c,
            Err(e) => {
                refused(peer, "handshake_failed", &format!("TLS setup: {e}"), None);
                return None;
            }
        };
        // ClientHello first, so that a client leaving before it (a TCP health
        // check) can be told from one leaving after seeing our certificate.
        let accept = async {
            let lazy =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let start = lazy.await.map_err(|e| (e, false))?;
            start.into_stream(config).await.map_err(|e| (e, true))
        };
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Err(_) => {
                refused(
                    peer,
                    "timeout",
                    &format!(
                        "no complete TLS handshake within {}s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    ),
                    None,
                );
                return None;
            }
            Ok(Err((e, hello_seen))) => {
                // The verifier has logged certificate refusals itself.
                if !logged.load(Ordering::Relaxed) {
                    handshake_error(peer, &e, hello_seen);
                }
                return None;
            }
            Ok(Ok(tls)) => tls,
        };
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let identity = match leaf.map(|c| AgentIdentity::from_cert_der(c)) {
            Some(Ok(id)) => id,
            // The verifier refuses these; only reachable if that changes.
            Some(Err(e)) => {
                refused(peer, "no_identity", &e.to_string(), None);
                return None;
            }
            None => {
                refused(peer, "no_cert", "the client sent no certificate", None);
                return None;
            }
        };
        tracing::debug!(%peer, agent_id = %identity.agent_id, region = %identity.region, "agent TLS handshake done");
        Some(AgentTlsStream {
            inner: tls,
            info: AgentConnectInfo {
                remote_addr: peer,
                identity,
            },
            _slot: None,
        })
    }
}

/// Logs and counts one refused connection.
fn refused(peer: SocketAddr, reason: &'static str, why: &str, certificate: Option<&str>) {
    match certificate {
        Some(certificate) => tracing::warn!(
            peer = %peer,
            reason,
            why,
            certificate,
            "agent TLS handshake refused"
        ),
        None => tracing::warn!(peer = %peer, reason, why, "agent TLS handshake refused"),
    }
    metrics::counter!(REJECTED, "reason" => reason).increment(1);
}

fn rfc3339(t: UnixTime) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs()))
        .to_string()
}

/// Reason label and explanation for a refused client certificate.
fn certificate_reason(e: &CertificateError) -> (&'static str, String) {
    match e {
        CertificateError::UnknownIssuer => (
            "unknown_ca",
            "the client certificate is not signed by the CA in tls.client_ca".into(),
        ),
        // The chain names a CA of tls.client_ca as issuer, but that CA's key
        // did not sign it: another CA with the same name.
        CertificateError::BadSignature => (
            "unknown_ca",
            "the client certificate is signed by another CA than tls.client_ca that has the same \
             name (its signature does not verify against tls.client_ca)"
                .into(),
        ),
        CertificateError::ExpiredContext { time, not_after } => (
            "expired",
            format!(
                "the client certificate expired at {} (now {})",
                rfc3339(*not_after),
                rfc3339(*time)
            ),
        ),
        CertificateError::Expired => ("expired", "the client certificate has expired".into()),
        CertificateError::NotValidYetContext { time, not_before } => (
            "not_yet_valid",
            format!(
                "the client certificate is valid only from {} (now {}): check clocks",
                rfc3339(*not_before),
                rfc3339(*time)
            ),
        ),
        CertificateError::NotValidYet => (
            "not_yet_valid",
            "the client certificate is not valid yet: check clocks".into(),
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
            "bad_usage",
            "the certificate is not for TLS client authentication (its extended key usage \
             lacks clientAuth): make agent certificates with `authpulse certs agent`"
                .into(),
        ),
        other => (
            "invalid_cert",
            format!("invalid client certificate: {other:?}"),
        ),
    }
}

/// Explains a failed handshake that the verifier did not see.
/// `hello_seen`: the client's ClientHello had arrived.
fn handshake_error(peer: SocketAddr, e: &io::Error, hello_seen: bool) {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::NoCertificatesPresented) => refused(
            peer,
            "no_cert",
            "the client sent no certificate: agents need tls.cert and tls.key",
            None,
        ),
        Some(rustls::Error::AlertReceived(alert)) => refused(
            peer,
            "client_alert",
            &format!(
                "the client aborted the handshake with alert {alert:?}; it probably does not trust \
                 this coordinator's certificate (check the agent's tls.ca and tls.server_name)"
            ),
            None,
        ),
        Some(rustls::Error::InvalidCertificate(ce)) => {
            let (reason, why) = certificate_reason(ce);
            refused(peer, reason, &why, None)
        }
        Some(rustls::Error::InvalidMessage(_)) => refused(
            peer,
            "not_tls",
            &format!(
                "the client does not speak TLS ({e}); is the agent configured with `insecure: true` \
                 or an http:// URL?"
            ),
            None,
        ),
        Some(other) => refused(peer, "handshake_failed", &other.to_string(), None),
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ) =>
        {
            if hello_seen {
                // Some TLS stacks (gRPC's C core) hang up without an alert
                // when they reject the server's certificate.
                refused(
                    peer,
                    "client_closed",
                    &format!(
                        "the client closed the connection after our certificate was sent ({e}); \
                         it probably does not trust this coordinator's certificate (check the \
                         agent's tls.ca and tls.server_name)"
                    ),
                    None,
                )
            } else {
                // A TCP health check or a port scan: not a refusal.
                tracing::debug!(%peer, error = %e, "connection closed before a TLS ClientHello");
            }
        }
        None => refused(peer, "handshake_failed", &e.to_string(), None),
    }
}

/// `WebPkiClientVerifier` plus the agent identity check, logging refusals
/// with the peer address.
#[derive(Debug)]
struct AuditingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    peer: SocketAddr,
    logged: Arc<AtomicBool>,
}

impl AuditingVerifier {
    fn refuse(&self, reason: &'static str, why: &str, end_entity: &CertificateDer<'_>) {
        // What the (unverified) certificate claims, bounded: it is peer data.
        let names: String = match AgentIdentity::from_cert_der(end_entity) {
            Ok(id) => id.to_string(),
            Err(e) => e.to_string(),
        }
        .chars()
        .take(300)
        .collect();
        refused(self.peer, reason, why, Some(&names));
        self.logged.store(true, Ordering::Relaxed);
    }
}

impl ClientCertVerifier for AuditingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => match AgentIdentity::from_cert_der(end_entity) {
                Ok(_) => Ok(verified),
                Err(e) => {
                    self.refuse(
                        "no_identity",
                        &format!("the client certificate names no agent: {e}"),
                        end_entity,
                    );
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::ApplicationVerificationFailure,
                    ))
                }
            },
            Err(rustls::Error::InvalidCertificate(ce)) => {
                let (reason, why) = certificate_reason(&ce);
                self.refuse(reason, &why, end_entity);
                Err(rustls::Error::InvalidCertificate(ce))
            }
            Err(other) => {
                self.refuse("invalid_cert", &other.to_string(), end_entity);
                Err(other)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts TCP connections on `listener`, runs each TLS handshake in its own
/// task, and yields the authenticated connections for
/// `serve_with_incoming_shutdown`. Ends when `stop` is cancelled or the
/// returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    acceptor: AgentTlsAcceptor,
    stop: CancellationToken,
) -> impl tokio_stream::Stream<Item = Result<AgentTlsStream, io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = Arc::new(acceptor);
    tokio::spawn(crate::tls_rotation::watch(acceptor.clone(), stop.clone()));
    tokio::spawn(accept_loop(listener, acceptor, tx, stop));
    tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Arc<AgentTlsAcceptor>,
    tx: mpsc::Sender<AgentTlsStream>,
    stop: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let live = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Per-connection trouble (aborted) or resource limits (EMFILE):
                // pause briefly, keep accepting.
                tracing::warn!(error = %e, "accepting an agent connection failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            refused(
                peer,
                "overloaded",
                &format!("{MAX_PENDING_HANDSHAKES} TLS handshakes already in progress"),
                None,
            );
            continue;
        };
        let Ok(slot) = live.clone().try_acquire_owned() else {
            refused(
                peer,
                "too_many_connections",
                &format!("{MAX_CONNECTIONS} agent connections are open"),
                None,
            );
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = acceptor.handshake(tcp, peer) => s,
            };
            if let Some(mut stream) = stream {
                stream._slot = Some(slot);
                let _ = tx.send(stream).await;
            }
        });
    }
}
