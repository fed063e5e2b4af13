//! Timed HTTP for probes. reqwest hides the phases SREs need, so this drives
//! hyper directly: DNS through hickory (no cache, so every run pays a real
//! lookup), TCP connect, TLS handshake (rustls, ALPN h2/http1.1), time to
//! first byte and total, each bounded by the run's deadline. A `Session` is
//! one probe run: it starts with no connections and no cookies (a user's
//! first login) and reuses its own connections and cookie jar across the
//! steps of that run (a journey's login cookies reach its later steps).
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authpulse_proto::catalog::TlsSpec;
use authpulse_proto::v1::FailureClass;
use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::Url;

/// Bodies above this are cut off and fail the exchange: probes read
/// discovery documents and tokens, not downloads.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const MAX_REDIRECTS: usize = 10;
const USER_AGENT: &str = concat!("authpulse-agent/", env!("CARGO_PKG_VERSION"));

/// Phase timings of one run; phases that did not happen stay `None`.
/// dns+connect+tls+ttfb plus body transfer add up to the time spent in HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub dns: Option<Duration>,
    pub connect: Option<Duration>,
    pub tls: Option<Duration>,
    /// Request written → first response byte, summed over requests.
    pub ttfb: Option<Duration>,
    pub total: Duration,
}

impl Timings {
    pub fn absorb(&mut self, other: &Timings) {
        fn add(a: &mut Option<Duration>, b: Option<Duration>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or_default() + b);
            }
        }
        add(&mut self.dns, other.dns);
        add(&mut self.connect, other.connect);
        add(&mut self.tls, other.tls);
        add(&mut self.ttfb, other.ttfb);
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    pub class: FailureClass,
    pub message: String,
    /// Phases completed before the failure.
    pub timings: Timings,
}

pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub follow_redirects: bool,
    pub tls: &'a TlsSpec,
}

impl<'a> Request<'a> {
    pub fn get(url: Url, tls: &'a TlsSpec) -> Request<'a> {
        Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            follow_redirects: true,
            tls,
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// After redirects.
    pub url: Url,
    pub timings: Timings,
}

/// (extra CA file, skip verification, ALPN offer).
type TlsKey = (Option<String>, bool, Alpn);

/// The ALPN protocols a TLS client config offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `h2`, `http/1.1`: HTTP probes.
    Http,
    /// Nothing: protocols without ALPN (LDAP).
    None,
}

/// Shared by all runs of an agent: the resolver and the TLS trust roots.
pub struct NetContext {
    resolver: TokioResolver,
    roots: Arc<rustls::RootCertStore>,
    /// Client configs by (extra CA file, skip-verify); building one parses
    /// PEM and sets up rustls state we don't want on every run.
    tls_configs: Mutex<HashMap<TlsKey, Arc<rustls::ClientConfig>>>,
}

impl NetContext {
    pub fn new() -> anyhow::Result<NetContext> {
        let mut builder = TokioResolver::builder_tokio()?;
        // Each run measures a real lookup, like blackbox_exporter does.
        builder.options_mut().cache_size = 0;
        let resolver = builder.build()?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // Ignore individual bad system certs instead of refusing to start.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            tracing::warn!("no system CA certificates found; HTTPS probes need `tls.ca_file`");
        }
        Ok(NetContext {
            resolver,
            roots: Arc::new(roots),
            tls_configs: Mutex::new(HashMap::new()),
        })
    }

    /// The system trust roots (read once, at start) plus `ca_file`; `field`
    /// names the setting in errors (`tls.ca_file`, `ca_file`).
    pub fn trust_roots(
        &self,
        ca_file: Option<&Path>,
        field: &str,
    ) -> Result<rustls::RootCertStore, String> {
        let mut roots = (*self.roots).clone();
        if let Some(path) = ca_file {
            add_pem_roots(&mut roots, path, field)?;
        }
        Ok(roots)
    }

    /// A client config for `spec`, built once per (ca_file, skip-verify,
    /// ALPN) and shared by every run.
    pub fn client_config(
        &self,
        spec: &TlsSpec,
        alpn: Alpn,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let ca = spec.ca_file.as_ref().map(|p| p.display().to_string());
        let key = (ca, spec.insecure_skip_verify, alpn);
        if let Ok(cache) = self.tls_configs.lock()
            && let Some(c) = cache.get(&key)
        {
            return Ok(c.clone());
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if spec.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let roots = self.trust_roots(spec.ca_file.as_deref(), "tls.ca_file")?;
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        // Every run is a new client, as blackbox_exporter's are: a full
        // handshake that presents and verifies the certificate each time.
        // With resumption (rustls keeps tickets in a shared config) a run
        // would skip both, so a replaced or broken certificate could pass
        // and the `tls` phase would time the cheap path.
        config.resumption = rustls::client::Resumption::disabled();
        if alpn == Alpn::Http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        let config = Arc::new(config);
        if let Ok(mut cache) = self.tls_configs.lock() {
            cache.insert(key, config.clone());
        }
        Ok(config)
    }
}

fn add_pem_roots(
    roots: &mut rustls::RootCertStore,
    path: &Path,
    field: &str,
) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("{field} {}: {e}", path.display()))?;
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{field} {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{field} {}: {e}", path.display()))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("{field} {}: no PEM certificates", path.display()));
    }
    Ok(())
}

