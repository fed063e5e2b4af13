//! A deliberately small HTTP/1.1 server for faults a real peer won't produce
//! on demand: slow answers, connection resets, hangs, 5xx bursts, arbitrary
//! bodies. Plain or TLS (see [`crate::tls`]). Loopback only.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub enum Reply {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        delay: Duration,
    },
    /// Close the connection with a TCP reset, without answering.
    Reset,
    /// Accept, read the request, never answer.
    Hang,
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Respond {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn json(body: &str) -> Reply {
        Reply::Respond {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn delayed(self, d: Duration) -> Reply {
        match self {
            Reply::Respond {
                status,
                headers,
                body,
                ..
            } => Reply::Respond {
                status,
                headers,
                body,
                delay: d,
            },
            other => other,
        }
    }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

pub struct FaultServer {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// `handler` gets the request line (`GET /path HTTP/1.1`) and picks the reply.
    pub async fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FaultServer {
        FaultServer::start_inner(Arc::new(handler), None).await
    }

    pub async fn start_tls(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> FaultServer {
        FaultServer::start_inner(Arc::new(handler), Some(config)).await
    }

    async fn start_inner(handler: Handler, tls: Option<Arc<rustls::ServerConfig>>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let counter = counter.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(cfg) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, handler, counter, None).await;
                            }
                        }
                        None => {
                            let raw = tcp.into_std().ok();
                            let Some(raw) = raw else { return };
                            let Ok(tcp) = tokio::net::TcpStream::from_std(raw) else {
                                return;
                            };
                            serve_tcp(tcp, handler, counter).await;
                        }
                    }
                });
            }
        });
        FaultServer {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_tcp(tcp: tokio::net::TcpStream, handler: Handler, counter: Arc<AtomicUsize>) {
    // Keep a handle able to force an RST (linger 0) for Reply::Reset.
    let std = tcp.into_std().ok();
    let Some(std) = std else { return };
    let Ok(clone) = std.try_clone() else { return };
    let Ok(tcp) = tokio::net::TcpStream::from_std(std) else {
        return;
    };
    serve(tcp, handler, counter, Some(clone)).await;
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: Handler,
    counter: Arc<AtomicUsize>,
    raw: Option<std::net::TcpStream>,
) {
    loop {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if head.len() > 64 * 1024 {
                return;
            }
        }
        counter.fetch_add(1, Ordering::SeqCst);
        let text = String::from_utf8_lossy(&head).to_string();
        let request_line = text.lines().next().unwrap_or("").to_string();
        // Discard a request body so keep-alive stays in sync.
        let content_length: usize = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let header_end = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(head.len());
        let mut have = head.len() - header_end;
        while have < content_length {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        }
        match handler(&request_line) {
            Reply::Reset => {
                if let Some(raw) = &raw {
                    let _ = socket_linger_zero(raw);
                }
                return;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                if stream.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
            }
        }
    }
}

/// SO_LINGER 0 then drop: the kernel answers with RST instead of FIN.
fn socket_linger_zero(raw: &std::net::TcpStream) -> std::io::Result<()> {
    // std has no set_linger on stable; shutting down both halves after
    // setting a zero read timeout is not a reset, so go through tokio.
    let clone = raw.try_clone()?;
    clone.set_nonblocking(true)?;
    let t = tokio::net::TcpStream::from_std(clone)?;
    #[allow(deprecated)]
    t.set_linger(Some(Duration::ZERO))?;
    drop(t);
    raw.shutdown(std::net::Shutdown::Both)
}
