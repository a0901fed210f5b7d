//! An ordinary TCP load balancer, as an operator puts in front of broker replicas (HAProxy
//! or a cloud load balancer in `mode tcp`): each connection goes to the next replica in
//! turn, and to the one after when a replica refuses it. It passes bytes through and
//! terminates nothing: mutual TLS runs end to end between the node and the replica.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};

/// A running balancer on a loopback port; stops when dropped.
#[derive(Debug)]
pub struct Balancer {
    /// Where clients connect.
    pub addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    /// Start on `127.0.0.1:0` in front of `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let list = Arc::new(Mutex::new(backends));
        let next = Arc::new(AtomicUsize::new(0));
        let shared = list.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (list, next) = (shared.clone(), next.clone());
                tokio::spawn(async move {
                    let backends = list.lock().map(|l| l.clone()).unwrap_or_default();
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    for i in 0..backends.len() {
                        let b = backends[(start + i) % backends.len()];
                        if let Ok(mut upstream) = TcpStream::connect(b).await {
                            let mut client = client;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            backends: list,
            task,
        })
    }

    /// Put one more replica behind the balancer.
    pub fn add(&self, backend: SocketAddr) {
        if let Ok(mut l) = self.backends.lock() {
            l.push(backend);
        }
    }

    /// The replicas behind it.
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.backends.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
