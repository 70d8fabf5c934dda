//! A loopback TCP proxy that can cut what passes through it: the way the fault tests and the
//! fault suite take storage (or any peer) away from a process and give it back, without
//! touching the server behind it, which other tests share.
//!
//! While cut, every open connection is closed and new ones are accepted and closed at once, as
//! a database that went down looks to its clients; restored, it passes connections on again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
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
        let cut = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let passed = Arc::new(Mutex::new(0));
        let (c, e, p) = (cut.clone(), epoch.clone(), passed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                *p.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                let mut ended = e.subscribe();
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
        Proxy {
            addr,
            cut,
            epoch,
            passed,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|n| *n += 1);
    }

    /// Passes connections on again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// How many connections were passed on so far.
    pub fn connections(&self) -> u64 {
        *self.passed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_cut_closes_connections_and_a_restore_passes_them_again() {
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
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            refused.read(&mut buf).await.unwrap_or(0),
            0,
            "closed at once"
        );
        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(proxy.connections(), 2);
    }
}
