//! The three agent hooks.

use std::path::Path;

use anyhow::{Context, bail};
use elastic_ci_core::hooks::{BuiltinPlugin, checkout_dirs, select_plugins};
use elastic_ci_core::secret::Secret;

use crate::config::retries;
use crate::disk::{self, DiskState};
use crate::job::{Job, JobFailure};
use crate::{docker, ecr, process, secrets, ssh_agent};

/// The program that runs fix-permissions as root, looked up on `PATH`.
const SUDO: &str = "sudo";

/// The `environment` hook: per-job Docker config, Docker and disk checks, the
/// built-in plugins (S3 secrets, ECR login) and the checkout permission fix.
pub async fn environment(job: &mut Job<'_>) -> anyhow::Result<()> {
    job.log.section(&format!(
        ":llama: Setting up elastic stack environment ({})",
        job.config.stack_version
    ));
    let dir = docker::create_config_dir(&job.config.tmp_dir)?;
    job.created.docker_config_dir = Some(dir.clone());
    let dir_text = dir.to_string_lossy().into_owned();
    job.export("BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY", &dir_text)?;
    job.export("DOCKER_CONFIG", &dir_text)?;
    if job.config.docker_experimental {
        docker::enable_experimental(&dir)?;
    }

    match docker::find(job) {
        Some(docker) => {
            job.log.line("Checking docker");
            let status = process::run(
                &mut process::command(&docker, ["ps"], &job.env),
                job.config.limits.quick,
            )?;
            if !status.success() {
                job.log.error("Docker isn't running!");
                show_docker_log(job);
                return Err(JobFailure { code: 1 }.into());
            }
        }
        None => job.log.warning(
            "docker is not installed (not on PATH): skipping the docker check and clean-up",
        ),
    }

    if let DiskState::Full { report } = disk::check(job)? {
        return Err(disk::fail(job, &report).into());
    }

    job.log.line("Configuring built-in plugins");
    let selection = select_plugins(&job.env);
    for (variable, value) in &selection.unrecognised {
        job.log.warning(&format!(
            "{variable}={value:?} is not one of true, false, 1, 0, on, off: treated as {}",
            if selection.plugins.iter().any(|(p, on)| p.flag() == *variable && *on) {
                "on"
            } else {
                "off"
            }
        ));
    }
    if let Some(list) = &selection.plugins_enabled {
        job.export("PLUGINS_ENABLED", list)?;
    }
    for (plugin, enabled) in selection.plugins.clone() {
        if enabled {
            job.export(plugin.flag(), "1")?;
            job.log.line(&format!("{} plugin enabled", plugin.label()));
        } else if job.env.contains_key(plugin.flag()) {
            job.export(plugin.flag(), "0")?;
        }
    }

    let secrets_bucket = job.var("BUILDKITE_SECRETS_BUCKET").to_owned();
    if !secrets_bucket.is_empty() && selection.is_enabled(BuiltinPlugin::Secrets) {
        let region = job.var("BUILDKITE_SECRETS_BUCKET_REGION").to_owned();
        let skip = match job.var("BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING") {
            "" => "false".to_owned(),
            value => value.to_owned(),
        };
        job.export("BUILDKITE_PLUGIN_S3_SECRETS_BUCKET", &secrets_bucket)?;
        job.export("BUILDKITE_PLUGIN_S3_SECRETS_REGION", &region)?;
        job.export("BUILDKITE_PLUGIN_S3_SECRETS_SKIP_SSH_KEY_NOT_FOUND_WARNING", &skip)?;
        secrets::load(job).await?;
    }

    if job.config.ecr_enabled_by_stack && selection.is_enabled(BuiltinPlugin::Ecr) {
        ecr::login(job).await?;
    }

    // Read again: the secrets' env files may have changed DOCKER_USERNS_REMAP, as they
    // could in the original, whose permission fix ran after them.
    if job.env.get("DOCKER_USERNS_REMAP").is_none_or(|v| v == "false") {
        fix_permissions(job)?;
    }
    Ok(())
}

fn show_docker_log(job: &Job<'_>) {
    let Ok(text) = std::fs::read_to_string("/var/log/docker") else { return };
    let lines: Vec<&str> = text.lines().collect();
    job.log.line("Last lines of /var/log/docker:");
    for line in &lines[lines.len().saturating_sub(50)..] {
        job.log.line(line);
    }
}

/// `sudo elastic-ci-bootstrap fix-permissions AGENT ORG PIPELINE`: gives the checkout
/// back to the agent user after containers left root-owned files in it.
fn fix_permissions(job: &Job<'_>) -> anyhow::Result<()> {
    let build_path = job.var("BUILDKITE_BUILD_PATH");
    let checkout_path = job.var("BUILDKITE_BUILD_CHECKOUT_PATH");
    let dirs = checkout_dirs(build_path, checkout_path)?;
    let bootstrap = job.config.bootstrap.display().to_string();
    job.log.section(&format!(
        "Fixing permissions for '{}/{}/{}'...",
        dirs.agent, dirs.org, dirs.pipeline
    ));
    // sudo allows the agent user this one command (the image's sudoers rule names the
    // installed bootstrapper's path).
    let sudo = process::find_program(SUDO, &job.env).with_context(|| {
        format!("{SUDO} is not installed; it runs {bootstrap} fix-permissions as root")
    })?;
    let args = ["-n", &bootstrap, "fix-permissions", &dirs.agent, &dirs.org, &dirs.pipeline];
    let mut command = process::command(&sudo, args, &job.env);
    let status = process::run(&mut command, job.config.limits.slow)?;
    job.log.line("");
    if !status.success() {
        bail!("{bootstrap} fix-permissions failed ({})", process::describe(status));
    }
    Ok(())
}

