//! The `ftp` system. `ftp.files` reads the files of a folder into records (one event per
//! record) and archives or deletes them once the records are stored. `ftp.upload` writes each
//! event's output (or a job's combined output) as a file on an FTP server — plain, or FTPS with explicit (`AUTH TLS`) or implicit TLS, data
//! connections protected too — under a hidden temporary name, then renamed, so a reader never
//! sees half a file. The control connection goes to the address the outbound guard checked,
//! and every passive data connection to that same address (the port the server names, never
//! its host), so a server cannot point Wharf at another machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use suppaftp::list::ListParser;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsStream, ImplAsyncFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::files::{self, FilesParams, FolderRead, Leftovers, Listed, Prepared};
use super::net::CallError;
use super::params::Params;
use super::registry::{
    Call, DestinationFunction, Outgoing, Reading, SendResult, Settle, SourceFunction,
};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;

type Ftp = ImplAsyncFtpStream<AsyncRustlsStream>;

/// Most time spent on a courtesy after the outcome is known (QUIT, removing a part file).
const GOODBYE: Duration = Duration::from_secs(5);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    None,
    Explicit,
    Implicit,
}

/// The key's connection settings, read from its opened credentials.
struct Server {
    host: String,
    port: u16,
    username: String,
    password: String,
    security: Security,
    tls_ca: Option<String>,
    passive: bool,
}

impl Server {
    fn of(key: Option<&Value>) -> Result<Server, String> {
        let key = key.ok_or("an ftp destination needs a key (the server and login)")?;
        let text = |name: &str| super::key_text(key, name);
        let host = text("host").ok_or("the key has no `host`")?;
        let security = match text("tls").as_deref() {
            None | Some("explicit") => Security::Explicit,
            Some("implicit") => Security::Implicit,
            Some("none") => Security::None,
            Some(other) => {
                return Err(format!(
                    "the key's `tls` is {other:?}; use explicit, implicit or none"
                ))
            }
        };
        let port = super::key_port(
            key,
            if security == Security::Implicit {
                990
            } else {
                21
            },
        )?;
        Ok(Server {
            host,
            port,
            username: text("username").unwrap_or_else(|| "anonymous".into()),
            password: text("password").unwrap_or_default(),
            security,
            tls_ca: text("tls_ca"),
            passive: key.get("passive").and_then(Value::as_bool).unwrap_or(true),
        })
    }

    fn at(&self) -> String {
        format!("ftp://{}:{}", self.host, self.port)
    }

    /// TLS that trusts the public roots and the key's `tls_ca`, for the key's host name.
    fn connector(&self) -> Result<AsyncRustlsConnector, String> {
        let config = super::net::tls_client_config(self.tls_ca.as_deref())?;
        Ok(AsyncRustlsConnector::from(
            tokio_rustls::TlsConnector::from(Arc::new(config)),
        ))
    }

    fn domain(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// What was being done when the server said no: the same reply means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Login,
    Folder,
    Write,
    Rename,
    List,
    Read,
    Archive,
}

impl Step {
    fn doing(self) -> &'static str {
        match self {
            Step::Connect => "connecting",
            Step::Login => "logging in",
            Step::Folder => "opening the folder",
            Step::Write => "writing the file",
            Step::Rename => "renaming the written file",
            Step::List => "listing the folder",
            Step::Read => "downloading a file",
            Step::Archive => "archiving or deleting a file read",
        }
    }
}

struct Failed {
    step: Step,
    error: FtpError,
}

trait At<T> {
    fn at(self, step: Step) -> Result<T, Failed>;
}

impl<T> At<T> for Result<T, FtpError> {
    fn at(self, step: Step) -> Result<T, Failed> {
        self.map_err(|error| Failed { step, error })
    }
}

/// `ftp.files` as a source function.
pub struct Files;

