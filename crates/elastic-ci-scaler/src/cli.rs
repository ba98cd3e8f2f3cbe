//! The command line, logging, and building the real dependencies from the environment.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use elastic_ci_aws::autoscaling::AutoScalingGroups;
#[cfg(feature = "put-metric-data")]
use elastic_ci_aws::cloudwatch::CloudWatchMetrics;
use elastic_ci_aws::cloudwatch::{EmbeddedMetrics, Metrics};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::ssm::SsmParameterStore;
use elastic_ci_buildkite::{AgentMetricsClient, ClientSettings};
use elastic_ci_core::scaling::config::ScalerConfig;
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::{error, info};

use crate::clock::SystemClock;
use crate::error::ScalerError;
use crate::token::agent_token;
use crate::{
    Deps, Shutdown, check_supported, handle_event, restore_cooldowns, run_once, run_until,
};

/// Scales a Buildkite agent Auto Scaling group from the queue's metrics.
///
/// Inside AWS Lambda (AWS_LAMBDA_RUNTIME_API set) it serves invocations and ignores
/// the command line. Elsewhere, `run` polls with the same environment variables as the
/// Lambda: BUILDKITE_QUEUE, ASG_NAME, AGENTS_PER_INSTANCE, BUILDKITE_AGENT_TOKEN or
/// BUILDKITE_AGENT_TOKEN_SSM_KEY, BUILDKITE_AGENT_ENDPOINT, LAMBDA_INTERVAL,
/// SCALE_OUT_COOLDOWN_PERIOD, SCALE_IN_COOLDOWN_PERIOD, DISABLE_SCALE_IN, … (see the
/// README's Scaler section), plus the standard AWS variables (AWS_REGION,
/// AWS_ENDPOINT_URL, …). Logs are JSON lines on stderr, filtered by ELASTIC_CI_LOG
/// (default info); each poll logs one line with the metrics, the group, the decision
/// and what was done.
#[derive(Debug, Parser)]
#[command(name = "elastic-ci-scaler", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Poll every LAMBDA_INTERVAL (or as the API asks) until SIGTERM or SIGINT.
    ///
    /// Cooldowns are restored from the group's scaling activities first; the agent
    /// token is read once (again if the API refuses it). A failed poll changes
    /// nothing and the next one tries again. Exit status: 0 when stopped by a
    /// signal, or with --once when the poll succeeded; 1 when the configuration is
    /// invalid or, with --once, when the poll failed.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Poll once and exit.
    #[arg(long)]
    pub(crate) once: bool,
    /// Compute and log the decision, but change nothing: no SetDesiredCapacity and no
    /// PutMetricData.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// Where the queue metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricsOutput {
    /// Log lines in CloudWatch's embedded metric format on standard output, which Lambda
    /// sends to CloudWatch Logs: no API call, no request in the poll's time.
    EmbeddedLogLines,
    /// The PutMetricData API (outside Lambda, with the `put-metric-data` feature).
    PutMetricData,
}

impl MetricsOutput {
    /// Embedded log lines inside Lambda; elsewhere PutMetricData when this build has it.
    pub(crate) fn for_environment(in_lambda: bool) -> MetricsOutput {
        if in_lambda || cfg!(not(feature = "put-metric-data")) {
            MetricsOutput::EmbeddedLogLines
        } else {
            MetricsOutput::PutMetricData
        }
    }
}

/// Builds the real dependencies. Configuration errors come back as [`ScalerError`] so
/// that the Lambda can report them on every invocation.
pub(crate) async fn deps_from_env(
    env: &HashMap<String, String>,
    output: MetricsOutput,
) -> Result<Deps, ScalerError> {
    let config = ScalerConfig::from_env_map(env)?;
    check_supported(&config)?;
    let settings = AwsSettings::from_env_map(env);
    let sdk_config = aws_sdk_config(&settings).await;
    let buildkite = AgentMetricsClient::new(&config.agent_endpoint, &ClientSettings::standard())
        .map_err(|error| ScalerError::Unsupported(error.to_string()))?;
    let metrics: Arc<dyn Metrics> = match output {
        #[cfg(feature = "put-metric-data")]
        MetricsOutput::PutMetricData => Arc::new(CloudWatchMetrics::new(&sdk_config)),
        _ => Arc::new(EmbeddedMetrics::stdout()),
    };
    Ok(Deps::new(
        config,
        Arc::new(AutoScalingGroups::new(&sdk_config)),
        metrics,
        Arc::new(SsmParameterStore::new(&sdk_config)),
        Arc::new(buildkite),
        Arc::new(SystemClock),
    ))
}