/// The `pre-command` hook: log in to Docker Hub or another registry with
/// `DOCKER_LOGIN_USER`, `DOCKER_LOGIN_PASSWORD` and `DOCKER_LOGIN_SERVER`.
pub async fn pre_command(job: &mut Job<'_>) -> anyhow::Result<()> {
    let user = job.var("DOCKER_LOGIN_USER").to_owned();
    if user.is_empty() || job.var(BuiltinPlugin::DockerLogin.flag()) != "1" {
        return Ok(());
    }
    let server = job.var("DOCKER_LOGIN_SERVER").to_owned();
    job.export("BUILDKITE_PLUGIN_DOCKER_LOGIN_USERNAME", &user)?;
    job.export("BUILDKITE_PLUGIN_DOCKER_LOGIN_PASSWORD_ENV", "DOCKER_LOGIN_PASSWORD")?;
    job.export("BUILDKITE_PLUGIN_DOCKER_LOGIN_SERVER", &server)?;
    let retries = retries(&job.env, "BUILDKITE_PLUGIN_DOCKER_LOGIN_RETRIES")?;
    job.export("BUILDKITE_PLUGIN_DOCKER_LOGIN_RETRIES", &retries.to_string())?;
    let password = Secret::new(job.var("DOCKER_LOGIN_PASSWORD"));
    if password.is_empty() {
        job.log
            .line("+++ :rotating_light: No docker-login password found in $DOCKER_LOGIN_PASSWORD");
        return Err(JobFailure { code: 1 }.into());
    }
    let Some(docker) = docker::find(job) else {
        bail!("DOCKER_LOGIN_USER is set, but docker is not installed");
    };
    let shown = if server.is_empty() { "Docker Hub" } else { server.as_str() };
    job.log.section(&format!(":docker: Logging into docker registry {shown}"));
    docker::login(
        job,
        &docker,
        Some(server.as_str()).filter(|s| !s.is_empty()),
        &user,
        &password,
        retries,
    )
    .await
}

/// The `pre-exit` hook: the optional disk clean-up, then, whatever the disk said, the
/// removal of the per-job Docker config and the stop of the job's ssh-agent; a full
/// disk fails the job (and stops this agent after it) only after that.
pub fn pre_exit(job: &mut Job<'_>) -> anyhow::Result<()> {
    let disk = if job.config.pre_exit_disk_cleanup {
        disk::check(job).unwrap_or_else(|error| {
            job.log.warning(&format!("the disk check failed: {error:#}"));
            DiskState::Enough
        })
    } else {
        DiskState::Enough
    };

    let dir = job.var("BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY").to_owned();
    if !dir.is_empty() {
        let path = Path::new(&dir);
        match docker::check_config_dir(path, &job.config.tmp_dir) {
            Ok(()) => {
                if let Err(error) = std::fs::remove_dir_all(path) {
                    job.log.warning(&format!("failed to remove the Docker config {dir}: {error}"));
                }
            }
            Err(reason) if path.exists() => {
                job.log.warning(&format!(
                    "not removing {dir} (BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY): {reason}"
                ));
            }
            Err(_) => {}
        }
        job.unset("BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY")?;
        job.unset("DOCKER_CONFIG")?;
    }

    let pid = job.var(ssh_agent::STARTED_PID_VAR).to_owned();
    if !pid.is_empty() {
        match pid.parse::<u32>() {
            Ok(pid) => {
                job.log.section(&format!("Stopping ssh-agent {pid}"));
                if !ssh_agent::stop(pid) {
                    job.log.line(&format!("ssh-agent {pid} is not running"));
                }
            }
            Err(_) => job.log.warning(&format!(
                "not stopping ssh-agent: {} is {pid:?}, not a process id",
                ssh_agent::STARTED_PID_VAR
            )),
        }
        for name in ["SSH_AUTH_SOCK", "SSH_AGENT_PID", ssh_agent::STARTED_PID_VAR] {
            job.unset(name)?;
        }
    }

    if let DiskState::Full { report } = disk {
        return Err(disk::fail(job, &report).into());
    }
    Ok(())
}

/// Removes what a failed `environment` hook created: the agent drops a failed hook's
/// environment, so `pre-exit` would never learn about them.
pub fn clean_up_after_failure(job: &mut Job<'_>) {
    if let Some(dir) = job.created.docker_config_dir.take() {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some(pid) = job.created.ssh_agent_pid.take() {
        ssh_agent::stop(pid);
    }
}
