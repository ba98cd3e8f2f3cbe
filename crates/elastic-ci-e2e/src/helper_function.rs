//! The template's helper functions (the inline Python code behind its custom
//! resources, which the emulator's CloudFormation skips) run against the emulator as
//! CloudFormation would run them: the event on stdin, never in an argument (it may
//! hold the agent token), and the response sent to a local server standing for the
//! pre-signed response URL.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, ensure};
use axum::Router;
use axum::body::Bytes;
use elastic_ci_testkit::http::TestServer;
use elastic_ci_testkit::moto::Moto;

/// What one run of a helper function sent and printed.
#[derive(Debug)]
pub struct HelperRun {
    /// The response it sent to CloudFormation (`Status`, `Reason`, `Data`, …).
    pub response: serde_json::Value,
    /// Its stdout and stderr.
    pub output: String,
}

/// Runs `function`'s inline code from the template `document` with `event` (its
/// `ResponseURL` is set here) in `dir`, with the emulator's credentials only.
pub fn run(
    moto: &Moto,
    python: &Path,
    document: &serde_yaml_ng::Value,
    function: &str,
    mut event: serde_json::Value,
    dir: &Path,
) -> anyhow::Result<HelperRun> {
    let code = document["Resources"][function]["Properties"]["Code"]["ZipFile"]
        .as_str()
        .with_context(|| format!("the template's {function} has no inline code"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    std::fs::write(dir.join("index.py"), code)
        .with_context(|| format!("failed to write {function}'s code"))?;

    let (sender, receiver) = mpsc::channel::<Bytes>();
    let sender = Arc::new(Mutex::new(sender));
    let server = TestServer::http(Router::new().fallback(move |body: Bytes| {
        let _ = sender.lock().map(|sender| sender.send(body));
        async { "" }
    }));
    event["ResponseURL"] = server.url("/response").into();

    let mut child = Command::new(python)
        .args([
            "-c",
            "import json, sys, types, index\n\
             index.handler(json.load(sys.stdin), types.SimpleNamespace(log_stream_name='elastic-ci'))\n",
        ])
        .current_dir(dir)
        .env_clear()
        .envs(moto.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(event.to_string().as_bytes()).context("failed to pass the event")?;
    }
    let finished =
        child.wait_with_output().with_context(|| format!("{function} did not finish"))?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&finished.stdout),
        String::from_utf8_lossy(&finished.stderr)
    );
    ensure!(finished.status.success(), "{function}'s code failed ({}): {output}", finished.status);
    let response = receiver
        .recv_timeout(Duration::from_secs(10))
        .with_context(|| format!("{function}'s code sent no response: {output}"))?;
    let response = serde_json::from_slice(&response)
        .with_context(|| format!("{function}'s response is not JSON"))?;
    Ok(HelperRun { response, output })
}
