//! The hooks' settings, read from the job environment.
//!
//! The job environment is the agent's environment plus `cfn-env` (which the hook shim
//! sources first), the pipeline's variables and whatever earlier hooks exported. The
//! stack writes its own switches as exactly `true` or `false`, and they are compared
//! that way, as the original hooks did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use elastic_ci_core::boot::plan::AGENT_BINARY_PATH;
use elastic_ci_core::hooks::{RegistryIdError, ecr_account_ids, parse_switch};

/// Where the image installs this binary: the fallback when the running executable's
/// path cannot be read.
pub(crate) const INSTALLED_HOOKS_BINARY: &str = "/usr/local/bin/elastic-ci-hooks";

/// The bootstrapper's file name; the image installs it beside this binary.
pub(crate) const BOOTSTRAP_NAME: &str = "elastic-ci-bootstrap";

/// Where the image installs this binary, relative to the image's root.
const HOOKS_BINARY_IN_IMAGE: &str = "usr/local/bin/elastic-ci-hooks";

/// Attempts after the first for docker logins and ECR calls, unless the job sets its
/// own with `BUILDKITE_PLUGIN_ECR_RETRIES` or `BUILDKITE_PLUGIN_DOCKER_LOGIN_RETRIES`.
pub(crate) const DEFAULT_RETRIES: u32 = 3;

/// How long the hooks' commands may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommandLimits {
    /// docker ps and login, ssh-agent, ssh-add, check-disk, buildkite-agent: two
    /// minutes.
    pub(crate) quick: Duration,
    /// docker image and builder prune, the secrets bucket's env files and
    /// fix-permissions, whose time grows with the data: fifteen minutes.
    pub(crate) slow: Duration,
}

impl CommandLimits {
    pub(crate) const DEFAULT: CommandLimits =
        CommandLimits { quick: Duration::from_secs(120), slow: Duration::from_secs(900) };

    /// `ELASTIC_CI_COMMAND_TIMEOUT_SECS`, when set, is the limit of every command.
    fn from_env_map(env: &HashMap<String, String>) -> Result<CommandLimits, String> {
        let Some(raw) = non_empty(env, "ELASTIC_CI_COMMAND_TIMEOUT_SECS") else {
            return Ok(CommandLimits::DEFAULT);
        };
        match raw.parse::<u64>() {
            Ok(secs) if (1..=86_400).contains(&secs) => {
                let limit = Duration::from_secs(secs);
                Ok(CommandLimits { quick: limit, slow: limit })
            }
            _ => Err(format!(
                "invalid ELASTIC_CI_COMMAND_TIMEOUT_SECS {raw:?}: expected whole seconds from 1 to 86400; using the defaults"
            )),
        }
    }
}

/// What the `environment`, `pre-command` and `pre-exit` hooks read when they start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HooksConfig {
    /// The bootstrapper that provides `check-disk` and `fix-permissions`: the
    /// `elastic-ci-bootstrap` beside this binary ([`bootstrap_beside`]), never a path
    /// from the job's environment.
    pub(crate) bootstrap: PathBuf,
    /// The agent that `buildkite-agent stop` stops on a full disk: the image's
    /// `/usr/bin/buildkite-agent` under the root this binary is installed in
    /// ([`agent_in_image`]), never a program found on the job's `PATH`.
    pub(crate) agent: PathBuf,
    /// `TMPDIR`, or `/tmp`: where the per-job Docker config directory is made.
    pub(crate) tmp_dir: PathBuf,
    /// `BUILDKITE_STACK_VERSION`, for the section title.
    pub(crate) stack_version: String,
    /// `BUILDKITE_DOCKER_EXPERIMENTAL=true`.
    pub(crate) docker_experimental: bool,
    /// `DOCKER_PRUNE_UNTIL` (default `4h`).
    pub(crate) prune_until: String,
    /// `DOCKER_BUILDER_PRUNE_ENABLED=true`.
    pub(crate) builder_prune: bool,
    /// `BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL=true`.
    pub(crate) terminate_on_disk_full: bool,
    /// `ENABLE_PRE_EXIT_DISK_CLEANUP=true`.
    pub(crate) pre_exit_disk_cleanup: bool,
    /// `BUILDKITE_ECR_POLICY` other than `none` (or empty).
    pub(crate) ecr_enabled_by_stack: bool,
    /// `DOCKER_USERNS_REMAP` is `false` or unset: containers can leave root-owned
    /// files in the checkout, so fix-permissions runs.
    pub(crate) fix_permissions: bool,
    /// `BUILDKITE_BUILD_PATH` and `BUILDKITE_BUILD_CHECKOUT_PATH`.
    pub(crate) build_path: String,
    pub(crate) checkout_path: String,
    /// `BUILDKITE_PLUGIN_S3_SECRETS_DUMP_ENV` is `true` or `1`: list the variables the
    /// secrets set (names only).
    pub(crate) dump_env: bool,
    /// The commands' time limits (`ELASTIC_CI_COMMAND_TIMEOUT_SECS` sets them all).
    pub(crate) limits: CommandLimits,
    /// Settings that were invalid and replaced by their defaults, in words.
    pub(crate) warnings: Vec<String>,
}

