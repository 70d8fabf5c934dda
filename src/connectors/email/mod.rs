//! The `email` system: `email.send` mails each event's output (or a job's combined output) over
//! SMTP — STARTTLS, TLS from the first byte, or plain — with the key's login. The SMTP server's
//! reply decides what happens next: 4xx is tried again on the destination's schedule, 5xx is
//! final, and each becomes a catalogue code with the server's own words on the attempt.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};

use super::naming::Naming;
use super::net::Outbound;
use super::params::Params;
use super::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;

crate::param_enum! {
    /// How the connection to the SMTP server is protected.
    pub enum Security { StartTls = "starttls", Tls = "tls", None = "none" }
}

crate::params! {
    /// The params of `email.send`.
    pub struct SendParams {
        to: Vec<String>, "Recipients' addresses, e.g. `ops@example.com` or `Ops <ops@example.com>`.";
        cc: Option<Vec<String>>, "Copy recipients' addresses.";
        subject: String = DEFAULT_SUBJECT.into(), "Subject template (`{{ data_type }}`, `{{ job.id }}`, `{{ event.entity_id }}`, `{{ now | format_date(\"%Y-%m-%d\") }}`).";
        body: Option<String>, "Body template. With `attach_as`, the text above the attachment; without it, the body is the output itself unless this is given (then `{{ output }}` is the output's text).";
        attach_as: Option<String>, "File name template of the attachment, e.g. `orders-{{ now | format_date(\"%Y%m%d\") }}.csv`: the output is attached with its content type. Without it, the output is the body.";
    }
}

const DEFAULT_SUBJECT: &str = "{{ data_type }} from Wharf";
const DEFAULT_ATTACHED_BODY: &str =
    "{{ filename }} is attached: {{ data_type }} from Wharf (job {{ job.id }}).";
/// Longest subject written (RFC 5322 keeps a line under 998 characters).
const MAX_SUBJECT: usize = 900;
/// Longest rendered body template.
const MAX_BODY: usize = 1 << 20;

/// The key's connection settings, read from its opened credentials.
struct Server {
    host: String,
    port: u16,
    security: Security,
    login: Option<Credentials>,
    from: Mailbox,
    tls_ca: Option<String>,
}

impl Server {
    fn of(key: Option<&Value>) -> Result<Server, String> {
        let key = key.ok_or("an email destination needs a key (the SMTP server and login)")?;
        let text = |name: &str| super::key_text(key, name);
        let host = text("host").ok_or("the key has no `host`")?;
        let security = match text("security").as_deref() {
            None | Some("starttls") => Security::StartTls,
            Some("tls") => Security::Tls,
            Some("none") => Security::None,
            Some(other) => {
                return Err(format!(
                    "the key's `security` is {other:?}; use starttls, tls or none"
                ))
            }
        };
        let port = super::key_port(
            key,
            match security {
                Security::StartTls => 587,
                Security::Tls => 465,
                Security::None => 25,
            },
        )?;
        let from = text("from").ok_or("the key has no `from` address")?;
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("the key's `from` ({from}) is not an address: {e}"))?;
        let login = text("username")
            .map(|user| Credentials::new(user, text("password").unwrap_or_default()));
        Ok(Server {
            host,
            port,
            security,
            login,
            from,
            tls_ca: text("tls_ca"),
        })
    }

    fn tls(&self) -> Result<Tls, String> {
        if self.security == Security::None {
            return Ok(Tls::None);
        }
        let domain = self.host.trim_start_matches('[').trim_end_matches(']');
        let mut builder = TlsParameters::builder(domain.to_string());
        if let Some(pem) = &self.tls_ca {
            let cert = Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("the key's `tls_ca` is not a PEM certificate: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        let params = builder
            .build_rustls()
            .map_err(|e| format!("cannot set up TLS for {domain}: {e}"))?;
        Ok(match self.security {
            Security::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        })
    }
}

/// `email.send` as a destination function.
pub struct Send;

#[async_trait]
impl DestinationFunction for Send {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let params = match SendParams::parse(call.params) {
            Ok(p) => p,
            Err(e) => {
                return SendResult::refused(ErrorCode::Unknown, format!("the destination has {e}"))
            }
        };
        let server = match Server::of(call.key) {
            Ok(s) => s,
            Err(e) => return SendResult::refused(ErrorCode::Unknown, e),
        };
        let message = match compose(&params, &server, &out) {
            Ok(m) => m,
            Err(refusal) => return *refusal,
        };
        transmit(call.net, &server, message, out.timeout, started).await
    }
}

