//! The built-in ECR login (the ECR plugin's behaviour, under its variable names).
//!
//! By default it logs Docker in to this account's registry in the instance's region;
//! `AWS_ECR_LOGIN=false` turns it off and `AWS_ECR_LOGIN_REGISTRY_IDS="id1,id2"` logs
//! in to other accounts' registries. The password comes from ECR's
//! GetAuthorizationToken and reaches `docker login` on stdin only. In credential-helper
//! mode nothing is logged in: the per-job Docker config maps each registry to
//! `docker-credential-ecr-login`.

use anyhow::{Context, bail};
use elastic_ci_aws::ecr::RegistryCredentials;
use elastic_ci_aws::error::{AwsError, AwsErrorKind};
use elastic_ci_aws::retry::retry;
use elastic_ci_core::hooks::{ECR_PUBLIC_REGISTRY, ecr_endpoint_account, ecr_registry_host};

use crate::config::{DEFAULT_RETRIES, EcrSettings};
use crate::docker;
use crate::job::Job;
use crate::process;

/// Sets the `BUILDKITE_PLUGIN_ECR_*` variables from the stack's and logs in.
pub async fn login(job: &mut Job<'_>) -> anyhow::Result<()> {
    let login = match job.var("AWS_ECR_LOGIN") {
        "" => "1".to_owned(),
        value => value.to_owned(),
    };
    job.export("BUILDKITE_PLUGIN_ECR_LOGIN", &login)?;
    if job.var("BUILDKITE_PLUGIN_ECR_RETRIES").is_empty() {
        job.export("BUILDKITE_PLUGIN_ECR_RETRIES", &DEFAULT_RETRIES.to_string())?;
    }
    if !job.env.contains_key("BUILDKITE_PLUGIN_ECR_CREDENTIAL_HELPER") {
        let enabled = match job.var("ECR_CREDENTIAL_HELPER_ENABLED") {
            "" => "false".to_owned(),
            value => value.to_owned(),
        };
        job.export("BUILDKITE_PLUGIN_ECR_CREDENTIAL_HELPER", &enabled)?;
    }
    let registry_ids = job.var("AWS_ECR_LOGIN_REGISTRY_IDS").to_owned();
    if !registry_ids.trim().is_empty() {
        job.export("BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS_0", &registry_ids)?;
    }
    let settings = EcrSettings::from_env_map(&job.env)?;
    if !settings.login {
        job.log.line(&format!("ECR login is off (BUILDKITE_PLUGIN_ECR_LOGIN={login:?})"));
        return Ok(());
    }
    job.log.section("Authenticating with AWS ECR :ecr: :docker:");
    if let Some(role) = &settings.assume_role {
        job.log.warning(&format!(
            "BUILDKITE_PLUGIN_ECR_ASSUME_ROLE_ROLE_ARN ({role}) is not supported by the stack's built-in ECR login; logging in with the instance role (use the ECR plugin in the pipeline to assume a role)"
        ));
    }
    let region = settings.region.clone().unwrap_or_else(|| {
        job.log.line(
            "AWS region should be specified via plugin config or AWS_DEFAULT_REGION environment.",
        );
        job.log.line("Defaulting to us-east-1 for legacy compatibility.");
        "us-east-1".to_owned()
    });
    let mut accounts = settings.account_ids.clone();
    if accounts.iter().any(|id| id == ECR_PUBLIC_REGISTRY) {
        job.log.warning(
            "logging in to public.ecr.aws is not supported by the built-in ECR login and is skipped; ECR Public images can be pulled without it",
        );
        accounts.retain(|id| id != ECR_PUBLIC_REGISTRY);
        if accounts.is_empty() {
            return Ok(());
        }
    }
    if settings.credential_helper {
        return configure_credential_helper(job, &settings, &region, &accounts).await;
    }
    let Some(docker) = docker::find(job) else {
        if settings.requested_by_job {
            bail!("the job asked for an ECR login, but docker is not installed");
        }
        job.log.warning("docker is not installed: skipping the ECR login");
        return Ok(());
    };
    let shown = if accounts.is_empty() { "this account".to_owned() } else { accounts.join(", ") };
    job.log.line(&format!("Authenticating with AWS ECR in {region} for {shown} :ecr: :docker:"));
    let credentials = authorization(job, &settings, &region, &accounts).await?;
    for (host, credential) in credentials {
        docker::login(
            job,
            &docker,
            Some(&host),
            &credential.username,
            &credential.password,
            settings.retries,
        )
        .await?;
    }
    Ok(())
}

