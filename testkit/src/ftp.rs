//! A local FTP server over a folder on disk: plain, explicit TLS (`AUTH TLS`, then
//! `PBSZ`/`PROT P` protects the data connections) or implicit TLS, with a self-signed
//! certificate for `localhost` and 127.0.0.1. It speaks RFC 959 with the extensions clients
//! use (EPSV/EPRT of RFC 2428, SIZE/MDTM/MLSD of RFC 3659, FEAT): enough for a real client to
//! log in, walk folders, list, download, upload, rename and delete — and scripted replies
//! (a `552` to the next STOR, folders where writing is refused) to test how a client takes
//! each answer. Every command is logged (the password masked).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::tls::Certificate;

/// How the server offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpTls {
    None,
    /// Plain until the client sends `AUTH TLS`.
    Explicit,
    /// TLS from the first byte.
    Implicit,
}

#[derive(Default)]
struct State {
    /// The address PASV names (its data connections are still taken on 127.0.0.1).
    advertised: Option<std::net::Ipv4Addr>,
    log: Vec<String>,
    sessions: usize,
    scripted: HashMap<String, VecDeque<String>>,
    read_only: HashSet<String>,
}

/// The running server; it stops with the test's runtime. Its folder is removed on drop.
pub struct FtpServer {
    pub addr: SocketAddr,
    /// The server's certificate (PEM), for a client to trust.
    pub cert_pem: String,
    root: tempfile::TempDir,
    state: Arc<Mutex<State>>,
}

struct Setup {
    tls: FtpTls,
    user: String,
    password: String,
    root: PathBuf,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
}