#[async_trait]
impl SourceFunction for Files {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        FilesParams::parse(params).ok()?.entity_id_path
    }

    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String> {
        let params = FilesParams::checked(call.params)?;
        let server = Server::of(call.key)?;
        let folder = params.path.clone();
        let mut ftp = session(&server, call.net, call.net.deadline)
            .await
            .map_err(|r| job_message(&server, &folder, r))?;
        let read = read_folder(&mut ftp, &params, call, state).await;
        goodbye(ftp);
        let read = read.map_err(|r| job_message(&server, &files::join(&folder, "…"), r))?;
        Ok(files::reading(&params, state, read, |leftovers| {
            Box::new(Finish(leftovers))
        }))
    }
}

async fn read_folder(
    ftp: &mut Ftp,
    params: &FilesParams,
    call: Call<'_>,
    state: Option<&Value>,
) -> Result<FolderRead, Refusal> {
    let limit = params.file_limit().map_err(Refusal::Setup)?;
    ftp.cwd(&params.path)
        .await
        .at(Step::Folder)
        .map_err(Refusal::Ftp)?;
    let listed = list(ftp).await.map_err(Refusal::Ftp)?;
    let taken = files::to_read(&listed, &params.pattern, state, limit);
    let mut read = FolderRead::default();
    for file in &taken {
        let room = call
            .net
            .max_records_per_run
            .saturating_sub(read.records.len());
        let records = download(ftp, file, params, call, room).await?;
        read.add(&params.path, file, records);
    }
    read.listed = listed;
    read.taken = taken;
    Ok(read)
}

/// The files of the current folder: MLSD where the server has it (exact sizes and times),
/// else LIST, with each file's time from MDTM.
async fn list(ftp: &mut Ftp) -> Result<Vec<Listed>, Failed> {
    let seconds = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    if let Ok(lines) = ftp.mlsd(None).await {
        return Ok(lines
            .iter()
            .filter_map(|l| ListParser::parse_mlsd(l).ok())
            .filter(|f| f.is_file())
            .map(|f| Listed {
                name: f.name().to_string(),
                size: f.size() as u64,
                modified: seconds(f.modified()),
            })
            .collect());
    }
    let lines = ftp.list(None).await.at(Step::List)?;
    let mut out = Vec::new();
    for line in &lines {
        let parsed = ListParser::parse_posix(line).or_else(|_| ListParser::parse_dos(line));
        let Ok(file) = parsed else { continue };
        if !file.is_file() {
            continue;
        }
        // LIST gives minutes (or only the day for older files); MDTM gives seconds.
        let modified = match ftp.mdtm(file.name()).await {
            Ok(t) => t.and_utc().timestamp(),
            Err(_) => seconds(file.modified()),
        };
        out.push(Listed {
            name: file.name().to_string(),
            size: file.size() as u64,
            modified,
        });
    }
    Ok(out)
}

/// Downloads one file to a temporary file (never whole in memory, at most
/// `outbound.max_file_bytes`) and reads its records.
async fn download(
    ftp: &mut Ftp,
    file: &Listed,
    params: &FilesParams,
    call: Call<'_>,
    room: usize,
) -> Result<Vec<Value>, Refusal> {
    let cap = call.net.max_file_bytes;
    let name = file.name.clone();
    if file.size > cap {
        return Err(Refusal::Setup(files::too_large(&name, cap)));
    }
    let io = |e: std::io::Error| {
        Refusal::Ftp(Failed {
            step: Step::Read,
            error: FtpError::ConnectionError(e),
        })
    };
    let local = tempfile::tempfile().map_err(io)?;
    let mut out = tokio::fs::File::from_std(local.try_clone().map_err(io)?);
    let mut stream = ftp
        .retr_as_stream(&name)
        .await
        .at(Step::Read)
        .map_err(Refusal::Ftp)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > cap {
            return Err(Refusal::Setup(files::too_large(&name, cap)));
        }
        out.write_all(&buf[..n]).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    stream.finish().await.at(Step::Read).map_err(Refusal::Ftp)?;
    let limits = files::limits(total, call.decode, room);
    files::parse_downloaded(local, name, params, limits)
        .await
        .map_err(Refusal::Setup)
}

/// Archives or deletes the files a run read, once their records are stored.
struct Finish(Leftovers);

