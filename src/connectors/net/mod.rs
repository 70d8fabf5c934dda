//! The one outbound HTTP client. Every call Wharf makes to another system goes through
//! [`Outbound::send`], which refuses internal addresses (loopback, private, link-local, cloud
//! metadata …, see [`addr`]) unless `outbound.allow` names them, bounds the time a call may take,
//! and reads answers with a byte cap.
//!
//! Addresses are judged where the connection is made, not where the URL is read: host names in
//! the resolver (so a name that resolves to 127.0.0.1 is refused, and a rebinding name cannot
//! switch after a check), IP literals (which never reach a resolver) before the request and at
//! every redirect hop. A refusal happens before any connection, so it tells nothing about
//! whether anything listens there.

pub mod addr;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderName, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, USER_AGENT};
use reqwest::{redirect, Method, RequestBuilder, Response, StatusCode, Url};

use crate::config::OutboundConfig;
use crate::domain::error_code::ErrorCode;

/// Redirect hops followed before a call fails (reqwest's default).
const MAX_REDIRECTS: usize = 10;
/// Time to open a connection; the request's total deadline still applies when it is shorter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A call refused because its host is (or resolves only to) an internal address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub host: String,
    /// The range, e.g. `loopback` or `cloud metadata`.
    pub range: &'static str,
    /// The host is a name that resolved only to refused addresses.
    pub resolved: bool,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.resolved {
            "resolves only to"
        } else {
            "is"
        };
        write!(
            f,
            "{} {what} a {} address, which Wharf does not call; an operator can allow it with outbound.allow",
            self.host, self.range
        )
    }
}

impl std::error::Error for Blocked {}

/// Which hosts may be called: the classifier plus the operator's exceptions.
#[derive(Debug)]
struct Guard {
    allow: addr::Allow,
}

impl Guard {
    fn check_ip(&self, host: &str, ip: IpAddr, resolved: bool) -> Result<(), Blocked> {
        if self.allow.ip(ip) {
            return Ok(());
        }
        match addr::classify(ip) {
            None => Ok(()),
            Some(range) => Err(Blocked {
                host: host.to_string(),
                range,
                resolved,
            }),
        }
    }

    /// Judges what can be judged from the URL alone: IP literals and names refused as such.
    /// Other names are judged by the resolver, on the addresses actually connected to.
    fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return self.check_ip(host, ip, false);
        }
        if !self.allow.name(host) && addr::blocked_name(host) {
            return Err(Blocked {
                host: host.to_string(),
                range: "cloud metadata",
                resolved: false,
            });
        }
        Ok(())
    }
}

/// Resolves names with the system resolver and keeps only the addresses that may be called.
struct GuardedResolver(Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_guarded(self.0.clone(), name.as_str().to_string()))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn resolve_guarded(guard: Arc<Guard>, host: String) -> Result<Addrs, BoxError> {
    let allowed = guard.allow.name(&host);
    if !allowed && addr::blocked_name(&host) {
        return Err(Box::new(Blocked {
            host,
            range: "cloud metadata",
            resolved: false,
        }));
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    if allowed {
        return Ok(Box::new(found.into_iter()));
    }
    // A name with public and internal addresses is called on its public ones only.
    let mut refused = None;
    let kept: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match guard.check_ip(&host, a.ip(), true) {
            Ok(()) => true,
            Err(b) => {
                refused.get_or_insert(b);
                false
            }
        })
        .collect();
    match (kept.is_empty(), refused) {
        (true, Some(blocked)) => Err(Box::new(blocked)),
        _ => Ok(Box::new(kept.into_iter())),
    }
}

/// Why a call failed, worded for a job's or an attempt's message. Connection failures are
/// not told apart (refused, reset, unreachable): the message says what to check, the log has
/// the detail.
#[derive(Debug)]
pub enum CallError {
    Blocked(Blocked),
    /// The call passed its total deadline (connecting, waiting, or reading the answer).
    Timeout(Duration),
    /// No connection could be made, or it broke.
    Unreachable,
    /// The answer was larger than `outbound.max_response_bytes`.
    TooLarge(u64),
    /// The request could not be built (a bad URL or header).
    Invalid(String),
    /// Redirected more than [`MAX_REDIRECTS`] times.
    TooManyRedirects,
}

