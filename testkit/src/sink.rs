//! A local HTTP destination at `/in` that records each delivery and answers as its owner
//! scripts it: at once, after a delay, or (paused) not until it is resumed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::sync::watch;

/// One delivery the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The body as JSON (`null` when it is not JSON).
    pub body: Value,
    /// The body as text (CSV, XML and other text deliveries).
    pub raw: String,
    pub headers: HeaderMap,
    /// When the sink answered it.
    pub at: Instant,
}

/// How the sink answers the `n`th delivery (counting from 1) of a body: a status and headers.
pub type Script =
    Arc<dyn Fn(&Value, usize) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync>;

/// What identifies a delivered record, for counting tries and arrivals per record.
pub type Key = fn(&Value) -> String;

/// The body's `id` when it is a string (what the tests' records carry).
pub fn id_string(body: &Value) -> String {
    body["id"].as_str().unwrap_or_default().to_string()
}

/// A running sink; clones share it.
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    received: Mutex<Vec<Received>>,
    arrivals: Mutex<HashMap<String, Vec<Instant>>>,
    script: Script,
    delay: Duration,
    key: Key,
    keep_bodies: bool,
    paused: watch::Sender<bool>,
    /// Requests being answered now, and the most there have been at once.
    in_flight: Mutex<(usize, usize)>,
}

/// Settings of a sink before it starts.
pub struct SinkBuilder {
    script: Script,
    delay: Duration,
    key: Key,
    keep_bodies: bool,
}

impl SinkBuilder {
    /// Answers each delivery as `script` says (default: 200, no headers).
    pub fn script(mut self, script: Script) -> SinkBuilder {
        self.script = script;
        self
    }

    /// Waits this long before answering each delivery, like a slow ERP.
    pub fn delay(mut self, delay: Duration) -> SinkBuilder {
        self.delay = delay;
        self
    }

    /// Counts tries and arrivals by `key` (default: [`id_string`]).
    pub fn key(mut self, key: Key) -> SinkBuilder {
        self.key = key;
        self
    }

    /// Whether to keep every delivery for [`Sink::received`] (default: yes). A load generator
    /// sending hundreds of thousands of records keeps only arrival times.
    pub fn keep_bodies(mut self, keep: bool) -> SinkBuilder {
        self.keep_bodies = keep;
        self
    }

    /// Starts the sink on a loopback port.
    pub async fn start(self) -> Sink {
        let shared = Arc::new(Shared {
            received: Mutex::default(),
            arrivals: Mutex::default(),
            script: self.script,
            delay: self.delay,
            key: self.key,
            keep_bodies: self.keep_bodies,
            paused: watch::Sender::new(false),
            in_flight: Mutex::default(),
        });
        let app = Router::new()
            .route("/in", post(receive))
            .with_state(shared.clone());
        Sink {
            addr: crate::serve(app).await,
            shared,
        }
    }
}

impl Sink {
    /// A sink to configure before starting it.
    pub fn builder() -> SinkBuilder {
        SinkBuilder {
            script: Arc::new(|_, _| (StatusCode::OK, vec![])),
            delay: Duration::ZERO,
            key: id_string,
            keep_bodies: true,
        }
    }

    /// A sink answering 200 to everything.
    pub async fn ok() -> Sink {
        Sink::builder().start().await
    }

    /// A sink answering as `script` says.
    pub async fn scripted(script: Script) -> Sink {
        Sink::builder().script(script).start().await
    }

    /// A sink answering 200 after `delay`, like a slow ERP.
    pub async fn slow(delay: Duration) -> Sink {
        Sink::builder().delay(delay).start().await
    }

    /// The URL deliveries go to.
    pub fn url(&self) -> String {
        format!("http://{}/in", self.addr)
    }

    /// While paused the sink holds requests unanswered, like a destination that stopped
    /// responding; held requests are answered (and recorded) when it resumes.
    pub fn pause(&self, paused: bool) {
        self.shared.paused.send_replace(paused);
    }

    /// Every delivery so far, in order of answer (empty unless bodies are kept).
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many deliveries carried each key.
    pub fn counts_by_id(&self) -> HashMap<String, usize> {
        self.with_arrivals(|a| a.iter().map(|(k, v)| (k.clone(), v.len())).collect())
    }

    /// The most requests the sink has had in hand at once (held, waiting out its delay, or
    /// being answered).
    pub fn most_at_once(&self) -> usize {
        self.shared.in_flight.lock().unwrap().1
    }

    /// Reads the answer times by key without copying them.
    pub fn with_arrivals<R>(&self, read: impl FnOnce(&HashMap<String, Vec<Instant>>) -> R) -> R {
        read(&self.shared.arrivals.lock().unwrap())
    }
}

async fn receive(State(s): State<Arc<Shared>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let _counted = InFlight::enter(&s);
    let mut paused = s.paused.subscribe();
    let _ = paused.wait_for(|p| !*p).await;
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let at = Instant::now();
    let n = {
        let mut arrivals = s.arrivals.lock().unwrap();
        let times = arrivals.entry((s.key)(&body)).or_default();
        times.push(at);
        times.len()
    };
    let (status, extra) = (s.script)(&body, n);
    if s.keep_bodies {
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        s.received.lock().unwrap().push(Received {
            body,
            raw,
            headers,
            at,
        });
    }
    let mut res = (status, format!("answer {n}: {status}")).into_response();
    for (k, v) in extra {
        res.headers_mut()
            .insert(k, v.parse().expect("scripted header values are valid"));
    }
    res
}

/// One request in the sink's hands, counted until dropped (also when the client gives up).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(s: &'a Shared) -> InFlight<'a> {
        let mut n = s.in_flight.lock().unwrap();
        n.0 += 1;
        n.1 = n.1.max(n.0);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.lock().unwrap().0 -= 1;
    }
}