/// Sends a plain-text message (an alert) through the server `key` describes (the same fields
/// as an `email` key): the outcome as an attempt would record it.
pub async fn send_text(
    net: &Outbound,
    key: &Value,
    to: &str,
    subject: &str,
    text: String,
    id: uuid::Uuid,
    timeout: Duration,
) -> SendResult {
    let started = Instant::now();
    let server = match Server::of(Some(key)) {
        Ok(s) => s,
        Err(e) => return SendResult::refused(ErrorCode::Unknown, e),
    };
    let to = match to.parse::<Mailbox>() {
        Ok(m) => m,
        Err(e) => {
            return SendResult::refused(
                ErrorCode::Unknown,
                format!("{to:?} is not an address: {e}"),
            )
        }
    };
    let message = Message::builder()
        .from(server.from.clone())
        .to(to)
        .subject(subject.replace(['\r', '\n'], " "))
        .message_id(Some(format!(
            "<{}@{}>",
            id.simple(),
            server.from.email.domain()
        )))
        .singlepart(SinglePart::plain(text));
    match message {
        Ok(m) => transmit(net, &server, m, timeout, started).await,
        Err(e) => SendResult::refused(ErrorCode::Unknown, format!("cannot build the message: {e}")),
    }
}

/// Resolves the server through the outbound guard and hands it the message, all within
/// `timeout`; the reply decides the verdict.
async fn transmit(
    net: &Outbound,
    server: &Server,
    message: Message,
    timeout: Duration,
    started: Instant,
) -> SendResult {
    // The lookup counts against the try's time, like the rest of it.
    let resolved = tokio::time::timeout(timeout, net.resolve(&server.host, server.port))
        .await
        .unwrap_or(Err(crate::connectors::net::CallError::Timeout(timeout)));
    let addrs = match resolved {
        Ok(a) => a,
        Err(e) => {
            let verdict = match e {
                crate::connectors::net::CallError::Blocked(_) => Verdict::Final,
                _ => Verdict::Retry,
            };
            return failure(
                verdict,
                e.code(),
                format!("connecting to {}: {e}", server.host),
                None,
                started,
            );
        }
    };
    let Some(addr) = addrs.first().copied() else {
        return failure(
            Verdict::Retry,
            ErrorCode::ConnectionError,
            format!("{} has no address to connect to", server.host),
            None,
            started,
        );
    };
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, deliver(server, addr, left, message)).await {
        Ok(Ok(reply)) => SendResult {
            verdict: Verdict::Success,
            error_code: None,
            http_status: None,
            http_status_name: None,
            excerpt: Some(reply),
            retry_after: None,
            message: None,
            reference: None,
            duration: started.elapsed(),
        },
        Ok(Err(e)) => judged(server, e, started),
        Err(_) => failure(
            Verdict::Retry,
            ErrorCode::Timeout,
            format!(
                "{}:{} did not take the message within {} s",
                server.host,
                server.port,
                timeout.as_secs_f64()
            ),
            None,
            started,
        ),
    }
}

/// The message: the output as the body, or attached under the rendered name.
fn compose(
    params: &SendParams,
    server: &Server,
    out: &Outgoing<'_>,
) -> Result<Message, Box<SendResult>> {
    let invalid = |code: ErrorCode, message: String| Box::new(SendResult::refused(code, message));
    let text = match out.body {
        Value::String(text) if out.content_type != "application/json" => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let template_error = |e: super::naming::NamingError| invalid(ErrorCode::TemplateError, e.0);
    let names = Naming::of(out, &[]);
    let filename = match &params.attach_as {
        Some(t) => Some(names.file_name("attach_as", t).map_err(template_error)?),
        None => None,
    };
    let names = Naming::of(
        out,
        &[
            ("filename", json!(filename.clone().unwrap_or_default())),
            ("output", json!(text)),
        ],
    );
    let subject = names
        .render("subject", &params.subject, MAX_SUBJECT)
        .map_err(template_error)?
        .replace(['\r', '\n'], " ");
    let mut builder = Message::builder()
        .from(server.from.clone())
        .subject(subject)
        .message_id(Some(message_id(out, &server.from)));
    let address = |field: &str, given: &str| {
        given.parse::<Mailbox>().map_err(|e| {
            invalid(
                ErrorCode::Unknown,
                format!("the destination's `{field}` has {given:?}, which is not an address: {e}"),
            )
        })
    };
    for to in &params.to {
        builder = builder.to(address("to", to)?);
    }
    for cc in params.cc.iter().flatten() {
        builder = builder.cc(address("cc", cc)?);
    }
    if params.to.is_empty() {
        return Err(invalid(
            ErrorCode::Unknown,
            "the destination's `to` names no recipient".into(),
        ));
    }
    let content_type = |ct: &str| {
        let with_charset = if ct.contains("charset") {
            ct.to_string()
        } else {
            format!("{ct}; charset=utf-8")
        };
        ContentType::parse(&with_charset).unwrap_or(ContentType::TEXT_PLAIN)
    };
    let built = match (&filename, &params.body) {
        (Some(name), body) => {
            let body = names
                .render(
                    "body",
                    body.as_deref().unwrap_or(DEFAULT_ATTACHED_BODY),
                    MAX_BODY,
                )
                .map_err(template_error)?;
            let attachment = Attachment::new(name.clone())
                .body(text.into_bytes(), content_type(out.content_type));
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(attachment),
            )
        }
        (None, Some(body)) => {
            let body = names
                .render("body", body, MAX_BODY)
                .map_err(template_error)?;
            builder.singlepart(SinglePart::plain(body))
        }
        (None, None) => builder.singlepart(
            SinglePart::builder()
                .header(content_type(out.content_type))
                .body(text),
        ),
    };
    built.map_err(|e| invalid(ErrorCode::Unknown, format!("cannot build the message: {e}")))
}

