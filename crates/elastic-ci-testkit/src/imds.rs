//! A fake EC2 instance metadata service (IMDSv2) on 127.0.0.1.
//!
//! It speaks the token protocol (`PUT /latest/api/token`, then GETs carrying the
//! token) and serves the instance id, the region, the instance tags and the three
//! removal notices (`autoscaling/target-lifecycle-state`, `spot/instance-action`,
//! `events/recommendations/rebalance`; 404 until a test sets them). It can be told
//! to be down (every request answers 503) and up again, or to fail only the next few
//! requests, so retry and failure paths run against the production client unchanged:
//! point `AWS_EC2_METADATA_SERVICE_ENDPOINT` at [`FakeImds::endpoint`].

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

use crate::http::TestServer;

/// A running fake metadata service.
#[derive(Debug)]
pub struct FakeImds {
    server: TestServer,
    state: Arc<ImdsState>,
}

#[derive(Debug)]
struct ImdsState {
    instance_id: String,
    region: String,
    tags: Mutex<Option<BTreeMap<String, String>>>,
    tokens: Mutex<HashSet<String>>,
    notices: Mutex<BTreeMap<&'static str, String>>,
    down: AtomicBool,
    fail_next: AtomicU32,
    n_requests: AtomicU32,
    n_failed: AtomicU32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeImds {
    /// Serves one instance with tags enabled (and none set).
    pub fn start(instance_id: &str, region: &str) -> FakeImds {
        let state = Arc::new(ImdsState {
            instance_id: instance_id.to_owned(),
            region: region.to_owned(),
            tags: Mutex::new(Some(BTreeMap::new())),
            tokens: Mutex::new(HashSet::new()),
            notices: Mutex::new(BTreeMap::new()),
            down: AtomicBool::new(false),
            fail_next: AtomicU32::new(0),
            n_requests: AtomicU32::new(0),
            n_failed: AtomicU32::new(0),
        });
        let metadata = Router::new()
            .route("/latest/meta-data/instance-id", get(get_instance_id))
            .route("/latest/meta-data/placement/region", get(get_region))
            .route("/latest/meta-data/tags/instance", get(tag_keys))
            .route("/latest/meta-data/tags/instance/{key}", get(tag_value))
            .route(TARGET_LIFECYCLE_STATE, get(notice))
            .route(SPOT_INSTANCE_ACTION, get(notice))
            .route(REBALANCE, get(notice))
            .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
        let router = Router::new()
            .route("/latest/api/token", put(issue_token))
            .merge(metadata)
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), count_and_fail))
            .with_state(state.clone());
        FakeImds { server: TestServer::http(router), state }
    }

    /// The value for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.server.url("")
    }

    pub fn instance_id(&self) -> &str {
        &self.state.instance_id
    }

    pub fn set_tag(&self, key: &str, value: &str) {
        lock(&self.state.tags).get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
    }

    /// Answers 404 for tags, as when the launch template does not enable them.
    pub fn disable_tags(&self) {
        *lock(&self.state.tags) = None;
    }

    /// Serves `autoscaling/target-lifecycle-state` (`InService`, `Terminated`,
    /// `Warmed:Stopped`, …); `None` answers 404 again.
    pub fn set_target_lifecycle_state(&self, state: Option<&str>) {
        self.set_notice(TARGET_LIFECYCLE_STATE, state);
    }

    /// Announces a spot interruption: `spot/instance-action` answers
    /// `{"action":ACTION,"time":TIME}` (TIME in RFC 3339); `None` answers 404 again.
    pub fn set_spot_instance_action(&self, action_and_time: Option<(&str, &str)>) {
        let document = action_and_time
            .map(|(action, time)| format!(r#"{{"action":"{action}","time":"{time}"}}"#));
        self.set_notice(SPOT_INSTANCE_ACTION, document.as_deref());
    }

    /// Serves `events/recommendations/rebalance` as `{"noticeTime":TIME}`; `None`
    /// answers 404 again.
    pub fn set_rebalance_recommendation(&self, notice_time: Option<&str>) {
        let document = notice_time.map(|time| format!(r#"{{"noticeTime":"{time}"}}"#));
        self.set_notice(REBALANCE, document.as_deref());
    }

    fn set_notice(&self, path: &'static str, value: Option<&str>) {
        let mut notices = lock(&self.state.notices);
        match value {
            Some(value) => notices.insert(path, value.to_owned()),
            None => notices.remove(path),
        };
    }

    /// Every request fails with 503 until [`FakeImds::up`].
    pub fn down(&self) {
        self.state.down.store(true, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// The next `n` requests fail with 503, then the service answers again.
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Requests received so far, failed ones included.
    pub fn n_requests(&self) -> u32 {
        self.state.n_requests.load(Ordering::SeqCst)
    }

    /// Requests answered with 503 so far.
    pub fn n_failed(&self) -> u32 {
        self.state.n_failed.load(Ordering::SeqCst)
    }
}

const TARGET_LIFECYCLE_STATE: &str = "/latest/meta-data/autoscaling/target-lifecycle-state";
const SPOT_INSTANCE_ACTION: &str = "/latest/meta-data/spot/instance-action";
const REBALANCE: &str = "/latest/meta-data/events/recommendations/rebalance";

/// Every request is counted; while the service is down, or for the next requests it
/// was told to fail, it answers 503 before any route sees it.
async fn count_and_fail(
    State(state): State<Arc<ImdsState>>,
    request: Request,
    next: Next,
) -> Response {
    state.n_requests.fetch_add(1, Ordering::SeqCst);
    let failing = state.down.load(Ordering::SeqCst)
        || state
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if failing {
        state.n_failed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "metadata service unavailable").into_response();
    }
    next.run(request).await
}

/// `PUT /latest/api/token`: a session token, for a TTL from 1 s to 6 h.
async fn issue_token(State(state): State<Arc<ImdsState>>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u32>().ok())
        .filter(|ttl| (1..=21_600).contains(ttl));
    let Some(ttl) = ttl else {
        return (StatusCode::BAD_REQUEST, "missing or invalid token TTL").into_response();
    };
    let mut tokens = lock(&state.tokens);
    let token = format!("fake-imds-token-{}", tokens.len() + 1);
    tokens.insert(token.clone());
    (StatusCode::OK, [("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())], token)
        .into_response()
}

/// The metadata routes answer only requests that carry a token this service issued.
async fn require_token(
    State(state): State<Arc<ImdsState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let token = headers.get("x-aws-ec2-metadata-token").and_then(|value| value.to_str().ok());
    if !token.is_some_and(|token| lock(&state.tokens).contains(token)) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(request).await
}

async fn get_instance_id(State(state): State<Arc<ImdsState>>) -> String {
    state.instance_id.clone()
}

async fn get_region(State(state): State<Arc<ImdsState>>) -> String {
    state.region.clone()
}

/// The tag keys, one per line; 404 when tags are not enabled.
async fn tag_keys(State(state): State<Arc<ImdsState>>) -> Response {
    match &*lock(&state.tags) {
        Some(tags) => tags.keys().cloned().collect::<Vec<_>>().join("\n").into_response(),
        None => not_found_response(),
    }
}

/// A removal notice, 404 until a test sets it.
async fn notice(State(state): State<Arc<ImdsState>>, uri: axum::http::Uri) -> Response {
    match lock(&state.notices).get(uri.path()) {
        Some(value) => value.clone().into_response(),
        None => not_found_response(),
    }
}

/// One tag's value; the key arrives percent-decoded.
async fn tag_value(State(state): State<Arc<ImdsState>>, Path(key): Path<String>) -> Response {
    match lock(&state.tags).as_ref().and_then(|tags| tags.get(&key)) {
        Some(value) => value.clone().into_response(),
        None => not_found_response(),
    }
}

async fn not_found() -> Response {
    not_found_response()
}

fn not_found_response() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}
