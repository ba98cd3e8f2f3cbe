//! `/var/lib/buildkite-agent/cfn-env`: the stack settings every job sees, sourced by
//! the agent's environment hook.
//!
//! The file keeps the original's shape: two helper functions, then one call per
//! variable. `set_always NAME VALUE` prints `export NAME="VALUE"` into the job log and
//! exports it, so a pipeline cannot override it; `set_unless_present NAME VALUE` leaves
//! a variable the job already has (even empty) alone and says so, without printing the
//! job's value (which may be a secret). Values are single-quoted with
//! [`crate::shell::quote`], so no byte of a value is expanded or run when the file is
//! sourced, unlike the original's unescaped double quotes.
//!
//! Everything here shows up in build logs and CloudWatch, so it must never hold a
//! secret: the token and signing keys are not in [`entries`] by construction.
//!
//! [`parse`] reads the assignments back without a shell, for programs (the hooks) that
//! must not source a file the agent user can rewrite.

use std::fmt;

use crate::boot::config::BootConfig;
use crate::boot::plan::InstanceFacts;
use crate::envfile::is_valid_name;
use crate::shell;

/// How a variable is set when the file is sourced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// Always exported, overriding the job's value.
    Always,
    /// Exported only when the job does not have the variable yet.
    UnlessPresent,
}

impl SetMode {
    fn function(self) -> &'static str {
        match self {
            SetMode::Always => "set_always",
            SetMode::UnlessPresent => "set_unless_present",
        }
    }
}

/// One variable of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfnEnvEntry {
    pub mode: SetMode,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cfn-env line {line}: {reason}")]
pub struct CfnEnvError {
    pub line: usize,
    pub reason: String,
}

/// The line after which the assignments start.
const ASSIGNMENTS_MARKER: &str = "# Assignments (one per variable; values are single-quoted):";

const HEADER: &str = r#"# Written by elastic-ci-bootstrap at boot and sourced by the agent's environment hook
# in every job. Every value here is printed into build logs and CloudWatch and cannot be
# redacted: never put a secret in this file.

# Prints and exports a variable, overriding the job's own value.
set_always() {
  local name="$1" value="$2"
  printf 'export %s="%s"\n' "$name" "$value"
  export "$name=$value"
}

# Exports a variable unless the job already has it (even empty); never prints the
# job's value.
set_unless_present() {
  local name="$1" value="$2"
  if [[ -n "${!name+set}" ]]; then
    echo "^^^ +++"
    echo ":warning: $name already set, NOT overriding!"
  else
    set_always "$name" "$value"
  fi
}
"#;

/// The variables of the file, in the original's order.
pub fn entries(config: &BootConfig, facts: &InstanceFacts) -> Vec<CfnEnvEntry> {
    let always = |name: &str, value: String| CfnEnvEntry {
        mode: SetMode::Always,
        name: name.to_owned(),
        value,
    };
    let unless_present = |name: &str, value: String| CfnEnvEntry {
        mode: SetMode::UnlessPresent,
        name: name.to_owned(),
        value,
    };
    let flag = |value: bool| value.to_string();
    vec![
        always("BUILDKITE_AGENTS_PER_INSTANCE", config.agents_per_instance.to_string()),
        always("BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB", flag(config.terminate_after_job)),
        always("BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL", flag(config.terminate_on_disk_full)),
        always("BUILDKITE_PURGE_BUILDS_ON_DISK_FULL", flag(config.purge_builds_on_disk_full)),
        always("BUILDKITE_ECR_POLICY", config.ecr_policy.to_string()),
        always("ECR_CREDENTIAL_HELPER_ENABLED", flag(config.ecr_credential_helper)),
        always("BUILDKITE_SECRETS_BUCKET", config.secrets_bucket.clone().unwrap_or_default()),
        always(
            "BUILDKITE_SECRETS_BUCKET_REGION",
            config.secrets_bucket_region.clone().unwrap_or_default(),
        ),
        always("BUILDKITE_STACK_NAME", config.stack_name.clone()),
        always("BUILDKITE_STACK_VERSION", config.stack_version.clone()),
        always("BUILDKITE_DOCKER_EXPERIMENTAL", flag(config.docker.experimental)),
        always("DOCKER_USERNS_REMAP", flag(config.docker.userns_remap)),
        always("ENABLE_PRE_EXIT_DISK_CLEANUP", flag(config.docker.pre_exit_disk_cleanup)),
        always("DOCKER_PRUNE_UNTIL", config.docker.prune_until.clone()),
        always("DOCKER_BUILDER_PRUNE_ENABLED", flag(config.docker.builder_prune)),
        always("DOCKER_VERSION", facts.docker_version.clone()),
        always("PLUGINS_ENABLED", plugins_enabled(config)),
        always("BUILDKITE_ARTIFACTS_BUCKET", config.artifacts_bucket.clone().unwrap_or_default()),
        always("BUILDKITE_S3_DEFAULT_REGION", config.s3_default_region.clone()),
        always("BUILDKITE_S3_ACL", config.s3_acl.to_string()),
        unless_present(
            "BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING",
            flag(config.skip_ssh_key_not_found_warning),
        ),
        unless_present("AWS_DEFAULT_REGION", config.region.clone()),
        unless_present("AWS_REGION", config.region.clone()),
    ]
}

