//! What Wharf's black-box tests and its benchmark both need from the outside world: a local
//! HTTP sink that records every delivery (and can be scripted, slowed or paused), and the
//! signatures webhook senders put on their requests; and the protocol servers of the file
//! and mail connectors (FTP/FTPS, SMTP), each on a free loopback port.

pub mod ftp;
pub mod proxy;
pub mod sign;
pub mod sink;
pub mod smtp;
pub mod sshd;
pub mod tls;
pub mod vsftpd;

use std::net::SocketAddr;

/// Serves `app` on a fresh loopback port for the rest of the process; returns the address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    // As Wharf's own server: answers are not held back by Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The names in a folder on disk, sorted (empty when it cannot be read).
pub fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A loopback port nothing listens on now, for a server started as its own process.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (up to 10 s) until the process `child` listens on `port`; panics with `why` (what the
/// process said) if it exits or never listens.
pub(crate) fn wait_listening(
    what: &str,
    port: u16,
    child: &mut std::process::Child,
    why: impl Fn(&mut std::process::Child) -> String,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}): {}", why(child));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen on {port} within 10 s: {}",
        why(child)
    );
}
