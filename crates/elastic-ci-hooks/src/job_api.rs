//! The job's environment changed through the agent's job API instead of a shell shim.
//!
//! The agent (3.47 and later) runs an executable found in its hooks directory as the
//! hook itself, without a shell around it; such a hook changes the job's environment
//! with `buildkite-agent env set` and `env unset` (3.115.2 and later). On Windows the
//! image installs this binary as `environment.exe`, `pre-command.exe` and
//! `pre-exit.exe`, so no PowerShell or batch shim evaluates anything: the values go to
//! `env set` as JSON on its stdin, never as arguments. The `environment` hook also
//! reads the stack's `cfn-env` itself (`<install dir>\..\cfn-env`), which the Linux
//! shim sources.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use elastic_ci_core::boot::cfn_env::{self, SetMode};
use elastic_ci_core::hooks::{HookScript, JobApiCall};

use crate::config::HooksConfig;
use crate::job::Job;
use crate::process;

/// The hook names an executable copy of this binary may be installed under.
pub(crate) const HOOK_NAMES: [&str; 3] = ["environment", "pre-command", "pre-exit"];

/// Sends the hook's changes to the agent, in order.
pub(crate) fn apply(
    script: &HookScript,
    env: &HashMap<String, String>,
    limit: Duration,
) -> anyhow::Result<()> {
    let calls = script.job_api_calls();
    if calls.is_empty() {
        return Ok(());
    }
    let agent = process::find_program("buildkite-agent", env).context(
        "buildkite-agent is not on the job's PATH: executable hooks need agent 3.115.2 or later for its job API",
    )?;
    for call in calls {
        match call {
            JobApiCall::Set(values) => {
                let input = JobApiCall::set_input(&values).map_err(|name| {
                    anyhow!("the value of {name} is too long for the agent's job API (64 KiB a variable)")
                })?;
                let args = ["env", "set", "--input-format=json", "--output-format=quiet", "-"];
                let mut command = process::command(&agent, args, env);
                let status = process::run_with_input(&mut command, input.as_bytes(), limit)?;
                ensure!(
                    status.success(),
                    "buildkite-agent env set failed ({})",
                    process::describe(status)
                );
            }
            JobApiCall::Unset(names) => {
                let args = ["env", "unset"].into_iter().map(str::to_owned).chain(names);
                let mut command = process::command(&agent, args, env);
                let status = process::run(&mut command, limit)?;
                ensure!(
                    status.success(),
                    "buildkite-agent env unset failed ({})",
                    process::describe(status)
                );
            }
        }
    }
    Ok(())
}

/// The stack's settings for the job, from the `cfn-env` of the instance this binary is
/// installed in (`<dir>/../cfn-env`), as the Linux shim's `source` applies them: a
/// missing file changes nothing.
pub(crate) fn load_cfn_env(job: &mut Job<'_>, hooks_binary: &Path) -> anyhow::Result<()> {
    let Some(path) = hooks_binary.parent().and_then(Path::parent).map(|dir| dir.join("cfn-env"))
    else {
        return Ok(());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(error).with_context(|| format!("failed to read {}", path.display()));
        }
    };
    let entries = cfn_env::parse(&text).with_context(|| format!("invalid {}", path.display()))?;
    for entry in entries {
        if entry.mode == SetMode::UnlessPresent && job.env.contains_key(&entry.name) {
            job.log.warning(&format!("{} already set, NOT overriding!", entry.name));
            continue;
        }
        job.export(&entry.name, &entry.value)?;
    }
    // The hook's settings come from the stack's values now in the environment.
    job.config = HooksConfig::from_env_map(&job.env, hooks_binary);
    Ok(())
}