/// `secrets ecr docker-login`, keeping only the enabled plugins, in that order.
pub fn plugins_enabled(config: &BootConfig) -> String {
    let plugins = &config.plugins;
    [(plugins.secrets, "secrets"), (plugins.ecr, "ecr"), (plugins.docker_login, "docker-login")]
        .into_iter()
        .filter_map(|(enabled, name)| enabled.then_some(name))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The whole file.
pub fn render(entries: &[CfnEnvEntry]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    out.push_str(ASSIGNMENTS_MARKER);
    out.push('\n');
    for entry in entries {
        out.push_str(entry.mode.function());
        out.push(' ');
        out.push_str(&entry.name);
        out.push(' ');
        out.push_str(&shell::quote(&entry.value));
        out.push('\n');
    }
    out
}

/// Reads back the assignments of a file [`render`] wrote, without running a shell.
pub fn parse(text: &str) -> Result<Vec<CfnEnvEntry>, CfnEnvError> {
    let Some(start) = text.find(ASSIGNMENTS_MARKER) else {
        return Err(CfnEnvError {
            line: 1,
            reason: "not written by elastic-ci-bootstrap (no assignments marker)".to_owned(),
        });
    };
    let mut line = text[..start].matches('\n').count() + 2;
    let body = &text[start + ASSIGNMENTS_MARKER.len()..];
    let body = body.strip_prefix('\n').unwrap_or(body);
    let mut chars = body.chars().peekable();
    let mut entries = Vec::new();
    while chars.peek().is_some() {
        let entry_line = line;
        let fail = |reason: String| CfnEnvError { line: entry_line, reason };
        let mut word = || -> String {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' || c == '\n' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            word
        };
        let function = word();
        let mode = match function.as_str() {
            "set_always" => SetMode::Always,
            "set_unless_present" => SetMode::UnlessPresent,
            other => {
                return Err(fail(format!(
                    "expected set_always or set_unless_present, found {other:?}"
                )));
            }
        };
        if chars.next() != Some(' ') {
            return Err(fail(format!("{function} without a name")));
        }
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != ' ' && *c != '\n')).collect();
        if !is_valid_name(&name) {
            return Err(fail(format!("invalid variable name {name:?}")));
        }
        if chars.next() != Some(' ') {
            return Err(fail(format!("{name} has no value")));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None | Some('\n') => break,
                Some('\'') => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            value.push(c);
                        }
                        None => {
                            return Err(fail(format!(
                                "the value of {name} has an unterminated quote"
                            )));
                        }
                    }
                },
                Some('\\') => match chars.next() {
                    Some(c) if c != '\n' => value.push(c),
                    _ => return Err(fail(format!("the value of {name} ends with a backslash"))),
                },
                Some(c) if c == ' ' || c == '\t' => {
                    return Err(fail(format!("the value of {name} has unquoted whitespace")));
                }
                Some(c) => value.push(c),
            }
        }
        line += 1;
        entries.push(CfnEnvEntry { mode, name, value });
    }
    Ok(entries)
}

