//! The `sftp` system, over SSH: `sftp.files` reads a folder's files into records (archived,
//! deleted or kept once stored, as `ftp.files`), `sftp.upload` writes outputs as files (hidden
//! first, then renamed). The server's host key is pinned in the key — its public key or its
//! `SHA256:` fingerprint — and a server that shows another is refused before any login is
//! sent. The connection goes to the address the outbound guard checked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::files::{self, FilesParams, FolderRead, Leftovers, Listed, Prepared};
use super::net::{CallError, Outbound};
use super::params::Params;
use super::registry::{
    Call, DestinationFunction, Outgoing, Reading, SendResult, Settle, SourceFunction,
};
use super::{key_port, key_text};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;

/// The key's connection settings, read from its opened credentials.
struct Server {
    host: String,
    port: u16,
    username: String,
    password: Option<String>,
    private_key: Option<String>,
    passphrase: Option<String>,
    host_key: Pin,
}

/// The server's host key as the key pins it.
#[derive(Debug, Clone)]
enum Pin {
    Key(Box<PublicKey>),
    Fingerprint(String),
}

impl Pin {
    fn parse(text: &str) -> Result<Pin, String> {
        let text = text.trim();
        if text.starts_with("SHA256:") {
            return Ok(Pin::Fingerprint(text.to_string()));
        }
        // `ssh-ed25519 AAAA… comment`, as in known_hosts (without the host) or a .pub file.
        let mut parts = text.split_whitespace();
        let encoded = match (parts.next(), parts.next()) {
            (Some(_algorithm), Some(base64)) => base64,
            (Some(base64), None) => base64,
            _ => "",
        };
        russh::keys::parse_public_key_base64(encoded)
            .map(|k| Pin::Key(Box::new(k)))
            .map_err(|e| {
                format!(
                    "the key's `host_key` is neither a public key (`ssh-ed25519 AAAA…`) nor a \
                     `SHA256:` fingerprint: {e}"
                )
            })
    }

    fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Pin::Key(pinned) => pinned.key_data() == key.key_data(),
            Pin::Fingerprint(f) => *f == key.fingerprint(HashAlg::Sha256).to_string(),
        }
    }
}

impl Server {
    fn of(key: Option<&Value>) -> Result<Server, String> {
        let key = key.ok_or("an sftp source or destination needs a key (the server and login)")?;
        let text = |name: &str| key_text(key, name);
        let host = text("host").ok_or("the key has no `host`")?;
        let host_key = text("host_key").ok_or(
            "the key has no `host_key`: Wharf does not log in to a server it cannot identify; \
             put the server's public key or its SHA256 fingerprint there",
        )?;
        Ok(Server {
            host,
            port: key_port(key, 22)?,
            username: text("username").ok_or("the key has no `username`")?,
            password: text("password"),
            private_key: text("private_key"),
            passphrase: text("private_key_passphrase"),
            host_key: Pin::parse(&host_key)?,
        })
    }

    fn at(&self) -> String {
        format!("sftp://{}:{}", self.host, self.port)
    }
}

/// Checks the server's host key against the pin, and keeps what it showed for the message.
struct Pinned {
    pin: Pin,
    shown: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.shown.lock().unwrap_or_else(|e| e.into_inner()) =
                Some("a certificate (not a plain host key)".into());
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        *self.shown.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{} {fingerprint}", key.algorithm().as_str()));
        Ok(self.pin.matches(key))
    }
}

/// Why a call failed, with what it was doing.
enum Failure {
    Guard(CallError),
    Setup(String),
    HostKey(String),
    Login,
    Ssh(String),
    Sftp(&'static str, russh_sftp::client::error::Error),
}

/// An SFTP session with the key's server: connected through the outbound guard, the host key
/// checked against the pin, logged in with the private key or the password.
async fn session(
    server: &Server,
    net: &Outbound,
    timeout: Duration,
) -> Result<(SftpSession, Handle<Pinned>), Failure> {
    let stream = net
        .connect(&server.host, server.port, timeout)
        .await
        .map_err(Failure::Guard)?;
    let shown = Arc::new(Mutex::new(None));
    let handler = Pinned {
        pin: server.host_key.clone(),
        shown: shown.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(timeout),
        ..Default::default()
    });
    let mut handle = match client::connect_stream(config, stream, handler).await {
        Ok(h) => h,
        Err(russh::Error::UnknownKey) => {
            let shown = shown
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "no host key".into());
            return Err(Failure::HostKey(shown));
        }
        Err(e) => return Err(Failure::Ssh(e.to_string())),
    };
    let ssh = |e: russh::Error| Failure::Ssh(e.to_string());
    let accepted = match (&server.private_key, &server.password) {
        (Some(pem), _) => {
            let key = russh::keys::decode_secret_key(pem, server.passphrase.as_deref())
                .map_err(|e| Failure::Setup(format!("the key's `private_key` cannot be read (an OpenSSH private key, with `private_key_passphrase` if it has one): {e}")))?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(ssh)?
                .flatten();
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            handle
                .authenticate_publickey(server.username.as_str(), key)
                .await
                .map_err(ssh)?
        }
        (None, Some(password)) => handle
            .authenticate_password(server.username.as_str(), password.as_str())
            .await
            .map_err(ssh)?,
        (None, None) => {
            return Err(Failure::Setup(
                "the key has neither `password` nor `private_key`".into(),
            ))
        }
    };
    if !accepted.success() {
        return Err(Failure::Login);
    }
    let channel = handle.channel_open_session().await.map_err(ssh)?;
    channel.request_subsystem(true, "sftp").await.map_err(ssh)?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| Failure::Sftp("starting SFTP", e))?;
    sftp.set_timeout(timeout.as_secs().max(1));
    Ok((sftp, handle))
}

