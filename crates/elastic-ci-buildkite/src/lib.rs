//! The Buildkite agent metrics API, as the scaler uses it.
//!
//! [`AgentMetrics`] is the capability: one queue's job and agent counts. Its HTTP
//! implementation, [`AgentMetricsClient`], sends `GET {endpoint}/metrics/queue?name=Q`
//! with `Authorization: Token <agent token>`, with connect and request timeouts and no
//! redirects. Anything but a 200 with the documented JSON is an error: a degraded
//! answer must never look like an empty queue, or the scaler would scale in on it.
//!
//! Nothing the server sends is trusted to be small: the body is read up to
//! [`MAX_BODY_BYTES`] (the scaler runs in a 128 MB Lambda), and the `Retry-After` and
//! [`POLL_DURATION_HEADER`] values are capped at [`MAX_SERVER_WAIT`], so that no answer
//! can stop the polling or overflow a time.
//!
//! The token is a [`Secret`]: it appears in no log line and no error. Where it comes
//! from (a variable, SSM) is the caller's business: this crate knows nothing of AWS.
//!
//! [`rest`] reads builds and jobs from the REST API, for exporting job traces.

pub mod rest;

use std::time::Duration;

use async_trait::async_trait;
use elastic_ci_core::scaling::QueueCounts;
use elastic_ci_core::secret::Secret;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use tracing::{instrument, warn};
use url::Url;

/// The header in which the API says how long to wait before the next poll.
pub const POLL_DURATION_HEADER: &str = "Buildkite-Agent-Metrics-Poll-Duration";

/// The user agent of every request: this project and its version.
pub const USER_AGENT: &str = concat!("elastic-ci-stack-scaler/", env!("CARGO_PKG_VERSION"));

/// How much of an error answer's body an error message quotes.
const MAX_BODY_IN_ERROR: usize = 512;

/// The largest answer body read. The documented answer is a few hundred bytes; a
/// larger one is refused before it can exhaust the Lambda's memory.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest wait the server can ask for, through `Retry-After` or the poll-duration
/// header: five minutes, several times a Lambda invocation. Larger values (the header is
/// any number of digits) count as this.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(300);

/// One queue's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueReport {
    pub counts: QueueCounts,
    /// `jobs.total` (scheduled plus running); reported, not used for scaling.
    pub total_jobs: u32,
    /// `organization.slug`: the CloudWatch `Org` dimension.
    pub organization_slug: String,
    /// `cluster.name`, for cluster tokens.
    pub cluster_name: Option<String>,
    /// The minimum time the API wants between polls, from [`POLL_DURATION_HEADER`], at
    /// most [`MAX_SERVER_WAIT`].
    pub poll_duration: Option<Duration>,
}

/// Reading a queue's metrics.
#[async_trait]
pub trait AgentMetrics: Send + Sync {
    async fn queue_metrics(&self, queue: &str, token: &Secret)
    -> Result<QueueReport, MetricsError>;
}

/// A failed poll. Messages name the URL (without credentials) and never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("GET {url}: the agent token was refused (HTTP {status}): {body}")]
    Unauthorized { url: String, status: u16, body: String },
    #[error("GET {url}: rate limited (HTTP 429){}", retry_after_text(*.retry_after))]
    RateLimited { url: String, retry_after: Option<Duration> },
    #[error("GET {url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("GET {url}: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url}: invalid answer: {reason}")]
    InvalidAnswer { url: String, reason: String },
    #[error("GET {url}: the answer is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

fn retry_after_text(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |delay| format!(", retry after {}s", delay.as_secs()))
}

impl MetricsError {
    /// How long the API asked us to wait, on a 429 with `Retry-After`; at most
    /// [`MAX_SERVER_WAIT`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MetricsError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The token was refused: a cached token should be read again.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, MetricsError::Unauthorized { .. })
    }
}