/// `tls.insecure_skip_verify`: accept any certificate, still check handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    scheme: String,
    host: String,
    port: u16,
    tls: Option<(Option<String>, bool, Option<String>)>,
}

/// One probe run's HTTP state: its connections, and the deadline all phases share.
pub struct Session<'n> {
    net: &'n NetContext,
    deadline: Instant,
    conns: HashMap<ConnKey, Sender>,
    cookies: reqwest::cookie::Jar,
    /// The earliest certificate expiry any handshake of this run saw.
    pub certificates: crate::cert_expiry::EarliestExpiry,
}

fn fail(class: FailureClass, message: impl Into<String>, timings: Timings) -> HttpError {
    HttpError {
        class,
        message: message.into(),
        timings,
    }
}

impl<'n> Session<'n> {
    pub fn new(net: &'n NetContext, deadline: Instant) -> Session<'n> {
        Session {
            net,
            deadline,
            conns: HashMap::new(),
            cookies: reqwest::cookie::Jar::default(),
            certificates: crate::cert_expiry::EarliestExpiry::default(),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The agent's shared network context (resolver, trust roots, TLS
    /// client configs), for probes that speak other protocols than HTTP.
    pub fn net(&self) -> &'n NetContext {
        self.net
    }

    /// The agent's resolver (system configuration, no cache), for probes
    /// that resolve names themselves (`tcp`, `tls`).
    pub fn resolver(&self) -> &TokioResolver {
        &self.net.resolver
    }

    /// The `Cookie` header this session would send to `url`, if any.
    pub fn cookies_for(&self, url: &Url) -> Option<HeaderValue> {
        use reqwest::cookie::CookieStore;
        self.cookies.cookies(url)
    }

    /// Sends a request, following redirects if asked; timings cover every hop.
    pub async fn send(&mut self, req: Request<'_>) -> Result<Response, HttpError> {
        let started = Instant::now();
        let mut timings = Timings::default();
        let mut method = req.method.clone();
        let mut url = req.url.clone();
        let mut body = req.body.clone();
        let mut hops = 0;
        loop {
            let hop = self
                .send_once(
                    &method,
                    &url,
                    &req.headers,
                    body.clone(),
                    req.tls,
                    &mut timings,
                )
                .await;
            let (status, headers, resp_body) = match hop {
                Ok(r) => r,
                Err(mut e) => {
                    timings.total = started.elapsed();
                    e.timings = timings;
                    return Err(e);
                }
            };
            let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok());
            if req.follow_redirects
                && status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
                && let Some(loc) = location
            {
                {
                    hops += 1;
                    if hops > MAX_REDIRECTS {
                        timings.total = started.elapsed();
                        return Err(fail(
                            FailureClass::Protocol,
                            format!("more than {MAX_REDIRECTS} redirects"),
                            timings,
                        ));
                    }
                    url = match url.join(loc) {
                        Ok(u) => u,
                        Err(e) => {
                            timings.total = started.elapsed();
                            return Err(fail(
                                FailureClass::Protocol,
                                format!("redirect to an invalid Location `{loc}`: {e}"),
                                timings,
                            ));
                        }
                    };
                    // 303 (and, by browser practice, 301/302 after POST) become GET.
                    if status == StatusCode::SEE_OTHER
                        || ((status == StatusCode::MOVED_PERMANENTLY
                            || status == StatusCode::FOUND)
                            && method == Method::POST)
                    {
                        method = Method::GET;
                        body = None;
                    }
                    continue;
                }
            }
            timings.total = started.elapsed();
            return Ok(Response {
                status,
                headers,
                body: resp_body,
                url,
                timings,
            });
        }
    }

    async fn within<T>(
        &self,
        phase: &str,
        target: &str,
        fut: impl Future<Output = T>,
    ) -> Result<T, HttpError> {
        within(self.deadline, phase, target, fut).await
    }

    async fn send_once(
        &mut self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<Bytes>,
        tls: &TlsSpec,
        timings: &mut Timings,
    ) -> Result<(StatusCode, HeaderMap, Bytes), HttpError> {
        let host = url
            .host_str()
            .ok_or_else(|| {
                fail(
                    FailureClass::Config,
                    format!("URL `{url}` has no host"),
                    *timings,
                )
            })?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().ok_or_else(|| {
            fail(
                FailureClass::Config,
                format!("URL `{url}` has no port"),
                *timings,
            )
        })?;
        let is_tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(fail(
                    FailureClass::Config,
                    format!("unsupported scheme `{other}`"),
                    *timings,
                ));
            }
        };
        let key = ConnKey {
            scheme: url.scheme().to_string(),
            host: host.clone(),
            port,
            tls: is_tls.then(|| {
                (
                    tls.ca_file.as_ref().map(|p| p.display().to_string()),
                    tls.insecure_skip_verify,
                    tls.server_name.clone(),
                )
            }),
        };
        let reusable = match self.conns.get_mut(&key) {
            Some(Sender::H1(s)) => s.ready().await.is_ok(),
            Some(Sender::H2(s)) => s.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.conns.remove(&key);
            let sender = self.connect(&host, port, is_tls, tls, timings).await?;
            self.conns.insert(key.clone(), sender);
        }