/// Ends a session without waiting for the server.
fn goodbye(sftp: SftpSession, handle: Handle<Pinned>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(GOODBYE, async {
            let _ = sftp.close().await;
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        })
        .await;
    });
}

/// Most time spent on courtesies after the outcome is known.
const GOODBYE: Duration = Duration::from_secs(5);

/// The verdict, code and message of a failure.
fn judgement(server: &Server, failure: Failure) -> (Verdict, ErrorCode, String) {
    let at = server.at();
    match failure {
        Failure::Guard(e) => {
            let verdict = match e {
                CallError::Blocked(_) => Verdict::Final,
                _ => Verdict::Retry,
            };
            (verdict, e.code(), format!("connecting to {at}: {e}"))
        }
        Failure::Setup(m) => (Verdict::Final, ErrorCode::Unknown, m),
        Failure::HostKey(shown) => (
            Verdict::Final,
            ErrorCode::UntrustedServer,
            format!(
                "{at} showed the host key {shown}, not the one the key pins in `host_key`; \
                 nothing was sent. If the server's key was changed on purpose, check the new \
                 fingerprint with its owner and put it in `host_key`"
            ),
        ),
        Failure::Login => (
            Verdict::Final,
            ErrorCode::Unauthorized,
            format!("{at} refused the key's login (user, password or private key)"),
        ),
        Failure::Ssh(e) => (
            Verdict::Retry,
            ErrorCode::ConnectionError,
            format!("{at} could not be reached, or closed the connection: {e}"),
        ),
        Failure::Sftp(doing, e) => {
            let (verdict, code) = match &e {
                russh_sftp::client::error::Error::Status(s) => match s.status_code {
                    StatusCode::NoSuchFile => (Verdict::Final, ErrorCode::NotFound),
                    StatusCode::PermissionDenied => (Verdict::Final, ErrorCode::Unauthorized),
                    _ => (Verdict::Retry, ErrorCode::ServerError),
                },
                russh_sftp::client::error::Error::Timeout => (Verdict::Retry, ErrorCode::Timeout),
                _ => (Verdict::Retry, ErrorCode::ConnectionError),
            };
            (verdict, code, format!("{at} failed while {doing}: {e}"))
        }
    }
}

/// `sftp.upload` as a destination function.
pub struct Upload;

#[async_trait]
impl DestinationFunction for Upload {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let Prepared {
            params,
            name,
            temp,
            bytes,
        } = match files::prepare(&call, &out) {
            Ok(p) => p,
            Err(refusal) => return *refusal,
        };
        let server = match Server::of(call.key) {
            Ok(s) => s,
            Err(e) => return SendResult::refused(ErrorCode::Unknown, e),
        };
        let path = files::join(&params.path, &name);
        let temp_path = files::join(&params.path, &temp);
        let work = async {
            let (sftp, handle) = session(&server, call.net, out.timeout).await?;
            let result = upload(&sftp, &temp_path, &path, &bytes).await;
            goodbye(sftp, handle);
            result
        };
        let (verdict, error_code, message) = match tokio::time::timeout(out.timeout, work).await {
            Ok(Ok(())) => {
                return SendResult {
                    verdict: Verdict::Success,
                    error_code: None,
                    http_status: None,
                    http_status_name: None,
                    excerpt: Some(format!(
                        "{path}: {} bytes written as {temp}, renamed to {name}",
                        bytes.len()
                    )),
                    retry_after: None,
                    message: None,
                    reference: None,
                    duration: started.elapsed(),
                }
            }
            Ok(Err(failure)) => judgement(&server, failure),
            Err(_) => (
                Verdict::Retry,
                ErrorCode::Timeout,
                format!(
                    "{} did not take {path} within {} s",
                    server.at(),
                    out.timeout.as_secs_f64()
                ),
            ),
        };
        SendResult {
            verdict,
            error_code: Some(error_code),
            http_status: None,
            http_status_name: None,
            excerpt: None,
            retry_after: None,
            message: Some(message),
            reference: None,
            duration: started.elapsed(),
        }
    }
}