/// Timeouts and identity of the HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// The whole request, answer body included.
    pub request_timeout: Duration,
}

impl ClientSettings {
    /// 5 s to connect, 10 s in all: the scaler polls every 10 s, and a hung request
    /// must not eat the invocation.
    pub fn standard() -> ClientSettings {
        ClientSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// [`AgentMetrics`] over HTTP.
#[derive(Debug, Clone)]
pub struct AgentMetricsClient {
    http: reqwest::Client,
    endpoint: Url,
}

/// The HTTP client could not be built (TLS set-up).
#[derive(Debug, thiserror::Error)]
#[error("failed to build the Buildkite HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

impl AgentMetricsClient {
    /// A client for the agent API at `endpoint` (such as `https://agent.buildkite.com/v3`).
    pub fn new(
        endpoint: &Url,
        settings: &ClientSettings,
    ) -> Result<AgentMetricsClient, ClientBuildError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .build()
            .map_err(ClientBuildError)?;
        Ok(AgentMetricsClient { http, endpoint: endpoint.clone() })
    }

    /// `{endpoint}/metrics/queue?name=<queue>`; a trailing slash on the endpoint does
    /// not double the separator, and any query on the endpoint is replaced.
    pub fn queue_url(&self, queue: &str) -> Url {
        let mut url = self.endpoint.clone();
        let path = format!("{}/metrics/queue", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_fragment(None);
        url.query_pairs_mut().clear().append_pair("name", queue);
        url
    }
}

#[async_trait]
impl AgentMetrics for AgentMetricsClient {
    #[instrument(skip_all, fields(queue))]
    async fn queue_metrics(
        &self,
        queue: &str,
        token: &Secret,
    ) -> Result<QueueReport, MetricsError> {
        let url = self.queue_url(queue);
        let shown = shown_url(&url);
        let transport = |error: reqwest::Error| MetricsError::Transport {
            url: shown.clone(),
            message: describe_transport(&error),
        };
        let mut authorization = HeaderValue::from_str(&format!("Token {}", token.expose()))
            .map_err(|_| MetricsError::Transport {
                url: shown.clone(),
                message: "the agent token contains characters not allowed in an HTTP header"
                    .to_owned(),
            })?;
        authorization.set_sensitive(true);
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, authorization)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let (body, complete) = read_capped(response, MAX_BODY_BYTES).await.map_err(transport)?;
        if status != StatusCode::OK {
            // An error answer is only quoted, so a cut one is good enough.
            let body = quote_body(&body, token);
            return Err(match status.as_u16() {
                401 | 403 => {
                    MetricsError::Unauthorized { url: shown, status: status.as_u16(), body }
                }
                429 => MetricsError::RateLimited { url: shown, retry_after: retry_after(&headers) },
                other => MetricsError::Status { url: shown, status: other, body },
            });
        }
        if !complete {
            return Err(MetricsError::TooLarge { url: shown, limit: MAX_BODY_BYTES });
        }
        let mut report = decode(&body)
            .map_err(|reason| MetricsError::InvalidAnswer { url: shown.clone(), reason })?;
        report.poll_duration = poll_duration(&headers);
        Ok(report)
    }
}

/// The URL without credentials, for messages.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn describe_transport(error: &reqwest::Error) -> String {
    // reqwest's own Display repeats the URL, which the message already has; the chain
    // of causes names what happened (refused, reset, timed out) and no header.
    let mut message = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer broke off".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Reads the body up to `limit` bytes, chunk by chunk, whatever `Content-Length` says.
/// Returns what was read and whether that is the whole body; a larger body is not
/// read further (dropping the response closes the connection).
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Ok((Vec::new(), false));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The start of an error answer's body for a message, with the token redacted first:
/// cutting first could leave a token that straddles the cut partly in the message.
fn quote_body(body: &[u8], token: &Secret) -> String {
    let text = String::from_utf8_lossy(body);
    // An API that echoed the request would put the token in our error message.
    let text = if token.is_empty() {
        text.into_owned()
    } else {
        text.replace(token.expose(), "<redacted>")
    };
    let mut cut = text.len().min(MAX_BODY_IN_ERROR);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let text = text[..cut].trim();
    if text.is_empty() { "(empty body)".to_owned() } else { text.to_owned() }
}

/// A header's whole number of seconds, at most [`MAX_SERVER_WAIT`]: any run of digits
/// is a valid number, however long, so one too large for `u64` is the cap too.
fn capped_seconds(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_SERVER_WAIT))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    capped_seconds(headers.get(RETRY_AFTER)?)
}

