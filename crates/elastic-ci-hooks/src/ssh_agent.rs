//! The per-job ssh-agent that holds the secrets bucket's SSH keys.
//!
//! A job that already has an agent (`SSH_AUTH_SOCK` and `SSH_AGENT_PID` both set)
//! gets its keys added there. Otherwise one is started with `ssh-agent -s`, and
//! `ELASTIC_CI_SSH_AGENT_PID` records that this hook started it, so `pre-exit` stops
//! that agent and never one the job brought.

use std::collections::HashMap;

use anyhow::{Context, bail};
use elastic_ci_core::hooks::parse_ssh_agent_output;

use crate::job::Job;
use crate::process;

/// Records the agent this hook started.
pub(crate) const STARTED_PID_VAR: &str = "ELASTIC_CI_SSH_AGENT_PID";

/// An agent keys can be added to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshAgent {
    pub(crate) auth_sock: String,
    pub(crate) pid: u32,
}

/// The job's agent, or a new one (exported to the job).
pub(crate) fn ensure(job: &mut Job<'_>) -> anyhow::Result<SshAgent> {
    let (sock, pid) = (job.var("SSH_AUTH_SOCK"), job.var("SSH_AGENT_PID"));
    if !sock.is_empty() && !pid.is_empty() {
        let pid = pid
            .parse()
            .with_context(|| format!("invalid SSH_AGENT_PID {pid:?}: expected a process id"))?;
        return Ok(SshAgent { auth_sock: sock.to_owned(), pid });
    }
    let program = process::find_program("ssh-agent", &job.env).context(
        "ssh-agent is not installed, so the SSH keys from the secrets bucket cannot be loaded",
    )?;
    let output = process::run_captured(
        &mut process::command(&program, ["-s"], &job.env),
        job.config.limits.quick,
    )?;
    if !output.status.success() {
        bail!("ssh-agent -s failed ({})", process::describe(output.status));
    }
    let address = parse_ssh_agent_output(&String::from_utf8_lossy(&output.stdout))?;
    job.created.ssh_agent_pid = Some(address.pid);
    job.log.line(&format!("Started ephemeral ssh-agent (pid {})", address.pid));
    job.export("SSH_AUTH_SOCK", &address.auth_sock)?;
    job.export("SSH_AGENT_PID", &address.pid.to_string())?;
    job.export(STARTED_PID_VAR, &address.pid.to_string())?;
    Ok(SshAgent { auth_sock: address.auth_sock, pid: address.pid })
}

/// Adds one private key, given on stdin to `ssh-add -`. `ssh-add` gets only the
/// agent's address and `SSH_ASKPASS=/bin/false`, so a passphrase-protected key fails
/// instead of waiting for input.
pub(crate) fn add_key(
    job: &Job<'_>,
    agent: &SshAgent,
    key: &[u8],
    name: &str,
) -> anyhow::Result<()> {
    let program = process::find_program("ssh-add", &job.env).context(
        "ssh-add is not installed, so the SSH keys from the secrets bucket cannot be loaded",
    )?;
    job.log.line(&format!(
        "Loading {name} ({} bytes) into ssh-agent (pid {})",
        key.len(),
        agent.pid
    ));
    let env: HashMap<String, String> = [
        ("SSH_AUTH_SOCK".to_owned(), agent.auth_sock.clone()),
        ("SSH_AGENT_PID".to_owned(), agent.pid.to_string()),
        ("SSH_ASKPASS".to_owned(), "/bin/false".to_owned()),
    ]
    .into();
    let mut input = key.to_vec();
    input.push(b'\n');
    let status = process::run_with_input(
        &mut process::command(&program, ["-"], &env),
        &input,
        job.config.limits.quick,
    )?;
    if !status.success() {
        bail!(
            "ssh-add refused {name} ({}): is it a private key without a passphrase?",
            process::describe(status)
        );
    }
    Ok(())
}

/// Whether `pid` is a running ssh-agent (the job can change the variable that names
/// it; the hook must not signal anything else).
fn is_ssh_agent(pid: u32) -> bool {
    crate::platform::process_is(pid, "ssh-agent")
}

/// Stops an agent this hook started (SIGTERM; ssh-agent removes its socket on exit).
/// Returns whether one was running.
pub(crate) fn stop(pid: u32) -> bool {
    if pid == 0 || !is_ssh_agent(pid) {
        return false;
    }
    crate::platform::terminate(pid)
}