/// One id per event (or combined delivery): a message sent again after an answer was lost
/// carries the same id, by which mail systems recognise the repeat.
fn message_id(out: &Outgoing<'_>, from: &Mailbox) -> String {
    let id = out.event.map_or(out.job_id, |(id, _)| id);
    format!("<{}@{}>", id.simple(), from.email.domain())
}

/// Sends over one connection to the checked address: the name is used only for TLS.
async fn deliver(
    server: &Server,
    addr: SocketAddr,
    timeout: Duration,
    message: Message,
) -> Result<String, Failure> {
    let tls = server.tls().map_err(Failure::Setup)?;
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(ClientId::Domain(hello_name(&server.from)));
    if let Some(login) = &server.login {
        builder = builder.credentials(login.clone());
    }
    let transport = builder.build();
    let reply = transport.send(message).await.map_err(Failure::Smtp)?;
    Ok(reply.message().fold(reply.code().to_string(), |all, line| {
        format!("{all} {line}")
    }))
}

/// The name Wharf greets the server with: the sender's domain.
fn hello_name(from: &Mailbox) -> String {
    from.email.domain().to_string()
}

enum Failure {
    Setup(String),
    Smtp(lettre::transport::smtp::Error),
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

/// What a failed try means: the reply code decides, then the kind of failure.
fn judged(server: &Server, failed: Failure, started: Instant) -> SendResult {
    let at = format!("{}:{}", server.host, server.port);
    let e = match failed {
        Failure::Setup(m) => return failure(Verdict::Final, ErrorCode::Unknown, m, None, started),
        Failure::Smtp(e) => e,
    };
    let shown = e.to_string();
    if let Some(code) = e.status() {
        let code: u16 = code.to_string().parse().unwrap_or(0);
        let (verdict, error_code, what) = judge_reply(code);
        return failure(
            verdict,
            error_code,
            format!("{at} {what}: {shown}"),
            Some(shown),
            started,
        );
    }
    if untrusted(&e) {
        return failure(
            Verdict::Final,
            ErrorCode::UntrustedServer,
            format!(
                "{at}: the server's TLS certificate is not trusted ({shown}); if the server uses \
                 its own certificate, put it (PEM) in the key's `tls_ca`"
            ),
            None,
            started,
        );
    }
    if e.is_client() {
        // What the server offers does not fit the key (no STARTTLS, no login mechanism in
        // common): it will not change by itself.
        return failure(
            Verdict::Final,
            ErrorCode::ConnectionError,
            format!("{at}: {shown}; check the key's `security`, `port` and login"),
            None,
            started,
        );
    }
    let (code, what) = if e.is_timeout() {
        (ErrorCode::Timeout, "did not answer in time")
    } else if e.is_tls() {
        (
            ErrorCode::ConnectionError,
            "could not agree on TLS (check the key's `security` and `port`)",
        )
    } else {
        (
            ErrorCode::ConnectionError,
            "could not be reached, or closed the connection (check the host, port and `security`)",
        )
    };
    failure(
        Verdict::Retry,
        code,
        format!("{at} {what}: {shown}"),
        None,
        started,
    )
}

/// An SMTP reply code's verdict: a 4xx is tried again, a 5xx is final.
fn judge_reply(code: u16) -> (Verdict, ErrorCode, &'static str) {
    match code {
        530 | 534 | 535 | 538 | 454 => (
            if code == 454 {
                Verdict::Retry
            } else {
                Verdict::Final
            },
            ErrorCode::Unauthorized,
            "refused the key's login",
        ),
        550 | 551 | 553 => (
            Verdict::Final,
            ErrorCode::NotFound,
            "refused the sender or a recipient",
        ),
        552 => (
            Verdict::Final,
            ErrorCode::OutputTooLarge,
            "refused the message's size",
        ),
        400..=499 => (
            Verdict::Retry,
            ErrorCode::ServerError,
            "cannot take the message now",
        ),
        _ => (
            Verdict::Final,
            ErrorCode::ServerError,
            "refused the message",
        ),
    }
}

/// Whether the failure is a certificate the client does not trust.
fn untrusted(e: &lettre::transport::smtp::Error) -> bool {
    super::net::untrusted_certificate(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_decide_whether_to_try_again() {
        let v = |c| judge_reply(c);
        assert_eq!(v(535).0, Verdict::Final);
        assert_eq!(v(535).1, ErrorCode::Unauthorized);
        assert_eq!(v(454).0, Verdict::Retry);
        assert_eq!(v(550).1, ErrorCode::NotFound);
        assert_eq!(v(552).1, ErrorCode::OutputTooLarge);
        assert_eq!(v(451).0, Verdict::Retry);
        assert_eq!(v(421).0, Verdict::Retry);
        assert_eq!(v(452).0, Verdict::Retry);
        assert_eq!(v(554).0, Verdict::Final);
    }
}