impl fmt::Display for CfnEnvEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.mode.function(), self.name, shell::quote(&self.value))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::boot::config::tests::full_env;
    use crate::boot::plan::tests::facts;

    fn entry(mode: SetMode, name: &str, value: &str) -> CfnEnvEntry {
        CfnEnvEntry { mode, name: name.to_owned(), value: value.to_owned() }
    }

    #[test]
    fn golden_cfn_env() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        expect_test::expect![[r##"
            # Written by elastic-ci-bootstrap at boot and sourced by the agent's environment hook
            # in every job. Every value here is printed into build logs and CloudWatch and cannot be
            # redacted: never put a secret in this file.

            # Prints and exports a variable, overriding the job's own value.
            set_always() {
              local name="$1" value="$2"
              printf 'export %s="%s"\n' "$name" "$value"
              export "$name=$value"
            }

            # Exports a variable unless the job already has it (even empty); never prints the
            # job's value.
            set_unless_present() {
              local name="$1" value="$2"
              if [[ -n "${!name+set}" ]]; then
                echo "^^^ +++"
                echo ":warning: $name already set, NOT overriding!"
              else
                set_always "$name" "$value"
              fi
            }

            # Assignments (one per variable; values are single-quoted):
            set_always BUILDKITE_AGENTS_PER_INSTANCE 2
            set_always BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB false
            set_always BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL false
            set_always BUILDKITE_PURGE_BUILDS_ON_DISK_FULL true
            set_always BUILDKITE_ECR_POLICY readonly
            set_always ECR_CREDENTIAL_HELPER_ENABLED false
            set_always BUILDKITE_SECRETS_BUCKET ci-linux-managedsecretsbucket-1x2y3z
            set_always BUILDKITE_SECRETS_BUCKET_REGION us-east-1
            set_always BUILDKITE_STACK_NAME ci-linux
            set_always BUILDKITE_STACK_VERSION v7.0.0
            set_always BUILDKITE_DOCKER_EXPERIMENTAL false
            set_always DOCKER_USERNS_REMAP true
            set_always ENABLE_PRE_EXIT_DISK_CLEANUP false
            set_always DOCKER_PRUNE_UNTIL 4h
            set_always DOCKER_BUILDER_PRUNE_ENABLED false
            set_always DOCKER_VERSION 27.1.1
            set_always PLUGINS_ENABLED 'secrets ecr'
            set_always BUILDKITE_ARTIFACTS_BUCKET ci-artifacts
            set_always BUILDKITE_S3_DEFAULT_REGION us-east-1
            set_always BUILDKITE_S3_ACL private
            set_unless_present BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING false
            set_unless_present AWS_DEFAULT_REGION us-east-1
            set_unless_present AWS_REGION us-east-1
        "##]]
        .assert_eq(&render(&entries(&config, &facts())));
    }

    #[test]
    fn hostile_values_are_single_quoted_and_read_back() {
        let entries = vec![
            entry(SetMode::Always, "BUILDKITE_STACK_NAME", "it's \"$(touch /tmp/pwned)\" `id`"),
            entry(SetMode::Always, "MULTI", "line one\nline two\n"),
            entry(SetMode::UnlessPresent, "AWS_REGION", "us-east-1"),
            entry(SetMode::Always, "EMPTY", ""),
        ];
        let text = render(&entries);
        let assignments = &text[text.find(ASSIGNMENTS_MARKER).unwrap()..];
        expect_test::expect![[r#"
            # Assignments (one per variable; values are single-quoted):
            set_always BUILDKITE_STACK_NAME 'it'\''s "$(touch /tmp/pwned)" `id`'
            set_always MULTI 'line one
            line two
            '
            set_unless_present AWS_REGION us-east-1
            set_always EMPTY ''
        "#]]
        .assert_eq(assignments);
        assert_eq!(parse(&text).unwrap(), entries);
    }

    #[test]
    fn parse_names_the_bad_line() {
        let text = format!("{ASSIGNMENTS_MARKER}\nset_always A 'x'\nrm -rf /\n");
        let error = parse(&text).unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        assert!(error.to_string().contains("found \"rm\""), "{error}");
        assert!(parse("set_always A b\n").is_err());
        assert!(parse(&format!("{ASSIGNMENTS_MARKER}\nset_always A 'open\n")).is_err());
        assert!(parse(&format!("{ASSIGNMENTS_MARKER}\nset_always A two words\n")).is_err());
    }

    proptest! {
        #[test]
        fn any_value_round_trips(values in proptest::collection::vec("[^\u{0}]*", 1..6)) {
            let entries: Vec<CfnEnvEntry> = values
                .iter()
                .enumerate()
                .map(|(i, v)| entry(if i % 2 == 0 { SetMode::Always } else { SetMode::UnlessPresent }, &format!("V{i}"), v))
                .collect();
            prop_assert_eq!(parse(&render(&entries)).unwrap(), entries);
        }
    }

    proptest! {
        /// cfn-env lives in the agent user's home, where a job can rewrite it: any
        /// text is parsed or refused, never a panic.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn parse_never_panics_on_cfn_env_like_text(
            lines in proptest::collection::vec(
                "(set_always|set_unless_present|export|#)? ?[A-Z_]{0,4} ?'?[a-z'\\\\\"]{0,6}'?",
                0..8,
            )
        ) {
            let text = format!("{ASSIGNMENTS_MARKER}\n{}", lines.join("\n"));
            let _ = parse(&text);
            let _ = parse(&lines.join("\n"));
        }
    }
}
