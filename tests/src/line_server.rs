//! A plain TCP server for the `tcp` probe: optionally greets with a banner
//! (like SSH or SMTP), then answers each line it reads with what the
//! handler returns, after an optional delay. Loopback only.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

type Handler = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct LineServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LineServer {
    /// `banner` is written right after accepting (after `delay`); each line
    /// read is passed to `reply` (without the line ending), whose answer is
    /// written back after `delay`; `None` closes the connection.
    pub async fn start(
        banner: Option<&str>,
        delay: Duration,
        reply: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> LineServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let banner = banner.map(str::to_string);
        let reply: Handler = Arc::new(reply);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let banner = banner.clone();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let (read, mut write) = tcp.into_split();
                    if let Some(b) = banner {
                        tokio::time::sleep(delay).await;
                        if write.write_all(b.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Some(answer) = reply(&line) else { return };
                        tokio::time::sleep(delay).await;
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LineServer { addr, task }
    }
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
