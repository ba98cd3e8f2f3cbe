//! `elastic-ci-hooks`: the Buildkite agent hooks of the Elastic CI Stack for AWS.
//!
//! The AMI installs three tiny bash hooks in `/etc/buildkite-agent/hooks`
//! (`packer/linux/conf/buildkite-agent/hooks/`) that run one subcommand each and
//! evaluate what it prints:
//!
//! - `environment`: a fresh private `DOCKER_CONFIG` per job, the Docker and disk checks
//!   (pruning, then failing the job or stopping this agent after the job (the instance then terminates with its last agent) when the disk stays
//!   full), the built-in plugins (S3 secrets, ECR login) and the checkout permission
//!   fix;
//! - `pre-command`: `docker login` from `DOCKER_LOGIN_USER`/`DOCKER_LOGIN_PASSWORD`;
//! - `pre-exit`: the optional disk clean-up, removal of the job's Docker config and
//!   stop of its ssh-agent, even when the disk is full.
//!
//! `git-credential` is the credential helper that serves the secrets bucket's
//! `git-credentials` files to git.
//!
//! **Contract:** stdout carries only `export NAME='value'` and `unset NAME` lines
//! (names validated, values single-quoted), which the shim evaluates so the changes
//! reach the job on every agent version. Everything for people goes to stderr, which
//! the agent shows in the job log. No secret value is written to stderr or passed as a
//! command-line argument: passwords and keys reach `docker login`, `ssh-add` and the
//! redactor on stdin.
//!
//! ## Configuration
//!
//! The job environment (the agent's, `cfn-env`'s, the pipeline's): `BUILDKITE_*` stack
//! settings (`BUILDKITE_SECRETS_BUCKET`, `BUILDKITE_SECRETS_BUCKET_REGION`,
//! `BUILDKITE_ECR_POLICY`, `BUILDKITE_DOCKER_EXPERIMENTAL`,
//! `BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL`, `BUILDKITE_PURGE_BUILDS_ON_DISK_FULL`,
//! `BUILDKITE_STACK_VERSION`, `BUILDKITE_BUILD_PATH`, `BUILDKITE_BUILD_CHECKOUT_PATH`,
//! `BUILDKITE_PIPELINE_SLUG`, `BUILDKITE_REPO`), `PLUGINS_ENABLED`,
//! `SECRETS_PLUGIN_ENABLED`, `ECR_PLUGIN_ENABLED`, `DOCKER_LOGIN_PLUGIN_ENABLED`,
//! `BUILDKITE_PLUGIN_S3_SECRETS_*`, `BUILDKITE_PLUGIN_ECR_*`, `AWS_ECR_LOGIN`,
//! `AWS_ECR_LOGIN_REGISTRY_IDS`, `ECR_CREDENTIAL_HELPER_ENABLED`, `DOCKER_LOGIN_USER`,
//! `DOCKER_LOGIN_PASSWORD`, `DOCKER_LOGIN_SERVER`, `DOCKER_USERNS_REMAP`,
//! `DOCKER_PRUNE_UNTIL`, `DOCKER_BUILDER_PRUNE_ENABLED`, `ENABLE_PRE_EXIT_DISK_CLEANUP`,
//! `DISK_MIN_AVAILABLE` and `DISK_MIN_INODES` (read by `check-disk`), `TMPDIR`, `PATH`,
//! the standard `AWS_*` variables; and for this binary:
//!
//! - `ELASTIC_CI_COMMAND_TIMEOUT_SECS`: the time limit of every command the hooks run
//!   (default 120 s; 900 s for docker prune, the secrets bucket's env files and
//!   fix-permissions);
//! - `ELASTIC_CI_LOG`: the `tracing` filter for diagnostics on stderr (default `warn`).
//!
//! No variable chooses the programs of the disk check, fix-permissions and the agent
//! stop on a full disk: they are the `elastic-ci-bootstrap` beside this executable,
//! as the image installs them (through the `sudo` on `PATH` for fix-permissions), and
//! the image's `/usr/bin/buildkite-agent`.