impl CallError {
    /// The catalogue code of this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::Blocked(_) => ErrorCode::BlockedAddress,
            CallError::Timeout(_) => ErrorCode::Timeout,
            CallError::Unreachable => ErrorCode::ConnectionError,
            CallError::TooLarge(_) | CallError::TooManyRedirects => ErrorCode::InvalidApiResponse,
            CallError::Invalid(_) => ErrorCode::SourceError,
        }
    }

    fn from_reqwest(e: reqwest::Error, timeout: Duration) -> CallError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if let Some(blocked) = err.downcast_ref::<Blocked>() {
                return CallError::Blocked(blocked.clone());
            }
            source = err.source();
        }
        tracing::debug!(error = ?e, "outbound call failed");
        if e.is_builder() {
            CallError::Invalid(e.to_string())
        } else if e.is_timeout() {
            CallError::Timeout(timeout)
        } else {
            CallError::Unreachable
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Blocked(b) => write!(f, "refused: {b}"),
            CallError::Timeout(t) => write!(f, "no complete answer within {} s", t.as_secs_f64()),
            CallError::Unreachable => f.write_str(
                "could not be reached (no connection, or it broke); check the URL and that the system is up",
            ),
            CallError::TooLarge(cap) => write!(
                f,
                "the answer is larger than {cap} bytes (outbound.max_response_bytes); ask for smaller pages"
            ),
            CallError::Invalid(e) => write!(f, "is not a valid request: {e}"),
            CallError::TooManyRedirects => {
                write!(f, "redirected more than {MAX_REDIRECTS} times")
            }
        }
    }
}

/// The guarded client, shared by every connector of a process.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    guard: Arc<Guard>,
    timeout: Duration,
    /// Most bytes of one answer read whole (a fetched page, a record).
    pub max_response_bytes: u64,
    /// Most bytes of an answer kept as an excerpt (an attempt's response); the rest is not read.
    pub excerpt_bytes: usize,
    /// Most time one job run or one delivery may spend calling other systems.
    pub deadline: Duration,
    /// Most records one source run may read.
    pub max_records_per_run: usize,
    /// Largest file a file source downloads.
    pub max_file_bytes: u64,
}

impl Outbound {
    /// Builds the client; the error names a bad `outbound.allow` entry. `deadline` bounds a job
    /// run or a delivery (see [`crate::config::Config::job_deadline`]).
    pub fn new(config: &OutboundConfig, deadline: Duration) -> Result<Outbound, String> {
        let guard = Arc::new(Guard {
            allow: addr::Allow::parse(&config.allow)?,
        });
        let timeout = Duration::from_secs(config.request_timeout_seconds);
        let client = reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            // Calls go where their URL says; a proxy would resolve names out of the guard's sight.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            // Redirects are followed in `send`, where each hop is checked and where the
            // request's headers can be kept from another host.
            .redirect(redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Outbound {
            client,
            guard,
            timeout,
            max_response_bytes: config.max_response_bytes,
            excerpt_bytes: config.excerpt_bytes,
            deadline,
            max_records_per_run: config.max_records_per_run,
            max_file_bytes: config.max_file_bytes,
        })
    }

