//! A local SMTP server that records every message it accepts: plain, STARTTLS or implicit
//! TLS (a self-signed certificate for `localhost` and 127.0.0.1), AUTH PLAIN and LOGIN, and
//! scripted replies (a 451 to the next RCPT, a 535 to every AUTH …) so a client's handling of
//! each answer can be tested. It speaks RFC 5321 as far as a mail client needs: EHLO/HELO,
//! STARTTLS, AUTH, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::tls::Certificate;

/// How the server offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text only.
    None,
    /// Plain text, upgraded by STARTTLS (offered in the EHLO answer).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465 style).
    Implicit,
}

/// A command a scripted reply answers instead of the normal one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Auth,
    Mail,
    Rcpt,
    /// The end of DATA (the message itself).
    Data,
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body, CRLF line ends, dots unstuffed).
    pub data: String,
    /// The user that authenticated, if any.
    pub user: Option<String>,
    /// Whether the message came over TLS.
    pub tls: bool,
}

impl Mail {
    /// The value of a header (the first one of this name; folded lines joined).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            match &mut found {
                Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
                Some(_) => break,
                None => {
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case(name) {
                            found = Some(v.trim().to_string());
                        }
                    }
                }
            }
        }
        found
    }
}

#[derive(Default)]
struct State {
    mails: Vec<Mail>,
    scripted: HashMap<Stage, VecDeque<String>>,
    sessions: usize,
}

/// The running server; it stops with the test's runtime.
pub struct SmtpSink {
    pub addr: SocketAddr,
    /// The server's certificate (PEM), for a client to trust.
    pub cert_pem: String,
    state: Arc<Mutex<State>>,
}

struct Setup {
    tls: SmtpTls,
    auth: Option<(String, String)>,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
}