fn value<'a>(env: &'a HashMap<String, String>, name: &str) -> &'a str {
    env.get(name).map_or("", String::as_str)
}

fn is_true(env: &HashMap<String, String>, name: &str) -> bool {
    value(env, name) == "true"
}

fn non_empty(env: &HashMap<String, String>, name: &str) -> Option<String> {
    Some(value(env, name).trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The bootstrapper installed beside `hooks_binary` (the running `elastic-ci-hooks`).
///
/// The job's environment cannot move it: a job that could name the program would
/// replace the disk check that protects the next jobs, and the program the hooks run
/// through sudo.
pub(crate) fn bootstrap_beside(hooks_binary: &Path) -> PathBuf {
    hooks_binary.with_file_name(format!("{BOOTSTRAP_NAME}{}", std::env::consts::EXE_SUFFIX))
}

/// The image's `buildkite-agent` for a hooks binary installed at `hooks_binary`: under
/// the directory that stands for `/` when the binary is at `<root>/usr/local/bin`,
/// else the real `/usr/bin/buildkite-agent`.
pub(crate) fn agent_in_image(hooks_binary: &Path) -> PathBuf {
    let agent = AGENT_BINARY_PATH.trim_start_matches('/');
    let root = hooks_binary
        .to_str()
        .and_then(|path| path.strip_suffix(HOOKS_BINARY_IN_IMAGE))
        .map_or(Path::new("/"), Path::new);
    root.join(agent)
}

impl HooksConfig {
    /// The settings of a hook run by `hooks_binary` (the running executable's path) in
    /// the job environment `env`.
    pub(crate) fn from_env_map(env: &HashMap<String, String>, hooks_binary: &Path) -> HooksConfig {
        let policy = value(env, "BUILDKITE_ECR_POLICY").trim();
        let mut warnings = Vec::new();
        let limits = CommandLimits::from_env_map(env).unwrap_or_else(|warning| {
            warnings.push(warning);
            CommandLimits::DEFAULT
        });
        HooksConfig {
            bootstrap: bootstrap_beside(hooks_binary),
            agent: agent_in_image(hooks_binary),
            tmp_dir: non_empty(env, "TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from),
            stack_version: value(env, "BUILDKITE_STACK_VERSION").to_owned(),
            docker_experimental: is_true(env, "BUILDKITE_DOCKER_EXPERIMENTAL"),
            prune_until: non_empty(env, "DOCKER_PRUNE_UNTIL").unwrap_or_else(|| "4h".to_owned()),
            builder_prune: is_true(env, "DOCKER_BUILDER_PRUNE_ENABLED"),
            terminate_on_disk_full: is_true(env, "BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL"),
            pre_exit_disk_cleanup: is_true(env, "ENABLE_PRE_EXIT_DISK_CLEANUP"),
            ecr_enabled_by_stack: !policy.is_empty() && policy != "none",
            fix_permissions: crate::platform::HAS_FIX_PERMISSIONS
                && env.get("DOCKER_USERNS_REMAP").is_none_or(|v| v == "false"),
            build_path: value(env, "BUILDKITE_BUILD_PATH").to_owned(),
            checkout_path: value(env, "BUILDKITE_BUILD_CHECKOUT_PATH").to_owned(),
            dump_env: matches!(value(env, "BUILDKITE_PLUGIN_S3_SECRETS_DUMP_ENV"), "true" | "1"),
            limits,
            warnings,
        }
    }
}

/// The S3 secrets settings, read after the environment hook exported the
/// `BUILDKITE_PLUGIN_S3_SECRETS_*` variables from the stack's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretsSettings {
    /// `BUILDKITE_PLUGIN_S3_SECRETS_BUCKET`.
    pub(crate) bucket: String,
    /// `BUILDKITE_PLUGIN_S3_SECRETS_REGION`: used as it is when set; otherwise the
    /// bucket's region is asked from S3.
    pub(crate) region: Option<String>,
    /// `BUILDKITE_PLUGIN_S3_SECRETS_BUCKET_PREFIX`, else `BUILDKITE_PIPELINE_SLUG`.
    pub(crate) bucket_prefix: Option<String>,
    pub(crate) pipeline_slug: Option<String>,
    /// `BUILDKITE_REPO`, for the missing-SSH-key warning.
    pub(crate) repo: String,
    /// `BUILDKITE_PLUGIN_S3_SECRETS_SKIP_SSH_KEY_NOT_FOUND_WARNING` is `true` (any
    /// case) or `1`.
    pub(crate) skip_ssh_key_warning: bool,
}

impl SecretsSettings {
    pub(crate) fn from_env_map(env: &HashMap<String, String>) -> SecretsSettings {
        let skip = value(env, "BUILDKITE_PLUGIN_S3_SECRETS_SKIP_SSH_KEY_NOT_FOUND_WARNING");
        SecretsSettings {
            bucket: value(env, "BUILDKITE_PLUGIN_S3_SECRETS_BUCKET").trim().to_owned(),
            region: non_empty(env, "BUILDKITE_PLUGIN_S3_SECRETS_REGION"),
            bucket_prefix: non_empty(env, "BUILDKITE_PLUGIN_S3_SECRETS_BUCKET_PREFIX"),
            pipeline_slug: non_empty(env, "BUILDKITE_PIPELINE_SLUG"),
            repo: value(env, "BUILDKITE_REPO").to_owned(),
            skip_ssh_key_warning: skip.eq_ignore_ascii_case("true") || skip == "1",
        }
    }
}

/// The ECR login settings, read after the environment hook exported the
/// `BUILDKITE_PLUGIN_ECR_*` variables from the stack's (the names of the ECR plugin,
/// so pipelines that configured the plugin keep working).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EcrSettings {
    /// `BUILDKITE_PLUGIN_ECR_LOGIN` is `true` or `1`.
    pub(crate) login: bool,
    /// `BUILDKITE_PLUGIN_ECR_RETRIES`.
    pub(crate) retries: u32,
    /// `BUILDKITE_PLUGIN_ECR_CREDENTIAL_HELPER` is `true` or `1`.
    pub(crate) credential_helper: bool,
    /// Unless `BUILDKITE_PLUGIN_ECR_CREDENTIAL_HELPER_IGNORE_CREDS_STORAGE` is `false`
    /// or `0`.
    pub(crate) ignore_creds_storage: bool,
    /// `BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS_0`, `_1`, … (or `BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS`),
    /// comma-separated; empty means this instance's own account.
    pub(crate) account_ids: Vec<String>,
    /// `BUILDKITE_PLUGIN_ECR_REGISTRY_REGION`, `BUILDKITE_PLUGIN_ECR_REGION`,
    /// `AWS_DEFAULT_REGION`, `AWS_REGION`; `None` means none is set.
    pub(crate) region: Option<String>,
    /// `BUILDKITE_PLUGIN_ECR_PROFILE`.
    pub(crate) profile: Option<String>,
    /// `BUILDKITE_PLUGIN_ECR_ASSUME_ROLE_ROLE_ARN` (not supported by the built-in login).
    pub(crate) assume_role: Option<String>,
    /// The job asked for the login itself (`AWS_ECR_LOGIN=true` or registry ids), as
    /// opposed to getting the stack's default.
    pub(crate) requested_by_job: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EcrSettingsError {
    #[error(transparent)]
    RegistryId(#[from] RegistryIdError),
    #[error("invalid {name} {value:?}: expected a number of retries from 0 to 10")]
    Retries { name: &'static str, value: String },
}

/// Reads a retry count; unset or empty is the default.
pub(crate) fn retries(
    env: &HashMap<String, String>,
    name: &'static str,
) -> Result<u32, EcrSettingsError> {
    match non_empty(env, name) {
        None => Ok(DEFAULT_RETRIES),
        Some(value) => match value.parse::<u32>() {
            Ok(n) if n <= 10 => Ok(n),
            _ => Err(EcrSettingsError::Retries { name, value }),
        },
    }
}

impl EcrSettings {
    pub(crate) fn from_env_map(
        env: &HashMap<String, String>,
    ) -> Result<EcrSettings, EcrSettingsError> {
        let numbered: Vec<&str> = (0..)
            .map(|i| value(env, &format!("BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS_{i}")))
            .take_while(|v| !v.is_empty())
            .collect();
        let account_ids = if numbered.is_empty() {
            ecr_account_ids([value(env, "BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS")])?
        } else {
            ecr_account_ids(numbered)?
        };
        let region = [
            "BUILDKITE_PLUGIN_ECR_REGISTRY_REGION",
            "BUILDKITE_PLUGIN_ECR_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
        ]
        .iter()
        .find_map(|name| non_empty(env, name));
        let truthy = |name| matches!(value(env, name), "true" | "1");
        Ok(EcrSettings {
            login: truthy("BUILDKITE_PLUGIN_ECR_LOGIN"),
            retries: retries(env, "BUILDKITE_PLUGIN_ECR_RETRIES")?,
            credential_helper: truthy("BUILDKITE_PLUGIN_ECR_CREDENTIAL_HELPER"),
            ignore_creds_storage: !matches!(
                value(env, "BUILDKITE_PLUGIN_ECR_CREDENTIAL_HELPER_IGNORE_CREDS_STORAGE"),
                "false" | "0"
            ),
            account_ids,
            region,
            profile: non_empty(env, "BUILDKITE_PLUGIN_ECR_PROFILE"),
            assume_role: non_empty(env, "BUILDKITE_PLUGIN_ECR_ASSUME_ROLE_ROLE_ARN"),
            requested_by_job: parse_switch(value(env, "AWS_ECR_LOGIN")) == Some(true)
                || !value(env, "AWS_ECR_LOGIN_REGISTRY_IDS").trim().is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_follow_the_ami() {
        let config = HooksConfig::from_env_map(&env(&[]), Path::new(INSTALLED_HOOKS_BINARY));
        let bootstrap =
            format!("/usr/local/bin/elastic-ci-bootstrap{}", std::env::consts::EXE_SUFFIX);
        assert_eq!(config.bootstrap, Path::new(&bootstrap));
        assert_eq!(config.agent, Path::new("/usr/bin/buildkite-agent"));
        assert_eq!(config.tmp_dir, PathBuf::from("/tmp"));
        assert_eq!(config.prune_until, "4h");
        // Windows has no fix-permissions.
        assert_eq!(config.fix_permissions, cfg!(unix));
        assert!(!config.ecr_enabled_by_stack);
        assert!(!config.terminate_on_disk_full);
    }

    #[test]
    fn reads_the_stack_switches() {
        let config = HooksConfig::from_env_map(
            &env(&[
                ("TMPDIR", "/var/tmp"),
                ("BUILDKITE_DOCKER_EXPERIMENTAL", "true"),
                ("DOCKER_PRUNE_UNTIL", "1h"),
                ("DOCKER_BUILDER_PRUNE_ENABLED", "true"),
                ("BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL", "true"),
                ("ENABLE_PRE_EXIT_DISK_CLEANUP", "TRUE"),
                ("BUILDKITE_ECR_POLICY", "readonly"),
                ("DOCKER_USERNS_REMAP", "true"),
                ("BUILDKITE_PLUGIN_S3_SECRETS_DUMP_ENV", "1"),
            ]),
            Path::new("/opt/elastic-ci/elastic-ci-hooks"),
        );
        let bootstrap =
            format!("/opt/elastic-ci/elastic-ci-bootstrap{}", std::env::consts::EXE_SUFFIX);
        assert_eq!(config.bootstrap, Path::new(&bootstrap));
        assert_eq!(config.agent, Path::new("/usr/bin/buildkite-agent"));
        let under_root = Path::new("/tmp/image/usr/local/bin/elastic-ci-hooks");
        assert_eq!(agent_in_image(under_root), Path::new("/tmp/image/usr/bin/buildkite-agent"));
        assert_eq!(config.tmp_dir, PathBuf::from("/var/tmp"));
        assert!(
            config.docker_experimental && config.builder_prune && config.terminate_on_disk_full
        );
        assert!(!config.pre_exit_disk_cleanup, "the stack writes exactly `true`");
        assert!(config.ecr_enabled_by_stack && !config.fix_permissions && config.dump_env);
        assert_eq!(config.prune_until, "1h");
    }

    #[test]
    fn reads_ecr_settings_with_plugin_names() {
        let settings = EcrSettings::from_env_map(&env(&[
            ("BUILDKITE_PLUGIN_ECR_LOGIN", "1"),
            ("BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS_0", "111122223333,444455556666"),
            ("BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS_1", "777788889999"),
            ("BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS", "000000000000"),
            ("BUILDKITE_PLUGIN_ECR_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ECR_LOGIN_REGISTRY_IDS", "111122223333"),
        ]))
        .unwrap();
        assert!(settings.login && settings.requested_by_job && settings.ignore_creds_storage);
        assert_eq!(settings.account_ids, ["111122223333", "444455556666", "777788889999"]);
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(settings.retries, DEFAULT_RETRIES);

        let off =
            EcrSettings::from_env_map(&env(&[("BUILDKITE_PLUGIN_ECR_LOGIN", "false")])).unwrap();
        assert!(
            !off.login
                && !off.requested_by_job
                && off.account_ids.is_empty()
                && off.region.is_none()
        );
    }

    #[test]
    fn rejects_bad_ecr_values_naming_them() {
        let error =
            EcrSettings::from_env_map(&env(&[("BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS", "12;id")]))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid ECR registry id \"12;id\": expected a 12-digit AWS account id"
        );
        let error = EcrSettings::from_env_map(&env(&[("BUILDKITE_PLUGIN_ECR_RETRIES", "many")]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid BUILDKITE_PLUGIN_ECR_RETRIES \"many\": expected a number of retries from 0 to 10"
        );
    }

    #[test]
    fn reads_secrets_settings() {
        let settings = SecretsSettings::from_env_map(&env(&[
            ("BUILDKITE_PLUGIN_S3_SECRETS_BUCKET", "secrets"),
            ("BUILDKITE_PLUGIN_S3_SECRETS_REGION", ""),
            ("BUILDKITE_PIPELINE_SLUG", "app"),
            ("BUILDKITE_PLUGIN_S3_SECRETS_SKIP_SSH_KEY_NOT_FOUND_WARNING", "TRUE"),
        ]));
        assert_eq!(settings.bucket, "secrets");
        assert_eq!(settings.region, None);
        assert_eq!(settings.pipeline_slug.as_deref(), Some("app"));
        assert!(settings.skip_ssh_key_warning);
    }
}
