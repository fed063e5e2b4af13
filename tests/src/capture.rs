//! A local HTTP/1.1 endpoint that records every request (path, headers,
//! body) and answers with a status chosen per request: the stand-in for
//! receivers we can't run locally (PagerDuty, a customer's webhook).
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

type Status = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

pub struct CaptureServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CaptureServer {
    /// `status` gets the request's index (0-based) and picks the status code.
    pub async fn start(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> CaptureServer {
        let status: Status = Arc::new(status);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let log = log.clone();
                let status = status.clone();
                tokio::spawn(async move {
                    loop {
                        let mut data = Vec::new();
                        let mut buf = [0u8; 8192];
                        let header_end = loop {
                            if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match tcp.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => data.extend_from_slice(&buf[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&data[..header_end]).to_string();
                        let mut lines = head.lines();
                        let path = lines
                            .next()
                            .and_then(|l| l.split(' ').nth(1))
                            .unwrap_or("")
                            .to_string();
                        let headers: Vec<(String, String)> = lines
                            .filter_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
                            })
                            .collect();
                        let len: usize = headers
                            .iter()
                            .find(|(k, _)| k == "content-length")
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        while data.len() < header_end + len {
                            match tcp.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => data.extend_from_slice(&buf[..n]),
                            }
                        }
                        let body = data[header_end..header_end + len].to_vec();
                        let index = {
                            let mut seen = log.lock().expect("lock");
                            seen.push(Captured {
                                path,
                                headers,
                                body,
                            });
                            seen.len() - 1
                        };
                        let code = status(index);
                        let reply = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\n{{}}");
                        if tcp.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        CaptureServer { addr, seen, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
