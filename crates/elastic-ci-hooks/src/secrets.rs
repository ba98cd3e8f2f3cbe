//! The S3 secrets of a job: SSH keys into a per-job ssh-agent, env files evaluated by
//! bash, git credentials behind a credential helper, and secret files as variables
//! (the layout and lookup order are in `elastic_ci_core::secrets`).
//!
//! Every object is fetched concurrently; results are applied in the fixed order SSH
//! keys, env files, git credentials, secret files. A missing key is normal and quiet.
//! A key the instance role may not read is a warning naming the key and the
//! permission. Any other failure (after the SDK's retries) fails the job rather than
//! running it without its secrets, and so does an object larger than its cap
//! ([`MAX_SSH_KEY_BYTES`] for SSH keys, [`MAX_OBJECT_BYTES`] for the rest), which is
//! refused as it streams in rather than held in memory whole.

use std::collections::BTreeSet;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::Context;
use elastic_ci_aws::error::{AwsError, AwsErrorKind};
use elastic_ci_aws::s3::{DownloadError, ObjectStore};
use elastic_ci_core::hooks::EnvChange;
use elastic_ci_core::secrets::{
    SecretsLayout, credential_helper, git_config_parameters, is_redacted_name, secret_file_value,
    secret_file_variable,
};
use futures::future::join_all;
use tokio::io::AsyncWrite;

use crate::config::SecretsSettings;
use crate::env_files::{self, EnvFile};
use crate::job::Job;
use crate::{redact, ssh_agent};

/// The largest env file, git-credentials file or secret file read: far more than any
/// real one, and little enough for a job's instance.
pub(crate) const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// The largest private SSH key read: a 16384-bit RSA key in PEM is about 12 KiB.
pub(crate) const MAX_SSH_KEY_BYTES: usize = 64 * 1024;

/// An in-memory download that fails once more than `limit` bytes arrive.
pub(crate) struct CappedBuffer {
    body: Vec<u8>,
    limit: usize,
}

impl CappedBuffer {
    pub(crate) fn new(limit: usize) -> CappedBuffer {
        CappedBuffer { body: Vec::new(), limit }
    }

    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.body
    }
}