impl SmtpSink {
    /// Starts a server on a free loopback port. With `auth`, only that user and password are
    /// accepted, and a message is taken only after a successful AUTH.
    pub async fn start(tls: SmtpTls, auth: Option<(&str, &str)>) -> SmtpSink {
        let cert = Certificate::localhost();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let state = Arc::new(Mutex::new(State::default()));
        let setup = Arc::new(Setup {
            tls,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
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
        SmtpSink {
            addr,
            cert_pem: cert.pem,
            state,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers the next `times` commands of `stage` with `reply` (e.g. `451 4.3.0 try later`).
    pub fn script(&self, stage: Stage, reply: &str, times: usize) {
        let mut state = self.state.lock().unwrap();
        let queue = state.scripted.entry(stage).or_default();
        queue.extend(std::iter::repeat_n(reply.to_string(), times));
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.state.lock().unwrap().mails.clone()
    }

    /// How many connections were opened.
    pub fn sessions(&self) -> usize {
        self.state.lock().unwrap().sessions
    }

    /// Waits (up to `limit`) until `n` messages were accepted; returns them.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mails = self.mails();
            if mails.len() >= n || tokio::time::Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn session(socket: TcpStream, setup: &Setup) -> std::io::Result<()> {
    if setup.tls == SmtpTls::Implicit {
        let tls = setup.acceptor.accept(socket).await?;
        converse(tls, setup, true, true).await?;
        return Ok(());
    }
    if let Some(socket) = converse(socket, setup, false, true).await? {
        let tls = setup.acceptor.accept(socket).await?;
        converse(tls, setup, true, false).await?;
    }
    Ok(())
}

/// Serves one connection's commands. Returns the stream when the client asked for STARTTLS
/// (the caller then runs the TLS handshake and calls again).
async fn converse<S>(stream: S, setup: &Setup, tls: bool, greet: bool) -> std::io::Result<Option<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = BufReader::new(stream);
    if greet {
        io.write_all(b"220 localhost ESMTP wharf-testkit\r\n")
            .await?;
    }
    let mut user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let command = line.trim_end_matches(['\r', '\n']).to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let scripted = |stage: Stage| {
            setup
                .state
                .lock()
                .unwrap()
                .scripted
                .get_mut(&stage)
                .and_then(VecDeque::pop_front)
        };
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["250-localhost greets you".to_string()];
                if setup.tls == SmtpTls::StartTls && !tls {
                    lines.push("250-STARTTLS".into());
                }
                if setup.auth.is_some() {
                    lines.push("250-AUTH PLAIN LOGIN".into());
                }
                lines.push("250 8BITMIME".into());
                lines.join("\r\n")
            }
            "HELO" => "250 localhost".into(),
            "STARTTLS" if setup.tls == SmtpTls::StartTls && !tls => {
                io.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
                io.flush().await?;
                return Ok(Some(io.into_inner()));
            }
            "AUTH" => match auth(&mut io, &command, setup).await? {
                _ if scripted(Stage::Auth).is_some() => {
                    // Scripted: refuse whatever was given.
                    "535 5.7.8 Authentication credentials invalid".into()
                }
                Some(name) => {
                    user = Some(name);
                    "235 2.7.0 Authentication successful".into()
                }
                None => "535 5.7.8 Authentication credentials invalid".into(),
            },
            "MAIL" => {
                if let Some(r) = scripted(Stage::Mail) {
                    r
                } else if setup.auth.is_some() && user.is_none() {
                    "530 5.7.0 Authentication required".into()
                } else {
                    from = Some(address(&command));
                    to.clear();
                    "250 2.1.0 OK".into()
                }
            }
            "RCPT" => match (scripted(Stage::Rcpt), &from) {
                (Some(r), _) => r,
                (None, None) => "503 5.5.1 MAIL first".into(),
                (None, Some(_)) => {
                    to.push(address(&command));
                    "250 2.1.5 OK".into()
                }
            },
            "DATA" if from.is_none() || to.is_empty() => "503 5.5.1 RCPT first".into(),
            "DATA" => {
                io.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                io.flush().await?;
                let data = read_data(&mut io).await?;
                match scripted(Stage::Data) {
                    Some(r) => r,
                    None => {
                        setup.state.lock().unwrap().mails.push(Mail {
                            from: from.take().unwrap_or_default(),
                            to: std::mem::take(&mut to),
                            data,
                            user: user.clone(),
                            tls,
                        });
                        "250 2.0.0 queued".into()
                    }
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "QUIT" => {
                io.write_all(b"221 2.0.0 bye\r\n").await?;
                io.flush().await?;
                return Ok(None);
            }
            _ => "502 5.5.2 command not recognised".into(),
        };
        io.write_all(format!("{reply}\r\n").as_bytes()).await?;
        io.flush().await?;
    }
}

/// Runs an AUTH exchange; the user name when the credentials are right.
async fn auth<S>(
    io: &mut BufReader<S>,
    command: &str,
    setup: &Setup,
) -> std::io::Result<Option<String>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((want_user, want_pass)) = &setup.auth else {
        return Ok(None);
    };
    let mut parts = command.split_whitespace().skip(1);
    let mechanism = parts.next().unwrap_or("").to_ascii_uppercase();
    let initial = parts.next().map(str::to_string);
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: &str| {
        b64.decode(s.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let (user, pass) = match mechanism.as_str() {
        "PLAIN" => {
            let given = match initial {
                Some(i) => i,
                None => ask(io, "334 ").await?,
            };
            let Some(text) = decode(&given) else {
                return Ok(None);
            };
            let mut fields = text.split('\0').skip(1);
            (
                fields.next().unwrap_or("").to_string(),
                fields.next().unwrap_or("").to_string(),
            )
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => i,
                None => ask(io, "334 VXNlcm5hbWU6").await?,
            };
            let pass = ask(io, "334 UGFzc3dvcmQ6").await?;
            (
                decode(&user).unwrap_or_default(),
                decode(&pass).unwrap_or_default(),
            )
        }
        _ => return Ok(None),
    };
    Ok((&user == want_user && &pass == want_pass).then_some(user))
}

async fn ask<S>(io: &mut BufReader<S>, prompt: &str) -> std::io::Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(format!("{prompt}\r\n").as_bytes()).await?;
    io.flush().await?;
    let mut line = String::new();
    io.read_line(&mut line).await?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a message up to the lone dot, undoing dot-stuffing.
async fn read_data<S>(io: &mut BufReader<S>) -> std::io::Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text == "." {
            return Ok(data);
        }
        data.push_str(text.strip_prefix('.').unwrap_or(text));
        data.push_str("\r\n");
    }
}

/// The address of `MAIL FROM:<a@b> …` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |i| start + i);
    command[start..end].to_string()
}
