//! Docker: the per-job client configuration directory, the daemon check, pruning,
//! registry logins and the ECR credential-helper configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use elastic_ci_aws::retry::{Attempt, Retrying, retry};
use elastic_ci_core::backoff::Backoff;
use elastic_ci_core::secret::Secret;

use crate::job::Job;
use crate::process;

/// Names of per-job Docker config directories start with this, so `pre-exit` only
/// ever removes a directory this hook made.
pub(crate) const CONFIG_DIR_PREFIX: &str = "elastic-ci-docker-config-";

/// Creates an empty, private (0700) Docker client configuration directory.
pub(crate) fn create_config_dir(tmp_dir: &Path) -> anyhow::Result<PathBuf> {
    // Created with mode 0700 (not the umask's default), so registry credentials written
    // into it are never readable by other users, not even for a moment.
    let mut builder = tempfile::Builder::new();
    builder.prefix(CONFIG_DIR_PREFIX);
    crate::platform::private_temp_dir(&mut builder);
    let dir = builder.tempdir_in(tmp_dir).with_context(|| {
        format!("failed to create a Docker config directory in {}", tmp_dir.display())
    })?;
    Ok(dir.keep())
}

/// Whether `path` is a per-job Docker config directory this hook made: directly in
/// `tmp_dir`, named with [`CONFIG_DIR_PREFIX`], a real directory (not a symlink) owned
/// by us. The job can change the variable that names it, so `pre-exit` checks before
/// it removes anything.
pub(crate) fn check_config_dir(path: &Path, tmp_dir: &Path) -> Result<(), &'static str> {
    let name = path.file_name().and_then(|name| name.to_str()).ok_or("it has no file name")?;
    if !name.starts_with(CONFIG_DIR_PREFIX) {
        return Err("its name does not start with the per-job prefix");
    }
    let parent = path.parent().ok_or("it has no parent directory")?;
    let same_parent = match (parent.canonicalize(), tmp_dir.canonicalize()) {
        (Ok(parent), Ok(tmp_dir)) => parent == tmp_dir,
        _ => false,
    };
    if !same_parent {
        return Err("it is not directly in the temporary directory");
    }
    let meta = path.symlink_metadata().map_err(|_| "it does not exist")?;
    if !meta.file_type().is_dir() {
        return Err("it is not a directory");
    }
    if !crate::platform::owned_by_us(&meta) {
        return Err("it belongs to another user");
    }
    Ok(())
}

/// Reads `config.json` in a Docker config directory as a JSON object (empty when the
/// file does not exist).
fn read_config(dir: &Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let path = dir.join("config.json");
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => bail!("invalid Docker config {}: expected a JSON object", path.display()),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Map::new()),
        Err(error) => Err(error).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// Writes `config.json` through a temporary file renamed into place.
