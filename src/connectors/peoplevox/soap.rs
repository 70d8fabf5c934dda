//! The Peoplevox IntegrationServiceV4 client: SOAP 1.1 envelopes to
//! `{base}/{client_id}/resources/integrationservicev4.asmx`, a session from `Authenticate`
//! (the password base64-encoded, or plain where the instance wants it) cached per login and
//! sent in the `UserSessionCredentials` header, one re-authentication when Peoplevox says
//! `System : Security - Invalid Session`, and calls paced within its 15 requests per 15 s.
//!
//! Business errors come back as HTTP 200 with `ResponseId` -1 and the reason in `Detail`;
//! protocol errors as HTTP 500 with a `soap:Fault`. Both become a [`SoapError`] with an
//! error code and Peoplevox's own words.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use sha2::Digest;
use tokio::sync::Mutex;

use crate::connectors::net::{CallError, Outbound};
use crate::domain::error_code::ErrorCode;

/// The namespace of every operation and of the session header.
pub const NS: &str = "http://www.peoplevox.net/";
const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Where requests go when the key names no `base_url`.
pub const DEFAULT_BASE: &str = "https://wms.peoplevox.net";
/// The service's path under the client id.
const SERVICE_PATH: &str = "resources/integrationservicev4.asmx";
/// Requests a login may send per window, as Peoplevox allows.
const PER_WINDOW: usize = 15;
const WINDOW: Duration = Duration::from_secs(15);
/// Kept spare past the window: a request's turn is taken before it reaches Peoplevox, which
/// counts from its arrival.
const SPARE: Duration = Duration::from_secs(1);

/// How a key's login reaches Peoplevox.
#[derive(Debug, Clone)]
pub struct Account {
    /// The service URL requests are posted to.
    pub endpoint: String,
    pub client_id: String,
    pub username: String,
    password: String,
    /// The password as written on the wire.
    encoded_password: String,
}

impl Account {
    /// The account a key names; the error says which field is missing or wrong.
    pub fn from_key(key: &Value) -> Result<Account, String> {
        let text = |n: &str| {
            key.get(n)
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default()
                .to_string()
        };
        let (client_id, username) = (text("client_id"), text("username"));
        let password = key
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for (name, value) in [
            ("client_id", &client_id),
            ("username", &username),
            ("password", &password),
        ] {
            if value.is_empty() {
                return Err(format!("the Peoplevox key has no `{name}`"));
            }
        }
        let encoded_password = match text("password_encoding").as_str() {
            "" | "base64" => STANDARD.encode(password.as_bytes()),
            "plain" => password.clone(),
            other => {
                return Err(format!(
                    "the Peoplevox key's `password_encoding` is `{other}`; use `base64` or `plain`"
                ))
            }
        };
        let base = match text("base_url") {
            b if b.is_empty() => DEFAULT_BASE.to_string(),
            b => b,
        };
        Ok(Account {
            endpoint: endpoint(&base, &client_id),
            client_id,
            username,
            password,
            encoded_password,
        })
    }

    /// What the pacing knows this login by: the service, the client and the user — whatever
    /// password a key gives, Peoplevox counts the user's requests together.
    fn pace_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.endpoint, self.client_id, self.username
        )
    }

    /// What the session cache knows this login by: the service, the client, the user and the
    /// password (hashed), so a key with another password never rides on a session someone
    /// else's key opened.
    fn cache_key(&self) -> String {
        let mut h = sha2::Sha256::new();
        for part in [
            &self.endpoint,
            &self.client_id,
            &self.username,
            &self.password,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The service URL from the key's `base_url`: a full `….asmx` URL as it is; a URL ending in
/// `/resources` or in the client id completed; otherwise the host, under which the client id
/// and the service path go.
pub fn endpoint(base: &str, client_id: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    let lower = base.to_ascii_lowercase();
    if lower.ends_with(".asmx") {
        base.to_string()
    } else if lower.ends_with("/resources") {
        format!("{base}/integrationservicev4.asmx")
    } else if lower.ends_with(&format!("/{}", client_id.to_ascii_lowercase())) {
        format!("{base}/{SERVICE_PATH}")
    } else {
        format!("{base}/{client_id}/{SERVICE_PATH}")
    }
}

/// What every operation answers (`IntegrationResponse`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub response_id: i64,
    pub total_count: u64,
    pub detail: String,
}

/// One answered call: its status, the start of its body (as attempts keep it), and the result.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub excerpt: String,
    pub outcome: Outcome,
}

