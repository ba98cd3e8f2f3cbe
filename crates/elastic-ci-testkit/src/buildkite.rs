//! A fake Buildkite agent API: the metrics routes the scaler polls, and a small job
//! model that simulated agents work through.
//!
//! It serves `GET /v3/metrics/queue?name=Q` and `GET /v3/metrics` (axum routes under
//! [`FakeBuildkite::endpoint`]; any other request is recorded and answered 404), checks `Authorization: Token <agent token>` (or `Bearer`), records every
//! request, and answers from [`FakeBuildkiteState`], a plain struct behind a lock that
//! tests (and the local demo) drive through its methods:
//!
//! - fixed counts per queue ([`FakeBuildkiteState::set_queue`]);
//! - a script consumed one reply per poll, the last one repeating
//!   ([`FakeBuildkiteState::script_polls`]), where a reply may be a fault;
//! - counts computed at each poll from the fake's clock, or from any state the closure
//!   captures ([`FakeBuildkiteState::compute_queue`]);
//! - counts derived from jobs and agents ([`FakeBuildkiteState::add_jobs`], see below);
//! - faults for the next requests, whatever the queue ([`FakeBuildkiteState::fail_next`]):
//!   a status such as 500, 429 with `Retry-After` (in seconds or any text), a slow
//!   answer, a dropped connection, invalid JSON, an empty object, or a valid answer
//!   padded to a given size.
//!
//! # The job model
//!
//! Jobs ([`JobSpec`]) become *waiting* at their `visible_at` and *scheduled* at their
//! `ready_at` on the fake's clock. Agents talk to the agent routes, a reduced form of
//! the real agent API ([`AgentClient`] is a blocking client for them):
//!
//! - `POST /v3/register` with the agent (registration) token, a name and tags (the
//!   `queue=` tag picks the queue, `default` without one), answered with the agent's
//!   own access token, which the other routes require;
//! - `POST /v3/connect`; `GET /v3/ping`, which hands the agent the queue's oldest scheduled
//!   job (first ready, first served) and counts it running from then on;
//! - `PUT /v3/jobs/ID/finish` with `{"exit_status": N}`;
//! - `POST /v3/disconnect`: a job the agent still holds is recorded as interrupted.
//!
//! The metrics of a queue with jobs or agents are then derived from that state:
//! scheduled, running and waiting jobs, idle and busy connected agents.
//! [`FakeBuildkiteState::job_records`] and [`FakeBuildkiteState::agent_records`]
//! report who ran what, when.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
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
    /// 429 with this `Retry-After` value, verbatim (such as more digits than fit 64 bits).
    RateLimitedWith { retry_after: String },
    /// The normal answer padded with spaces to at least `bytes` bytes, sent with a
    /// `Content-Length` or, when `chunked`, streamed in 64 KiB chunks without one.
    LargeBody { bytes: usize, chunked: bool },
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

/// A job of the job model, as a pipeline step would create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub id: String,
    pub queue: String,
    /// When the job exists, on the fake's clock: it counts as waiting from then on.
    pub visible_at: Duration,
    /// When it can run: scheduled from then on until an agent takes it.
    pub ready_at: Duration,
    /// What the agent gets with the job (`BUILDKITE_COMMAND` and the like).
    pub env: BTreeMap<String, String>,
}

/// Where a job of the job model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Not visible yet.
    Pending,
    Waiting,
    Scheduled,
    /// Handed to an agent, not finished.
    Running,
    Finished,
    /// Its agent disconnected while it held the job.
    Interrupted,
}

/// A job and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub spec: JobSpec,
    /// The name of the agent that took it.
    pub agent: Option<String>,
    pub started_at: Option<Duration>,
    /// When it finished, or was interrupted.
    pub finished_at: Option<Duration>,
    pub exit_status: Option<i32>,
    pub interrupted: bool,
}

