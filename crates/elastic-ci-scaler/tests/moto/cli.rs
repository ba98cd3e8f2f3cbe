//! The binary against moto and the fake Buildkite API: the path the local demo and
//! operators use (`run`, `run --once`, `--dry-run`, stopping on a signal), and Lambda
//! invocations (the schedule's, and Buildkite's job events) through a fake Lambda
//! runtime API.

#[path = "../support/lambda_api.rs"]
mod lambda_api;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use elastic_ci_testkit::buildkite::QueueMetrics;
use elastic_ci_testkit::moto::moto;

use crate::cli::lambda_api::{FakeLambdaApi, REQUEST_ID};
use crate::{Stack, TOKEN};

fn scaler(stack: &Stack, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::cargo_bin("elastic-ci-scaler").unwrap();
    command.env_clear().env("PATH", "/usr/bin:/bin").envs(stack.moto.env());
    command.envs(stack.env(vars));
    command
}

fn stderr_lines(output: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn poll_lines(output: &[u8]) -> Vec<serde_json::Value> {
    stderr_lines(output)
        .into_iter()
        .filter(|line| line["target"] == elastic_ci_scaler::POLL_LOG_TARGET)
        .collect()
}

#[tokio::test]
async fn run_once_scales_and_logs_json() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    stack.set_jobs(4, 1);
    let output = scaler(&stack, &[]).args(["run", "--once"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty());
    let lines = poll_lines(&output.stderr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["target_capacity"], 5);
    assert_eq!(lines[0]["applied"], "Set");
    assert!(!String::from_utf8_lossy(&output.stderr).contains(TOKEN));
    assert_eq!(stack.desired().await, 5);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 1).await;
    stack.set_jobs(7, 0);
    let output = scaler(&stack, &[("CLOUDWATCH_METRICS", "true")])
        .args(["run", "--once", "--dry-run"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = poll_lines(&output.stderr);
    assert_eq!(lines[0]["applied"], "DryRun");
    assert_eq!(lines[0]["target_capacity"], 7);
    assert_eq!(stack.desired().await, 1);
    let metrics =
        stack.moto.cloudwatch().list_metrics().namespace("Buildkite").send().await.unwrap();
    assert!(
        metrics.metrics().iter().all(|metric| {
            metric
                .dimensions()
                .iter()
                .all(|dimension| dimension.value() != Some(stack.queue.as_str()))
        }),
        "a dry run publishes nothing"
    );
}

#[tokio::test]
async fn a_failed_poll_exits_non_zero_with_once() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 2).await;
    stack.buildkite.fail_next(elastic_ci_testkit::buildkite::Fault::Status(500), 1);
    let output = scaler(&stack, &[]).args(["run", "--once"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().last().unwrap().starts_with("error: the poll failed: GET "), "{stderr}");
    assert_eq!(stack.desired().await, 2);
}

fn wait_for(child: &mut Child, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the scaler exited with {status} while waiting for {what}");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn run_polls_until_sigterm_and_exits_cleanly() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    stack.set_jobs(1, 0);
    let mut child = scaler(&stack, &[("LAMBDA_INTERVAL", "200ms")])
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&mut child, "two polls", || stack.buildkite.requests().len() >= 2);
    stack.buildkite.set_queue(&stack.queue, QueueMetrics::jobs(3, 0, 0));
    let seen = stack.buildkite.requests().len();
    wait_for(&mut child, "a poll with three jobs", || stack.buildkite.requests().len() > seen + 1);

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = stderr_lines(&output.stderr);
    assert!(lines.iter().any(|line| line["signal"] == "SIGTERM"), "{lines:?}");
    assert_eq!(stack.desired().await, 3);
}

#[tokio::test]
async fn one_lambda_invocation_polls_and_reports_a_summary() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    stack.set_jobs(2, 0);
    let api = FakeLambdaApi::start();
    let (kind, body) = api.invoke(&mut scaler(&stack, &[("LAMBDA_TIMEOUT", "1s")]));
    assert_eq!(kind, format!("response {REQUEST_ID}"), "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["polls"], 1);
    assert_eq!(summary["capacity_changes"], 1);
    assert_eq!(summary["desired_capacity"], 2);
    assert_eq!(stack.desired().await, 2);
}