#[async_trait]
impl Settle for Finish {
    async fn settle(self: Box<Self>, call: Call<'_>) -> Result<(), String> {
        let server = Server::of(call.key)?;
        let mut ftp = session(&server, call.net, call.net.deadline)
            .await
            .map_err(|r| job_message(&server, &self.0.folder, r))?;
        let done = self.finish(&mut ftp).await;
        goodbye(ftp);
        done.map_err(|f| job_message(&server, &self.0.archive, Refusal::Ftp(f)))
    }
}

impl Finish {
    async fn finish(&self, ftp: &mut Ftp) -> Result<(), Failed> {
        let done = &self.0;
        ftp.cwd(&done.folder).await.at(Step::Folder)?;
        if !done.delete {
            // Made when missing; an error here is the rename's to report.
            let _ = ftp.mkdir(&done.archive).await;
        }
        for name in &done.names {
            if done.delete {
                ftp.rm(name).await.at(Step::Archive)?;
            } else {
                ftp.rename(name.as_str(), files::join(&done.archive, name).as_str())
                    .await
                    .at(Step::Archive)?;
            }
        }
        Ok(())
    }
}

/// `ftp.upload` as a destination function.
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
        let work = async {
            let mut ftp = session(&server, call.net, out.timeout).await?;
            let result = upload(&mut ftp, &params.path, &name, &temp, &bytes).await;
            // The outcome is known now: a slow goodbye must not turn it into a timeout (and a
            // second copy of the file on the retry).
            goodbye(ftp);
            result.map_err(Refusal::Ftp)
        };
        let path = files::join(&params.path, &name);
        match tokio::time::timeout(out.timeout, work).await {
            Ok(Ok(reply)) => SendResult {
                verdict: Verdict::Success,
                error_code: None,
                http_status: None,
                http_status_name: None,
                excerpt: Some(format!("{path}: {reply}")),
                retry_after: None,
                message: None,
                reference: None,
                duration: started.elapsed(),
            },
            Ok(Err(refusal)) => judged(&server, &path, refusal, started),
            Err(_) => failure(
                Verdict::Retry,
                ErrorCode::Timeout,
                format!(
                    "{} did not take {path} within {} s",
                    server.at(),
                    out.timeout.as_secs_f64()
                ),
                None,
                started,
            ),
        }
    }
}

enum Refusal {
    Guard(CallError),
    Setup(String),
    Ftp(Failed),
}

/// A logged-in session with the key's server, connected through the outbound guard.
async fn session(
    server: &Server,
    net: &super::net::Outbound,
    timeout: Duration,
) -> Result<Ftp, Refusal> {
    let stream = net
        .connect(&server.host, server.port, timeout)
        .await
        .map_err(Refusal::Guard)?;
    let peer = stream.peer_addr().map_err(|e| {
        Refusal::Ftp(Failed {
            step: Step::Connect,
            error: FtpError::ConnectionError(e),
        })
    })?;
    open(server, stream, peer, timeout).await
}

/// Ends a session without waiting for the server's goodbye.
fn goodbye(mut ftp: Ftp) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(GOODBYE, ftp.quit()).await;
    });
}

