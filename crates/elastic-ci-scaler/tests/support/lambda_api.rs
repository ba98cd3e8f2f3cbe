//! A fake AWS Lambda runtime API: hands out invocations (one scheduled event, or the
//! events a test gives, in order) and records what the function reports for each.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use elastic_ci_testkit::http::TestServer;

pub(crate) const REQUEST_ID: &str = "0f3a7c1e-request";

/// The event EventBridge's schedule sends.
pub(crate) const SCHEDULED_EVENT: &str =
    r#"{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}"#;

/// What the function posted: (route kind, body).
pub(crate) type Reports = Arc<Mutex<Vec<(String, String)>>>;

pub(crate) struct FakeLambdaApi {
    pub(crate) server: TestServer,
    pub(crate) reports: Reports,
}

impl FakeLambdaApi {
    pub(crate) fn start() -> FakeLambdaApi {
        FakeLambdaApi::with_events(vec![SCHEDULED_EVENT.to_owned()])
    }

    /// Hands out `events` one invocation each, the first as [`REQUEST_ID`], the next as
    /// `REQUEST_ID-1`, `REQUEST_ID-2`, …
    pub(crate) fn with_events(events: Vec<String>) -> FakeLambdaApi {
        let reports: Reports = Arc::default();
        let events = Arc::new(events);
        let handed_out = Arc::new(AtomicUsize::new(0));
        let record = |kind: &'static str, reports: Reports| {
            move |Path(id): Path<String>, body: String| {
                let reports = reports.clone();
                async move {
                    reports.lock().unwrap().push((format!("{kind} {id}"), body));
                    axum::http::StatusCode::ACCEPTED
                }
            }
        };
        let init_reports = reports.clone();
        let router = Router::new()
            .route(
                "/2018-06-01/runtime/invocation/next",
                get(move || {
                    let handed_out = handed_out.clone();
                    let events = events.clone();
                    async move {
                        let index = handed_out.fetch_add(1, Ordering::SeqCst);
                        let Some(event) = events.get(index).cloned() else {
                            // No more invocations: later polls wait until the test ends.
                            tokio::time::sleep(Duration::from_secs(600)).await;
                            return (HeaderMap::new(), String::new());
                        };
                        let request_id = if index == 0 {
                            REQUEST_ID.to_owned()
                        } else {
                            format!("{REQUEST_ID}-{index}")
                        };
                        let deadline =
                            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap()
                                + Duration::from_secs(60);
                        let mut headers = HeaderMap::new();
                        headers.insert(
                            "Lambda-Runtime-Aws-Request-Id",
                            HeaderValue::from_str(&request_id).unwrap(),
                        );
                        headers.insert(
                            "Lambda-Runtime-Deadline-Ms",
                            HeaderValue::from(u64::try_from(deadline.as_millis()).unwrap()),
                        );
                        headers.insert(
                            "Lambda-Runtime-Invoked-Function-Arn",
                            HeaderValue::from_static(
                                "arn:aws:lambda:us-east-1:123456789012:function:scaler",
                            ),
                        );
                        (headers, event)
                    }
                }),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(record("response", reports.clone())),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(record("error", reports.clone())),
            )
            .route(
                "/2018-06-01/runtime/init/error",
                post(move |body: String| {
                    let reports = init_reports.clone();
                    async move {
                        reports.lock().unwrap().push(("init-error".to_owned(), body));
                        axum::http::StatusCode::ACCEPTED
                    }
                }),
            );
        FakeLambdaApi { server: TestServer::http(router), reports }
    }

    /// The variables Lambda sets for a function, pointing at this API.
    pub(crate) fn function_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.server.addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "scaler".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Runs `command` as the function until it reports on the one invocation, then
    /// stops it; returns the report's route and body.
    pub(crate) fn invoke(&self, command: &mut std::process::Command) -> (String, String) {
        let (kind, body, _) = self.invoke_with_stdout(command);
        (kind, body)
    }

    /// [`FakeLambdaApi::invoke`], also returning what the function wrote on stdout
    /// (which Lambda sends to CloudWatch Logs).
    pub(crate) fn invoke_with_stdout(
        &self,
        command: &mut std::process::Command,
    ) -> (String, String, String) {
        let stdout = tempfile::tempfile().unwrap();
        let mut child = command
            .envs(self.function_env())
            .stdout(stdout.try_clone().unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (kind, body) = self.wait_for_report();
        let _ = child.kill();
        let _ = child.wait();
        let mut text = String::new();
        let mut stdout = stdout;
        std::io::Seek::rewind(&mut stdout).unwrap();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        (kind, body, text)
    }

    /// Runs `command` as the function until it reported on `n` invocations, then stops
    /// it; returns the reports in the order they came.
    #[allow(dead_code, reason = "not every test binary that includes this module uses it")]
    pub(crate) fn invoke_all(
        &self,
        command: &mut std::process::Command,
        n: usize,
    ) -> Vec<(String, String)> {
        let mut child = command
            .envs(self.function_env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let reports = self.wait_for_reports(n);
        let _ = child.kill();
        let _ = child.wait();
        reports
    }

    /// Waits (up to a minute) for the function's report on the invocation.
    fn wait_for_report(&self) -> (String, String) {
        self.wait_for_reports(1).remove(0)
    }

    /// Waits (up to a minute) for `n` reports.
    fn wait_for_reports(&self, n: usize) -> Vec<(String, String)> {
        let started = std::time::Instant::now();
        loop {
            let reports = self.reports.lock().unwrap().clone();
            if reports.len() >= n {
                return reports;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no report from the function");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