/// Writes `bytes` at `temp`, then renames it to `path` (replacing a file of that name: SFTP's
/// rename refuses to, so the old one is removed first). A failed write or rename removes the
/// temporary file.
async fn upload(sftp: &SftpSession, temp: &str, path: &str, bytes: &[u8]) -> Result<(), Failure> {
    let written = async {
        let mut file = sftp.create(temp).await?;
        file.write_all(bytes).await?;
        file.shutdown().await?;
        Ok::<(), russh_sftp::client::error::Error>(())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::time::timeout(GOODBYE, sftp.remove_file(temp)).await;
        return Err(Failure::Sftp("writing the file", e));
    }
    if sftp.rename(temp, path).await.is_err() {
        let _ = sftp.remove_file(path).await;
        if let Err(e) = sftp.rename(temp, path).await {
            let _ = tokio::time::timeout(GOODBYE, sftp.remove_file(temp)).await;
            return Err(Failure::Sftp("renaming the written file", e));
        }
    }
    Ok(())
}

/// `sftp.files` as a source function.
pub struct Files;

#[async_trait]
impl SourceFunction for Files {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        FilesParams::parse(params).ok()?.entity_id_path
    }

    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String> {
        let params = FilesParams::checked(call.params)?;
        let server = Server::of(call.key)?;
        let failed = |f: Failure| {
            let (_, code, message) = judgement(&server, f);
            format!("{}: {message}", code.as_str())
        };
        let (sftp, handle) = session(&server, call.net, call.net.deadline)
            .await
            .map_err(failed)?;
        let read = read_folder(&sftp, &params, call, state).await;
        goodbye(sftp, handle);
        let read = read.map_err(failed)?;
        Ok(files::reading(&params, state, read, |leftovers| {
            Box::new(Finish(leftovers))
        }))
    }
}

async fn read_folder(
    sftp: &SftpSession,
    params: &FilesParams,
    call: Call<'_>,
    state: Option<&Value>,
) -> Result<FolderRead, Failure> {
    let limit = params.file_limit().map_err(Failure::Setup)?;
    let entries = sftp
        .read_dir(params.path.as_str())
        .await
        .map_err(|e| Failure::Sftp("listing the folder", e))?;
    let listed: Vec<Listed> = entries
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let meta = e.metadata();
            Listed {
                name: e.file_name(),
                size: meta.size.unwrap_or(0),
                modified: i64::from(meta.mtime.unwrap_or(0)),
            }
        })
        .collect();
    let taken = files::to_read(&listed, &params.pattern, state, limit);
    let mut read = FolderRead::default();
    for file in &taken {
        let room = call
            .net
            .max_records_per_run
            .saturating_sub(read.records.len());
        let records = download(sftp, params, file, call, room).await?;
        read.add(&params.path, file, records);
    }
    read.listed = listed;
    read.taken = taken;
    Ok(read)
}

/// Downloads one file to a temporary file (never whole in memory, at most
/// `outbound.max_file_bytes`) and reads its records.
async fn download(
    sftp: &SftpSession,
    params: &FilesParams,
    file: &Listed,
    call: Call<'_>,
    room: usize,
) -> Result<Vec<Value>, Failure> {
    let cap = call.net.max_file_bytes;
    let name = file.name.clone();
    if file.size > cap {
        return Err(Failure::Setup(files::too_large(&name, cap)));
    }
    let io = |e: std::io::Error| Failure::Sftp("downloading a file", e.into());
    let local = tempfile::tempfile().map_err(io)?;
    let mut out = tokio::fs::File::from_std(local.try_clone().map_err(io)?);
    let mut remote = sftp
        .open(files::join(&params.path, &name))
        .await
        .map_err(|e| Failure::Sftp("downloading a file", e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = remote.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > cap {
            return Err(Failure::Setup(files::too_large(&name, cap)));
        }
        out.write_all(&buf[..n]).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    let limits = files::limits(total, call.decode, room);
    files::parse_downloaded(local, name, params, limits)
        .await
        .map_err(Failure::Setup)
}

/// Archives or deletes the files a run read, once their records are stored.
struct Finish(Leftovers);

#[async_trait]
impl Settle for Finish {
    async fn settle(self: Box<Self>, call: Call<'_>) -> Result<(), String> {
        let server = Server::of(call.key)?;
        let failed = |f: Failure| judgement(&server, f).2;
        let (sftp, handle) = session(&server, call.net, call.net.deadline)
            .await
            .map_err(failed)?;
        let done = self.finish(&sftp).await;
        goodbye(sftp, handle);
        done.map_err(failed)
    }
}

impl Finish {
    async fn finish(&self, sftp: &SftpSession) -> Result<(), Failure> {
        let done = &self.0;
        if !done.delete {
            // Made when missing; an error here is the rename's to report.
            let _ = sftp.create_dir(done.archive.as_str()).await;
        }
        for name in &done.names {
            let path = files::join(&done.folder, name);
            let result = if done.delete {
                sftp.remove_file(path).await
            } else {
                sftp.rename(path, files::join(&done.archive, name)).await
            };
            result.map_err(|e| Failure::Sftp("archiving or deleting a file read", e))?;
        }
        Ok(())
    }
}