pub mod clients;
pub(crate) mod config;
pub(crate) mod disk;
pub(crate) mod docker;
pub(crate) mod ecr;
pub(crate) mod env_files;
pub(crate) mod git_credential;
pub(crate) mod hooks;
pub(crate) mod job;
pub(crate) mod job_api;
pub mod joblog;
mod platform;
pub(crate) mod process;
pub(crate) mod redact;
pub(crate) mod secrets;
pub(crate) mod ssh_agent;

use std::collections::HashMap;

use clap::{Parser, Subcommand};

use crate::clients::Clients;
use crate::job::{Job, JobFailure};
use crate::joblog::JobLog;

/// The Buildkite agent hooks of the Elastic CI Stack for AWS.
///
/// The hook files in /etc/buildkite-agent/hooks run one subcommand each and evaluate
/// its stdout, which holds only shell-quoted `export NAME='value'` and `unset NAME`
/// lines. Progress and errors go to stderr, which the agent shows in the job log.
/// On Windows the binary is the hook itself (environment.exe, pre-command.exe,
/// pre-exit.exe) and changes the job's environment through the agent's job API.
#[derive(Debug, Parser)]
#[command(name = "elastic-ci-hooks", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Change the job's environment with `buildkite-agent env set`/`unset` (the agent's
    /// job API, agent 3.115.2 and later) instead of printing a script for a shell
    /// shim: for an executable hook the agent runs directly. Always on on Windows, and
    /// when this binary runs under a hook's name (`environment`, `pre-command`,
    /// `pre-exit`, with or without `.exe`).
    #[arg(long, global = true)]
    pub(crate) job_api: bool,
}

