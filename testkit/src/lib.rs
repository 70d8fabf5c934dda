//! What Wharf's black-box tests and its benchmark both need from the outside world: a local
//! HTTP sink that records every delivery (and can be scripted, slowed or paused), and the
//! signatures webhook senders put on their requests; and the protocol servers of the file
//! and mail connectors (FTP/FTPS, SMTP), each on a free loopback port.

pub mod ftp;
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
