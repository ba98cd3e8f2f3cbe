//! Wiring for each command: builds the real clients from the environment and hands
//! them to the library functions that do the work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use elastic_ci_aws::autoscaling::{AutoScalingGroups, ScalingGroup};
use elastic_ci_aws::cloudformation::{CloudFormationSignal, StackSignal};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::imds::{Imds, InstanceMetadata};
use elastic_ci_aws::s3::S3ObjectStore;
use elastic_ci_aws::ssm::SsmParameterStore;
use elastic_ci_core::archive::SeedLimits;
use elastic_ci_core::backoff::Backoff;
use elastic_ci_core::boot::config::FailureContext;
use elastic_ci_core::disk::DiskCheckConfig;
use elastic_ci_core::lifecycle::Transition;
use tracing::info;

use crate::boot::BootDeps;
use crate::files::Root;
use crate::platform::agent_processes_of;
use crate::system::{RealSystem, RecordingSystem, System, SystemState};
use crate::{
    BootArgs, CheckDiskArgs, ExitWith, FixPermsArgs, StopArgs, TerminateArgs, WatchArgs, disk,
    fetch, output, platform, stop, terminate, watch,
};

fn metadata(env: &HashMap<String, String>) -> anyhow::Result<Imds> {
    let endpoint = env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .map(|value| value.trim())
        .filter(|value| !value.is_empty());
    Ok(Imds::new(endpoint)?)
}

pub(crate) async fn boot(args: BootArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let root = Root::new(&args.root);
    if !root.is_system_root() && args.record_actions.is_none() && !args.dry_run {
        return Err(ExitWith {
            code: 2,
            message: format!(
                "error: --root {} needs --record-actions or --dry-run: the system actions (chown, systemctl, mount) would change this machine, not the directory",
                args.root.display()
            ),
        }
        .into());
    }
    // The region of the UserData, read leniently so that even an invalid
    // configuration can mark the instance unhealthy in the right region.
    let region = FailureContext::from_env_map(env).region;
    let settings = AwsSettings::from_env_map(env).with_overrides(region, None, None);
    let sdk_config = aws_sdk_config(&settings).await;
    let system: Arc<dyn System> = match &args.record_actions {
        Some(path) => {
            let recorder = RecordingSystem::open(path)?;
            Arc::new(match &args.system_state {
                Some(state) => recorder.with_state(SystemState::load(state)?),
                None => recorder,
            })
        }
        None => {
            let signals: Arc<dyn StackSignal> = Arc::new(CloudFormationSignal::new(&sdk_config));
            Arc::new(RealSystem::new(root.clone(), Some(signals), env.clone()))
        }
    };
    let deps = BootDeps {
        root,
        env: env.clone(),
        metadata: Arc::new(metadata(env)?),
        parameters: Arc::new(SsmParameterStore::new(&sdk_config)),
        objects: Arc::new(S3ObjectStore::new(&sdk_config, &settings)),
        scaling: Arc::new(AutoScalingGroups::new(&sdk_config)),
        system,
        http: fetch::http_client_trusting(
            Duration::from_secs(300),
            platform::root_certificates(env)?,
        )
        .context("failed to build the HTTP client")?,
        metadata_backoff: crate::boot::metadata_backoff(Duration::from_millis(
            args.metadata_retry_delay_ms,
        )),
        seed_limits: SeedLimits::DEFAULT,
        deadline: Duration::from_secs(args.deadline_secs),
    };
    if args.dry_run {
        output::print(&crate::boot::dry_run(&deps).await?);
        return Ok(());
    }
    match crate::boot::boot(&deps).await {
        Ok(_) => Ok(()),
        Err(failure) => {
            let message = format!("error: {failure}").replace(['\n', '\r'], " ");
            Err(ExitWith { code: failure.exit_code, message }.into())
        }
    }
}