fn poll_duration(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(POLL_DURATION_HEADER)?;
    match capped_seconds(value) {
        Some(duration) => Some(duration),
        None => {
            warn!(header = POLL_DURATION_HEADER, value = ?value, "ignoring a poll duration that is not whole seconds");
            None
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    agents: Option<Agents>,
    jobs: Option<Jobs>,
    organization: Option<Organization>,
    #[serde(default)]
    cluster: Option<Cluster>,
}

#[derive(Deserialize)]
struct Agents {
    #[serde(default)]
    idle: u32,
    #[serde(default)]
    busy: u32,
    #[serde(default)]
    total: u32,
}

#[derive(Deserialize)]
struct Jobs {
    #[serde(default)]
    scheduled: u32,
    #[serde(default)]
    running: u32,
    #[serde(default)]
    waiting: u32,
    #[serde(default)]
    total: u32,
}

#[derive(Deserialize)]
struct Organization {
    #[serde(default)]
    slug: String,
}

#[derive(Deserialize)]
struct Cluster {
    #[serde(default)]
    name: String,
}

/// Decodes a 200's body. The `agents`, `jobs` and `organization.slug` fields must be
/// there: an answer without them is a degraded API, not an idle queue.
fn decode(body: &[u8]) -> Result<QueueReport, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|error| format!("not the documented JSON: {error}"))?;
    let jobs = answer.jobs.ok_or("no \"jobs\" object")?;
    let agents = answer.agents.ok_or("no \"agents\" object")?;
    let organization_slug =
        answer.organization.map(|organization| organization.slug).unwrap_or_default();
    if organization_slug.is_empty() {
        return Err("no organization slug".to_owned());
    }
    Ok(QueueReport {
        counts: QueueCounts {
            scheduled_jobs: jobs.scheduled,
            running_jobs: jobs.running,
            waiting_jobs: jobs.waiting,
            idle_agents: agents.idle,
            busy_agents: agents.busy,
            total_agents: agents.total,
        },
        total_jobs: jobs.total,
        organization_slug,
        cluster_name: answer.cluster.map(|cluster| cluster.name).filter(|name| !name.is_empty()),
        poll_duration: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_answer() {
        let report = decode(
            br#"{"agents":{"idle":0,"busy":1,"total":1},"jobs":{"scheduled":3,"running":1,"waiting":0,"total":4},"organization":{"slug":"my-org"},"cluster":{"name":"my-cluster"},"extra":true}"#,
        )
        .unwrap();
        assert_eq!(
            report.counts,
            QueueCounts {
                scheduled_jobs: 3,
                running_jobs: 1,
                waiting_jobs: 0,
                idle_agents: 0,
                busy_agents: 1,
                total_agents: 1
            }
        );
        assert_eq!(report.total_jobs, 4);
        assert_eq!(report.organization_slug, "my-org");
        assert_eq!(report.cluster_name.as_deref(), Some("my-cluster"));
    }

    #[test]
    fn degraded_answers_are_errors() {
        for (body, reason) in [
            (&b"{}"[..], "no \"jobs\" object"),
            (br#"{"jobs":{},"organization":{"slug":"o"}}"#, "no \"agents\" object"),
            (br#"{"jobs":{},"agents":{}}"#, "no organization slug"),
            (br#"{"jobs":{},"agents":{},"organization":{"slug":""}}"#, "no organization slug"),
        ] {
            assert_eq!(decode(body).unwrap_err(), reason);
        }
        for body in [&b"<html>"[..], br#"{"jobs":{"scheduled":-1}}"#, b""] {
            assert!(decode(body).unwrap_err().starts_with("not the documented JSON"));
        }
    }

    #[test]
    fn builds_the_queue_url() {
        let settings = ClientSettings::standard();
        let client = |endpoint: &str| {
            AgentMetricsClient::new(&Url::parse(endpoint).unwrap(), &settings).unwrap()
        };
        assert_eq!(
            client("https://agent.buildkite.com/v3").queue_url("default").as_str(),
            "https://agent.buildkite.com/v3/metrics/queue?name=default"
        );
        assert_eq!(
            client("https://agent-edge.buildkite.com/v3/?x=1").queue_url("a b&c").as_str(),
            "https://agent-edge.buildkite.com/v3/metrics/queue?name=a+b%26c"
        );
    }

    #[test]
    fn error_bodies_never_show_the_token() {
        let token = Secret::new("s3cr3t-token");
        assert_eq!(
            quote_body(b"bad token s3cr3t-token given", &token),
            "bad token <redacted> given"
        );
        assert_eq!(quote_body(b"", &token), "(empty body)");
        assert_eq!(quote_body(&[b'x'; 2000], &token).len(), MAX_BODY_IN_ERROR);
    }

    #[test]
    fn a_token_straddling_the_quote_limit_leaves_no_prefix() {
        let token = Secret::new("s3cr3t-token");
        let mut body = vec![b'x'; MAX_BODY_IN_ERROR - 4];
        body.extend_from_slice(b"s3cr3t-token and more");
        let quoted = quote_body(&body, &token);
        assert!(!quoted.contains("s3cr"), "{quoted}");
        assert!(quoted.ends_with("<red"), "{quoted}");
        assert_eq!(quoted.len(), MAX_BODY_IN_ERROR);
    }

    #[test]
    fn quoting_cuts_at_a_character_boundary() {
        let body = "é".repeat(MAX_BODY_IN_ERROR);
        let quoted = quote_body(body.as_bytes(), &Secret::new("t"));
        assert_eq!(quoted, "é".repeat(MAX_BODY_IN_ERROR / 2));
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn server_waits_are_capped_whatever_their_size() {
        for (value, expected) in [
            ("30", Some(Duration::from_secs(30))),
            (" 300 ", Some(MAX_SERVER_WAIT)),
            ("301", Some(MAX_SERVER_WAIT)),
            ("18446744073709551615", Some(MAX_SERVER_WAIT)),
            ("99999999999999999999", Some(MAX_SERVER_WAIT)),
            ("-5", None),
            ("1.5", None),
            ("", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ] {
            assert_eq!(retry_after(&headers("retry-after", value)), expected, "{value:?}");
            assert_eq!(poll_duration(&headers(POLL_DURATION_HEADER, value)), expected, "{value:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_never_panics_on_answer_like_json(
            agents in r#"\{("(idle|busy|total)": ?-?[0-9]{1,22}(\.[0-9])?,? ?){0,3}\}|null|\[\]|"x""#,
            jobs in r#"\{("(scheduled|running|waiting|total)": ?-?[0-9]{1,22}(e9)?,? ?){0,4}\}|null|0"#,
            slug in r#"\{"slug": ?("[a-z\\u0-9]{0,6}"|null|1)\}|null|\{\}"#,
        ) {
            let body = format!(r#"{{"agents": {agents}, "jobs": {jobs}, "organization": {slug}}}"#);
            if let Ok(report) = decode(body.as_bytes()) {
                proptest::prop_assert!(!report.organization_slug.is_empty());
            }
        }
    }
}