impl JobRecord {
    pub fn state_at(&self, now: Duration) -> JobState {
        match (self.started_at, self.finished_at) {
            (_, Some(_)) if self.interrupted => JobState::Interrupted,
            (_, Some(_)) => JobState::Finished,
            (Some(_), None) => JobState::Running,
            (None, None) if now >= self.spec.ready_at => JobState::Scheduled,
            (None, None) if now >= self.spec.visible_at => JobState::Waiting,
            (None, None) => JobState::Pending,
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    pub queue: String,
    pub tags: Vec<String>,
    pub registered_at: Duration,
    pub connected_at: Option<Duration>,
    pub disconnected_at: Option<Duration>,
    /// The job it holds now.
    pub job: Option<String>,
    pub n_jobs: u32,
}

impl AgentRecord {
    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some() && self.disconnected_at.is_none()
    }
}

type Compute = Box<dyn FnMut(Duration) -> QueueMetrics + Send>;
type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

enum QueueSource {
    Fixed(QueueMetrics),
    Script(VecDeque<Reply>),
    Computed(Compute),
    /// Derived from the job model.
    Jobs,
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
    jobs: Vec<JobRecord>,
    agents: Vec<AgentRecord>,
    /// Agent access token → index into `agents`.
    access_tokens: HashMap<String, usize>,
}

impl std::fmt::Debug for FakeBuildkiteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBuildkiteState")
            .field("organization", &self.organization)
            .field("queues", &self.queues.keys().collect::<Vec<_>>())
            .field("faults", &self.faults)
            .field("n_requests", &self.requests.len())
            .field("n_jobs", &self.jobs.len())
            .field("n_agents", &self.agents.len())
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

    /// The fake's clock now.
    pub fn now(&self) -> Duration {
        (self.clock)()
    }

    /// Adds jobs to the job model; their queues' counts are derived from it from now on.
    pub fn add_jobs(&mut self, jobs: impl IntoIterator<Item = JobSpec>) {
        for spec in jobs {
            self.queues.insert(spec.queue.clone(), QueueSource::Jobs);
            self.jobs.push(JobRecord {
                spec,
                agent: None,
                started_at: None,
                finished_at: None,
                exit_status: None,
                interrupted: false,
            });
        }
    }

    /// Every job of the job model, in the order added.
    pub fn job_records(&self) -> &[JobRecord] {
        &self.jobs
    }

    /// Every agent that registered, in order.
    pub fn agent_records(&self) -> &[AgentRecord] {
        &self.agents
    }

    /// A queue's counts as the job model has them now.
    pub fn modelled_metrics(&self, queue: &str) -> QueueMetrics {
        self.modelled_at(queue, self.now())
    }

    fn modelled_at(&self, queue: &str, now: Duration) -> QueueMetrics {
        let mut metrics = QueueMetrics::default();
        for job in self.jobs.iter().filter(|job| job.spec.queue == queue) {
            match job.state_at(now) {
                JobState::Waiting => metrics.waiting_jobs += 1,
                JobState::Scheduled => metrics.scheduled_jobs += 1,
                JobState::Running => metrics.running_jobs += 1,
                JobState::Pending | JobState::Finished | JobState::Interrupted => {}
            }
        }
        for agent in self.agents.iter().filter(|agent| agent.queue == queue) {
            if agent.is_connected() {
                if agent.job.is_some() {
                    metrics.busy_agents += 1;
                } else {
                    metrics.idle_agents += 1;
                }
            }
        }
        metrics
    }

    /// The counts a queue reports now, consuming a scripted reply.
    fn next_reply(&mut self, queue: &str, now: Duration) -> Reply {
        if matches!(self.queues.get(queue), Some(QueueSource::Jobs)) {
            return Reply::Metrics(self.modelled_at(queue, now));
        }
        match self.queues.get_mut(queue) {
            None | Some(QueueSource::Jobs) => Reply::Metrics(QueueMetrics::default()),
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
            jobs: Vec::new(),
            agents: Vec::new(),
            access_tokens: HashMap::new(),
        }));
        let to = |route: Route| {
            let state = state.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { answer(&state, route, &method, &uri, &headers, &body).await }
            }
        };
        let finish_state = state.clone();
        let finish = move |Path(job_id): Path<String>,
                           method: Method,
                           uri: Uri,
                           headers: HeaderMap,
                           body: Bytes| {
            let state = finish_state.clone();
            let route = Route::Agent(AgentRoute::Finish { job_id });
            async move { answer(&state, route, &method, &uri, &headers, &body).await }
        };
        let router = Router::new()
            .route("/v3/metrics", get(to(Route::Metrics)))
            .route("/v3/metrics/queue", get(to(Route::QueueMetrics)))
            .route("/v3/register", post(to(Route::Agent(AgentRoute::Register))))
            .route("/v3/connect", post(to(Route::Agent(AgentRoute::Connect))))
            .route("/v3/ping", get(to(Route::Agent(AgentRoute::Ping))))
            .route("/v3/jobs/{job_id}/finish", put(finish))
            .route("/v3/disconnect", post(to(Route::Agent(AgentRoute::Disconnect))))
            // Every other request, wrong methods included, is recorded and answered 404.
            .fallback(to(Route::Unknown))
            .method_not_allowed_fallback(to(Route::Unknown));
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
    Json {
        body: serde_json::Value,
        poll_duration_secs: Option<u64>,
        delay: Option<Duration>,
    },
    /// A valid answer padded to `bytes`.
    Large {
        body: serde_json::Value,
        bytes: usize,
        chunked: bool,
    },
    /// An answer of the agent routes.
    Agent {
        status: u16,
        body: serde_json::Value,
    },
}