/// A logged-in session on `stream` (already connected to the checked `peer`): TLS as the key
/// says, binary transfers, data connections to the same address.
async fn open(
    server: &Server,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<Ftp, Refusal> {
    let mut ftp = match server.security {
        Security::Implicit => {
            let connector = server.connector().map_err(Refusal::Setup)?;
            // The connection is made again to the same checked address, inside the TLS setup.
            drop(stream);
            #[allow(deprecated)]
            let mut ftp = Ftp::connect_secure_implicit(peer, connector, server.domain())
                .await
                .at(Step::Connect)
                .map_err(Refusal::Ftp)?;
            // Data connections are protected only once asked for (RFC 4217), implicit TLS too:
            // servers that require it (vsftpd) refuse clear data with 522.
            for command in ["PBSZ 0", "PROT P"] {
                ftp.custom_command(command, &[Status::CommandOk])
                    .await
                    .at(Step::Connect)
                    .map_err(Refusal::Ftp)?;
            }
            ftp
        }
        Security::Explicit => {
            let connector = server.connector().map_err(Refusal::Setup)?;
            Ftp::connect_with_stream(stream)
                .await
                .at(Step::Connect)
                .map_err(Refusal::Ftp)?
                .into_secure(connector, server.domain())
                .await
                .at(Step::Connect)
                .map_err(Refusal::Ftp)?
        }
        Security::None => Ftp::connect_with_stream(stream)
            .await
            .at(Step::Connect)
            .map_err(Refusal::Ftp)?,
    };
    if server.passive {
        // Data goes to the control connection's address whatever host PASV names.
        ftp.set_mode(if peer.is_ipv6() {
            Mode::ExtendedPassive
        } else {
            Mode::Passive
        });
        ftp.set_passive_nat_workaround(true);
    } else {
        ftp = ftp.active_mode(timeout);
    }
    ftp.login(server.username.as_str(), server.password.as_str())
        .await
        .at(Step::Login)
        .map_err(Refusal::Ftp)?;
    ftp.transfer_type(FileType::Binary)
        .await
        .at(Step::Login)
        .map_err(Refusal::Ftp)?;
    Ok(ftp)
}

/// Writes `bytes` as `temp` in `folder`, then renames it to `name`. The reply to the rename.
async fn upload(
    ftp: &mut Ftp,
    folder: &str,
    name: &str,
    temp: &str,
    bytes: &[u8],
) -> Result<String, Failed> {
    ftp.cwd(folder).await.at(Step::Folder)?;
    let mut transfer = ftp.put_with_stream(temp).await.at(Step::Write)?;
    let written = async {
        transfer.write_all(bytes).await?;
        transfer.flush().await
    }
    .await;
    let finished = match written {
        Ok(()) => transfer.finish().await,
        Err(e) => Err(FtpError::ConnectionError(e)),
    };
    if let Err(error) = finished {
        // A server keeps what arrived of a broken upload: take the part file away.
        let _ = tokio::time::timeout(GOODBYE, ftp.rm(temp)).await;
        return Err(Failed {
            step: Step::Write,
            error,
        });
    }
    if let Err(e) = ftp.rename(temp, name).await {
        // Leave no temporary file behind when the rename is refused.
        let _ = tokio::time::timeout(GOODBYE, ftp.rm(temp)).await;
        return Err(Failed {
            step: Step::Rename,
            error: e,
        });
    }
    Ok(format!(
        "{} bytes written as {temp}, renamed to {name}",
        bytes.len()
    ))
}

fn failure(
    verdict: Verdict,
    code: ErrorCode,
    message: String,
    excerpt: Option<String>,
    started: Instant,
) -> SendResult {
    SendResult {
        verdict,
        error_code: Some(code),
        http_status: None,
        http_status_name: None,
        excerpt,
        retry_after: None,
        message: Some(message),
        reference: None,
        duration: started.elapsed(),
    }
}

/// What a failed try means: the server's reply decides, with the step it answered.
fn judged(server: &Server, path: &str, refusal: Refusal, started: Instant) -> SendResult {
    let (verdict, code, message, excerpt) = judgement(server, path, refusal);
    failure(verdict, code, message, excerpt, started)
}

/// A failure as a message for a job: its code first, as the other sources say it.
fn job_message(server: &Server, path: &str, refusal: Refusal) -> String {
    let (_, code, message, _) = judgement(server, path, refusal);
    format!("{}: {message}", code.as_str())
}

/// The verdict, code, message and the server's own words of a failure.
fn judgement(
    server: &Server,
    path: &str,
    refusal: Refusal,
) -> (Verdict, ErrorCode, String, Option<String>) {
    let at = server.at();
    let failed = match refusal {
        Refusal::Guard(e) => {
            let verdict = match e {
                CallError::Blocked(_) => Verdict::Final,
                _ => Verdict::Retry,
            };
            return (verdict, e.code(), format!("connecting to {at}: {e}"), None);
        }
        Refusal::Setup(m) => return (Verdict::Final, ErrorCode::Unknown, m, None),
        Refusal::Ftp(f) => f,
    };
    let doing = failed.step.doing();
    match &failed.error {
        FtpError::UnexpectedResponse(response) => {
            let code = response.status.code();
            let said = String::from_utf8_lossy(&response.body).trim().to_string();
            let (verdict, error_code, what) = judge_reply(failed.step, code, path);
            (
                verdict,
                error_code,
                format!("{at} {what} ({doing}): {said}"),
                Some(said),
            )
        }
        FtpError::SecureError(e) if e.contains("invalid peer certificate") => (
            Verdict::Final,
            ErrorCode::UntrustedServer,
            format!(
                "{at}: the server's TLS certificate is not trusted ({e}); if the server uses \
                 its own certificate, put it (PEM) in the key's `tls_ca`"
            ),
            None,
        ),
        FtpError::SecureError(e) => (
            Verdict::Retry,
            ErrorCode::ConnectionError,
            format!("{at}: TLS failed while {doing} ({e}); check the key's `tls` and `port`"),
            None,
        ),
        other => (
            Verdict::Retry,
            ErrorCode::ConnectionError,
            format!(
                "{at} could not be reached, or closed the connection, while {doing}: {other}; \
                 check the host, port and `tls`"
            ),
            None,
        ),
    }
}

/// An FTP reply code's meaning at a step: 4xx is tried again, 5xx is final.
fn judge_reply(step: Step, code: u32, path: &str) -> (Verdict, ErrorCode, String) {
    let folder = path
        .rsplit_once('/')
        .map_or("/", |(f, _)| if f.is_empty() { "/" } else { f });
    match (step, code) {
        (Step::Login, 530 | 331 | 332 | 532) | (_, 530) => (
            Verdict::Final,
            ErrorCode::Unauthorized,
            "refused the key's login".into(),
        ),
        (Step::Connect, 534 | 431 | 504) => (
            Verdict::Final,
            ErrorCode::ConnectionError,
            "does not offer TLS as the key's `tls` asks".into(),
        ),
        (Step::Folder, 550) => (
            Verdict::Final,
            ErrorCode::NotFound,
            format!("has no folder {folder} (or may not open it)"),
        ),
        (Step::List, 550) => (
            Verdict::Final,
            ErrorCode::NotFound,
            format!("may not list {folder}"),
        ),
        (Step::Read, 550) => (
            Verdict::Retry,
            ErrorCode::NotFound,
            format!("has no file {path} any more (another reader took it?)"),
        ),
        (Step::Write | Step::Rename | Step::Archive, 550 | 553 | 532) => (
            Verdict::Final,
            ErrorCode::Unauthorized,
            format!("refused to write in {folder}"),
        ),
        (_, 452 | 552) => (
            Verdict::Retry,
            ErrorCode::ServerError,
            "has no room for the file".into(),
        ),
        (_, 400..=499) => (
            Verdict::Retry,
            ErrorCode::ServerError,
            "cannot take the file now".into(),
        ),
        _ => (
            Verdict::Final,
            ErrorCode::ServerError,
            "refused the file".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_mean_what_the_step_makes_them() {
        let j = |s, c| {
            let (v, code, _) = judge_reply(s, c, "/in/a.csv");
            (v, code)
        };
        assert_eq!(
            j(Step::Login, 530),
            (Verdict::Final, ErrorCode::Unauthorized)
        );
        assert_eq!(j(Step::Folder, 550), (Verdict::Final, ErrorCode::NotFound));
        assert_eq!(
            j(Step::Write, 553),
            (Verdict::Final, ErrorCode::Unauthorized)
        );
        assert_eq!(
            j(Step::Write, 552),
            (Verdict::Retry, ErrorCode::ServerError)
        );
        assert_eq!(
            j(Step::Write, 421),
            (Verdict::Retry, ErrorCode::ServerError)
        );
        assert_eq!(
            j(Step::Rename, 501),
            (Verdict::Final, ErrorCode::ServerError)
        );
        let (_, _, what) = judge_reply(Step::Folder, 550, "/in/a.csv");
        assert!(what.contains("/in"), "{what}");
    }
}
