//! `elastic-ci export-trace` against the fake Buildkite REST API, then `elastic-ci
//! simulate` on the trace it wrote: builds across pages, jobs of other queues, waiters,
//! unfinished jobs and builds older than `--since` left out, the token refused.

use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use elastic_ci_testkit::buildkite_rest::{FakeBuildkiteRest, RestBuild, RestJob};
use predicates::prelude::*;

const TOKEN: &str = "bkua_rest_api_token";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Three recent builds of two pipelines and one from ten days ago, one build a page.
fn organization() -> FakeBuildkiteRest {
    let api = FakeBuildkiteRest::start("acme", TOKEN);
    let t0 = SystemTime::now() - secs(2 * 3600);
    let at = |offset: u64| t0 + secs(offset);
    let waiter = RestJob {
        id: "waiter".to_owned(),
        kind: "waiter".to_owned(),
        agent_query_rules: Vec::new(),
        created_at: Some(t0),
        scheduled_at: None,
        runnable_at: None,
        started_at: None,
        finished_at: None,
    };
    let mut running =
        RestJob::finished("running", Some("default"), at(600), at(600), at(620), at(620));
    running.finished_at = None;
    api.add_build(RestBuild {
        pipeline: "app".to_owned(),
        number: 1,
        created_at: t0,
        jobs: vec![
            RestJob::finished("a", Some("default"), at(0), at(5), at(20), at(80)),
            RestJob::finished("gpu", Some("gpu"), at(0), at(0), at(30), at(90)),
            waiter,
        ],
    });
    api.add_build(RestBuild {
        pipeline: "app".to_owned(),
        number: 2,
        created_at: at(600),
        jobs: vec![RestJob::finished("b", None, at(600), at(610), at(700), at(1000)), running],
    });
    api.add_build(RestBuild {
        pipeline: "docs".to_owned(),
        number: 1,
        created_at: at(900),
        jobs: vec![RestJob::finished("c", Some("default"), at(900), at(900), at(905), at(965))],
    });
    let old = SystemTime::now() - secs(10 * 86_400);
    api.add_build(RestBuild {
        pipeline: "app".to_owned(),
        number: 0,
        created_at: old,
        jobs: vec![RestJob::finished("old", Some("default"), old, old, old, old + secs(60))],
    });
    api.set_page_size(1);
    api
}

fn export(api: &FakeBuildkiteRest, token: &str, extra: &[&str]) -> std::process::Output {
    Command::cargo_bin("elastic-ci")
        .unwrap()
        .env_clear()
        .env("BUILDKITE_API_TOKEN", token)
        .args(["export-trace", "--org", "acme", "--since", "7d", "--api-url", &api.api_url()])
        .args(extra)
        .output()
        .unwrap()
}

/// The trace's jobs: id, visible, ready, duration (seconds).
fn jobs(trace: &str) -> Vec<(String, f64, f64, f64)> {
    trace
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let job: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(job["queue"], "default", "{line}");
            (
                job["job_id"].as_str().unwrap().to_owned(),
                job["visible_at_s"].as_f64().unwrap(),
                job["ready_at_s"].as_f64().unwrap(),
                job["duration_s"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn exports_the_finished_jobs_of_a_queue_across_pages_and_simulates_them() {
    let api = organization();
    let output = export(&api, TOKEN, &["--queue", "default"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let trace = String::from_utf8(output.stdout).unwrap();
    assert!(trace.starts_with("# exported from organization acme since "), "{trace}");
    assert!(trace.lines().next().unwrap().ends_with(": 3 jobs"), "{trace}");
    assert_eq!(
        jobs(&trace),
        [
            ("a".to_owned(), 0.0, 5.0, 60.0),
            ("b".to_owned(), 600.0, 610.0, 300.0),
            ("c".to_owned(), 900.0, 900.0, 60.0),
        ]
    );
    // Three pages, one build each, every request with the token; the old build is
    // past created_from and never served.
    let requests = api.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests[0].target.starts_with("/v2/organizations/acme/builds?created_from="));
    assert!(requests[0].target.contains("per_page=100"), "{requests:?}");
    assert!(requests[1].target.ends_with("page=2"), "{requests:?}");
    assert!(requests.iter().all(|request| {
        request.status == 200
            && request.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))
    }));

    // The trace is the simulator's input as it is.
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("trace.jsonl");
    std::fs::write(&path, &trace).unwrap();
    Command::cargo_bin("elastic-ci")
        .unwrap()
        .env_remove("ELASTIC_CI_LOG")
        .arg("simulate")
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("3 jobs on queue \"default\""))
        .stdout(predicate::str::contains("jobs: 3 started, 0 unstarted"));

    // One pipeline's builds only; without --queue the other queue's job is kept.
    let docs = export(&api, TOKEN, &["--pipeline", "docs"]);
    let docs = String::from_utf8(docs.stdout).unwrap();
    assert_eq!(jobs(&docs), [("c".to_owned(), 0.0, 0.0, 60.0)]);
    assert!(
        api.requests()
            .last()
            .unwrap()
            .target
            .starts_with("/v2/organizations/acme/pipelines/docs/builds?")
    );
    let every_queue = export(&api, TOKEN, &[]);
    let every_queue = String::from_utf8(every_queue.stdout).unwrap();
    assert!(every_queue.contains("\"queue\":\"gpu\""), "{every_queue}");
}

#[test]
fn a_refused_token_fails_without_printing_it() {
    let api = organization();
    let output = export(&api, "bkua_not_the_token", &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the API token was refused (HTTP 401)"), "{stderr}");
    assert!(stderr.contains("/v2/organizations/acme/builds"), "{stderr}");
    assert!(!stderr.contains("bkua_not_the_token"), "{stderr}");
    assert_eq!(output.stdout, b"");

    let unknown = Command::cargo_bin("elastic-ci")
        .unwrap()
        .env_clear()
        .env("BUILDKITE_API_TOKEN", TOKEN)
        .args(["export-trace", "--org", "nobody", "--since", "1d", "--api-url", &api.api_url()])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("HTTP 404"));
}
