//! A real authoritative DNS server (hickory-server, in process) serving one
//! zone file on 127.0.0.1 over UDP and TCP on the same port, for the `dns`
//! probe tests; plus a UDP black hole (reads queries, never answers) for
//! timeouts. The zone is written as a standard RFC 1035 master file.
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::store::file::{FileConfig, FileZoneHandler};
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

use crate::TempDir;

pub struct DnsServer {
    /// UDP and TCP, same port.
    pub addr: SocketAddr,
    _server: Server<Catalog>,
    _dir: TempDir,
}

impl DnsServer {
    /// Serves `zone` (a master file; `$ORIGIN` is `origin`) authoritatively.
    pub async fn start(origin: &str, zone: &str) -> DnsServer {
        let dir = TempDir::new("ap-dns");
        let path = dir.path().join("zone.db");
        std::fs::write(&path, zone).expect("write zone file");
        let name = Name::from_str(origin).expect("origin");
        let handler = FileZoneHandler::try_from_config(
            name.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            None,
            &FileConfig { zone_path: path },
        )
        .unwrap_or_else(|e| panic!("zone file rejected by hickory-server: {e}"));
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(name), vec![Arc::new(handler)]);

        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("udp addr");
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
        DnsServer {
            addr,
            _server: server,
            _dir: dir,
        }
    }
}

/// A UDP port on 127.0.0.1 and a TCP listener on the same port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("udp addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A UDP "DNS server" that reads every query and never answers.
pub struct DnsBlackHole {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DnsBlackHole {
    pub async fn start() -> DnsBlackHole {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while udp.recv_from(&mut buf).await.is_ok() {}
        });
        DnsBlackHole { addr, task }
    }
}

impl Drop for DnsBlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}