    /// Starts a request; send it with [`Outbound::send`], never on its own.
    pub fn request(&self, method: reqwest::Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends a request built by [`Outbound::request`] once its host passes the guard, and
    /// follows up to [`MAX_REDIRECTS`] redirects, each hop checked the same way. A hop to
    /// another origin carries none of the request's own headers (credentials, custom and secret
    /// headers): only its body and content type go on, as a browser drops `Authorization`.
    /// `timeout` replaces the default total deadline (`outbound.request_timeout_seconds`); it
    /// covers every hop and the reading of the answer.
    pub async fn send(
        &self,
        req: RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<Response, CallError> {
        let limit = timeout.unwrap_or(self.timeout);
        let deadline = tokio::time::Instant::now() + limit;
        let mut req = req
            .timeout(limit)
            .build()
            .map_err(|e| CallError::from_reqwest(e, limit))?;
        let first = req.url().clone();
        for _ in 0..=MAX_REDIRECTS {
            self.guard
                .check_url(req.url())
                .map_err(CallError::Blocked)?;
            // Kept before sending: the next hop is this request again, at another URL.
            let again = req.try_clone();
            #[allow(clippy::disallowed_methods)]
            let res = self
                .client
                .execute(req)
                .await
                .map_err(|e| CallError::from_reqwest(e, limit))?;
            let Some((next_url, status)) = redirect_target(&res) else {
                return Ok(res);
            };
            // A body that cannot be sent twice (none of ours) ends the chain at the redirect.
            let Some(mut next) = again else {
                return Ok(res);
            };
            *next.url_mut() = next_url;
            redirected(&mut next, status, &first);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(CallError::Timeout(limit));
            }
            *next.timeout_mut() = Some(left);
            req = next;
        }
        Err(CallError::TooManyRedirects)
    }

    /// The addresses of `host` a connection of another protocol (FTP, SFTP, SMTP) may go to,
    /// judged exactly as an HTTP call's: an IP literal or each resolved address against the
    /// classifier and `outbound.allow`. Connect to what this returns, never to the name, so a
    /// name cannot resolve differently after the check.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CallError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            self.guard
                .check_ip(host, ip, false)
                .map_err(CallError::Blocked)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = tokio::time::timeout(
            CONNECT_TIMEOUT,
            resolve_guarded(self.guard.clone(), host.to_string()),
        )
        .await
        .map_err(|_| CallError::Timeout(CONNECT_TIMEOUT))?;
        match found {
            Ok(addrs) => Ok(addrs.map(|a| SocketAddr::new(a.ip(), port)).collect()),
            Err(e) => match e.downcast::<Blocked>() {
                Ok(blocked) => Err(CallError::Blocked(*blocked)),
                Err(e) => {
                    tracing::debug!(host, error = %e, "resolving a host failed");
                    Err(CallError::Unreachable)
                }
            },
        }
    }