impl FtpServer {
    /// Starts a server on a free loopback port, for one user, over a fresh empty folder.
    pub async fn start(tls: FtpTls, user: &str, password: &str) -> FtpServer {
        let cert = Certificate::localhost();
        let root = tempfile::tempdir().expect("a temporary folder");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let state = Arc::new(Mutex::new(State::default()));
        let setup = Arc::new(Setup {
            tls,
            user: user.to_string(),
            password: password.to_string(),
            root: root.path().to_path_buf(),
            acceptor: cert.acceptor(),
            state: state.clone(),
        });
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let setup = setup.clone();
                tokio::spawn(async move {
                    setup.state.lock().unwrap().sessions += 1;
                    let _ = session(socket, &setup).await;
                });
            }
        });
        FtpServer {
            addr,
            cert_pem: cert.pem,
            root,
            state,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where a server path (`/out/a.csv`) is on disk.
    pub fn path(&self, server_path: &str) -> PathBuf {
        self.root.path().join(server_path.trim_start_matches('/'))
    }

    /// Makes a folder (and its parents) on the server.
    pub fn mkdir(&self, server_path: &str) {
        std::fs::create_dir_all(self.path(server_path)).expect("a folder");
    }

    /// The names in a folder, sorted.
    pub fn files(&self, server_path: &str) -> Vec<String> {
        crate::names_in(&self.path(server_path))
    }

    /// Refuses every write in this folder (as a server does for a folder the user may only read).
    pub fn read_only(&self, server_path: &str) {
        let folder = server_path.trim_end_matches('/').to_string();
        self.state.lock().unwrap().read_only.insert(folder);
    }

    /// Makes PASV name `ip` as the data connection's host — as a server behind NAT, or one
    /// pointing a client elsewhere, does — while it keeps listening on 127.0.0.1.
    pub fn advertise(&self, ip: std::net::Ipv4Addr) {
        self.state.lock().unwrap().advertised = Some(ip);
    }

    /// Answers the next `times` commands of `verb` (e.g. `STOR`) with `reply`.
    pub fn script(&self, verb: &str, reply: &str, times: usize) {
        let mut state = self.state.lock().unwrap();
        let queue = state.scripted.entry(verb.to_ascii_uppercase()).or_default();
        queue.extend(std::iter::repeat_n(reply.to_string(), times));
    }

    /// How many connections were opened (a connection that sends nothing counts too).
    pub fn sessions(&self) -> usize {
        self.state.lock().unwrap().sessions
    }

    /// Every command received so far, in order (`PASS` shown as `PASS ****`).
    pub fn commands(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

/// How the next transfer's data connection is made.
enum Data {
    None,
    /// The server listens (PASV/EPSV).
    Passive(TcpListener),
    /// The server connects (PORT/EPRT).
    Active(SocketAddr),
}

struct Session<'a> {
    setup: &'a Setup,
    user_ok: bool,
    logged_in: bool,
    cwd: String,
    data: Data,
    protect_data: bool,
    rename_from: Option<PathBuf>,
}

async fn session(socket: TcpStream, setup: &Setup) -> std::io::Result<()> {
    let mut s = Session {
        setup,
        user_ok: false,
        logged_in: false,
        cwd: "/".into(),
        data: Data::None,
        protect_data: false,
        rename_from: None,
    };
    match setup.tls {
        FtpTls::Implicit => {
            let tls = setup.acceptor.accept(socket).await?;
            s.converse(tls, true, true).await?;
        }
        _ => {
            if let Some(plain) = s.converse(socket, false, true).await? {
                let tls = setup.acceptor.accept(plain).await?;
                s.converse(tls, true, false).await?;
            }
        }
    }
    Ok(())
}

impl Session<'_> {
    /// Serves the control connection. Returns the stream when the client asked for `AUTH TLS`
    /// (the caller runs the handshake and calls again).
    async fn converse<S>(&mut self, stream: S, tls: bool, greet: bool) -> std::io::Result<Option<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut io = BufReader::new(stream);
        if greet {
            io.write_all(b"220 wharf-testkit FTP ready\r\n").await?;
            io.flush().await?;
        }
        let mut line = String::new();
        loop {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Ok(None);
            }
            let command = line.trim_end_matches(['\r', '\n']).to_string();
            let (verb, arg) = match command.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
                None => (command.to_ascii_uppercase(), String::new()),
            };
            let logged = if verb == "PASS" {
                "PASS ****".to_string()
            } else {
                command.clone()
            };
            let scripted = {
                let mut state = self.setup.state.lock().unwrap();
                state.log.push(logged);
                state.scripted.get_mut(&verb).and_then(VecDeque::pop_front)
            };
            if let Some(reply) = scripted {
                // A scripted refusal of a transfer also drops its prepared data connection.
                if matches!(verb.as_str(), "STOR" | "RETR" | "LIST" | "NLST" | "MLSD") {
                    self.data = Data::None;
                }
                reply_line(&mut io, &reply).await?;
                continue;
            }
            if verb == "AUTH" && !tls && self.setup.tls == FtpTls::Explicit {
                reply_line(&mut io, "234 AUTH TLS OK").await?;
                return Ok(Some(io.into_inner()));
            }
            if verb == "QUIT" {
                reply_line(&mut io, "221 Goodbye").await?;
                return Ok(None);
            }
            let reply = self.answer(&mut io, &verb, &arg, tls).await?;
            reply_line(&mut io, &reply).await?;
        }
    }

    async fn answer<S>(
        &mut self,
        io: &mut BufReader<S>,
        verb: &str,
        arg: &str,
        tls: bool,
    ) -> std::io::Result<String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let open = matches!(
            verb,
            "USER" | "PASS" | "AUTH" | "PBSZ" | "PROT" | "FEAT" | "SYST" | "NOOP" | "OPTS"
        );
        if !open && !self.logged_in {
            return Ok("530 Please login with USER and PASS".into());
        }
        let transfer = matches!(verb, "STOR" | "RETR" | "LIST" | "NLST" | "MLSD");
        if transfer && self.setup.tls != FtpTls::None && !self.protect_data {
            // As vsftpd with forced TLS: data goes over TLS only after PROT P (RFC 4217).
            self.data = Data::None;
            return Ok("522 Data connections must be encrypted.".into());
        }
        Ok(match verb {
            "USER" => {
                if self.setup.tls == FtpTls::Explicit && !tls {
                    "530 This server requires AUTH TLS first".into()
                } else {
                    self.user_ok = arg == self.setup.user;
                    "331 Password required".into()
                }
            }
            "PASS" => {
                if self.user_ok && arg == self.setup.password {
                    self.logged_in = true;
                    "230 Login successful".into()
                } else {
                    "530 Login incorrect".into()
                }
            }
            "AUTH" => "504 AUTH not available here".into(),
            "PBSZ" => "200 PBSZ=0".into(),
            "PROT" => {
                self.protect_data = arg.eq_ignore_ascii_case("P");
                "200 Protection level set".into()
            }
            "FEAT" => "211-Features:\r\n EPSV\r\n EPRT\r\n MLSD\r\n SIZE\r\n MDTM\r\n UTF8\r\n PASV\r\n211 End".into(),
            "SYST" => "215 UNIX Type: L8".into(),
            "NOOP" => "200 NOOP ok".into(),
            "OPTS" => "200 Always in UTF8 mode".into(),
            "TYPE" => "200 Type set".into(),
            "MODE" | "STRU" => "200 OK".into(),
            "PWD" => format!("257 \"{}\" is the current directory", self.cwd),
            "CWD" => {
                let target = self.resolve(arg);
                if self.disk(&target).is_dir() {
                    self.cwd = target;
                    "250 Directory successfully changed".into()
                } else {
                    "550 Failed to change directory".into()
                }
            }
            "CDUP" => {
                self.cwd = parent(&self.cwd);
                "250 Directory successfully changed".into()
            }
            "MKD" => {
                let target = self.resolve(arg);
                if self.refused(&parent(&target)) {
                    "550 Create directory operation failed".into()
                } else {
                    match std::fs::create_dir(self.disk(&target)) {
                        Ok(()) => format!("257 \"{target}\" created"),
                        Err(_) => "550 Create directory operation failed".into(),
                    }
                }
            }
            "PASV" => {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let port = listener.local_addr()?.port();
                self.data = Data::Passive(listener);
                let ip = self.setup.state.lock().unwrap().advertised;
                let [a, b, c, d] = ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST).octets();
                format!(
                    "227 Entering Passive Mode ({a},{b},{c},{d},{},{})",
                    port >> 8,
                    port & 0xff
                )
            }
            "EPSV" => {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let port = listener.local_addr()?.port();
                self.data = Data::Passive(listener);
                format!("229 Entering Extended Passive Mode (|||{port}|)")
            }
            "PORT" => match parse_port(arg) {
                Some(addr) => {
                    self.data = Data::Active(addr);
                    "200 PORT command successful".into()
                }
                None => "501 Illegal PORT command".into(),
            },
            "EPRT" => match parse_eprt(arg) {
                Some(addr) => {
                    self.data = Data::Active(addr);
                    "200 EPRT command successful".into()
                }
                None => "501 Illegal EPRT command".into(),
            },
            "SIZE" => match std::fs::metadata(self.disk(&self.resolve(arg))) {
                Ok(m) if m.is_file() => format!("213 {}", m.len()),
                _ => "550 Could not get file size".into(),
            },
            "MDTM" => match std::fs::metadata(self.disk(&self.resolve(arg))).and_then(|m| m.modified()) {
                Ok(t) => {
                    let t: chrono::DateTime<chrono::Utc> = t.into();
                    format!("213 {}", t.format("%Y%m%d%H%M%S"))
                }
                Err(_) => "550 Could not get file modification time".into(),
            },
            "DELE" => {
                let target = self.resolve(arg);
                if self.refused(&parent(&target)) {
                    "550 Delete operation failed".into()
                } else {
                    match std::fs::remove_file(self.disk(&target)) {
                        Ok(()) => "250 Delete operation successful".into(),
                        Err(_) => "550 Delete operation failed".into(),
                    }
                }
            }
            "RNFR" => {
                let target = self.resolve(arg);
                if self.disk(&target).exists() {
                    self.rename_from = Some(self.disk(&target));
                    "350 Ready for RNTO".into()
                } else {
                    "550 RNFR command failed".into()
                }
            }
            "RNTO" => {
                let target = self.resolve(arg);
                match self.rename_from.take() {
                    None => "503 RNFR required first".into(),
                    Some(_) if self.refused(&parent(&target)) => "550 Rename failed".into(),
                    Some(from) => match std::fs::rename(from, self.disk(&target)) {
                        Ok(()) => "250 Rename successful".into(),
                        Err(_) => "550 Rename failed".into(),
                    },
                }
            }
            "STOR" => {
                let target = self.resolve(arg);
                let folder = parent(&target);
                if self.refused(&folder) || !self.disk(&folder).is_dir() {
                    self.data = Data::None;
                    "553 Could not create file".into()
                } else {
                    let path = self.disk(&target);
                    reply_line(io, "150 Ok to send data").await?;
                    match self.open_data().await {
                        Some(mut data) => {
                            let mut bytes = Vec::new();
                            let read = data.read_to_end(&mut bytes).await;
                            match read {
                                Ok(_) => match std::fs::write(&path, &bytes) {
                                    Ok(()) => "226 Transfer complete".into(),
                                    Err(_) => "451 Failure writing to local file".into(),
                                },
                                Err(_) => "426 Connection closed; transfer aborted".into(),
                            }
                        }
                        None => "425 Use PORT or PASV first".into(),
                    }
                }
            }
            "RETR" => {
                let path = self.disk(&self.resolve(arg));
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        reply_line(io, "150 Opening BINARY mode data connection").await?;
                        match self.open_data().await {
                            Some(mut data) => {
                                data.write_all(&bytes).await?;
                                data.shutdown().await?;
                                "226 Transfer complete".into()
                            }
                            None => "425 Use PORT or PASV first".into(),
                        }
                    }
                    Err(_) => {
                        self.data = Data::None;
                        "550 Failed to open file".into()
                    }
                }
            }
            "LIST" | "NLST" | "MLSD" => {
                let target = self.resolve(arg.trim_start_matches("-a").trim());
                let dir = self.disk(&target);
                if !dir.is_dir() {
                    self.data = Data::None;
                    return Ok("550 Failed to open directory".into());
                }
                let listing = listing(&dir, verb);
                reply_line(io, "150 Here comes the directory listing").await?;
                match self.open_data().await {
                    Some(mut data) => {
                        data.write_all(listing.as_bytes()).await?;
                        data.shutdown().await?;
                        "226 Directory send OK".into()
                    }
                    None => "425 Use PORT or PASV first".into(),
                }
            }
            _ => "502 Command not implemented".into(),
        })
    }

    /// An absolute server path for `arg`, relative to the current folder.
    fn resolve(&self, arg: &str) -> String {
        let joined = if arg.starts_with('/') {
            arg.to_string()
        } else {
            format!("{}/{arg}", self.cwd.trim_end_matches('/'))
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in joined.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        format!("/{}", parts.join("/"))
    }

    fn disk(&self, server_path: &str) -> PathBuf {
        self.setup.root.join(server_path.trim_start_matches('/'))
    }

    fn refused(&self, folder: &str) -> bool {
        let folder = if folder.is_empty() { "/" } else { folder };
        self.setup.state.lock().unwrap().read_only.contains(folder)
    }

    /// The prepared data connection, over TLS when the client asked for protected data.
    async fn open_data(&mut self) -> Option<Box<dyn DataStream>> {
        let plain = match std::mem::replace(&mut self.data, Data::None) {
            Data::None => return None,
            Data::Passive(listener) => listener.accept().await.ok()?.0,
            Data::Active(addr) => TcpStream::connect(addr).await.ok()?,
        };
        if self.protect_data {
            let tls = self.setup.acceptor.accept(plain).await.ok()?;
            Some(Box::new(tls))
        } else {
            Some(Box::new(plain))
        }
    }
}

