//! A fake Buildkite REST API: the builds (with their jobs) of an organization, for
//! `elastic-ci export-trace`.
//!
//! It serves `GET /v2/organizations/{org}/builds` and
//! `GET /v2/organizations/{org}/pipelines/{pipeline}/builds` as the real API does:
//! `Authorization: Bearer <API token>` is required (401 otherwise), an unknown
//! organization or pipeline is 404, `created_from` (RFC 3339) keeps the builds created
//! at or after it, the newest build comes first, and `per_page` (at most 100, 30 by
//! default; the fake's own page size caps it further when set) and `page` split the
//! list, with a `Link: <…>; rel="next"` header while pages remain. Every request is
//! recorded.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use elastic_ci_core::lifecycle::{format_rfc3339, parse_rfc3339};
use serde_json::json;

use crate::http::TestServer;

/// One job of a build, with the REST API's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestJob {
    pub id: String,
    /// `script`, `waiter`, `manual` or `trigger`.
    pub kind: String,
    pub agent_query_rules: Vec<String>,
    pub created_at: Option<SystemTime>,
    pub scheduled_at: Option<SystemTime>,
    pub runnable_at: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
}

impl RestJob {
    /// A command job that ran: scheduled, runnable, started and finished at these
    /// times, on `queue` (`None`: no queue rule, the default queue).
    pub fn finished(
        id: &str,
        queue: Option<&str>,
        scheduled_at: SystemTime,
        runnable_at: SystemTime,
        started_at: SystemTime,
        finished_at: SystemTime,
    ) -> RestJob {
        RestJob {
            id: id.to_owned(),
            kind: "script".to_owned(),
            agent_query_rules: queue
                .map(|queue| vec![format!("queue={queue}")])
                .unwrap_or_default(),
            created_at: Some(scheduled_at),
            scheduled_at: Some(scheduled_at),
            runnable_at: Some(runnable_at),
            started_at: Some(started_at),
            finished_at: Some(finished_at),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let time = |time: Option<SystemTime>| time.map(format_rfc3339);
        json!({
            "id": self.id,
            "type": self.kind,
            "state": if self.finished_at.is_some() { "passed" } else { "running" },
            "agent_query_rules": self.agent_query_rules,
            "created_at": time(self.created_at),
            "scheduled_at": time(self.scheduled_at),
            "runnable_at": time(self.runnable_at),
            "started_at": time(self.started_at),
            "finished_at": time(self.finished_at),
        })
    }
}

/// A build of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestBuild {
    pub pipeline: String,
    pub number: u64,
    pub created_at: SystemTime,
    pub jobs: Vec<RestJob>,
}

/// A request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest {
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
    pub status: u16,
}

#[derive(Debug)]
struct State {
    token: String,
    organization: String,
    builds: Vec<RestBuild>,
    page_size: Option<usize>,
    requests: Vec<RestRequest>,
    /// `http://127.0.0.1:PORT`, for the absolute URLs of `Link` headers.
    origin: String,
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeBuildkiteRest {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl FakeBuildkiteRest {
    /// Starts a fake on 127.0.0.1 for `organization`, accepting the API token `token`.
    pub fn start(organization: &str, token: &str) -> FakeBuildkiteRest {
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            organization: organization.to_owned(),
            builds: Vec::new(),
            page_size: None,
            requests: Vec::new(),
            origin: String::new(),
        }));
        let handler_state = state.clone();
        let router = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let state = handler_state.clone();
            async move { answer(&state, &uri, &headers) }
        });
        let server = TestServer::http(router);
        lock(&state).origin = server.url("");
        FakeBuildkiteRest { server, state }
    }

    /// The REST API's base URL (`--api-url`).
    pub fn api_url(&self) -> String {
        self.server.url("/v2")
    }

    pub fn add_build(&self, build: RestBuild) {
        lock(&self.state).builds.push(build);
    }

    /// Builds per page at most, below what `per_page` asks for, so that a handful of
    /// builds spans several pages.
    pub fn set_page_size(&self, builds: usize) {
        lock(&self.state).page_size = Some(builds.max(1));
    }

    pub fn requests(&self) -> Vec<RestRequest> {
        lock(&self.state).requests.clone()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn answer(state: &Mutex<State>, uri: &Uri, headers: &HeaderMap) -> Response {
    let authorization =
        headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let mut state = lock(state);
    let (status, body, link) = plan(&state, uri, authorization.as_deref());
    let target = uri.path_and_query().map_or_else(|| uri.path().to_owned(), ToString::to_string);
    state.requests.push(RestRequest { target, authorization, status: status.as_u16() });
    let mut response =
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(link) = link.and_then(|link| link.parse().ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// The status, body and `Link` header of one request.
fn plan(
    state: &State,
    uri: &Uri,
    authorization: Option<&str>,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let message = |status: StatusCode, text: &str| (status, json!({ "message": text }), None);
    if authorization.and_then(|value| value.strip_prefix("Bearer ")) != Some(state.token.as_str()) {
        return message(StatusCode::UNAUTHORIZED, "Authentication required");
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let pipeline = match segments.as_slice() {
        ["v2", "organizations", organization, "builds"] if *organization == state.organization => {
            None
        }
        ["v2", "organizations", organization, "pipelines", pipeline, "builds"]
            if *organization == state.organization =>
        {
            if !state.builds.iter().any(|build| build.pipeline == *pipeline) {
                return message(StatusCode::NOT_FOUND, "No pipeline found");
            }
            Some(*pipeline)
        }
        _ => return message(StatusCode::NOT_FOUND, "Not Found"),
    };
    let query: Vec<(String, String)> = uri
        .query()
        .map(|query| url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let parameter =
        |name: &str| query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let created_from = match parameter("created_from") {
        Some(text) => match parse_rfc3339(text) {
            Some(time) => Some(time),
            None => return message(StatusCode::UNPROCESSABLE_ENTITY, "created_from is invalid"),
        },
        None => None,
    };
    let per_page = parameter("per_page").and_then(|value| value.parse().ok()).unwrap_or(30_usize);
    let per_page = per_page.clamp(1, 100).min(state.page_size.unwrap_or(100));
    let page = parameter("page").and_then(|value| value.parse().ok()).unwrap_or(1_usize).max(1);
    let mut builds: Vec<&RestBuild> = state
        .builds
        .iter()
        .filter(|build| pipeline.is_none_or(|pipeline| build.pipeline == pipeline))
        .filter(|build| created_from.is_none_or(|from| build.created_at >= from))
        .collect();
    builds.sort_by_key(|build| std::cmp::Reverse(build.created_at));
    let start = (page - 1).saturating_mul(per_page);
    let body: Vec<serde_json::Value> = builds
        .iter()
        .skip(start)
        .take(per_page)
        .map(|build| {
            json!({
                "number": build.number,
                "pipeline": { "slug": build.pipeline },
                "created_at": format_rfc3339(build.created_at),
                "jobs": build.jobs.iter().map(RestJob::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let link = (start + per_page < builds.len()).then(|| {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in query.iter().filter(|(key, _)| key != "page") {
            next.append_pair(key, value);
        }
        next.append_pair("page", &(page + 1).to_string());
        format!("<{}{}?{}>; rel=\"next\"", state.origin, uri.path(), next.finish())
    });
    (StatusCode::OK, json!(body), link)
}