    /// A TCP connection to `host:port` for another protocol than HTTP, through the same guard
    /// as every HTTP call (see [`Outbound::resolve`]); tries each allowed address in turn.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, CallError> {
        let limit = timeout.min(CONNECT_TIMEOUT);
        for addr in self.resolve(host, port).await? {
            match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "connecting failed"),
                Err(_) => return Err(CallError::Timeout(limit)),
            }
        }
        Err(CallError::Unreachable)
    }

    /// Reads a whole answer of at most `max_response_bytes`; a larger one is not read on.
    pub async fn read_capped(&self, mut res: Response) -> Result<Vec<u8>, CallError> {
        let cap = self.max_response_bytes;
        if res.content_length().is_some_and(|n| n > cap) {
            return Err(CallError::TooLarge(cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| CallError::from_reqwest(e, self.timeout))?
        {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(CallError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The first `excerpt_bytes` of an answer as text (cut at a character boundary); the rest
    /// is left unread. A failure while reading keeps what arrived.
    pub async fn read_excerpt(&self, mut res: Response) -> String {
        let cap = self.excerpt_bytes;
        let mut body = Vec::new();
        while body.len() < cap {
            match res.chunk().await {
                Ok(Some(chunk)) => {
                    let room = cap - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "reading an answer's excerpt stopped");
                    break;
                }
            }
        }
        excerpt_text(body)
    }
}

/// The TLS client setup of the protocols outside HTTP (FTPS): the public roots, plus a
/// certificate a key trusts besides them (`tls_ca`, PEM: a server's own certificate or its CA).
pub fn tls_client_config(tls_ca: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = tls_ca {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert =
                cert.map_err(|e| format!("the key's `tls_ca` is not a PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the key's `tls_ca` cannot be trusted: {e}"))?;
            found += 1;
        }
        if found == 0 {
            return Err(
                "the key's `tls_ca` holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whether an error (of any protocol's client) comes from a server certificate that is not
/// trusted. I/O errors hide what they wrap from `source()`, so they are opened too.
pub fn untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(_)) = tls {
            return true;
        }
        source = err.source().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn std::error::Error + 'static))
        });
    }
    false
}

/// Text of a byte prefix, without a character cut in half at the end.
fn excerpt_text(mut body: Vec<u8>) -> String {
    if let Err(e) = std::str::from_utf8(&body) {
        if e.error_len().is_none() {
            body.truncate(e.valid_up_to());
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Where a redirect answer points, if it is one that is followed.
fn redirect_target(res: &Response) -> Option<(Url, StatusCode)> {
    let status = res.status();
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = res.headers().get(LOCATION)?.to_str().ok()?;
    Some((res.url().join(location).ok()?, status))
}

/// Same scheme, host and port: where a request's own headers may follow it.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Headers a request keeps when a redirect takes it to another origin.
const CROSS_ORIGIN_KEPT: [HeaderName; 3] = [ACCEPT, CONTENT_TYPE, USER_AGENT];

/// Makes `next` the request a redirect asks for: 303, and 301/302 after a POST, become a GET
/// without a body (as browsers and reqwest do); 307/308 repeat the request. Another origin than
/// the first request's gets none of its own headers.
fn redirected(next: &mut reqwest::Request, status: StatusCode, first: &Url) {
    let becomes_get = status == StatusCode::SEE_OTHER
        || (matches!(status.as_u16(), 301 | 302) && next.method() == Method::POST);
    if becomes_get {
        *next.method_mut() = Method::GET;
        *next.body_mut() = None;
        next.headers_mut().remove(CONTENT_TYPE);
        next.headers_mut().remove(CONTENT_LENGTH);
    }
    if !same_origin(next.url(), first) {
        let kept: Vec<_> = CROSS_ORIGIN_KEPT
            .iter()
            .filter_map(|name| Some((name.clone(), next.headers().get(name)?.clone())))
            .collect();
        let headers = next.headers_mut();
        headers.clear();
        headers.extend(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: &[&str]) -> Guard {
        Guard {
            allow: addr::Allow::parse(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn ip_literals_and_metadata_names_are_judged_from_the_url() {
        let g = guard(&[]);
        let b = g.check_url(&url("http://127.0.0.1:9/x")).unwrap_err();
        assert_eq!(b.range, "loopback");
        assert_eq!(
            g.check_url(&url("http://[::1]:9/")).unwrap_err().range,
            "loopback"
        );
        assert_eq!(
            g.check_url(&url("http://[::ffff:169.254.169.254]/"))
                .unwrap_err()
                .range,
            "cloud metadata"
        );
        assert_eq!(
            g.check_url(&url("http://metadata.google.internal/computeMetadata/v1/"))
                .unwrap_err()
                .range,
            "cloud metadata"
        );
        // Decimal and hex IPv4 forms are normalised by the URL parser before the check.
        assert_eq!(
            g.check_url(&url("http://2130706433/")).unwrap_err().range,
            "loopback"
        );
        assert_eq!(
            g.check_url(&url("http://0x7f.1/")).unwrap_err().range,
            "loopback"
        );
        // Names are left to the resolver.
        assert!(g.check_url(&url("http://localhost:9/")).is_ok());
        assert!(g.check_url(&url("https://shop.myshopify.com/")).is_ok());
    }

    #[test]
    fn the_allow_list_lets_a_host_through() {
        let g = guard(&["127.0.0.0/8", "metadata.google.internal"]);
        assert!(g.check_url(&url("http://127.0.0.1:9/")).is_ok());
        assert!(g
            .check_url(&url("http://metadata.google.internal/"))
            .is_ok());
        assert!(g.check_url(&url("http://[::1]:9/")).is_err());
    }

    #[test]
    fn the_refusal_names_the_host_the_range_and_the_way_out() {
        let b = Blocked {
            host: "localhost".into(),
            range: "loopback",
            resolved: true,
        };
        let text = CallError::Blocked(b).to_string();
        assert!(text.contains("localhost resolves only to a loopback address"));
        assert!(text.contains("outbound.allow"));
    }

    #[test]
    fn an_excerpt_never_ends_inside_a_character() {
        let mut bytes = "abcé".as_bytes().to_vec();
        bytes.pop();
        assert_eq!(excerpt_text(bytes), "abc");
        assert_eq!(excerpt_text(b"ok".to_vec()), "ok");
    }
}