/// Fetches the login credentials of each account's registry (this account's when the
/// list is empty), keyed by registry host. AWS failures that can pass are retried
/// like the logins.
async fn authorization(
    job: &Job<'_>,
    settings: &EcrSettings,
    region: &str,
    accounts: &[String],
) -> anyhow::Result<Vec<(String, RegistryCredentials)>> {
    let auth = job.clients.registry_auth(region, settings.profile.as_deref()).await;
    let passing = |error: &AwsError| {
        matches!(
            error.kind,
            AwsErrorKind::Throttled | AwsErrorKind::Transport | AwsErrorKind::Service
        )
    };
    let schedule = docker::login_backoff(settings.retries);
    let fetched =
        retry(schedule, passing, docker::log_login_retry(job), |_| auth.authorization(accounts))
            .await;
    let credentials = match fetched {
        Ok(credentials) => credentials,
        Err(error) if error.kind == AwsErrorKind::AccessDenied => {
            return Err(error).context(
                "the instance role may not call ecr:GetAuthorizationToken (check the stack's ECRAccessPolicy parameter)",
            );
        }
        Err(error) => return Err(error).context("failed to get an ECR login password"),
    };
    let mut logins = Vec::new();
    if accounts.is_empty() {
        let credential =
            credentials.into_iter().next().context("ECR returned no authorization data")?;
        let account = ecr_endpoint_account(&credential.endpoint).with_context(|| {
            format!("unexpected ECR registry endpoint {:?}", credential.endpoint)
        })?;
        logins.push((ecr_registry_host(account, region), credential));
        return Ok(logins);
    }
    for account in accounts {
        let credential = credentials
            .iter()
            .find(|c| ecr_endpoint_account(&c.endpoint) == Some(account.as_str()))
            .or(credentials.first())
            .with_context(|| format!("ECR returned no authorization data for {account}"))?;
        logins.push((ecr_registry_host(account, region), credential.clone()));
    }
    Ok(logins)
}

/// Points Docker at `docker-credential-ecr-login` for each registry.
async fn configure_credential_helper(
    job: &mut Job<'_>,
    settings: &EcrSettings,
    region: &str,
    accounts: &[String],
) -> anyhow::Result<()> {
    if process::find_program("docker-credential-ecr-login", &job.env).is_none() {
        bail!(
            "ECR credential helper mode needs docker-credential-ecr-login, which is not installed"
        );
    }
    let dir = job.var("DOCKER_CONFIG").to_owned();
    if dir.is_empty() {
        bail!("ECR credential helper mode needs DOCKER_CONFIG, which is not set");
    }
    let mut hosts: Vec<String> = accounts.iter().map(|id| ecr_registry_host(id, region)).collect();
    if accounts.is_empty() {
        // This account's id: the registry endpoint of an authorization answer names it.
        let auth = job.clients.registry_auth(region, settings.profile.as_deref()).await;
        match auth.authorization(&[]).await {
            Ok(credentials) => hosts.extend(
                credentials
                    .iter()
                    .filter_map(|c| ecr_endpoint_account(&c.endpoint))
                    .map(|account| ecr_registry_host(account, region)),
            ),
            Err(error) => {
                job.log.warning(&format!("could not find this account's registry: {error}"))
            }
        }
    }
    docker::add_credential_helpers(std::path::Path::new(&dir), &hosts)?;
    for host in &hosts {
        job.log.line(&format!("Configured ECR credential helper for {host}"));
    }
    if settings.ignore_creds_storage {
        // docker login and logout to other registries fail with "error storing
        // credentials" unless the helper ignores the credential store; the original
        // set this only in a subshell, so it never reached the job.
        job.export("AWS_ECR_IGNORE_CREDS_STORAGE", "true")?;
    }
    job.log.line("ECR credential helper configured successfully");
    Ok(())
}
