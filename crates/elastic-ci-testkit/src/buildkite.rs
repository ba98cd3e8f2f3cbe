//! A fake Buildkite agent API: the metrics routes the scaler polls.
//!
//! It serves `GET …/metrics/queue?name=Q` and `GET …/metrics` under any path prefix
//! and host, checks `Authorization: Token <agent token>` (or `Bearer`), records every
//! request, and answers from [`FakeBuildkiteState`], a plain struct behind a lock that
//! tests (and the local demo) drive through its methods:
//!
//! - fixed counts per queue ([`FakeBuildkiteState::set_queue`]);
//! - a script consumed one reply per poll, the last one repeating
//!   ([`FakeBuildkiteState::script_polls`]), where a reply may be a fault;
//! - counts computed at each poll from the fake's clock, or from any state the closure
//!   captures ([`FakeBuildkiteState::compute_queue`]);
//! - faults for the next requests, whatever the queue ([`FakeBuildkiteState::fail_next`]):
//!   a status such as 500, 429 with `Retry-After`, a slow answer, a dropped connection,
//!   invalid JSON, or an empty object.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::TestServer;

/// A queue's counts, as the API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueMetrics {
    pub scheduled_jobs: u32,
    pub running_jobs: u32,
    pub waiting_jobs: u32,
    pub idle_agents: u32,
    pub busy_agents: u32,
}

impl QueueMetrics {
    /// Only jobs, no agents.
    pub fn jobs(scheduled: u32, running: u32, waiting: u32) -> QueueMetrics {
        QueueMetrics {
            scheduled_jobs: scheduled,
            running_jobs: running,
            waiting_jobs: waiting,
            ..QueueMetrics::default()
        }
    }

    pub fn with_agents(self, idle: u32, busy: u32) -> QueueMetrics {
        QueueMetrics { idle_agents: idle, busy_agents: busy, ..self }
    }

    fn add(self, other: QueueMetrics) -> QueueMetrics {
        QueueMetrics {
            scheduled_jobs: self.scheduled_jobs + other.scheduled_jobs,
            running_jobs: self.running_jobs + other.running_jobs,
            waiting_jobs: self.waiting_jobs + other.waiting_jobs,
            idle_agents: self.idle_agents + other.idle_agents,
            busy_agents: self.busy_agents + other.busy_agents,
        }
    }

    fn jobs_json(self) -> serde_json::Value {
        json!({
            "scheduled": self.scheduled_jobs,
            "running": self.running_jobs,
            "waiting": self.waiting_jobs,
            "total": self.scheduled_jobs + self.running_jobs,
        })
    }

    fn agents_json(self) -> serde_json::Value {
        json!({
            "idle": self.idle_agents,
            "busy": self.busy_agents,
            "total": self.idle_agents + self.busy_agents,
        })
    }
}

/// A failure the fake answers with instead of the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with a JSON `message` body (such as 500 or 503).
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RateLimited { retry_after_secs: u64 },
    /// The normal answer, after this delay.
    Slow(Duration),
    /// A 200 whose body breaks off: the connection is dropped mid-answer.
    DropConnection,
    /// A 200 whose body is not JSON.
    InvalidJson,
    /// A 200 with `{}`.
    EmptyObject,
}

/// One poll's answer in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Metrics(QueueMetrics),
    Fault(Fault),
}

/// A request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The `name` query parameter, for the queue route.
    pub queue: Option<String>,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    /// The fake's clock when the request arrived.
    pub at: Duration,
    pub status: u16,
}

type Compute = Box<dyn FnMut(Duration) -> QueueMetrics + Send>;
type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

enum QueueSource {
    Fixed(QueueMetrics),
    Script(VecDeque<Reply>),
    Computed(Compute),
}

/// Everything the fake answers from. Lock it through [`FakeBuildkite::state`].
pub struct FakeBuildkiteState {
    /// Accepted agent tokens.
    pub tokens: Vec<String>,
    pub organization: String,
    /// The cluster name, reported when set (as a cluster token's answers are).
    pub cluster: Option<String>,
    /// `Buildkite-Agent-Metrics-Poll-Duration` in seconds on successful answers.
    pub poll_duration_secs: Option<u64>,
    queues: BTreeMap<String, QueueSource>,
    faults: VecDeque<Fault>,
    requests: Vec<RecordedRequest>,
    clock: Clock,
}