#[tokio::test]
async fn inside_lambda_the_metrics_are_embedded_log_lines_not_api_calls() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    stack.buildkite.set_queue(&stack.queue, QueueMetrics::jobs(3, 2, 1).with_agents(1, 2));
    let api = FakeLambdaApi::start();
    let (kind, body, stdout) = api.invoke_with_stdout(&mut scaler(
        &stack,
        &[("LAMBDA_TIMEOUT", "1s"), ("CLOUDWATCH_METRICS", "true")],
    ));
    assert_eq!(kind, format!("response {REQUEST_ID}"), "{body}");
    let documents: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line.get("_aws").is_some())
        .collect();
    assert_eq!(documents.len(), 1, "{stdout}");
    let document = &documents[0];
    assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Buildkite");
    assert_eq!(
        document["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Org", "Queue"]])
    );
    assert_eq!(document["Queue"], stack.queue);
    assert_eq!(document["ScheduledJobsCount"], 3.0);
    assert_eq!(document["RunningJobsCount"], 2.0);
    assert_eq!(document["TotalAgentCount"], 3.0);
    assert!(!stdout.contains(TOKEN));

    // Nothing went through PutMetricData.
    let listed = stack
        .moto
        .cloudwatch()
        .list_metrics()
        .namespace("Buildkite")
        .dimensions(
            aws_sdk_cloudwatch::types::DimensionFilter::builder()
                .name("Queue")
                .value(&stack.queue)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(listed.metrics().is_empty(), "{:?}", listed.metrics());
}

/// A synthetic burst of Buildkite "Job Scheduled" events, as the partner event bus rule
/// delivers them: the first polls and scales out at once, the rest of the burst is
/// debounced, with no startup jitter and no polling loop.
#[tokio::test]
async fn a_burst_of_job_scheduled_events_scales_out_with_one_poll() {
    let Some(moto) = moto() else { return };
    let stack = Stack::new(moto, 0, 10, 0).await;
    stack.set_jobs(3, 0);
    let event = |id: &str| {
        serde_json::json!({
            "version": "0",
            "id": id,
            "detail-type": "Job Scheduled",
            "source": "aws.partner/buildkite.com/acme/0106-187c-12cd4fe",
            "account": "123456789012",
            "time": "2026-01-05T18:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "version": 1,
                "job": {"uuid": id, "type": "script", "agent_query_rules": [format!("queue={}", stack.queue)]},
                "build": {"uuid": "b-1", "number": 1},
                "pipeline": {"uuid": "p-1", "slug": "app"},
                "organization": {"uuid": "o-1", "slug": "acme"}
            }
        })
        .to_string()
    };
    let api = FakeLambdaApi::with_events(vec![event("e-1"), event("e-2"), event("e-3")]);
    // A startup jitter and a long interval: an event invocation waits for neither.
    let started = Instant::now();
    let reports = api.invoke_all(
        &mut scaler(
            &stack,
            &[
                ("LAMBDA_STARTUP_JITTER_MAX", "30s"),
                ("LAMBDA_INTERVAL", "60s"),
                ("LAMBDA_TIMEOUT", "50s"),
            ],
        ),
        3,
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let summaries: Vec<serde_json::Value> = reports
        .iter()
        .map(|(kind, body)| {
            assert!(kind.starts_with(&format!("response {REQUEST_ID}")), "{kind}: {body}");
            serde_json::from_str(body).unwrap()
        })
        .collect();
    assert_eq!(summaries[0]["polls"], 1);
    assert_eq!(summaries[0]["capacity_changes"], 1);
    for summary in &summaries[1..] {
        assert_eq!(
            (&summary["polls"], &summary["debounced"]),
            (&serde_json::json!(0), &serde_json::json!(true))
        );
    }
    assert_eq!(stack.buildkite.requests().len(), 1, "one metrics request for three events");
    assert_eq!(stack.desired().await, 3);
}