/// Serves Lambda invocations. A bad configuration fails every invocation with an error
/// naming the variable, rather than the cold start with a bare exit.
pub async fn lambda_main(env: HashMap<String, String>) -> anyhow::Result<()> {
    let deps = deps_from_env(&env, MetricsOutput::for_environment(true)).await;
    if let Err(error) = &deps {
        error!(error = %error, "the scaler cannot run with this configuration");
    }
    let deps = Arc::new(deps);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            match deps.as_ref() {
                Ok(deps) => {
                    handle_event(deps, &event.payload, Some(event.context.deadline())).await
                }
                Err(error) => Err(error.clone()),
            }
        }
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the Lambda runtime failed: {error}"))
}

/// `elastic-ci-scaler run`, or one invocation when DEBUG is set and no command is given.
pub async fn cli_main(cli: Cli, env: HashMap<String, String>) -> anyhow::Result<()> {
    let args = match cli.command {
        Some(Command::Run(args)) => args,
        None if ScalerConfig::from_env_map(&env).is_ok_and(|config| config.debug) => {
            RunArgs { once: true, dry_run: false }
        }
        None => anyhow::bail!("no command given: run `elastic-ci-scaler run` (see --help)"),
    };
    let mut deps = deps_from_env(&env, MetricsOutput::for_environment(false)).await?;
    deps.dry_run = args.dry_run;
    let shutdown = Shutdown::default();
    let signals = tokio::spawn(trigger_on_signal(shutdown.clone()));
    restore_cooldowns(&deps).await;
    let mut token = agent_token(&deps.config.agent_token, deps.parameters.as_ref())
        .await
        .context("cannot poll without the agent token")?;
    let result = if args.once {
        let report = run_once(&deps, &token).await;
        match report.error {
            Some(error) => Err(anyhow::Error::new(error).context("the poll failed")),
            None => Ok(()),
        }
    } else {
        let summary = run_until(&deps, &mut token, None, &shutdown).await;
        info!(
            polls = summary.polls,
            failed_polls = summary.failed_polls,
            capacity_changes = summary.capacity_changes,
            "stopped"
        );
        Ok(())
    };
    signals.abort();
    result
}

async fn trigger_on_signal(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        error!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => info!(signal = "SIGTERM", "stopping"),
        _ = interrupt.recv() => info!(signal = "SIGINT", "stopping"),
    }
    shutdown.trigger();
}

/// JSON lines, one per event, with fields at the top level. In Lambda they go to
/// stdout (CloudWatch Logs) filtered by `AWS_LAMBDA_LOG_LEVEL`; elsewhere to stderr,
/// filtered by `ELASTIC_CI_LOG`. JSON whatever the function's log format setting, so
/// that the per-poll line is always machine-readable.
pub fn init_logging(env: &HashMap<String, String>, in_lambda: bool) {
    let default = "info,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,hyper=warn,reqwest=warn,lambda_runtime=warn";
    let configured = if in_lambda {
        env.get("AWS_LAMBDA_LOG_LEVEL").map(|level| level.to_lowercase())
    } else {
        env.get("ELASTIC_CI_LOG").cloned()
    };
    let filter = configured
        .and_then(|filter| tracing_subscriber::EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_env_filter(filter);
    if in_lambda {
        builder.with_writer(std::io::stdout).init();
    } else {
        builder.with_writer(std::io::stderr).init();
    }
}

/// Exit status for a failed command, with one line on stderr.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    let message = format!("{error:#}").replace(['\n', '\r'], " ");
    #[allow(clippy::print_stderr, reason = "the command's error report")]
    {
        eprintln!("error: {message}");
    }
    ExitCode::FAILURE
}