impl std::fmt::Debug for FakeBuildkiteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBuildkiteState")
            .field("organization", &self.organization)
            .field("queues", &self.queues.keys().collect::<Vec<_>>())
            .field("faults", &self.faults)
            .field("n_requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

impl FakeBuildkiteState {
    /// Fixed counts for a queue, answered until changed.
    pub fn set_queue(&mut self, queue: &str, metrics: QueueMetrics) {
        self.queues.insert(queue.to_owned(), QueueSource::Fixed(metrics));
    }

    /// One reply per poll of the queue; the last one repeats.
    pub fn script_polls(&mut self, queue: &str, replies: impl IntoIterator<Item = Reply>) {
        self.queues.insert(queue.to_owned(), QueueSource::Script(replies.into_iter().collect()));
    }

    /// Counts computed at every poll from the fake's clock (time since it started, or
    /// what [`FakeBuildkiteState::set_clock`] says).
    pub fn compute_queue(
        &mut self,
        queue: &str,
        compute: impl FnMut(Duration) -> QueueMetrics + Send + 'static,
    ) {
        self.queues.insert(queue.to_owned(), QueueSource::Computed(Box::new(compute)));
    }

    /// Answers the next `times` requests with `fault`, after any already queued.
    pub fn fail_next(&mut self, fault: Fault, times: usize) {
        self.faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Replaces the clock that timestamps requests and drives computed queues, such as
    /// a test's simulated clock.
    pub fn set_clock(&mut self, clock: impl Fn() -> Duration + Send + Sync + 'static) {
        self.clock = Arc::new(clock);
    }

    pub fn requests(&self) -> &[RecordedRequest] {
        &self.requests
    }

    /// The counts a queue reports now, consuming a scripted reply.
    fn next_reply(&mut self, queue: &str, now: Duration) -> Reply {
        match self.queues.get_mut(queue) {
            None => Reply::Metrics(QueueMetrics::default()),
            Some(QueueSource::Fixed(metrics)) => Reply::Metrics(*metrics),
            Some(QueueSource::Computed(compute)) => Reply::Metrics(compute(now)),
            Some(QueueSource::Script(replies)) => {
                let reply =
                    if replies.len() > 1 { replies.pop_front() } else { replies.front().cloned() };
                reply.unwrap_or(Reply::Metrics(QueueMetrics::default()))
            }
        }
    }
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeBuildkite {
    server: TestServer,
    state: Arc<Mutex<FakeBuildkiteState>>,
}

impl FakeBuildkite {
    /// Starts a fake on 127.0.0.1 that accepts `token`, for organization `test-org`.
    pub fn start(token: &str) -> FakeBuildkite {
        let started = Instant::now();
        let state = Arc::new(Mutex::new(FakeBuildkiteState {
            tokens: vec![token.to_owned()],
            organization: "test-org".to_owned(),
            cluster: None,
            poll_duration_secs: None,
            queues: BTreeMap::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            clock: Arc::new(move || started.elapsed()),
        }));
        let handler_state = state.clone();
        let router = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let state = handler_state.clone();
            async move { answer(&state, &method, &uri, &headers).await }
        });
        FakeBuildkite { server: TestServer::http(router), state }
    }

    /// The agent API base URL to configure (`BUILDKITE_AGENT_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        self.server.url("/v3")
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, FakeBuildkiteState> {
        lock(&self.state)
    }

    pub fn set_queue(&self, queue: &str, metrics: QueueMetrics) {
        self.state().set_queue(queue, metrics);
    }

    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.state().fail_next(fault, times);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }
}

fn lock(state: &Mutex<FakeBuildkiteState>) -> MutexGuard<'_, FakeBuildkiteState> {
    // A test that panicked while holding the lock has failed already; keep serving so
    // that its own message is what gets reported.
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one request gets, decided under the lock and served after it is released.
enum Plan {
    Unauthorized,
    NotFound,
    BadRequest,
    Fault(Fault),
    Json { body: serde_json::Value, poll_duration_secs: Option<u64>, delay: Option<Duration> },
}