impl AsyncWrite for CappedBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        if bytes.len() > self.limit - self.body.len() {
            let limit = self.limit;
            return Poll::Ready(Err(io::Error::other(format!(
                "the object is larger than the limit of {limit} bytes"
            ))));
        }
        self.body.extend_from_slice(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

enum Fetched {
    Found(Vec<u8>),
    Missing,
    Denied,
}

async fn fetch(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    limit: usize,
) -> Result<Fetched, DownloadError> {
    let mut body = CappedBuffer::new(limit);
    match store.download(bucket, key, &mut body).await {
        Ok(_) => Ok(Fetched::Found(body.into_inner())),
        Err(error) => match error.aws_kind() {
            Some(AwsErrorKind::NotFound) => Ok(Fetched::Missing),
            Some(AwsErrorKind::AccessDenied) => Ok(Fetched::Denied),
            _ => Err(error),
        },
    }
}

fn denied_warning(job: &Job<'_>, bucket: &str, key: &str) {
    job.log.warning(&format!(
        "access denied to s3://{bucket}/{key}: the instance role needs s3:GetObject on arn:aws:s3:::{bucket}/{key} (and kms:Decrypt if it is encrypted with a KMS key); continuing without it"
    ));
}

/// Checks the bucket and picks the client for its region.
async fn open_bucket(
    job: &Job<'_>,
    settings: &SecretsSettings,
) -> anyhow::Result<(Arc<dyn ObjectStore>, String)> {
    let bucket = settings.bucket.as_str();
    let bucket_error = |error: AwsError| match error.kind {
        AwsErrorKind::NotFound => anyhow::anyhow!(
            "secrets bucket {bucket:?} not found: check the stack's SecretsBucket parameter (BUILDKITE_SECRETS_BUCKET)"
        ),
        AwsErrorKind::AccessDenied => anyhow::anyhow!(
            "access denied to secrets bucket {bucket:?}: the instance role needs s3:ListBucket on arn:aws:s3:::{bucket} ({error})"
        ),
        _ => anyhow::Error::new(error).context(format!("cannot reach secrets bucket {bucket:?}")),
    };
    if let Some(region) = &settings.region {
        let store = job.clients.object_store(Some(region)).await;
        store.bucket_region(bucket).await.map_err(bucket_error)?;
        return Ok((store, region.clone()));
    }
    let current = ["AWS_DEFAULT_REGION", "AWS_REGION"]
        .iter()
        .map(|name| job.var(name))
        .find(|region| !region.is_empty())
        .unwrap_or("us-east-1")
        .to_owned();
    job.log.line(&format!("Discovered current region as {current:?}"));
    let store = job.clients.object_store(Some(&current)).await;
    match store.bucket_region(bucket).await.map_err(bucket_error)? {
        Some(region) if region != current => {
            job.log.line(&format!("Discovered bucket region as {region:?}"));
            Ok((job.clients.object_store(Some(&region)).await, region))
        }
        Some(region) => {
            job.log.line(&format!("Discovered bucket region as {region:?}"));
            Ok((store, region))
        }
        None => {
            job.log.line(&format!(
                "Could not discover region for bucket {bucket:?}. Using the {current} region as a fallback, if this is not correct configure a bucket region using the BUILDKITE_PLUGIN_S3_SECRETS_REGION environment variable."
            ));
            Ok((store, current))
        }
    }
}

/// Loads the job's secrets from the bucket named by `BUILDKITE_PLUGIN_S3_SECRETS_BUCKET`.
pub(crate) async fn load(job: &mut Job<'_>) -> anyhow::Result<()> {
    let settings = SecretsSettings::from_env_map(&job.env);
    let layout =
        SecretsLayout::new(settings.bucket_prefix.as_deref(), settings.pipeline_slug.as_deref())?;
    let bucket = settings.bucket.clone();
    job.log.section(&format!("Downloading secrets from :s3: {bucket}"));
    let (store, region) = open_bucket(job, &settings).await?;

    let ssh_keys = layout.ssh_key_keys();
    let env_keys = layout.env_file_keys();
    let git_keys = layout.git_credentials_keys();
    let prefixes = layout.secret_file_prefixes();
    for (what, keys) in
        [("SSH keys", &ssh_keys), ("env files", &env_keys), ("git credentials", &git_keys)]
    {
        job.log.line(&format!("Checking S3 for {what}: {}", keys.join(", ")));
    }
    job.log.line(&format!("Checking S3 for secret files under {}", prefixes.join(", ")));

    let single_keys: Vec<&String> = ssh_keys.iter().chain(&env_keys).chain(&git_keys).collect();
    let gets = join_all(single_keys.iter().map(|key| {
        let limit = if ssh_keys.contains(key) { MAX_SSH_KEY_BYTES } else { MAX_OBJECT_BYTES };
        fetch(store.as_ref(), &bucket, key, limit)
    }));
    let lists = join_all(prefixes.iter().map(|prefix| store.list(&bucket, prefix)));
    let (gets, lists) = tokio::join!(gets, lists);
    let mut fetched = Vec::new();
    for (key, result) in single_keys.iter().zip(gets) {
        let result = result.with_context(|| format!("failed to download s3://{bucket}/{key}"))?;
        if matches!(result, Fetched::Denied) {
            denied_warning(job, &bucket, key);
        }
        fetched.push(((*key).clone(), result));
    }
    let found = |keys: &[String]| -> Vec<(String, Vec<u8>)> {
        fetched
            .iter()
            .filter(|(key, _)| keys.contains(key))
            .filter_map(|(key, result)| match result {
                Fetched::Found(body) => Some((key.clone(), body.clone())),
                Fetched::Missing | Fetched::Denied => None,
            })
            .collect()
    };
    let mut redacted = BTreeSet::new();

    load_ssh_keys(job, &settings, &found(&ssh_keys))?;
    load_env_files(job, &bucket, &found(&env_keys), &mut redacted)?;
    load_git_credentials(job, &bucket, &region, &found(&git_keys))?;

    let mut secret_keys = Vec::new();
    for (prefix, listing) in prefixes.iter().zip(lists) {
        let objects = match listing {
            Ok(objects) => objects,
            Err(error) if error.kind == AwsErrorKind::AccessDenied => {
                job.log.warning(&format!(
                    "access denied listing s3://{bucket}/{prefix}: the instance role needs s3:ListBucket on arn:aws:s3:::{bucket}; no secret files from there"
                ));
                continue;
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("failed to list s3://{bucket}/{prefix}"));
            }
        };
        for object in objects {
            match secret_file_variable(&object.key) {
                Some(Ok(name)) => secret_keys.push((object.key, name)),
                Some(Err(error)) => job.log.warning(&format!("skipping {error}")),
                None => {}
            }
        }
    }
    let bodies = join_all(
        secret_keys.iter().map(|(key, _)| fetch(store.as_ref(), &bucket, key, MAX_OBJECT_BYTES)),
    )
    .await;
    let mut n_secrets = 0;
    for ((key, name), result) in secret_keys.iter().zip(bodies) {
        let body =
            match result.with_context(|| format!("failed to download s3://{bucket}/{key}"))? {
                Fetched::Found(body) => body,
                Fetched::Missing => continue,
                Fetched::Denied => {
                    denied_warning(job, &bucket, key);
                    continue;
                }
            };
        let Ok(text) = String::from_utf8(body) else {
            job.log.warning(&format!("skipping secret s3://{bucket}/{key}: it is not UTF-8 text"));
            continue;
        };
        if text.contains('\0') {
            job.log
                .warning(&format!("skipping secret s3://{bucket}/{key}: it contains a NUL byte"));
            continue;
        }
        let value = secret_file_value(&text);
        job.log.line(&format!("Adding secret s3://{bucket}/{key} to environment as {name}"));
        job.export(name, value)?;
        redacted.insert(value.to_owned());
        n_secrets += 1;
    }
    if n_secrets == 0 {
        job.log.line(&format!("No secret files found in {:?}", layout.prefix()));
    }
    redact::add(job, redacted);
    Ok(())
}

