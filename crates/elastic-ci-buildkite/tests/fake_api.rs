//! The HTTP client against the fake Buildkite API of the testkit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use elastic_ci_buildkite::{
    AgentMetrics, AgentMetricsClient, ClientSettings, MetricsError, USER_AGENT,
};
use elastic_ci_core::secret::Secret;
use elastic_ci_testkit::buildkite::{FakeBuildkite, Fault, QueueMetrics, Reply};
use url::Url;

const TOKEN: &str = "agent-token-1234";

fn client(fake: &FakeBuildkite) -> AgentMetricsClient {
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
    };
    AgentMetricsClient::new(&Url::parse(&fake.endpoint()).unwrap(), &settings).unwrap()
}

fn token() -> Secret {
    Secret::new(TOKEN)
}

#[tokio::test]
async fn reads_a_queue_with_the_token_and_user_agent() {
    let fake = FakeBuildkite::start(TOKEN);
    fake.set_queue("builders", QueueMetrics::jobs(3, 1, 2).with_agents(0, 1));
    fake.state().poll_duration_secs = Some(15);
    fake.state().cluster = Some("blue".to_owned());

    let report = client(&fake).queue_metrics("builders", &token()).await.unwrap();
    assert_eq!(report.counts.scheduled_jobs, 3);
    assert_eq!(report.counts.running_jobs, 1);
    assert_eq!(report.counts.waiting_jobs, 2);
    assert_eq!(report.counts.busy_agents, 1);
    assert_eq!(report.counts.total_agents, 1);
    assert_eq!(report.total_jobs, 4);
    assert_eq!(report.organization_slug, "test-org");
    assert_eq!(report.cluster_name.as_deref(), Some("blue"));
    assert_eq!(report.poll_duration, Some(Duration::from_secs(15)));

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v3/metrics/queue");
    assert_eq!(requests[0].queue.as_deref(), Some("builders"));
    assert_eq!(requests[0].authorization.as_deref(), Some("Token agent-token-1234"));
    assert_eq!(requests[0].user_agent.as_deref(), Some(USER_AGENT));
}

