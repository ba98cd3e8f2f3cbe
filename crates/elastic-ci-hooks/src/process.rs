//! Running the external programs the hooks drive: docker, ssh-agent, ssh-add, bash,
//! the bootstrapper's commands and buildkite-agent.
//!
//! Every child gets exactly the job environment the hook computed (never the hook
//! process's own), its stdin from us or `/dev/null`, and its stdout sent to our stderr:
//! our stdout is the script the hook shim evaluates, and nothing but that script may
//! reach it. Secrets reach children only on stdin, never as arguments.
//!
//! Every child has a time limit: it runs in a process group of its own, and a watchdog
//! thread kills that group when the limit passes (a hung `dockerd` would otherwise hang
//! `docker login` or `docker image prune`, and the job with it), so the call fails
//! naming the command and the limit.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

use crate::platform;

/// Finds a program the way a shell does: a name with a path separator is taken as a
/// path, any other name is looked up in the job's `PATH` (`:`-separated on Linux,
/// `;` on Windows, where `NAME.exe` is tried first). Only executable files count.
pub(crate) fn find_program(name: &str, env: &HashMap<String, String>) -> Option<PathBuf> {
    let executable = |path: &Path| is_executable(path);
    if name.contains('/') || name.contains(std::path::MAIN_SEPARATOR) {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    let search_path = env.get("PATH").map_or("/usr/local/bin:/usr/bin:/bin", String::as_str);
    let suffix = std::env::consts::EXE_SUFFIX;
    std::env::split_paths(search_path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .flat_map(|dir| {
            let with_suffix = (!suffix.is_empty()).then(|| dir.join(format!("{name}{suffix}")));
            with_suffix.into_iter().chain([dir.join(name)])
        })
        .find(|candidate| executable(candidate))
}

/// Whether `path` is an executable file.
pub(crate) fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|meta| platform::is_executable(&meta))
}

/// A command for `program` with the job environment, stdin from `/dev/null` and
/// stdout to our stderr.
pub(crate) fn command<I, S>(program: &Path, args: I, env: &HashMap<String, String>) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    command
}

/// Spawns `command` in a process group of its own, runs `finish` on the child, and
/// kills the group if `finish` has not returned within `limit`.
fn supervised<T>(
    command: &mut Command,
    limit: Duration,
    finish: impl FnOnce(&mut Child) -> std::io::Result<T>,
) -> anyhow::Result<T> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child =
        platform::spawn_grouped(command).with_context(|| format!("failed to run {program}"))?;
    let pgid = child.id();
    let (done, finished) = mpsc::channel::<()>();
    let expired = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let expired = expired.clone();
        std::thread::spawn(move || {
            if finished.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
                expired.store(true, Ordering::SeqCst);
                // The group may be gone already; the wait below ends either way.
                platform::kill_group(pgid);
            }
        })
    };
    let result = finish(&mut child);
    let _ = done.send(());
    let _ = watchdog.join();
    if expired.load(Ordering::SeqCst) {
        let _ = child.wait();
        anyhow::bail!("{program} did not finish within {limit:?} and was killed");
    }
    result.with_context(|| format!("failed to wait for {program}"))
}

/// Runs a command to completion within `limit`; its output goes to the job log.
pub(crate) fn run(command: &mut Command, limit: Duration) -> anyhow::Result<ExitStatus> {
    supervised(command, limit, Child::wait)
}

/// Runs a command with `input` on its stdin (how secrets reach children), within
/// `limit`.
pub(crate) fn run_with_input(
    command: &mut Command,
    input: &[u8],
    limit: Duration,
) -> anyhow::Result<ExitStatus> {
    supervised(command.stdin(Stdio::piped()), limit, |child| {
        if let Some(mut stdin) = child.stdin.take() {
            // A child that exits without reading its input closes the pipe: that is
            // its answer, reported through its exit status, not a write error of ours.
            let _ = stdin.write_all(input);
        }
        child.wait()
    })
}

/// Runs a command within `limit` and captures its stdout and stderr instead of
/// logging them.
pub(crate) fn run_captured(command: &mut Command, limit: Duration) -> anyhow::Result<Output> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    supervised(command, limit, |child| {
        let mut output =
            Output { status: ExitStatus::default(), stdout: Vec::new(), stderr: Vec::new() };
        // stderr is read on another thread so that neither pipe can fill up and block
        // the child while we wait on the other.
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut buffer = Vec::new();
            if let Some(mut pipe) = stderr {
                let _ = pipe.read_to_end(&mut buffer);
            }
            buffer
        });
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_end(&mut output.stdout)?;
        }
        output.stderr = reader.join().unwrap_or_default();
        output.status = child.wait()?;
        Ok(output)
    })
}

/// Runs a command with `input` on stdin and its stdout captured, while its stderr goes
/// to the job log, within `limit`. The input is written from another thread so that a
/// child that writes before it has read everything cannot deadlock with us.
pub(crate) fn run_piped(
    command: &mut Command,
    input: Vec<u8>,
    limit: Duration,
) -> anyhow::Result<(ExitStatus, Vec<u8>)> {
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    supervised(command, limit, |child| {
        let mut stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(&input);
            }
        });
        let mut stdout = Vec::new();
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_end(&mut stdout)?;
        }
        let status = child.wait()?;
        let _ = writer.join();
        Ok((status, stdout))
    })
}

/// An exit status in words, for messages.
pub(crate) fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A command that never ends, and the children that hold its pipes, are killed at
    /// the limit, whichever way it was run.
    /// See: child processes had no timeouts, so a hung dockerd hung the job.
    #[test]
    fn a_command_that_never_ends_is_killed_at_the_limit() {
        let limit = Duration::from_millis(300);
        let hang = || {
            let mut command = Command::new("bash");
            command.args(["-c", "sleep 1000 & while :; do sleep 1; done"]);
            command
        };
        let expected = "bash did not finish within 300ms and was killed";
        assert_eq!(run_captured(&mut hang(), limit).unwrap_err().to_string(), expected);
        assert_eq!(run_with_input(&mut hang(), b"x", limit).unwrap_err().to_string(), expected);
        assert_eq!(run_piped(&mut hang(), vec![1], limit).unwrap_err().to_string(), expected);
        let mut quiet = hang();
        quiet.stdout(Stdio::null());
        assert_eq!(run(&mut quiet, limit).unwrap_err().to_string(), expected);
        // A command that ends in time is not affected.
        let output = run_captured(Command::new("echo").arg("hi"), limit).unwrap();
        assert_eq!(output.stdout, b"hi\n");
    }

    #[test]
    fn finds_programs_on_the_job_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let not_executable = dir.path().join("data");
        std::fs::write(&not_executable, "").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env: HashMap<String, String> =
            [("PATH".to_owned(), format!("/nonexistent:{}", dir.path().display()))].into();
        assert_eq!(find_program("tool", &env), Some(tool.clone()));
        assert_eq!(find_program("data", &env), None);
        assert_eq!(find_program(tool.to_str().unwrap(), &HashMap::new()), Some(tool));
        assert_eq!(
            find_program("tool", &HashMap::from([("PATH".into(), "/nonexistent".into())])),
            None
        );
    }
}
