//! A loopback TCP proxy that can cut what passes through it: the way the fault tests and the
//! fault suite take storage (or any peer) away from a process and give it back, without
//! touching the server behind it, which other tests share.
//!
//! Cut, it is what a stopped server is to its clients: every open connection is closed and new
//! ones are refused (nothing listens on the port); restored, it listens on the same port again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop while listening; `None` while cut.
    accepting: Mutex<Option<JoinHandle<()>>>,
    /// Turned up on every cut: each connection's copy ends when it changes.
    epoch: watch::Sender<u64>,
    passed: Arc<Mutex<u64>>,
}

impl Proxy {
    /// Starts a proxy on a fresh loopback port to `upstream`, passing connections on.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let proxy = Proxy {
            addr,
            upstream,
            accepting: Mutex::new(None),
            epoch: watch::channel(0u64).0,
            passed: Arc::default(),
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&self, listener: TcpListener) {
        let (epoch, passed, upstream) = (self.epoch.clone(), self.passed.clone(), self.upstream);
        let task = tokio::spawn(async move {
            loop {
                // Subscribed before the accept: a cut while a connection is being accepted
                // still ends it.
                let mut ended = epoch.subscribe();
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                *passed.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        *self.accepting.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and stops listening until [`Proxy::restore`]: new
    /// connections are refused.
    pub fn cut(&self) {
        if let Some(task) = self
            .accepting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        self.epoch.send_modify(|n| *n += 1);
    }

    /// Listens on the same port again and passes connections on.
    pub async fn restore(&self) {
        if self
            .accepting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return;
        }
        // The aborted loop lets go of its listener at its next turn: try for a moment.
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.accept_on(listener);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "the proxy's port {} could not be listened on again",
            self.addr
        );
    }

    /// How many connections were passed on so far.
    pub fn connections(&self) -> u64 {
        *self.passed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_cut_closes_connections_and_refuses_new_ones_until_restored() {
        // An echo server behind the proxy.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream).await;
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        proxy.cut();
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "the open connection was closed");
        // The accept loop ends at once; give it a moment to let go of the port.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let refused = TcpStream::connect(proxy.addr()).await;
        assert!(refused.is_err(), "nothing listens while cut");
        proxy.restore().await;
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(proxy.connections(), 2);
    }
}