trait DataStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> DataStream for T {}

async fn reply_line<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    reply: &str,
) -> std::io::Result<()> {
    io.get_mut()
        .write_all(format!("{reply}\r\n").as_bytes())
        .await?;
    io.get_mut().flush().await
}

fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((p, _)) => p.to_string(),
    }
}

/// A folder's entries, as `LIST` (Unix `ls -l` style), `NLST` (names) or `MLSD` (facts).
fn listing(dir: &Path, verb: &str) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        let modified: chrono::DateTime<chrono::Utc> = meta
            .modified()
            .map(Into::into)
            .unwrap_or_else(|_| chrono::Utc::now());
        match verb {
            "NLST" => out.push_str(&format!("{name}\r\n")),
            "MLSD" => out.push_str(&format!(
                "type={};size={};modify={}; {name}\r\n",
                if meta.is_dir() { "dir" } else { "file" },
                meta.len(),
                modified.format("%Y%m%d%H%M%S")
            )),
            _ => out.push_str(&format!(
                "{}rw-r--r--    1 1000     1000     {:>8} {} {name}\r\n",
                if meta.is_dir() { 'd' } else { '-' },
                meta.len(),
                modified.format("%b %d %H:%M")
            )),
        }
    }
    out
}

/// `h1,h2,h3,h4,p1,p2` of PORT.
fn parse_port(arg: &str) -> Option<SocketAddr> {
    let n: Vec<u16> = arg
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    if n.len() != 6 || n.iter().any(|&v| v > 255) {
        return None;
    }
    let ip = std::net::Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
    Some(SocketAddr::new(ip.into(), (n[4] << 8) | n[5]))
}

/// `|1|127.0.0.1|port|` of EPRT.
fn parse_eprt(arg: &str) -> Option<SocketAddr> {
    let delim = arg.chars().next()?;
    let parts: Vec<&str> = arg.split(delim).collect();
    if parts.len() < 4 {
        return None;
    }
    let ip = parts[2].parse().ok()?;
    let port = parts[3].parse().ok()?;
    Some(SocketAddr::new(ip, port))
}