fn write_config(
    dir: &Path,
    config: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let path = dir.join("config.json");
    let text =
        serde_json::to_string_pretty(config).context("failed to render the Docker config")?;
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("failed to write {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))?;
    file.persist(&path).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

/// Turns on the Docker CLI's experimental features in a config directory.
pub(crate) fn enable_experimental(dir: &Path) -> anyhow::Result<()> {
    let mut config = read_config(dir)?;
    config.insert("experimental".to_owned(), "enabled".into());
    write_config(dir, &config)
}

/// Maps each registry host to the ECR credential helper in a config directory.
pub(crate) fn add_credential_helpers(dir: &Path, hosts: &[String]) -> anyhow::Result<()> {
    let mut config = read_config(dir)?;
    let helpers = config
        .entry("credHelpers")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    let serde_json::Value::Object(helpers) = helpers else {
        bail!("invalid Docker config in {}: credHelpers is not an object", dir.display());
    };
    for host in hosts {
        helpers.insert(host.clone(), "ecr-login".into());
    }
    write_config(dir, &config)
}

/// `docker`, from the job's `PATH`.
pub(crate) fn find(job: &Job<'_>) -> Option<PathBuf> {
    process::find_program("docker", &job.env)
}

/// Prunes images (and, when enabled, the build cache) older than `DOCKER_PRUNE_UNTIL`.
/// Failures are logged and otherwise ignored: the disk check that follows decides.
pub(crate) fn prune(job: &Job<'_>) {
    let Some(docker) = find(job) else {
        job.log.line("Docker is not installed: nothing to prune");
        return;
    };
    let until = format!("until={}", job.config.prune_until);
    let mut runs = vec![vec!["image", "prune", "--all", "--force", "--filter", until.as_str()]];
    if job.config.builder_prune {
        runs.push(vec!["builder", "prune", "--all", "--force", "--filter", until.as_str()]);
    }
    for args in runs {
        match process::run(&mut process::command(&docker, &args, &job.env), job.config.limits.slow)
        {
            Ok(status) if status.success() => {}
            Ok(status) => job.log.line(&format!(
                "docker {} {} failed ({}), continuing",
                args[0],
                args[1],
                process::describe(status)
            )),
            Err(error) => job.log.line(&format!("{error:#}, continuing")),
        }
    }
}

/// `docker login --username USER --password-stdin [SERVER]`, with the password on
/// stdin, retried `retries` more times after a refusal with waits of 1, 2, 3… s
/// ([`login_backoff`]). A docker that cannot be run is not retried.
pub(crate) async fn login(
    job: &Job<'_>,
    docker: &Path,
    server: Option<&str>,
    username: &str,
    password: &Secret,
    retries: u32,
) -> anyhow::Result<()> {
    let mut args = vec!["login", "--username", username, "--password-stdin"];
    if let Some(server) = server {
        args.push(server);
    }
    let input = password.expose().trim_end_matches(['\n', '\r']);
    let schedule = login_backoff(retries);
    let refused = |failure: &LoginFailure| matches!(failure, LoginFailure::Refused);
    let attempt = |_| {
        let command = &mut process::command(docker, &args, &job.env);
        let result =
            match process::run_with_input(command, input.as_bytes(), job.config.limits.quick) {
                Ok(status) if status.success() => Ok(()),
                Ok(_) => Err(LoginFailure::Refused),
                Err(error) => Err(LoginFailure::NotRun(error)),
            };
        std::future::ready(result)
    };
    match retry(schedule, refused, log_login_retry(job), attempt).await {
        Ok(()) => Ok(()),
        Err(LoginFailure::NotRun(error)) => Err(error),
        Err(LoginFailure::Refused) => {
            let registry = server.unwrap_or("Docker Hub");
            bail!(
                "docker login to {registry} as {username} failed after {} attempts",
                schedule.attempts
            )
        }
    }
}

/// The registry logins' schedule, the plugins': `retries + 1` attempts, waiting one
/// second longer after each failure.
pub(crate) fn login_backoff(retries: u32) -> Backoff {
    // Retries are at most 10 (`config::retries`), so the cap is never reached.
    Backoff::linear(retries.saturating_add(1), Duration::from_secs(1), Duration::from_secs(10))
}

/// The job-log line before a login's next attempt, in the plugins' words.
pub(crate) fn log_login_retry<'a, E>(job: &'a Job<'_>) -> impl Fn(&Retrying<'_, E>) + 'a {
    move |retrying| {
        let Attempt { number, attempts } = retrying.attempt;
        job.log.line(&format!(
            "Login failed on attempt {number} of {attempts}. Trying again in {} seconds...",
            retrying.delay.as_secs()
        ));
    }
}

enum LoginFailure {
    /// docker ran and refused the credentials or could not reach the registry.
    Refused,
    /// docker could not be run at all.
    NotRun(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn makes_private_config_dirs_and_recognises_only_its_own() {
        use std::os::unix::fs::PermissionsExt;

        let tmp = tempfile::tempdir().unwrap();
        let dir = create_config_dir(tmp.path()).unwrap();
        assert_eq!(dir.metadata().unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(check_config_dir(&dir, tmp.path()), Ok(()));

        let other = tmp.path().join("not-ours");
        std::fs::create_dir(&other).unwrap();
        assert!(check_config_dir(&other, tmp.path()).is_err());
        let elsewhere = tempfile::tempdir().unwrap();
        let foreign = elsewhere.path().join(format!("{CONFIG_DIR_PREFIX}x"));
        std::fs::create_dir(&foreign).unwrap();
        assert_eq!(
            check_config_dir(&foreign, tmp.path()),
            Err("it is not directly in the temporary directory")
        );
        let link = tmp.path().join(format!("{CONFIG_DIR_PREFIX}link"));
        std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
        assert_eq!(check_config_dir(&link, tmp.path()), Err("it is not a directory"));
    }

    #[test]
    fn edits_config_json() {
        let tmp = tempfile::tempdir().unwrap();
        enable_experimental(tmp.path()).unwrap();
        add_credential_helpers(
            tmp.path(),
            &["111122223333.dkr.ecr.us-east-1.amazonaws.com".to_owned()],
        )
        .unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(
            config,
            serde_json::json!({
                "experimental": "enabled",
                "credHelpers": {"111122223333.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}
            })
        );
        std::fs::write(tmp.path().join("config.json"), "[]").unwrap();
        assert!(
            enable_experimental(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("expected a JSON object")
        );
    }
}