/// Which route a request took.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `GET /metrics`: every queue.
    Metrics,
    /// `GET /metrics/queue?name=Q`.
    QueueMetrics,
    Agent(AgentRoute),
    Unknown,
}

async fn answer(
    state: &Mutex<FakeBuildkiteState>,
    route: Route,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    request_body: &[u8],
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
        let plan = if let Route::Agent(route) = &route {
            let (status, body) = state.agent_request(route, token, request_body, now);
            Plan::Agent { status, body }
        } else if route == Route::Unknown {
            Plan::NotFound
        } else if !token.is_some_and(|token| state.tokens.iter().any(|t| t == token)) {
            Plan::Unauthorized
        } else if route == Route::QueueMetrics && queue.is_none() {
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
                Reply::Fault(Fault::LargeBody { bytes, chunked }) => {
                    Plan::Large { body: body(&mut state, queue.as_deref(), now), bytes, chunked }
                }
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
            Plan::Fault(Fault::RateLimited { .. } | Fault::RateLimitedWith { .. }) => 429,
            Plan::Agent { status, .. } => *status,
            Plan::Fault(_) | Plan::Json { .. } | Plan::Large { .. } => 200,
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
        Plan::Fault(Fault::RateLimitedWith { retry_after }) => {
            let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Plan::Large { body, bytes, chunked } => {
            let mut text = body.to_string().into_bytes();
            text.resize(text.len().max(bytes), b' ');
            let response = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json");
            let body = if chunked {
                let chunks: Vec<Result<Bytes, std::io::Error>> =
                    text.chunks(64 * 1024).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
                Body::from_stream(futures::stream::iter(chunks))
            } else {
                Body::from(text)
            };
            response
                .body(body)
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
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
        Plan::Fault(Fault::Slow(_) | Fault::LargeBody { .. }) => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Plan::Agent { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
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

/// A request to the agent routes of the job model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AgentRoute {
    Register,
    Connect,
    Ping,
    Finish { job_id: String },
    Disconnect,
}

fn agent_error(status: u16, message: &str) -> (u16, serde_json::Value) {
    (status, json!({ "message": message }))
}

impl FakeBuildkiteState {
    /// Answers one agent route: the status and the JSON body.
    fn agent_request(
        &mut self,
        route: &AgentRoute,
        token: Option<&str>,
        body: &[u8],
        now: Duration,
    ) -> (u16, serde_json::Value) {
        if *route == AgentRoute::Register {
            return self.register(token, body, now);
        }
        let Some(index) = token.and_then(|token| self.access_tokens.get(token)).copied() else {
            return agent_error(401, "invalid or missing agent access token");
        };
        if self.agents[index].disconnected_at.is_some() {
            return agent_error(422, "the agent has disconnected");
        }
        match route {
            AgentRoute::Register => agent_error(500, "unreachable"),
            AgentRoute::Connect => {
                let agent = &mut self.agents[index];
                agent.connected_at.get_or_insert(now);
                (200, json!({ "id": agent.id, "connection_state": "connected" }))
            }
            AgentRoute::Ping => self.ping(index, now),
            AgentRoute::Finish { job_id } => self.finish(index, job_id, body, now),
            AgentRoute::Disconnect => {
                let agent = &mut self.agents[index];
                agent.disconnected_at = Some(now);
                if let Some(job_id) = agent.job.take()
                    && let Some(job) = self.jobs.iter_mut().find(|job| job.spec.id == job_id)
                {
                    job.finished_at = Some(now);
                    job.interrupted = true;
                }
                (200, json!({ "connection_state": "disconnected" }))
            }
        }
    }

    fn register(
        &mut self,
        token: Option<&str>,
        body: &[u8],
        now: Duration,
    ) -> (u16, serde_json::Value) {
        if !token.is_some_and(|token| self.tokens.iter().any(|t| t == token)) {
            return agent_error(401, "Eeep! You forgot to pass an agent registration token");
        }
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
            return agent_error(400, "the body is not JSON");
        };
        let Some(name) = request["name"].as_str().filter(|name| !name.is_empty()) else {
            return agent_error(400, "name is required");
        };
        let tags: Vec<String> = request["tags"]
            .as_array()
            .map(|tags| tags.iter().filter_map(|tag| tag.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let queue =
            tags.iter().find_map(|tag| tag.strip_prefix("queue=")).unwrap_or("default").to_owned();
        let n = self.agents.len() + 1;
        let id = format!("agent-{n:04}");
        let access_token = format!("fake-access-token-{n:04}");
        self.queues.entry(queue.clone()).or_insert(QueueSource::Jobs);
        self.access_tokens.insert(access_token.clone(), self.agents.len());
        self.agents.push(AgentRecord {
            id: id.clone(),
            name: name.to_owned(),
            queue,
            tags,
            registered_at: now,
            connected_at: None,
            disconnected_at: None,
            job: None,
            n_jobs: 0,
        });
        (200, json!({ "id": id, "name": name, "access_token": access_token }))
    }

    /// Hands the agent the job it holds, else its queue's oldest scheduled job.
    fn ping(&mut self, index: usize, now: Duration) -> (u16, serde_json::Value) {
        let agent = &self.agents[index];
        if agent.connected_at.is_none() {
            return agent_error(422, "the agent is not connected");
        }
        let held = agent.job.clone();
        let position = match held {
            Some(job_id) => self.jobs.iter().position(|job| job.spec.id == job_id),
            None => self
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, job)| {
                    job.spec.queue == agent.queue && job.state_at(now) == JobState::Scheduled
                })
                .min_by_key(|(position, job)| (job.spec.ready_at, *position))
                .map(|(position, _)| position),
        };
        let Some(position) = position else { return (200, json!({})) };
        let agent = &mut self.agents[index];
        let job = &mut self.jobs[position];
        if job.started_at.is_none() {
            job.started_at = Some(now);
            job.agent = Some(agent.name.clone());
            agent.job = Some(job.spec.id.clone());
            agent.n_jobs += 1;
        }
        (200, json!({ "job": { "id": job.spec.id, "env": job.spec.env } }))
    }

    fn finish(
        &mut self,
        index: usize,
        job_id: &str,
        body: &[u8],
        now: Duration,
    ) -> (u16, serde_json::Value) {
        let agent = &mut self.agents[index];
        if agent.job.as_deref() != Some(job_id) {
            return agent_error(422, "the agent does not hold this job");
        }
        let exit_status = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|body| body["exit_status"].as_i64())
            .and_then(|status| i32::try_from(status).ok());
        let Some(exit_status) = exit_status else {
            return agent_error(400, "exit_status is required");
        };
        agent.job = None;
        if let Some(job) = self.jobs.iter_mut().find(|job| job.spec.id == job_id) {
            job.finished_at = Some(now);
            job.exit_status = Some(exit_status);
        }
        (200, json!({ "id": job_id, "state": "finished" }))
    }
}

/// A job handed to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedJob {
    pub id: String,
    pub env: BTreeMap<String, String>,
}

/// A failed call to the agent routes. The message never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentApiError {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for AgentApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AgentApiError {}

/// A blocking client of the job model's agent routes, for simulated agents: reqwest
/// on a runtime of its own, so plain threads can call it.
#[derive(Debug, Clone)]
pub struct AgentClient {
    /// The agent API base URL, without a trailing slash.
    base: String,
    http: reqwest::Client,
    runtime: Arc<tokio::runtime::Runtime>,
    access_token: String,
    pub id: String,
    pub name: String,
}

impl AgentClient {
    /// Registers an agent at `endpoint` (the agent API base URL, such as
    /// `http://127.0.0.1:PORT/v3`) with the agent token.
    pub fn register(
        endpoint: &str,
        agent_token: &str,
        name: &str,
        tags: &[String],
    ) -> Result<AgentClient, AgentApiError> {
        let failure = |message: String| AgentApiError { status: None, message };
        url::Url::parse(endpoint)
            .map_err(|error| failure(format!("invalid agent endpoint {endpoint:?}: {error}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| failure(format!("failed to build an HTTP client: {error}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| failure(format!("failed to start a runtime: {error}")))?;
        let mut client = AgentClient {
            base: endpoint.trim_end_matches('/').to_owned(),
            http,
            runtime: Arc::new(runtime),
            access_token: agent_token.to_owned(),
            id: String::new(),
            name: name.to_owned(),
        };
        let registration = json!({ "name": name, "tags": tags });
        let answer = client.call(reqwest::Method::POST, "/register", &registration)?;
        let field = |key: &str| answer[key].as_str().map(str::to_owned);
        let (Some(id), Some(access_token)) = (field("id"), field("access_token")) else {
            return Err(AgentApiError {
                status: Some(200),
                message: "the registration answer has no id or access_token".to_owned(),
            });
        };
        client.id = id;
        client.access_token = access_token;
        Ok(client)
    }

    pub fn connect(&self) -> Result<(), AgentApiError> {
        self.call(reqwest::Method::POST, "/connect", &json!({})).map(drop)
    }

    /// The job to run, if the queue has one for this agent.
    pub fn ping(&self) -> Result<Option<AssignedJob>, AgentApiError> {
        let answer = self.call(reqwest::Method::GET, "/ping", &serde_json::Value::Null)?;
        let job = &answer["job"];
        let Some(id) = job["id"].as_str() else { return Ok(None) };
        let env = job["env"]
            .as_object()
            .map(|env| {
                env.iter()
                    .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(AssignedJob { id: id.to_owned(), env }))
    }

    pub fn finish(&self, job_id: &str, exit_status: i32) -> Result<(), AgentApiError> {
        let path = format!("/jobs/{job_id}/finish");
        self.call(reqwest::Method::PUT, &path, &json!({ "exit_status": exit_status })).map(drop)
    }

    pub fn disconnect(&self) -> Result<(), AgentApiError> {
        self.call(reqwest::Method::POST, "/disconnect", &json!({})).map(drop)
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, AgentApiError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(header::AUTHORIZATION.as_str(), format!("Token {}", self.access_token));
        if !body.is_null() {
            request = request
                .header(header::CONTENT_TYPE.as_str(), "application/json")
                .body(body.to_string());
        }
        let exchange = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        };
        // reqwest's errors name the URL, which holds no token (that is in a header).
        let (status, text) = self.runtime.block_on(exchange).map_err(|error| AgentApiError {
            status: None,
            message: format!("{method} {path}: {error}"),
        })?;
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if status == 200 {
            return Ok(answer);
        }
        Err(AgentApiError {
            status: Some(status),
            message: format!(
                "{method} {path}: {}",
                answer["message"].as_str().unwrap_or("no message")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "agent-registration-token";

    fn job(id: &str, queue: &str, visible_secs: u64, ready_secs: u64) -> JobSpec {
        JobSpec {
            id: id.to_owned(),
            queue: queue.to_owned(),
            visible_at: Duration::from_secs(visible_secs),
            ready_at: Duration::from_secs(ready_secs),
            env: BTreeMap::from([("BUILDKITE_COMMAND".to_owned(), format!("make {id}"))]),
        }
    }

    /// A fake whose clock the test sets, in seconds.
    fn fake_with_clock() -> (FakeBuildkite, Arc<Mutex<u64>>) {
        let fake = FakeBuildkite::start(TOKEN);
        let now = Arc::new(Mutex::new(0_u64));
        let clock = now.clone();
        fake.state().set_clock(move || Duration::from_secs(*clock.lock().unwrap()));
        (fake, now)
    }

    fn agent(fake: &FakeBuildkite, name: &str, queue: &str) -> AgentClient {
        let tags = vec![format!("queue={queue}"), "os=linux".to_owned()];
        let agent = AgentClient::register(&fake.endpoint(), TOKEN, name, &tags).unwrap();
        agent.connect().unwrap();
        agent
    }

    #[test]
    fn jobs_are_waiting_then_scheduled_then_taken_first_ready_first_served() {
        let (fake, now) = fake_with_clock();
        fake.state().add_jobs([
            job("late", "builders", 0, 20),
            job("early", "builders", 5, 10),
            job("other-queue", "deploy", 0, 0),
        ]);
        assert_eq!(fake.state().modelled_metrics("builders"), QueueMetrics::jobs(0, 0, 1));
        *now.lock().unwrap() = 12;
        assert_eq!(fake.state().modelled_metrics("builders"), QueueMetrics::jobs(1, 0, 1));

        let first = agent(&fake, "a-1", "builders");
        let second = agent(&fake, "a-2", "builders");
        assert_eq!(
            fake.state().modelled_metrics("builders"),
            QueueMetrics::jobs(1, 0, 1).with_agents(2, 0)
        );
        let taken = first.ping().unwrap().expect("the ready job");
        assert_eq!(taken.id, "early");
        assert_eq!(taken.env["BUILDKITE_COMMAND"], "make early");
        // The job stays with its agent; the other one is not ready yet.
        assert_eq!(first.ping().unwrap().unwrap().id, "early");
        assert_eq!(second.ping().unwrap(), None);
        assert_eq!(
            fake.state().modelled_metrics("builders"),
            QueueMetrics::jobs(0, 1, 1).with_agents(1, 1)
        );

        *now.lock().unwrap() = 30;
        assert_eq!(second.ping().unwrap().unwrap().id, "late");
        first.finish("early", 0).unwrap();
        second.finish("late", 3).unwrap();
        assert_eq!(
            fake.state().modelled_metrics("builders"),
            QueueMetrics::default().with_agents(2, 0)
        );

        let state = fake.state();
        let records = state.job_records();
        assert_eq!(records[0].agent.as_deref(), Some("a-2"));
        assert_eq!(records[0].exit_status, Some(3));
        assert_eq!(records[1].started_at, Some(Duration::from_secs(12)));
        assert_eq!(records[1].finished_at, Some(Duration::from_secs(30)));
        assert_eq!(records[2].state_at(Duration::from_secs(30)), JobState::Scheduled);
        assert_eq!(state.agent_records()[0].n_jobs, 1);
        // Through the metrics route, as the scaler sees it.
        assert_eq!(state.modelled_metrics("deploy"), QueueMetrics::jobs(1, 0, 0));
    }

    #[test]
    fn agents_need_the_agent_token_and_their_own_access_token() {
        let (fake, _) = fake_with_clock();
        let error = AgentClient::register(&fake.endpoint(), "wrong", "a-1", &[]).unwrap_err();
        assert_eq!(error.status, Some(401));
        assert!(!error.to_string().contains("wrong"), "{error}");

        let agent = agent(&fake, "a-1", "default");
        let mut forged = agent.clone();
        forged.access_token = TOKEN.to_owned();
        assert_eq!(forged.ping().unwrap_err().status, Some(401));
        assert_eq!(agent.finish("no-such-job", 0).unwrap_err().status, Some(422));
        let state = fake.state();
        assert_eq!(state.agent_records()[0].queue, "default");
        assert!(state.requests().iter().any(|request| request.path == "/v3/register"));
    }

    #[test]
    fn a_disconnect_with_a_job_interrupts_it() {
        let (fake, now) = fake_with_clock();
        fake.state().add_jobs([job("j1", "default", 0, 0)]);
        let agent = agent(&fake, "a-1", "default");
        assert_eq!(agent.ping().unwrap().unwrap().id, "j1");
        *now.lock().unwrap() = 7;
        agent.disconnect().unwrap();
        assert_eq!(agent.ping().unwrap_err().status, Some(422));
        let state = fake.state();
        let record = &state.job_records()[0];
        assert!(record.interrupted);
        assert_eq!(record.state_at(Duration::from_secs(8)), JobState::Interrupted);
        assert_eq!(state.agent_records()[0].disconnected_at, Some(Duration::from_secs(7)));
        assert_eq!(state.modelled_metrics("default"), QueueMetrics::default());
    }

    #[test]
    fn the_metrics_route_reports_the_job_model() {
        let (fake, _) = fake_with_clock();
        fake.state().add_jobs([job("j1", "default", 0, 0), job("j2", "default", 0, 0)]);
        let agent = agent(&fake, "a-1", "default");
        agent.ping().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let text = runtime.block_on(async {
            let url = format!("{}/metrics/queue?name=default", fake.endpoint());
            let request =
                reqwest::Client::new().get(url).header("Authorization", format!("Token {TOKEN}"));
            request.send().await.unwrap().text().await.unwrap()
        });
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["jobs"]["scheduled"], 1);
        assert_eq!(body["jobs"]["running"], 1);
        assert_eq!(body["agents"]["busy"], 1);
        assert_eq!(body["agents"]["idle"], 0);
    }
}