/// Why a call did not succeed, with the catalogue code it is reported under.
#[derive(Debug)]
pub enum SoapError {
    /// The request never got an answer (or was refused by the outbound guard).
    Call(CallError),
    /// Peoplevox answered, and refused or failed: `code` says how to treat it.
    Answered {
        code: ErrorCode,
        status: Option<u16>,
        excerpt: Option<String>,
        retry_after: Option<Duration>,
        message: String,
    },
    /// What was to be sent cannot be (text XML cannot carry, a bad key).
    Input(String),
}

impl SoapError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SoapError::Call(e) => e.code(),
            SoapError::Answered { code, .. } => *code,
            SoapError::Input(_) => ErrorCode::InvalidSchema,
        }
    }

    /// Whether trying again later may succeed.
    pub fn retry(&self) -> bool {
        match self {
            SoapError::Call(e) => !matches!(e, CallError::Blocked(_) | CallError::Invalid(_)),
            SoapError::Answered { code, .. } => matches!(
                code,
                ErrorCode::ServerError
                    | ErrorCode::RateLimited
                    | ErrorCode::Timeout
                    | ErrorCode::ConnectionError
            ),
            SoapError::Input(_) => false,
        }
    }

    /// The wait a busy answer asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SoapError::Answered { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl std::fmt::Display for SoapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SoapError::Call(e) => write!(f, "Peoplevox {e}"),
            SoapError::Answered { message, .. } | SoapError::Input(message) => f.write_str(message),
        }
    }
}

/// XML text with `&`, `<`, `>` and quotes escaped, and carriage returns kept (a parser would
/// turn a bare one into a line feed). Characters XML 1.0 cannot carry at all are refused.
pub fn escape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(format!(
                    "the text holds the control character U+{:04X}, which XML cannot carry",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The body element of an operation: `<Op xmlns=…>` with its fields, inside a wrapper element
/// when the operation takes one (`getRequest`, `saveRequest`).
pub fn operation(
    op: &str,
    wrapper: Option<&str>,
    fields: &[(&str, &str)],
) -> Result<String, String> {
    let mut inner = String::new();
    for (name, value) in fields {
        inner.push_str(&format!("<{name}>{}</{name}>", escape(value)?));
    }
    Ok(match wrapper {
        Some(w) => format!("<{op} xmlns=\"{NS}\"><{w}>{inner}</{w}></{op}>"),
        None => format!("<{op} xmlns=\"{NS}\">{inner}</{op}>"),
    })
}

/// A whole SOAP 1.1 envelope around `body`, with the session header when there is one.
fn envelope(session: Option<&Session>, body: &str) -> Result<String, String> {
    let header = match session {
        Some(s) => format!(
            "<soap:Header><UserSessionCredentials xmlns=\"{NS}\"><UserId>0</UserId><ClientId>{}</ClientId><SessionId>{}</SessionId></UserSessionCredentials></soap:Header>",
            escape(&s.client_id)?,
            escape(&s.session_id)?
        ),
        None => String::new(),
    };
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{SOAP_NS}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">{header}<soap:Body>{body}</soap:Body></soap:Envelope>"
    ))
}

/// What a SOAP answer holds: the operation's result, or a fault.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Result(Outcome),
    Fault { code: String, text: String },
}

