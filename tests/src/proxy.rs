//! A TCP proxy on loopback whose link can be cut and restored, to simulate a
//! network partition between an agent and the coordinator. While cut, every
//! open connection is closed and new ones are closed right after accept.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut so connection tasks can notice.
    generation: watch::Sender<u64>,
    counter: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let counter = Arc::new(AtomicU64::new(0));
        let (c, g, n) = (cut.clone(), generation.clone(), counter.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                n.fetch_add(1, Ordering::SeqCst);
                let mut gen_rx = g.subscribe();
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut upstream) = (client, upstream);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = gen_rx.changed() => {}
                    }
                });
            }
        });
        CuttableProxy {
            addr,
            cut,
            generation,
            counter,
            task,
        }
    }

    /// Cuts the link: open connections close, new ones are refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
