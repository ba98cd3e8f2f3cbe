//! The scaler: `elastic-ci-scaler run` as a child process with the environment the
//! template gives the scaler function, against the fake Buildkite API and moto. Its
//! JSON log goes to a file, and each poll line is read as it comes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use super::World;

/// The target of the scaler's one line per poll (`elastic_ci_scaler::POLL_LOG_TARGET`).
const POLL_TARGET: &str = "elastic_ci_scaler::poll";

/// One poll, as the scaler logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalerPoll {
    pub(crate) at: Duration,
    pub(crate) desired: Option<u32>,
    /// The capacity it set, when it set one.
    pub(crate) set_to: Option<u32>,
    pub(crate) reason: String,
    pub(crate) error: Option<String>,
}

/// A running scaler.
pub(crate) struct Scaler {
    child: Child,
    reader: Option<JoinHandle<()>>,
    polls: Arc<Mutex<Vec<ScalerPoll>>>,
}

impl Scaler {
    pub(crate) fn start(
        world: &Arc<World>,
        function_env: &BTreeMap<String, String>,
        log_path: &Path,
    ) -> anyhow::Result<Scaler> {
        let mut child = Command::new(&world.binaries.scaler)
            .arg("run")
            .env_clear()
            .envs(function_env)
            .envs(world.aws_env())
            .env("ELASTIC_CI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {}", world.binaries.scaler.display()))?;
        let stderr = child.stderr.take().context("the scaler's stderr is not piped")?;
        let mut log = std::fs::File::create(log_path)
            .with_context(|| format!("failed to create {}", log_path.display()))?;
        let polls = Arc::new(Mutex::new(Vec::new()));
        let reader_polls = polls.clone();
        let reader_world = world.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                let Some(poll) = parse_poll(&line, reader_world.now()) else { continue };
                if let (Some(to), Some(from)) = (poll.set_to, poll.desired) {
                    reader_world
                        .say(format!("scaler: desired capacity {from} -> {to}: {}", poll.reason));
                }
                if let Some(error) = &poll.error {
                    reader_world.say(format!("scaler: poll failed: {error}"));
                }
                if let Ok(mut polls) = reader_polls.lock() {
                    polls.push(poll);
                }
            }
        });
        Ok(Scaler { child, reader: Some(reader), polls })
    }

    /// Whether the scaler exited by itself (a configuration it refused, a crash).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the scaler with SIGTERM, as Lambda's shutdown would, and returns its polls.
    pub(crate) fn stop(mut self) -> Vec<ScalerPoll> {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.polls.lock().map(|polls| polls.clone()).unwrap_or_default()
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A poll line of the scaler's JSON log, stamped with the demo's clock.
pub(crate) fn parse_poll(line: &str, at: Duration) -> Option<ScalerPoll> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    if json["target"] != POLL_TARGET {
        return None;
    }
    let number = |key: &str| json[key].as_u64().and_then(|n| u32::try_from(n).ok());
    Some(ScalerPoll {
        at,
        desired: number("desired_capacity"),
        set_to: if json["applied"] == "Set" { number("target_capacity") } else { None },
        reason: json["reason"].as_str().unwrap_or_default().to_owned(),
        error: json["error"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_poll_lines_only() {
        let line = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"INFO","message":"poll","queue":"default","desired_capacity":0,"target_capacity":3,"applied":"Set","reason":"5 scheduled","target":"elastic_ci_scaler::poll"}"#;
        let poll = parse_poll(line, Duration::from_secs(4)).unwrap();
        assert_eq!((poll.desired, poll.set_to), (Some(0), Some(3)));
        assert_eq!(poll.reason, "5 scheduled");
        let unchanged = line.replace(r#""applied":"Set""#, r#""applied":"Nothing""#);
        assert_eq!(parse_poll(&unchanged, Duration::ZERO).unwrap().set_to, None);
        assert_eq!(
            parse_poll(r#"{"target":"elastic_ci_scaler","message":"stopped"}"#, Duration::ZERO),
            None
        );
        assert_eq!(parse_poll("not json", Duration::ZERO), None);
    }
}