/// Reads an answer envelope. The error says what is missing.
pub fn parse(xml: &str, op: &str) -> Result<Parsed, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("the answer is not XML: {e}"))?;
    let body = doc
        .descendants()
        .find(|n| n.has_tag_name((SOAP_NS, "Body")))
        .ok_or("the answer has no soap:Body")?;
    let first = body
        .children()
        .find(|n| n.is_element())
        .ok_or("the answer's soap:Body is empty")?;
    let child_text = |node: roxmltree::Node, name: &str| {
        node.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .map(|c| c.text().unwrap_or_default().to_string())
    };
    if first.tag_name().name() == "Fault" {
        return Ok(Parsed::Fault {
            code: child_text(first, "faultcode").unwrap_or_default(),
            text: child_text(first, "faultstring").unwrap_or_default(),
        });
    }
    let wanted = format!("{op}Result");
    let result = first
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == wanted)
        .ok_or_else(|| format!("the answer has no {wanted}"))?;
    let id =
        child_text(result, "ResponseId").ok_or_else(|| format!("{wanted} has no ResponseId"))?;
    let response_id = id
        .trim()
        .parse()
        .map_err(|_| format!("{wanted}'s ResponseId `{id}` is not a number"))?;
    let total_count = child_text(result, "TotalCount")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    Ok(Parsed::Result(Outcome {
        response_id,
        total_count,
        detail: child_text(result, "Detail").unwrap_or_default(),
    }))
}

/// An open session: the client id Peoplevox answered with, and the session id.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    client_id: String,
    session_id: String,
}

/// Whether a result says the session is no longer valid.
fn invalid_session(o: &Outcome) -> bool {
    o.response_id != 0 && o.detail.to_ascii_lowercase().contains("invalid session")
}

