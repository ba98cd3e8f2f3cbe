//! `/etc/buildkite-agent/buildkite-agent.cfg`: the agent's configuration file, with
//! every key the original stack writes, in the same order.
//!
//! The agent reads one `key=value` per line, trims spaces and strips one pair of
//! surrounding double quotes; nothing is unescaped or expanded. So the only way a value
//! can change another setting is a line break, and [`AgentConfig::render`] refuses any
//! control character in any value (the boot configuration already refuses them in its
//! inputs; this covers the token and the facts read from the instance).

use crate::boot::config::BootConfig;
use crate::boot::plan::{
    BUILD_PATH, GIT_MIRRORS_PATH, HOOKS_PATH, InstanceFacts, PLUGINS_PATH, SIGNING_KEY_PATH,
    VERIFICATION_KEY_PATH,
};
use crate::secret::Secret;

/// Where an instance keeps the agent's files, and what else differs between the
/// operating systems in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentPaths {
    pub hooks: &'static str,
    pub build: &'static str,
    pub plugins: &'static str,
    pub git_mirrors: &'static str,
    pub signing_key: &'static str,
    pub verification_key: &'static str,
    /// The agent's `shell` setting, when not its default.
    pub shell: Option<&'static str>,
    /// Who may read the file, for its header.
    pub access: &'static str,
}

/// The Linux layout.
pub const LINUX_PATHS: AgentPaths = AgentPaths {
    hooks: HOOKS_PATH,
    build: BUILD_PATH,
    plugins: PLUGINS_PATH,
    git_mirrors: GIT_MIRRORS_PATH,
    signing_key: SIGNING_KEY_PATH,
    verification_key: VERIFICATION_KEY_PATH,
    shell: None,
    access: "root:buildkite-agent, mode 0640",
};

/// The configuration file without its token: everything is known when the plan is
/// made, the token only when the file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    lines: Vec<Line>,
    access: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    key: &'static str,
    value: Value,
    quoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(String),
    Token,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentConfigError {
    #[error("the agent token is empty")]
    EmptyToken,
    #[error("the agent token contains a line break or another control character")]
    TokenControlCharacter,
    #[error("the value of {key} contains a line break or another control character")]
    ControlCharacter { key: &'static str },
}

impl AgentConfig {
    pub fn new(config: &BootConfig, facts: &InstanceFacts) -> AgentConfig {
        AgentConfig::with_paths(config, facts, &LINUX_PATHS)
    }

    /// The configuration for an instance whose files are at `paths`.
    pub fn with_paths(
        config: &BootConfig,
        facts: &InstanceFacts,
        paths: &AgentPaths,
    ) -> AgentConfig {
        let mut lines = vec![
            Line {
                key: "name",
                value: Value::Text(format!("{}-{}-%spawn", config.stack_name, facts.instance_id)),
                quoted: true,
            },
            Line { key: "token", value: Value::Token, quoted: true },
        ];
        let mut push = |key: &'static str, value: String, quoted: bool| {
            lines.push(Line { key, value: Value::Text(value), quoted });
        };
        push("tags", agent_tags(config, facts).join(","), false);
        push("endpoint", config.agent_endpoint.clone(), false);
        push("tags-from-ec2-meta-data", "true".to_owned(), false);
        push("no-ansi-timestamps", config.timestamp_lines.to_string(), false);
        push("timestamp-lines", config.timestamp_lines.to_string(), false);
        push("hooks-path", paths.hooks.to_owned(), false);
        push("build-path", paths.build.to_owned(), false);
        push("plugins-path", paths.plugins.to_owned(), false);
        let mirrors = if config.git_mirrors { paths.git_mirrors } else { "" };
        push("git-mirrors-path", mirrors.to_owned(), true);
        push("experiment", config.experiments.clone().unwrap_or_default(), true);
        push("priority", "%n".to_owned(), false);
        push("spawn", config.agents_per_instance.to_string(), false);
        push("no-color", "true".to_owned(), false);
        if let Some(shell) = paths.shell {
            push("shell", shell.to_owned(), false);
        }
        push("disconnect-after-idle-timeout", config.scale_in_idle_period_secs.to_string(), false);
        push("disconnect-after-job", config.terminate_after_job.to_string(), false);
        push("disconnect-after-uptime", config.disconnect_after_uptime_secs.to_string(), false);
        let tracing_backend = config.tracing_backend.map(|backend| backend.as_str());
        push("tracing-backend", tracing_backend.unwrap_or_default().to_owned(), false);
        push("cancel-grace-period", config.cancel_grace_period_secs.to_string(), false);
        // -1 leaves the agent's own default.
        let signal_grace_period = config.signal_grace_period_secs.map_or(-1, i64::from);
        push("signal-grace-period-seconds", signal_grace_period.to_string(), false);
        push("signing-aws-kms-key", config.signing_kms_key.clone().unwrap_or_default(), false);
        let behavior = config.verification_failure_behavior.as_str();
        push("verification-failure-behavior", behavior.to_owned(), false);
        if config.signing_key_parameter.is_some() {
            push("signing-jwks-file", paths.signing_key.to_owned(), false);
        }
        if let Some(id) = &config.signing_key_id {
            push("signing-jwks-key-id", id.clone(), false);
        }
        if config.verification_key_parameter.is_some() {
            push("verification-jwks-file", paths.verification_key.to_owned(), false);
        }
        AgentConfig { lines, access: paths.access }
    }

    /// The file's contents with the token in place. The result holds the token: it goes
    /// to the file and nowhere else.
    pub fn render(&self, token: &Secret) -> Result<Secret, AgentConfigError> {
        let token = token.expose();
        if token.trim().is_empty() {
            return Err(AgentConfigError::EmptyToken);
        }
        if token.chars().any(char::is_control) {
            return Err(AgentConfigError::TokenControlCharacter);
        }
        self.render_with(token).map(Secret::new)
    }

    /// The file as it will be written, with the token replaced by a placeholder: for
    /// the dry-run plan and for tests.
    pub fn render_redacted(&self) -> Result<String, AgentConfigError> {
        self.render_with("<token from SSM>")
    }

    fn render_with(&self, token: &str) -> Result<String, AgentConfigError> {
        let mut out = format!(
            "# Written by elastic-ci-bootstrap at boot. It holds the agent registration token:\n\
             # {}. Changes are overwritten on the next boot.\n",
            self.access
        );
        for line in &self.lines {
            let value = match &line.value {
                Value::Token => token,
                Value::Text(text) => {
                    if text.chars().any(char::is_control) {
                        return Err(AgentConfigError::ControlCharacter { key: line.key });
                    }
                    text.as_str()
                }
            };
            out.push_str(line.key);
            out.push('=');
            if line.quoted {
                out.push('"');
                out.push_str(value);
                out.push('"');
            } else {
                out.push_str(value);
            }
            out.push('\n');
        }
        Ok(out)
    }
}