/// The command line: `elastic-ci-hooks SUBCOMMAND …`, or, when this binary is
/// installed under a hook's name (the agent runs `environment.exe` with no
/// arguments), that hook with `--job-api`.
pub fn cli_from_args(args: Vec<std::ffi::OsString>) -> Cli {
    let hook = args
        .first()
        .and_then(|program| std::path::Path::new(program).file_stem())
        .and_then(|stem| stem.to_str())
        .filter(|stem| job_api::HOOK_NAMES.contains(stem))
        .map(str::to_owned);
    let mut cli = match hook {
        Some(hook) => {
            let mut hook_args = vec!["elastic-ci-hooks".into(), hook.into(), "--job-api".into()];
            hook_args.extend(args.into_iter().skip(1));
            Cli::parse_from(hook_args)
        }
        None => Cli::parse_from(args),
    };
    cli.job_api |= platform::JOB_API_ONLY;
    cli
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::enum_variant_names,
    reason = "the variants are the agent's hook names, from which clap derives the subcommands"
)]
pub(crate) enum Command {
    /// The agent `environment` hook, run before checkout.
    ///
    /// Creates a private per-job DOCKER_CONFIG, checks Docker and disk space (pruning
    /// Docker, then failing the job or stopping this agent after the job (the instance then terminates with its last agent) when the disk stays
    /// full), applies the built-in plugin switches, loads the job's secrets from the S3
    /// secrets bucket (SSH keys into a per-job ssh-agent, env files, git credentials,
    /// secret files), logs Docker in to ECR, and gives the checkout back to the agent
    /// user (fix-permissions). Exits 1 when Docker is down or the disk is full, 53 on
    /// any other failure; a failure removes what the hook created.
    #[command(verbatim_doc_comment)]
    Environment,
    /// The agent `pre-command` hook: docker login with DOCKER_LOGIN_USER,
    /// DOCKER_LOGIN_PASSWORD (on stdin) and the optional DOCKER_LOGIN_SERVER.
    #[command(verbatim_doc_comment)]
    PreCommand,
    /// The agent `pre-exit` hook: the optional disk clean-up
    /// (ENABLE_PRE_EXIT_DISK_CLEANUP), then removal of the job's DOCKER_CONFIG and stop
    /// of the ssh-agent the environment hook started, also when the disk is full.
    #[command(verbatim_doc_comment)]
    PreExit,
    /// Git credential helper for the secrets bucket's git-credentials files.
    ///
    /// Git runs it as `… git-credential BUCKET REGION KEY get` with its request on
    /// stdin; the answer (the entry matching the request's protocol and host) goes to
    /// stdout. `store` and `erase` do nothing.
    #[command(verbatim_doc_comment)]
    GitCredential(GitCredentialArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct GitCredentialArgs {
    /// The secrets bucket.
    pub(crate) bucket: String,
    /// The bucket's region (empty: the default region).
    pub(crate) region: String,
    /// The git-credentials object's key.
    pub(crate) key: String,
    /// What git asks for: get, store or erase.
    #[arg(default_value = "get")]
    pub(crate) action: String,
}

/// Runs a command. On success returns what goes to stdout; on failure returns the exit
/// status, after writing the reason to the job log.
pub async fn run(
    cli: Cli,
    env: &HashMap<String, String>,
    clients: &dyn Clients,
    log: &JobLog,
    stdin: &mut dyn std::io::Read,
) -> Result<String, u8> {
    let (result, default_code, hook) = match cli.command {
        Command::GitCredential(args) => {
            let mut request = String::new();
            let result = match stdin.read_to_string(&mut request) {
                Ok(_) => {
                    git_credential::answer(
                        clients,
                        log,
                        &args.bucket,
                        &args.region,
                        &args.key,
                        &args.action,
                        &request,
                    )
                    .await
                }
                Err(error) => {
                    Err(anyhow::Error::new(error).context("failed to read git's request"))
                }
            };
            return result.map_err(|error| {
                log.line(&format!("elastic-ci-hooks git-credential: {}", one_line(&error)));
                1
            });
        }
        Command::Environment => {
            let mut job = Job::new(env, log, clients);
            let mut result = Ok(());
            if cli.job_api {
                // Without a shim to source it, the hook reads the stack's settings.
                result = job_api::load_cfn_env(&mut job, &hooks_binary());
            }
            if result.is_ok() {
                result = hooks::environment(&mut job).await;
            }
            let result = result.and_then(|()| finish(&job, cli.job_api));
            if result.is_err() {
                hooks::clean_up_after_failure(&mut job);
            }
            (result, 53, "environment")
        }
        Command::PreCommand => {
            let mut job = Job::new(env, log, clients);
            let result = hooks::pre_command(&mut job).await;
            (result.and_then(|()| finish(&job, cli.job_api)), 1, "pre-command")
        }
        Command::PreExit => {
            let mut job = Job::new(env, log, clients);
            let result = hooks::pre_exit(&mut job);
            (result.and_then(|()| finish(&job, cli.job_api)), 1, "pre-exit")
        }
    };
    result.map_err(|error| match error.downcast_ref::<JobFailure>() {
        Some(failure) => failure.code,
        None => {
            log.error(&format!("Elastic CI Stack {hook} hook failed: {}", one_line(&error)));
            default_code
        }
    })
}

/// What a successful hook leaves: the script for the shim on stdout, or, through the
/// job API, the changes already made and nothing on stdout.
fn finish(job: &Job<'_>, job_api: bool) -> anyhow::Result<String> {
    if job_api {
        job_api::apply(&job.script, &job.env, job.config.limits.quick)?;
        Ok(String::new())
    } else {
        Ok(job.script.render())
    }
}

/// The running executable (the hooks binary, or a copy installed as a hook).
fn hooks_binary() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| config::INSTALLED_HOOKS_BINARY.into())
}

fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace(['\n', '\r'], " ")
}

/// The stderr subscriber for diagnostics, filtered by `ELASTIC_CI_LOG` (default `warn`:
/// the job log is for the job log's readers).
pub fn init_logging(env: &HashMap<String, String>) {
    let default = "warn";
    let filter = env.get("ELASTIC_CI_LOG").map_or(default, String::as_str);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .init();
}
