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
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

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
        let router = Router::new().fallback(handle).with_state(state.clone());
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

async fn handle(
    State(state): State<Arc<ImdsState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
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
    let path = uri.path();
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let ttl = headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u32>().ok());
        if !ttl.is_some_and(|ttl| (1..=21_600).contains(&ttl)) {
            return (StatusCode::BAD_REQUEST, "missing or invalid token TTL").into_response();
        }
        let ttl = ttl.unwrap_or_default();
        let mut tokens = lock(&state.tokens);
        let token = format!("fake-imds-token-{}", tokens.len() + 1);
        tokens.insert(token.clone());
        return (
            StatusCode::OK,
            [("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
            token,
        )
            .into_response();
    }
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let token = headers.get("x-aws-ec2-metadata-token").and_then(|value| value.to_str().ok());
    if !token.is_some_and(|token| lock(&state.tokens).contains(token)) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let not_found = || (StatusCode::NOT_FOUND, "Not Found").into_response();
    match path {
        "/latest/meta-data/instance-id" => state.instance_id.clone().into_response(),
        "/latest/meta-data/placement/region" => state.region.clone().into_response(),
        "/latest/meta-data/tags/instance" => match &*lock(&state.tags) {
            Some(tags) => tags.keys().cloned().collect::<Vec<_>>().join("\n").into_response(),
            None => not_found(),
        },
        TARGET_LIFECYCLE_STATE | SPOT_INSTANCE_ACTION | REBALANCE => {
            match lock(&state.notices).get(path) {
                Some(value) => value.clone().into_response(),
                None => not_found(),
            }
        }
        _ => {
            let Some(key) = path.strip_prefix("/latest/meta-data/tags/instance/") else {
                return not_found();
            };
            let key = percent_decode(key);
            match lock(&state.tags).as_ref().and_then(|tags| tags.get(&key)) {
                Some(value) => value.clone().into_response(),
                None => not_found(),
            }
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