fn load_ssh_keys(
    job: &mut Job<'_>,
    settings: &SecretsSettings,
    keys: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    if keys.is_empty() {
        let ssh_repo = settings.repo.starts_with("git@") || settings.repo.starts_with("ssh://");
        if ssh_repo && !settings.skip_ssh_key_warning {
            job.log.warning("Failed to find an SSH key in secret bucket");
            job.log.line(&format!(
                "The repository {:?} appears to use SSH for transport, but the elastic-ci-stack-s3-secrets-hooks plugin did not find any SSH keys in the {:?} s3 bucket.",
                settings.repo, settings.bucket
            ));
            job.log.line("See https://buildkite.com/docs/agent/v3/elastic-ci-aws#ssh-keys for more information.");
        }
        return Ok(());
    }
    let agent = ssh_agent::ensure(job)?;
    for (key, body) in keys {
        ssh_agent::add_key(job, &agent, body, &format!("s3://{}/{key}", settings.bucket))?;
    }
    Ok(())
}

fn load_env_files(
    job: &mut Job<'_>,
    bucket: &str,
    files: &[(String, Vec<u8>)],
    redacted: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let files: Vec<EnvFile> = files
        .iter()
        .filter(|(_, body)| !body.is_empty())
        .map(|(key, body)| EnvFile { name: format!("s3://{bucket}/{key}"), body: body.clone() })
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    for file in &files {
        job.log.line(&format!("Loading {} ({} bytes) of env", file.name, file.body.len()));
    }
    let changes = env_files::evaluate(job, &files)?;
    if job.config.dump_env && !changes.is_empty() {
        job.log.section("Environment variables that were set");
        for change in &changes {
            let what = if matches!(change, EnvChange::Unset { .. }) {
                "unset"
            } else {
                "set (value hidden)"
            };
            job.log.line(&format!("{} {what}", change.name()));
        }
    }
    for change in changes {
        if let EnvChange::Export { name, value } = &change
            && is_redacted_name(name)
        {
            redacted.insert(value.clone());
        }
        job.apply(change)?;
    }
    Ok(())
}

fn load_git_credentials(
    job: &mut Job<'_>,
    bucket: &str,
    region: &str,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let program = std::env::current_exe()
        .context("failed to find the path of elastic-ci-hooks for the git credential helper")?;
    let program = program.to_string_lossy();
    let mut helpers = Vec::new();
    for (key, _) in files {
        job.log
            .line(&format!("Adding git-credentials in s3://{bucket}/{key} as a credential helper"));
        helpers.push(credential_helper(&program, bucket, region, key));
    }
    let existing = job.env.get("GIT_CONFIG_PARAMETERS").cloned();
    job.export("GIT_CONFIG_PARAMETERS", &git_config_parameters(existing.as_deref(), &helpers))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_capped_buffer_takes_up_to_its_limit_and_refuses_more() {
        let mut buffer = CappedBuffer::new(8);
        buffer.write_all(b"1234").await.unwrap();
        buffer.write_all(b"5678").await.unwrap();
        let error = buffer.write_all(b"9").await.unwrap_err();
        assert_eq!(error.to_string(), "the object is larger than the limit of 8 bytes");
        assert_eq!(buffer.into_inner(), b"12345678");
    }
}