/// The built-in tags followed by `BUILDKITE_AGENT_TAGS`.
pub fn agent_tags(config: &BootConfig, facts: &InstanceFacts) -> Vec<String> {
    let mut tags = vec![
        format!("queue={}", config.queue),
        format!("docker={}", facts.docker_version),
        format!("stack={}", config.stack_name),
        format!("buildkite-aws-stack={}", config.stack_version),
        format!("stack-deployed-by={}", config.deployed_by),
    ];
    tags.extend(config.agent_tags.iter().cloned());
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::config::tests::full_env;
    use crate::boot::plan::tests::facts;

    #[test]
    fn golden_agent_config() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        let rendered =
            AgentConfig::new(&config, &facts()).render(&Secret::new("bkat_example")).unwrap();
        expect_test::expect![[r##"
            # Written by elastic-ci-bootstrap at boot. It holds the agent registration token:
            # root:buildkite-agent, mode 0640. Changes are overwritten on the next boot.
            name="ci-linux-i-0123456789abcdef0-%spawn"
            token="bkat_example"
            tags=queue=default,docker=27.1.1,stack=ci-linux,buildkite-aws-stack=v7.0.0,stack-deployed-by=cloudformation,os=linux,size=large
            endpoint=https://agent-edge.buildkite.com/v3
            tags-from-ec2-meta-data=true
            no-ansi-timestamps=false
            timestamp-lines=false
            hooks-path=/etc/buildkite-agent/hooks
            build-path=/var/lib/buildkite-agent/builds
            plugins-path=/var/lib/buildkite-agent/plugins
            git-mirrors-path="/var/lib/buildkite-agent/git-mirrors"
            experiment="normalised-upload-paths"
            priority=%n
            spawn=2
            no-color=true
            disconnect-after-idle-timeout=600
            disconnect-after-job=false
            disconnect-after-uptime=0
            tracing-backend=
            cancel-grace-period=60
            signal-grace-period-seconds=-1
            signing-aws-kms-key=
            verification-failure-behavior=block
        "##]].assert_eq(rendered.expose());
    }

    #[test]
    fn refuses_tokens_that_could_add_settings() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        let agent_config = AgentConfig::new(&config, &facts());
        assert_eq!(
            agent_config.render(&Secret::new("tok\nhooks-path=/tmp")).unwrap_err(),
            AgentConfigError::TokenControlCharacter
        );
        assert_eq!(
            agent_config.render(&Secret::new("  ")).unwrap_err(),
            AgentConfigError::EmptyToken
        );
        let rendered = agent_config.render(&Secret::new("s3cr3t\"x")).unwrap();
        assert!(rendered.expose().contains("\ntoken=\"s3cr3t\"x\"\n"));
    }

    #[test]
    fn refuses_facts_with_line_breaks() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        let mut facts = facts();
        facts.docker_version = "27.0\nbuild-path=/".to_owned();
        let error = AgentConfig::new(&config, &facts).render(&Secret::new("t")).unwrap_err();
        assert_eq!(error, AgentConfigError::ControlCharacter { key: "tags" });
    }

    #[test]
    fn adds_signing_lines_only_when_configured() {
        let mut env = full_env();
        env.insert("BUILDKITE_AGENT_SIGNING_KEY_PATH".into(), "/ci/signing".into());
        env.insert("BUILDKITE_AGENT_SIGNING_KEY_ID".into(), "key-1".into());
        let config = BootConfig::from_env_map(&env).unwrap();
        let text = AgentConfig::new(&config, &facts()).render_redacted().unwrap();
        assert!(text.ends_with(
            "signing-jwks-file=/etc/buildkite-agent/signing-key.json\nsigning-jwks-key-id=key-1\n"
        ));
        assert!(!text.contains("verification-jwks-file"));
    }
}