pub(crate) async fn terminate(
    args: TerminateArgs,
    env: &HashMap<String, String>,
) -> anyhow::Result<()> {
    info!(
        "sleeping for {} seconds before terminating instance to allow agent logs to drain to cloudwatch...",
        args.drain_secs
    );
    tokio::time::sleep(Duration::from_secs(args.drain_secs)).await;
    // Auto Scaling is removing the instance (a termination hook) or stopping it into
    // its warm pool: `watch` completes that, and a termination here would lower the
    // desired capacity again or end an instance meant to be reused.
    if args.drain_marker.exists() {
        info!(
            marker = %args.drain_marker.display(),
            "Auto Scaling is removing or stopping this instance: leaving it to the lifecycle hook"
        );
        return Ok(());
    }
    // Several agents (agent processes, or the workers of one) share the instance: it
    // terminates with the last of them, never under another's running job.
    let user = args.agent_user.clone();
    let proc_dir = args.proc_dir.clone();
    let n_running = tokio::task::spawn_blocking(move || agent_processes_of(&user, &proc_dir))
        .await
        .context("process scan failed")??;
    if n_running > 0 {
        info!(
            n_running,
            "{n_running} buildkite-agent process(es) still running: leaving the termination to the last agent to stop"
        );
        return Ok(());
    }
    let delay = Duration::from_millis(args.metadata_retry_delay_ms);
    let backoff =
        Backoff { max_delay: delay * 2, first_delay: delay, ..terminate::METADATA_BACKOFF };
    let (instance_id, region) = terminate::identify(&metadata(env)?, backoff).await?;
    let settings = AwsSettings::from_env_map(env).with_overrides(Some(region), None, None);
    let scaling = AutoScalingGroups::new(&aws_sdk_config(&settings).await);
    // Already out of its group (Auto Scaling removed it while the agent stopped): a
    // termination now could only lower the capacity the group keeps for others.
    if let Ok(None) = scaling.group_of_instance(&instance_id).await {
        info!(instance_id, "the instance is in no Auto Scaling group any more: nothing to retire");
        return Ok(());
    }
    terminate::retire(&scaling, &instance_id).await?;
    Ok(())
}

pub(crate) async fn stop_gracefully(
    args: StopArgs,
    env: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let system: Box<dyn System> = match &args.record_actions {
        Some(path) => Box::new(RecordingSystem::open(path)?),
        None => Box::new(RealSystem::new(Root::new("/"), None, env.clone())),
    };
    let request = stop::StopRequest {
        transition: Transition::parse(args.transition.as_deref().unwrap_or_default()),
        instance_id: args.instance_id.filter(|id| !id.is_empty()),
        termination_time: args.termination_time,
        lifecycle_hook: args.lifecycle_hook,
        group: args.group,
    };
    let needs_lifecycle =
        request.transition == Transition::Terminating && request.lifecycle_hook.is_some();
    let mut clients: Option<(AutoScalingGroups, Imds)> = None;
    if needs_lifecycle {
        let imds = metadata(env)?;
        let region = match env.get("AWS_REGION").filter(|region| !region.is_empty()) {
            Some(region) => region.clone(),
            None => imds.region().await.context("could not read the region")?,
        };
        let settings = AwsSettings::from_env_map(env).with_overrides(Some(region), None, None);
        clients = Some((AutoScalingGroups::new(&aws_sdk_config(&settings).await), imds));
    }
    let lifecycle = clients
        .as_ref()
        .map(|(scaling, imds)| (scaling as &dyn ScalingGroup, imds as &dyn InstanceMetadata));
    stop::stop_gracefully(system.as_ref(), &request, stop::PollIntervals::DEFAULT, lifecycle)
        .await?;
    Ok(())
}

pub(crate) async fn watch(args: WatchArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let system: Box<dyn System> = match &args.record_actions {
        Some(path) => Box::new(RecordingSystem::open(path)?),
        None => Box::new(RealSystem::new(Root::new("/"), None, env.clone())),
    };
    let imds = metadata(env)?;
    let region = match env.get("AWS_REGION").filter(|region| !region.is_empty()) {
        Some(region) => region.clone(),
        None => imds.region().await.context("could not read the region")?,
    };
    let settings = AwsSettings::from_env_map(env).with_overrides(Some(region), None, None);
    let scaling = AutoScalingGroups::new(&aws_sdk_config(&settings).await);
    let deps = watch::WatchDeps {
        system: system.as_ref(),
        notices: &imds,
        metadata: &imds,
        scaling: &scaling,
    };
    let settings = watch::WatchSettings {
        poll: Duration::from_secs(args.poll_secs),
        agent_poll: Duration::from_secs(1),
        heartbeat_every: Duration::from_secs(args.heartbeat_secs),
        max_drain: Duration::from_secs(args.max_drain_secs),
        lifecycle_hook: args.lifecycle_hook,
        group: args.group,
        drain_marker: args.drain_marker,
    };
    let watched = watch::watch(&deps, &settings).await?;
    info!(notice = ?watched.notice, stopped = ?watched.stopped, n_heartbeats = watched.n_heartbeats, completed = watched.completed, "drained");
    Ok(())
}

pub(crate) fn check_disk(args: CheckDiskArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let config = DiskCheckConfig::from_env_map(env)
        .map_err(|error| ExitWith { code: 2, message: format!("error: {error}") })?;
    let dir = args.path.unwrap_or_else(|| disk::directory_to_check(&args.docker_config));
    if disk::check_disk(&config, &dir)? {
        Ok(())
    } else {
        Err(ExitWith { code: 1, message: String::new() }.into())
    }
}

pub(crate) async fn fix_permissions(args: FixPermsArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || platform::fix_permissions(&args.args))
        .await
        .context("fix-permissions task failed")?
        .map_err(|(code, message)| ExitWith { code, message }.into())
}