/// The client's shared state: open sessions, one sign-in at a time per login, and the pacing
/// of each login's requests.
#[derive(Default)]
pub struct Client {
    sessions: Mutex<HashMap<String, Session>>,
    signing_in: Mutex<HashMap<String, std::sync::Arc<Mutex<()>>>>,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Client {
    /// The login's session: the cached one unless it is `stale`, else a new one. Calls that
    /// need one at once wait for a single sign-in (each sign-in may end the others' sessions,
    /// and all spend the login's requests).
    async fn session(
        &self,
        net: &Outbound,
        account: &Account,
        stale: Option<&Session>,
        timeout: Option<Duration>,
    ) -> Result<Session, SoapError> {
        let key = account.cache_key();
        let gate = self
            .signing_in
            .lock()
            .await
            .entry(key.clone())
            .or_default()
            .clone();
        let _one_at_a_time = gate.lock().await;
        if let Some(current) = self.sessions.lock().await.get(&key) {
            if Some(current) != stale {
                return Ok(current.clone());
            }
        }
        self.authenticate(net, account, timeout).await
    }

    /// Waits until the login may send its next request, at most `limit`: a turn further off
    /// than that is a busy answer of Wharf's own, so a delivery does not outlast its timeout
    /// waiting.
    async fn turn(&self, account: &Account, limit: Duration) -> Result<(), SoapError> {
        let key = account.pace_key();
        let started = Instant::now();
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let times = sent.entry(key.clone()).or_default();
                let now = Instant::now();
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW + SPARE)
                {
                    times.pop_front();
                }
                if times.len() < PER_WINDOW {
                    times.push_back(now);
                    return Ok(());
                }
                times
                    .front()
                    .map(|t| (*t + WINDOW + SPARE).saturating_duration_since(now))
                    .unwrap_or_default()
                    .max(Duration::from_millis(10))
            };
            if started.elapsed() + wait > limit {
                return Err(SoapError::Answered {
                    code: ErrorCode::RateLimited,
                    status: None,
                    excerpt: None,
                    retry_after: Some(wait),
                    message: format!(
                        "Peoplevox allows {PER_WINDOW} requests in {} s per login, and this one's turn is further off than the call may wait; it is tried again later",
                        WINDOW.as_secs()
                    ),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Posts one envelope and reads the answer; transport failures and non-SOAP answers are
    /// errors, a result (whatever its `ResponseId`) is not.
    async fn post(
        &self,
        net: &Outbound,
        account: &Account,
        op: &str,
        session: Option<&Session>,
        body: &str,
        timeout: Option<Duration>,
    ) -> Result<Reply, SoapError> {
        let xml = envelope(session, body).map_err(SoapError::Input)?;
        // Without a timeout of its own, a call waits at most a window for its turn.
        self.turn(account, timeout.unwrap_or(WINDOW)).await?;
        let req = net
            .request(reqwest::Method::POST, &account.endpoint)
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", format!("\"{NS}{op}\""))
            .body(xml);
        let res = net.send(req, timeout).await.map_err(SoapError::Call)?;
        let status = res.status().as_u16();
        let retry_after = crate::connectors::pages::retry_after(&res);
        let bytes = net.read_capped(res).await.map_err(SoapError::Call)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let excerpt = excerpt(&text, net.excerpt_bytes);
        let answered = |code: ErrorCode, message: String| SoapError::Answered {
            code,
            status: Some(status),
            excerpt: Some(excerpt.clone()),
            retry_after,
            message,
        };
        match status {
            429 | 503 => {
                return Err(answered(
                    ErrorCode::RateLimited,
                    format!(
                        "Peoplevox answered {status} to {op}: busy or over its request limit; {}",
                        short(&text)
                    ),
                ))
            }
            401 | 403 => {
                return Err(answered(
                    ErrorCode::Unauthorized,
                    format!("Peoplevox answered {status} to {op}: {}", short(&text)),
                ))
            }
            _ => {}
        }
        match parse(&text, op) {
            Ok(Parsed::Result(outcome)) if (200..300).contains(&status) => Ok(Reply {
                status,
                excerpt,
                outcome,
            }),
            Ok(Parsed::Result(_)) => Err(answered(
                status_code(status),
                format!("Peoplevox answered {status} to {op}: {}", short(&text)),
            )),
            Ok(Parsed::Fault { code, text }) => {
                // A client fault is the request's own mistake and will fail again; anything
                // else is the server's and may pass later.
                let code = if code.ends_with("Client") {
                    ErrorCode::InvalidSchema
                } else {
                    ErrorCode::ServerError
                };
                Err(answered(
                    code,
                    format!("Peoplevox answered {op} with a SOAP fault: {text}"),
                ))
            }
            Err(why) if status >= 500 => {
                tracing::debug!(%why, "Peoplevox's failed answer is not SOAP");
                Err(answered(
                    ErrorCode::ServerError,
                    format!("Peoplevox answered {status} to {op}: {}", short(&text)),
                ))
            }
            Err(why) => Err(answered(
                if (200..300).contains(&status) {
                    ErrorCode::InvalidApiResponse
                } else {
                    status_code(status)
                },
                format!(
                    "Peoplevox answered {status} to {op}, and {why}: {}",
                    short(&text)
                ),
            )),
        }
    }

    /// Opens a session for the login.
    async fn authenticate(
        &self,
        net: &Outbound,
        account: &Account,
        timeout: Option<Duration>,
    ) -> Result<Session, SoapError> {
        let body = operation(
            "Authenticate",
            None,
            &[
                ("clientId", &account.client_id),
                ("username", &account.username),
                ("password", &account.encoded_password),
            ],
        )
        .map_err(SoapError::Input)?;
        let reply = self
            .post(net, account, "Authenticate", None, &body, timeout)
            .await?;
        let refused = |message: String| SoapError::Answered {
            code: ErrorCode::Unauthorized,
            status: Some(reply.status),
            excerpt: Some(reply.excerpt.clone()),
            retry_after: None,
            message,
        };
        if reply.outcome.response_id != 0 {
            return Err(refused(format!(
                "Peoplevox refused the login of `{}` to client `{}`: {}",
                account.username, account.client_id, reply.outcome.detail
            )));
        }
        let detail = reply.outcome.detail.trim();
        match detail.split_once(',') {
            Some((client, session)) if !client.is_empty() && !session.trim().is_empty() => {
                let session = Session {
                    client_id: client.trim().to_string(),
                    session_id: session.trim().to_string(),
                };
                self.sessions
                    .lock()
                    .await
                    .insert(account.cache_key(), session.clone());
                Ok(session)
            }
            // The answer is not quoted: a successful login's `Detail` may be a bare session id.
            _ => Err(SoapError::Answered {
                code: ErrorCode::InvalidApiResponse,
                status: Some(reply.status),
                excerpt: None,
                retry_after: None,
                message:
                    "Peoplevox's login answer names no session in the form `clientId,sessionId`"
                        .into(),
            }),
        }
    }

    /// Calls an operation in the login's session (opened, or reopened once when Peoplevox says
    /// it is no longer valid), each request within `timeout` (the outbound client's default
    /// when `None`). A result with `ResponseId` other than 0 is returned as it is: what it
    /// means depends on the operation.
    pub async fn call(
        &self,
        net: &Outbound,
        account: &Account,
        op: &str,
        body: &str,
        timeout: Option<Duration>,
    ) -> Result<Reply, SoapError> {
        let session = self.session(net, account, None, timeout).await?;
        let reply = self
            .post(net, account, op, Some(&session), body, timeout)
            .await?;
        if !invalid_session(&reply.outcome) {
            return Ok(reply);
        }
        tracing::info!(op, "Peoplevox session no longer valid; signing in again");
        let session = self.session(net, account, Some(&session), timeout).await?;
        let reply = self
            .post(net, account, op, Some(&session), body, timeout)
            .await?;
        if invalid_session(&reply.outcome) {
            // Signed in a moment ago with the same login: another sign-in (another node, a
            // person) ended the session meanwhile. Tried again later.
            return Err(SoapError::Answered {
                code: ErrorCode::ServerError,
                status: Some(reply.status),
                excerpt: Some(reply.excerpt),
                retry_after: None,
                message: format!(
                    "Peoplevox refused a new session for {op}: {}",
                    reply.outcome.detail
                ),
            });
        }
        Ok(reply)
    }
}

/// The code of an unexpected status.
fn status_code(status: u16) -> ErrorCode {
    crate::domain::retry::judge_status(status)
        .1
        .unwrap_or(ErrorCode::InvalidApiResponse)
}

/// The start of a text, for messages.
fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The first `cap` bytes of a text, cut at a character boundary.
fn excerpt(text: &str, cap: usize) -> String {
    let mut end = text.len().min(cap);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_endpoint_is_built_from_the_base_and_client_id() {
        let e = |base: &str| endpoint(base, "acme1234");
        let full = "https://wms.peoplevox.net/acme1234/resources/integrationservicev4.asmx";
        assert_eq!(e("https://wms.peoplevox.net"), full);
        assert_eq!(e("https://wms.peoplevox.net/"), full);
        assert_eq!(e("https://wms.peoplevox.net/acme1234"), full);
        assert_eq!(e("https://wms.peoplevox.net/acme1234/resources"), full);
        assert_eq!(
            e("https://ap.peoplevox.net/acme1234/Resources/IntegrationServicev4.asmx"),
            "https://ap.peoplevox.net/acme1234/Resources/IntegrationServicev4.asmx"
        );
        let a = Account::from_key(
            &json!({"client_id": "acme1234", "username": "u", "password": "secret"}),
        )
        .unwrap();
        assert_eq!(a.endpoint, full);
        assert_eq!(a.encoded_password, "c2VjcmV0");
        let plain = Account::from_key(
            &json!({"client_id": "c", "username": "u", "password": "secret",
            "password_encoding": "plain"}),
        )
        .unwrap();
        assert_eq!(plain.encoded_password, "secret");
        let e = Account::from_key(&json!({"client_id": "c", "password": "p"})).unwrap_err();
        assert!(e.contains("`username`"), "{e}");
    }

    #[test]
    fn text_is_escaped_and_what_xml_cannot_carry_refused() {
        assert_eq!(
            escape("a & b <c> \"d\" 'e'\r\n").unwrap(),
            "a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;&#13;\n"
        );
        assert!(escape("bell\u{7}").unwrap_err().contains("U+0007"));
        let body = operation(
            "GetData",
            Some("getRequest"),
            &[
                ("TemplateName", "Sales orders"),
                ("SearchClause", "A == \"x&y\""),
            ],
        )
        .unwrap();
        assert_eq!(
            body,
            "<GetData xmlns=\"http://www.peoplevox.net/\"><getRequest><TemplateName>Sales orders</TemplateName><SearchClause>A == &quot;x&amp;y&quot;</SearchClause></getRequest></GetData>"
        );
        // What is sent reads back as it was given.
        let session = Session {
            client_id: "c<1>".into(),
            session_id: "s".into(),
        };
        let xml = envelope(Some(&session), &body).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let clause = doc
            .descendants()
            .find(|n| n.has_tag_name((NS, "SearchClause")))
            .unwrap();
        assert_eq!(clause.text(), Some("A == \"x&y\""));
        let client = doc
            .descendants()
            .find(|n| n.has_tag_name((NS, "ClientId")))
            .unwrap();
        assert_eq!(client.text(), Some("c<1>"));
    }

    #[tokio::test]
    async fn a_login_sends_at_most_fifteen_requests_in_fifteen_seconds() {
        let client = Client::default();
        let account =
            Account::from_key(&json!({"client_id": "c", "username": "u", "password": "p"}))
                .unwrap();
        for _ in 0..PER_WINDOW {
            client.turn(&account, Duration::ZERO).await.unwrap();
        }
        let e = client
            .turn(&account, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::RateLimited);
        assert!(e.retry());
        assert!(
            e.retry_after().is_some_and(|w| w <= WINDOW + SPARE),
            "{e:?}"
        );
        // The same user with another password (a wrong key) shares the user's turns.
        let wrong = Account::from_key(&json!({"client_id": "c", "username": "u", "password": "x"}))
            .unwrap();
        assert!(client.turn(&wrong, Duration::ZERO).await.is_err());
        // Another login has its own turns.
        let other = Account::from_key(&json!({"client_id": "c", "username": "v", "password": "p"}))
            .unwrap();
        client.turn(&other, Duration::ZERO).await.unwrap();
    }

    #[test]
    fn answers_and_faults_are_read() {
        let ok = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetDataResponse xmlns="http://www.peoplevox.net/"><GetDataResult><ResponseId>0</ResponseId><TotalCount>12</TotalCount><Detail>A,B
1,2</Detail></GetDataResult></GetDataResponse></soap:Body></soap:Envelope>"#;
        assert_eq!(
            parse(ok, "GetData").unwrap(),
            Parsed::Result(Outcome {
                response_id: 0,
                total_count: 12,
                detail: "A,B\n1,2".into()
            })
        );
        let fault = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>Server did not recognize the value of HTTP Header SOAPAction: x.</faultstring><detail /></soap:Fault></soap:Body></soap:Envelope>"#;
        assert_eq!(
            parse(fault, "GetData").unwrap(),
            Parsed::Fault {
                code: "soap:Client".into(),
                text: "Server did not recognize the value of HTTP Header SOAPAction: x.".into()
            }
        );
        assert!(parse("<html>", "GetData").is_err());
        assert!(parse(ok, "SaveData")
            .unwrap_err()
            .contains("SaveDataResult"));
        assert!(invalid_session(&Outcome {
            response_id: -1,
            total_count: 0,
            detail: "System : Security - Invalid Session".into()
        }));
    }
}
