//! The transport between an agent and a coordinator in the same process
//! (`authpulse standalone`): every connection is a `tokio::io::duplex` pair
//! whose server half is handed to the coordinator's gRPC server over a
//! channel (`authpulse_coordinator::start_in_process`). No socket is opened,
//! so no other process can reach the coordinator's agent service or pose as
//! the agent; that is what makes running it without TLS safe.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint};

/// Bytes buffered in each direction of one in-process connection.
const BUFFER: usize = 256 * 1024;

/// Hands connections to an in-process coordinator. Part of
/// [`AgentConfig`](crate::AgentConfig) in code only (never in a file).
#[derive(Clone, Debug)]
pub struct InProcessConnector {
    tx: mpsc::Sender<DuplexStream>,
}

impl InProcessConnector {
    /// `tx` delivers the server half of each new connection to the
    /// coordinator's gRPC server.
    pub fn new(tx: mpsc::Sender<DuplexStream>) -> InProcessConnector {
        InProcessConnector { tx }
    }

    /// A gRPC channel over a new in-process connection.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        // The URI only names the :authority; nothing resolves it.
        let channel = Endpoint::from_static("http://in-process.invalid")
            .connect_with_connector(self.clone())
            .await
            .map_err(|e| {
                anyhow::anyhow!("in-process coordinator: {}", crate::http::error_chain(&e))
            })?;
        Ok(channel)
    }
}

impl Service<Uri> for InProcessConnector {
    type Response = TokioIo<DuplexStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let tx = self.tx.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(BUFFER);
            tx.send(server).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "the in-process coordinator has stopped",
                )
            })?;
            Ok(TokioIo::new(client))
        })
    }
}
