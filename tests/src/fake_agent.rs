//! A scripted agent for ingest tests: one gRPC stream (plain or mTLS) to a
//! coordinator, any message a test wants to send, well-formed or hostile,
//! and the coordinator's answers read one at a time. Also the one builder
//! of wire `ProbeResult`s the ingest tests share.
use std::time::Duration;

use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::agent_service_client::AgentServiceClient;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{
    Ack, AgentMessage, Assignment, CoordinatorMessage, FailureClass, Hello, ProbeResult,
    ResultBatch, Timings,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// How long any single answer may take.
const WAIT: Duration = Duration::from_secs(15);

pub use crate::results::now_ms;

/// A result of `probe` as a real agent would send it: started at
/// `started_ms`, 2 ms long, success or a `connect` failure.
pub fn result(
    agent_id: &str,
    region: &str,
    seq: u64,
    probe: &str,
    ok: bool,
    started_ms: i64,
) -> ProbeResult {
    let r = crate::results::probe_result(agent_id, region, seq, probe)
        .started(started_ms)
        .timings(Timings {
            total_us: 2_000,
            ..Default::default()
        })
        .assignment_version(0);
    if ok {
        r.build()
    } else {
        r.failed(FailureClass::Connect, "").build()
    }
}

/// One agent stream.
pub struct FakeAgent {
    tx: mpsc::Sender<AgentMessage>,
    rx: Streaming<CoordinatorMessage>,
}

impl FakeAgent {
    /// A plaintext channel to an insecure coordinator's gRPC address
    /// (`http://127.0.0.1:PORT`), shared by every stream opened on it.
    pub async fn channel(url: &str) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("endpoint {url}: {e}"))?
            .connect_timeout(Duration::from_secs(5));
        tokio::time::timeout(WAIT, endpoint.connect())
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e:?}"))
    }

    /// Opens a stream on `channel` (a new HTTP/2 stream, same connection).
    pub async fn open(channel: Channel) -> Result<FakeAgent, String> {
        let mut client = AgentServiceClient::new(channel).max_decoding_message_size(16 << 20);
        let (tx, rx) = mpsc::channel(16);
        let response = tokio::time::timeout(WAIT, client.connect(ReceiverStream::new(rx)))
            .await
            .map_err(|_| "stream open timed out".to_string())?
            .map_err(|s| format!("stream: {s}"))?;
        Ok(FakeAgent {
            tx,
            rx: response.into_inner(),
        })
    }

    /// A channel and one stream on it.
    pub async fn connect(url: &str) -> Result<FakeAgent, String> {
        FakeAgent::open(FakeAgent::channel(url).await?).await
    }

    pub async fn send(&self, msg: AgentMsg) -> Result<(), String> {
        self.tx
            .send(AgentMessage { msg: Some(msg) })
            .await
            .map_err(|_| "request stream closed".to_string())
    }

    /// The next message from the coordinator; a status when the stream ended.
    pub async fn next(&mut self) -> Result<CoordMsg, tonic::Status> {
        match self.next_message().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(tonic::Status::cancelled("stream ended")),
            Err(status) => Err(status),
        }
    }

    /// Like [`FakeAgent::next`], telling a clean end of the stream (`None`)
    /// from an error status.
    pub async fn next_message(&mut self) -> Result<Option<CoordMsg>, tonic::Status> {
        match tokio::time::timeout(WAIT, self.rx.message()).await {
            Err(_) => Err(tonic::Status::deadline_exceeded("no answer in time")),
            Ok(Ok(m)) => Ok(m.and_then(|CoordinatorMessage { msg }| msg)),
            Ok(Err(status)) => Err(status),
        }
    }

    /// Sends a whole message as built (a hostile one included).
    pub async fn send_message(&self, msg: AgentMessage) -> Result<(), String> {
        self.tx
            .send(msg)
            .await
            .map_err(|_| "request stream closed".to_string())
    }

    /// Sends `hello`; returns the first ack and the assignment, or what
    /// came instead (a `Reject`'s reason, a status).
    pub async fn hello_with(&mut self, hello: Hello) -> Result<(Ack, Assignment), String> {
        self.send(AgentMsg::Hello(hello)).await?;
        let ack = match self.next().await {
            Ok(CoordMsg::Ack(a)) => a,
            Ok(CoordMsg::Reject(r)) => return Err(format!("rejected: {}", r.reason)),
            other => return Err(format!("expected an ack, got {other:?}")),
        };
        match self.next().await {
            Ok(CoordMsg::Assignment(a)) => Ok((ack, a)),
            other => Err(format!("expected an assignment, got {other:?}")),
        }
    }

    pub async fn hello(
        &mut self,
        agent_id: &str,
        region: &str,
    ) -> Result<(Ack, Assignment), String> {
        self.hello_with(Hello {
            agent_id: agent_id.into(),
            region: region.into(),
            version: "fake-agent".into(),
            sent_unix_ms: now_ms(),
            ..Default::default()
        })
        .await
    }

    /// Sends a batch and returns the ack that answers it (assignments pushed
    /// meanwhile are skipped).
    pub async fn batch(
        &mut self,
        results: Vec<ProbeResult>,
        low_watermark: u64,
    ) -> Result<Ack, String> {
        self.send(AgentMsg::Results(ResultBatch {
            results,
            low_watermark,
        }))
        .await?;
        loop {
            match self.next().await {
                Ok(CoordMsg::Ack(a)) => return Ok(a),
                Ok(CoordMsg::Assignment(_)) => continue,
                Ok(CoordMsg::Reject(r)) => return Err(format!("rejected: {}", r.reason)),
                Err(status) => return Err(format!("stream ended: {status}")),
            }
        }
    }
}