#[tokio::test]
async fn a_refused_token_is_an_error_that_does_not_show_it() {
    let fake = FakeBuildkite::start("the-right-token");
    let error = client(&fake).queue_metrics("default", &token()).await.unwrap_err();
    assert!(error.is_unauthorized(), "{error}");
    let message = error.to_string();
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(message.contains("/v3/metrics/queue?name=default"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_errors() {
    let fake = FakeBuildkite::start(TOKEN);
    fake.fail_next(Fault::Status(500), 1);
    fake.fail_next(Fault::RateLimited { retry_after_secs: 30 }, 1);
    let client = client(&fake);

    let error = client.queue_metrics("default", &token()).await.unwrap_err();
    assert!(matches!(error, MetricsError::Status { status: 500, .. }), "{error}");
    assert!(error.to_string().contains("Something went wrong"), "{error}");

    let error = client.queue_metrics("default", &token()).await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert!(error.to_string().ends_with("rate limited (HTTP 429), retry after 30s"), "{error}");

    // The faults are used up: the next poll succeeds.
    client.queue_metrics("default", &token()).await.unwrap();
    let statuses: Vec<u16> = fake.requests().iter().map(|request| request.status).collect();
    assert_eq!(statuses, [500, 429, 200]);
}

#[tokio::test]
async fn bad_answers_are_errors_never_zeros() {
    let fake = FakeBuildkite::start(TOKEN);
    fake.set_queue("default", QueueMetrics::jobs(1, 0, 0));
    let client = client(&fake);
    for (fault, expected) in [
        (Fault::InvalidJson, "invalid answer: not the documented JSON"),
        (Fault::EmptyObject, "invalid answer: no \"jobs\" object"),
        (Fault::DropConnection, "connection closed"),
    ] {
        fake.fail_next(fault.clone(), 1);
        let error = client.queue_metrics("default", &token()).await.unwrap_err();
        assert!(error.to_string().contains(expected), "{fault:?}: {error}");
    }
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let fake = FakeBuildkite::start(TOKEN);
    fake.fail_next(Fault::Slow(Duration::from_secs(5)), 1);
    let error = client(&fake).queue_metrics("default", &token()).await.unwrap_err();
    assert!(
        matches!(&error, MetricsError::Transport { message, .. } if message.starts_with("timed out")),
        "{error}"
    );
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_is_served() {
    let fake = FakeBuildkite::start(TOKEN);
    fake.set_queue("default", QueueMetrics::jobs(2, 0, 0));
    fake.fail_next(Fault::Slow(Duration::from_millis(50)), 1);
    let report = client(&fake).queue_metrics("default", &token()).await.unwrap();
    assert_eq!(report.counts.scheduled_jobs, 2);
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error() {
    let endpoint = {
        let fake = FakeBuildkite::start(TOKEN);
        fake.endpoint()
    };
    let client =
        AgentMetricsClient::new(&Url::parse(&endpoint).unwrap(), &ClientSettings::standard())
            .unwrap();
    let error = client.queue_metrics("default", &token()).await.unwrap_err();
    assert!(
        matches!(&error, MetricsError::Transport { message, .. } if message.starts_with("could not connect")),
        "{error}"
    );
}

#[tokio::test]
async fn scripts_answer_one_reply_per_poll_and_repeat_the_last() {
    let fake = FakeBuildkite::start(TOKEN);
    fake.state().script_polls(
        "default",
        [
            Reply::Metrics(QueueMetrics::jobs(1, 0, 0)),
            Reply::Fault(Fault::Status(503)),
            Reply::Metrics(QueueMetrics::jobs(5, 0, 0)),
        ],
    );
    let client = client(&fake);
    let scheduled = |result: Result<elastic_ci_buildkite::QueueReport, MetricsError>| {
        result.map(|report| report.counts.scheduled_jobs).map_err(|error| error.to_string())
    };
    assert_eq!(scheduled(client.queue_metrics("default", &token()).await), Ok(1));
    assert!(
        scheduled(client.queue_metrics("default", &token()).await)
            .unwrap_err()
            .contains("HTTP 503")
    );
    assert_eq!(scheduled(client.queue_metrics("default", &token()).await), Ok(5));
    assert_eq!(scheduled(client.queue_metrics("default", &token()).await), Ok(5));
}

#[tokio::test]
async fn computed_queues_follow_the_fake_clock() {
    let fake = FakeBuildkite::start(TOKEN);
    let seconds = Arc::new(AtomicU64::new(0));
    let clock = seconds.clone();
    fake.state().set_clock(move || Duration::from_secs(clock.load(Ordering::SeqCst)));
    fake.state().compute_queue("default", |now| {
        let at = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
        QueueMetrics::jobs(at / 60, 0, 0)
    });
    let client = client(&fake);
    assert_eq!(client.queue_metrics("default", &token()).await.unwrap().counts.scheduled_jobs, 0);
    seconds.store(600, Ordering::SeqCst);
    assert_eq!(client.queue_metrics("default", &token()).await.unwrap().counts.scheduled_jobs, 10);
    assert_eq!(fake.requests()[1].at, Duration::from_secs(600));
}

#[tokio::test]
async fn the_all_queues_route_sums_every_queue() {
    let fake = FakeBuildkite::start(TOKEN);
    fake.set_queue("a", QueueMetrics::jobs(1, 2, 0).with_agents(1, 2));
    fake.set_queue("b", QueueMetrics::jobs(3, 0, 1));
    let http = reqwest::Client::new();
    let bytes = http
        .get(format!("{}/metrics", fake.endpoint()))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["jobs"]["scheduled"], 4);
    assert_eq!(body["jobs"]["queues"]["b"]["waiting"], 1);
    assert_eq!(body["agents"]["total"], 3);
    assert_eq!(body["organization"]["slug"], "test-org");
}