        let mut builder = http::Request::builder().method(method.clone());
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
            None => url.host_str().unwrap_or(&host).to_string(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let is_h2 = matches!(self.conns.get(&key), Some(Sender::H2(_)));
        builder = if is_h2 {
            builder.uri(format!("{}://{authority}{path}", url.scheme()))
        } else {
            builder.uri(&path).header(header::HOST, authority.as_str())
        };
        let mut request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| {
                fail(
                    FailureClass::Config,
                    format!("invalid request: {e}"),
                    *timings,
                )
            })?;
        let h = request.headers_mut();
        for (name, value) in headers {
            h.append(name, value.clone());
        }
        h.entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(USER_AGENT));
        if !h.contains_key(header::COOKIE)
            && let Some(mut c) = self.cookies_for(url)
        {
            // Session cookies authenticate: keep them out of debug output.
            c.set_sensitive(true);
            h.insert(header::COOKIE, c);
        }
        h.entry(header::ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));

        let sent = Instant::now();
        let target = format!("{host}:{port}");
        let deadline = self.deadline;
        let response = match self.conns.get_mut(&key) {
            Some(Sender::H1(s)) => within_send(deadline, &target, s.send_request(request)).await,
            Some(Sender::H2(s)) => within_send(deadline, &target, s.send_request(request)).await,
            None => Err(fail(
                FailureClass::Internal,
                "connection vanished",
                *timings,
            )),
        };
        let response = match response {
            Ok(r) => r,
            Err(mut e) => {
                self.conns.remove(&key);
                e.timings = *timings;
                return Err(e);
            }
        };
        timings.ttfb = Some(timings.ttfb.unwrap_or_default() + sent.elapsed());
        let (parts, body) = response.into_parts();
        {
            use reqwest::cookie::CookieStore;
            let mut set = parts.headers.get_all(header::SET_COOKIE).iter();
            self.cookies.set_cookies(&mut set, url);
        }
        let collected =
            tokio::time::timeout_at(self.deadline, Limited::new(body, MAX_BODY_BYTES).collect())
                .await;
        let bytes = match collected {
            Err(_) => {
                return Err(fail(
                    FailureClass::Timeout,
                    format!("timed out reading the body ({target})"),
                    *timings,
                ));
            }
            Ok(Err(e)) => {
                self.conns.remove(&key);
                let msg = if e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    format!("response body larger than {MAX_BODY_BYTES} bytes")
                } else {
                    format!("reading the body from {target}: {e}")
                };
                return Err(fail(FailureClass::Protocol, msg, *timings));
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
        Ok((parts.status, parts.headers, bytes))
    }

    async fn connect(
        &self,
        host: &str,
        port: u16,
        is_tls: bool,
        tls: &TlsSpec,
        timings: &mut Timings,
    ) -> Result<Sender, HttpError> {
        let target = format!("{host}:{port}");
        // DNS, unless the host is an address already.
        let addrs: Vec<IpAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            vec![ip]
        } else {
            let started = Instant::now();
            let lookup = self
                .within("DNS lookup", host, self.net.resolver.lookup_ip(host))
                .await
                .map_err(|e| HttpError {
                    timings: *timings,
                    ..e
                })?;
            timings.dns = Some(timings.dns.unwrap_or_default() + started.elapsed());
            match lookup {
                Ok(l) => l.iter().collect(),
                Err(e) => {
                    return Err(fail(
                        FailureClass::Dns,
                        format!("DNS lookup of {host} failed: {e}"),
                        *timings,
                    ));
                }
            }
        };
        if addrs.is_empty() {
            return Err(fail(
                FailureClass::Dns,
                format!("DNS lookup of {host} returned no addresses"),
                *timings,
            ));
        }

        // TCP: try each address in order until one accepts.
        let started = Instant::now();
        let mut last_err = String::new();
        let mut stream = None;
        for ip in &addrs {
            let addr = SocketAddr::new(*ip, port);
            match self
                .within("TCP connect", &target, TcpStream::connect(addr))
                .await
            {
                Err(e) => {
                    timings.connect = Some(started.elapsed());
                    return Err(HttpError {
                        timings: *timings,
                        ..e
                    });
                }
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last_err = format!("{addr}: {e}"),
            }
        }
        timings.connect = Some(timings.connect.unwrap_or_default() + started.elapsed());
        let Some(tcp) = stream else {
            return Err(fail(
                FailureClass::Connect,
                format!("connect to {target} failed: {last_err}"),
                *timings,
            ));
        };
        let _ = tcp.set_nodelay(true);

        let (io, h2): (Box<dyn Io>, bool) = if is_tls {
            let config = self
                .net
                .client_config(tls, Alpn::Http)
                .map_err(|m| fail(FailureClass::Config, m, *timings))?;
            let name = tls.server_name.as_deref().unwrap_or(host).to_string();
            let server_name = ServerName::try_from(name.clone()).map_err(|e| {
                fail(
                    FailureClass::Config,
                    format!("invalid TLS server name `{name}`: {e}"),
                    *timings,
                )
            })?;
            let started = Instant::now();
            let handshake = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp);
            let result = self
                .within("TLS handshake", &target, handshake)
                .await
                .map_err(|e| HttpError {
                    timings: *timings,
                    ..e
                })?;
            timings.tls = Some(timings.tls.unwrap_or_default() + started.elapsed());
            let tls_stream = result.map_err(|e| {
                fail(
                    FailureClass::Tls,
                    format!("TLS handshake with {target} failed: {e}"),
                    *timings,
                )
            })?;
            let session = tls_stream.get_ref().1;
            if let Some(chain) = session.peer_certificates() {
                self.certificates.saw(chain);
            }
            let h2 = session.alpn_protocol() == Some(b"h2");
            (Box::new(tls_stream), h2)
        } else {
            (Box::new(tcp), false)
        };

        let io = TokioIo::new(io);
        let sender = if h2 {
            let (sender, conn) = self
                .within(
                    "HTTP/2 handshake",
                    &target,
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io),
                )
                .await?
                .map_err(|e| {
                    fail(
                        FailureClass::Protocol,
                        format!("HTTP/2 handshake with {target}: {e}"),
                        *timings,
                    )
                })?;
            // In the probe run's span, so hyper's connection logs name the probe.
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let _ = conn.await;
            }));
            Sender::H2(sender)
        } else {
            let (sender, conn) = self
                .within(
                    "HTTP/1 handshake",
                    &target,
                    hyper::client::conn::http1::handshake(io),
                )
                .await?
                .map_err(|e| {
                    fail(
                        FailureClass::Protocol,
                        format!("HTTP/1 handshake with {target}: {e}"),
                        *timings,
                    )
                })?;
            // In the probe run's span, so hyper's connection logs name the probe.
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let _ = conn.await;
            }));
            Sender::H1(sender)
        };
        Ok(sender)
    }
}

async fn within<T>(
    deadline: Instant,
    phase: &str,
    target: &str,
    fut: impl Future<Output = T>,
) -> Result<T, HttpError> {
    tokio::time::timeout_at(deadline, fut).await.map_err(|_| {
        fail(
            FailureClass::Timeout,
            format!("timed out during {phase} ({target})"),
            Timings::default(),
        )
    })
}

async fn within_send(
    deadline: Instant,
    target: &str,
    fut: impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
    match within(
        deadline,
        "the request (waiting for the first byte)",
        target,
        fut,
    )
    .await?
    {
        Ok(r) => Ok(r),
        // The server accepted the connection and then failed it (reset,
        // closed mid-response): the transport broke, not the protocol.
        Err(e) => Err(fail(
            FailureClass::Connect,
            format!("request to {target} failed: {}", error_chain(&e)),
            Timings::default(),
        )),
    }
}

/// "a: b: c" from an error and its sources; hyper's top-level messages alone
/// ("connection closed before message completed") hide the cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_str = s.to_string();
        if !out.contains(&s_str) {
            out.push_str(": ");
            out.push_str(&s_str);
        }
        cur = s.source();
    }
    out
}