async fn answer(
    state: &Mutex<FakeBuildkiteState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let header = |name: header::HeaderName| {
        headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
    };
    let authorization = header(header::AUTHORIZATION);
    let queue = uri.query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "name")
            .map(|(_, value)| value.into_owned())
    });
    let path = uri.path().to_owned();
    let plan = {
        let mut state = lock(state);
        let now = (state.clock)();
        let token = authorization.as_deref().and_then(|value| {
            value.strip_prefix("Token ").or_else(|| value.strip_prefix("Bearer "))
        });
        let plan = if method != Method::GET
            || !(path.ends_with("/metrics/queue") || path.ends_with("/metrics"))
        {
            Plan::NotFound
        } else if !token.is_some_and(|token| state.tokens.iter().any(|t| t == token)) {
            Plan::Unauthorized
        } else if path.ends_with("/metrics/queue") && queue.is_none() {
            Plan::BadRequest
        } else {
            let fault = state.faults.pop_front();
            let reply = match (&fault, queue.as_deref()) {
                (Some(fault), _) => Reply::Fault(fault.clone()),
                (None, Some(queue)) => state.next_reply(queue, now),
                (None, None) => Reply::Metrics(QueueMetrics::default()),
            };
            match reply {
                Reply::Fault(Fault::Slow(delay)) => Plan::Json {
                    body: body(&mut state, queue.as_deref(), now),
                    poll_duration_secs: state.poll_duration_secs,
                    delay: Some(delay),
                },
                Reply::Fault(fault) => Plan::Fault(fault),
                Reply::Metrics(metrics) => Plan::Json {
                    body: match queue.as_deref() {
                        Some(_) => queue_body(&state, metrics),
                        None => body(&mut state, None, now),
                    },
                    poll_duration_secs: state.poll_duration_secs,
                    delay: None,
                },
            }
        };
        let status = match &plan {
            Plan::Unauthorized => 401,
            Plan::NotFound => 404,
            Plan::BadRequest => 400,
            Plan::Fault(Fault::Status(status)) => *status,
            Plan::Fault(Fault::RateLimited { .. }) => 429,
            Plan::Fault(_) | Plan::Json { .. } => 200,
        };
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path,
            queue,
            authorization,
            user_agent: header(header::USER_AGENT),
            at: now,
            status,
        });
        plan
    };
    serve(plan).await
}

/// The answer for a queue (consuming a scripted reply) or, without a queue, for all.
fn body(state: &mut FakeBuildkiteState, queue: Option<&str>, now: Duration) -> serde_json::Value {
    match queue {
        Some(queue) => {
            let metrics = match state.next_reply(queue, now) {
                Reply::Metrics(metrics) => metrics,
                Reply::Fault(_) => QueueMetrics::default(),
            };
            queue_body(state, metrics)
        }
        None => {
            let names: Vec<String> = state.queues.keys().cloned().collect();
            let mut total = QueueMetrics::default();
            let mut agents = serde_json::Map::new();
            let mut jobs = serde_json::Map::new();
            for name in names {
                let metrics = match state.next_reply(&name, now) {
                    Reply::Metrics(metrics) => metrics,
                    Reply::Fault(_) => QueueMetrics::default(),
                };
                total = total.add(metrics);
                agents.insert(name.clone(), metrics.agents_json());
                jobs.insert(name, metrics.jobs_json());
            }
            let mut agents_json = total.agents_json();
            agents_json["queues"] = serde_json::Value::Object(agents);
            let mut jobs_json = total.jobs_json();
            jobs_json["queues"] = serde_json::Value::Object(jobs);
            json!({
                "agents": agents_json,
                "jobs": jobs_json,
                "organization": { "slug": state.organization },
            })
        }
    }
}

fn queue_body(state: &FakeBuildkiteState, metrics: QueueMetrics) -> serde_json::Value {
    let mut body = json!({
        "agents": metrics.agents_json(),
        "jobs": metrics.jobs_json(),
        "organization": { "slug": state.organization },
    });
    if let Some(cluster) = &state.cluster {
        body["cluster"] = json!({ "name": cluster });
    }
    body
}

async fn serve(plan: Plan) -> Response {
    let message = |status: StatusCode, message: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "message": message }).to_string(),
        )
            .into_response()
    };
    match plan {
        Plan::Unauthorized => message(
            StatusCode::UNAUTHORIZED,
            "Eeep! You forgot to pass an agent registration token",
        ),
        Plan::NotFound => message(StatusCode::NOT_FOUND, "Not Found"),
        Plan::BadRequest => message(StatusCode::BAD_REQUEST, "name is required"),
        Plan::Fault(Fault::Status(status)) => message(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Something went wrong",
        ),
        Plan::Fault(Fault::RateLimited { retry_after_secs }) => {
            let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Plan::Fault(Fault::InvalidJson) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"agents\": {\"idle\": 1, <html>",
        )
            .into_response(),
        Plan::Fault(Fault::EmptyObject) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
        }
        Plan::Fault(Fault::DropConnection) => {
            let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                Ok("{\"agents\":"),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped")),
            ];
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Plan::Fault(Fault::Slow(_)) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Plan::Json { body, poll_duration_secs, delay } => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let mut response =
                ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
            if let Some(seconds) = poll_duration_secs {
                response
                    .headers_mut()
                    .insert("Buildkite-Agent-Metrics-Poll-Duration", HeaderValue::from(seconds));
            }
            response
        }
    }
}
