//! Running the external programs the hooks drive: docker, ssh-agent, ssh-add, bash,
//! the bootstrapper's commands and buildkite-agent.
//!
//! Every child gets exactly the job environment the hook computed (never the hook
//! process's own), its stdin from us or `/dev/null`, and its stdout sent to our stderr:
//! our stdout is the script the hook shim evaluates, and nothing but that script may
//! reach it. Secrets reach children only on stdin, never as arguments.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

use anyhow::Context;

/// Finds a program the way a shell does: a name with a `/` is taken as a path, any
/// other name is looked up in the job's `PATH`. Only executable files count.
pub fn find_program(name: &str, env: &HashMap<String, String>) -> Option<PathBuf> {
    let executable = |path: &Path| {
        path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    let search_path = env.get("PATH").map_or("/usr/local/bin:/usr/bin:/bin", String::as_str);
    search_path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| executable(candidate))
}

/// A command for `program` with the job environment, stdin from `/dev/null` and
/// stdout to our stderr.
pub fn command<I, S>(program: &Path, args: I, env: &HashMap<String, String>) -> Command
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

/// Runs a command to completion; its output goes to the job log.
pub fn run(command: &mut Command) -> anyhow::Result<ExitStatus> {
    let program = command.get_program().to_string_lossy().into_owned();
    command.status().with_context(|| format!("failed to run {program}"))
}

/// Runs a command with `input` on its stdin (how secrets reach children).
pub fn run_with_input(command: &mut Command, input: &[u8]) -> anyhow::Result<ExitStatus> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A child that exits without reading its input closes the pipe: that is its
        // answer, reported through its exit status, not a write error of ours.
        let _ = stdin.write_all(input);
    }
    child.wait().with_context(|| format!("failed to wait for {program}"))
}

/// Runs a command and captures its stdout and stderr instead of logging them.
pub fn run_captured(command: &mut Command) -> anyhow::Result<Output> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("failed to run {program}"))
}

/// Runs a command with `input` on stdin and its stdout captured, while its stderr goes
/// to the job log. The input is written from another thread so that a child that
/// writes before it has read everything cannot deadlock with us.
pub fn run_piped(command: &mut Command, input: Vec<u8>) -> anyhow::Result<(ExitStatus, Vec<u8>)> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {program}"))?;
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&input);
        }
    });
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout).with_context(|| format!("failed to read from {program}"))?;
    }
    let status = child.wait().with_context(|| format!("failed to wait for {program}"))?;
    let _ = writer.join();
    Ok((status, stdout))
}

/// An exit status in words, for messages.
pub fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
