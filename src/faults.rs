//! Stand-ins for the ways an agency's node fails to answer, on loopback: a host whose
//! node is down, a host that accepts connections and never says a word, and a slow link
//! in front of a real node. The broker is given their addresses as the agencies' routes,
//! so a wide query meets them as it would meet them in a state.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How an agency without a node of its own in the harness fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Its node is down: every connection is closed at once, before TLS.
    Down,
    /// Its host accepts TCP connections and never answers (hung, or a black hole behind a
    /// firewall that completes the handshake): the broker waits out its deadline.
    Silent,
}

/// A running stand-in on a loopback port; stops when dropped.
#[derive(Debug)]
pub struct Stand {
    /// Where the broker is sent.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stand {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stand {
    /// A stand-in that fails as `fault` says.
    pub async fn failing(fault: Fault) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Silent connections are held open (never read, never written) until the stand
            // stops; a down one is dropped as soon as it is accepted.
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                if fault == Fault::Silent {
                    held.push(conn);
                }
            }
        });
        Ok(Self { addr, task })
    }

    /// A slow link to the real node at `node`: every chunk of bytes, either way, is
    /// passed on `delay` after it arrived (so a request and its answer take at least twice
    /// `delay` more than they would, and a TLS handshake four times).
    pub async fn slow(node: SocketAddr, delay: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(node).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (ur, uw) = upstream.into_split();
                    tokio::join!(delayed(cr, uw, delay), delayed(ur, cw, delay));
                });
            }
        });
        Ok(Self { addr, task })
    }
}

/// Copy `from` to `to`, each chunk sent `delay` after it was read. Chunks are read as they
/// come and queued with their arrival time, so the delay is latency, not a bandwidth cap.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
