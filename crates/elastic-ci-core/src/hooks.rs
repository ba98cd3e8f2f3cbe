//! The pure parts of the agent hooks: the script they print for the hook shims to
//! evaluate, environment differences, the built-in plugin switches, the checkout-path
//! split for fix-permissions, ECR registry names and `ssh-agent -s` output.
//!
//! The hook shims run `eval "$(elastic-ci-hooks …)"`, so everything a [`HookScript`]
//! renders is code for bash. It only ever contains `export NAME=VALUE` and
//! `unset NAME` lines, names are checked against `[A-Za-z_][A-Za-z0-9_]*` and values
//! are single-quoted with [`crate::shell::quote`]: no byte of a value can become code.

use std::collections::BTreeMap;
use std::fmt;

use crate::envfile::is_valid_name;
use crate::shell::quote;

/// Bash variables that are read-only in every shell: exporting one would make the hook
/// shim fail, so they never appear in a script.
pub const READ_ONLY_SHELL_VARIABLES: [&str; 6] =
    ["BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"];

/// Variables a shell maintains by itself; differences in them are not changes a script
/// made on purpose.
const SHELL_MAINTAINED_VARIABLES: [&str; 5] =
    ["_", "SHLVL", "PWD", "OLDPWD", "BASH_EXECUTION_STRING"];

/// One change to the job environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    Export { name: String, value: String },
    Unset { name: String },
}

impl EnvChange {
    pub fn name(&self) -> &str {
        match self {
            EnvChange::Export { name, .. } | EnvChange::Unset { name } => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookScriptError {
    #[error(
        "invalid environment variable name {0:?}: expected a letter or '_' followed by letters, digits or '_'"
    )]
    InvalidName(String),
    #[error("{0} is a read-only shell variable and cannot be exported")]
    ReadOnly(String),
    #[error("the value of {0} contains a NUL byte, which environment variables cannot hold")]
    NulInValue(String),
}

/// One call of the agent's job API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobApiCall {
    /// `buildkite-agent env set --input-format=json -`: the values go on stdin.
    Set(Vec<(String, String)>),
    /// `buildkite-agent env unset NAME…`.
    Unset(Vec<String>),
}

/// The longest stdin line `buildkite-agent env set` reads (its line scanner's buffer).
pub const JOB_API_MAX_LINE: usize = 64 * 1024 - 1;

impl JobApiCall {
    /// The stdin of a `set` call: one JSON object per variable per line, each within
    /// [`JOB_API_MAX_LINE`], or the name of the first variable too long for it.
    pub fn set_input(values: &[(String, String)]) -> Result<String, String> {
        let mut input = String::new();
        for (name, value) in values {
            let line = serde_json::json!({ name: value }).to_string();
            if line.len() > JOB_API_MAX_LINE {
                return Err(name.clone());
            }
            input.push_str(&line);
            input.push('\n');
        }
        Ok(input)
    }
}

/// The changes a hook makes to the job environment, in order, rendered as bash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookScript {
    changes: Vec<EnvChange>,
}

fn check_name(name: &str) -> Result<(), HookScriptError> {
    if !is_valid_name(name) {
        return Err(HookScriptError::InvalidName(name.to_owned()));
    }
    if READ_ONLY_SHELL_VARIABLES.contains(&name) {
        return Err(HookScriptError::ReadOnly(name.to_owned()));
    }
    Ok(())
}

impl HookScript {
    pub fn new() -> HookScript {
        HookScript::default()
    }

    /// Adds `export NAME='value'`.
    pub fn export(&mut self, name: &str, value: &str) -> Result<(), HookScriptError> {
        check_name(name)?;
        if value.contains('\0') {
            return Err(HookScriptError::NulInValue(name.to_owned()));
        }
        self.changes.push(EnvChange::Export { name: name.to_owned(), value: value.to_owned() });
        Ok(())
    }

    /// Adds `unset NAME`.
    pub fn unset(&mut self, name: &str) -> Result<(), HookScriptError> {
        check_name(name)?;
        self.changes.push(EnvChange::Unset { name: name.to_owned() });
        Ok(())
    }

    /// Adds a change that was checked already (it came from another script).
    pub fn push(&mut self, change: EnvChange) -> Result<(), HookScriptError> {
        match change {
            EnvChange::Export { name, value } => self.export(&name, &value),
            EnvChange::Unset { name } => self.unset(&name),
        }
    }

    pub fn changes(&self) -> &[EnvChange] {
        &self.changes
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Applies the changes to an environment map, as evaluating the script would.
    pub fn apply(&self, env: &mut std::collections::HashMap<String, String>) {
        for change in &self.changes {
            match change {
                EnvChange::Export { name, value } => {
                    env.insert(name.clone(), value.clone());
                }
                EnvChange::Unset { name } => {
                    env.remove(name);
                }
            }
        }
    }

    /// The same changes as calls of the agent's job API (`buildkite-agent env set` and
    /// `env unset`, agent 3.115.2 and later), for hooks the agent runs directly (an
    /// executable hook, as on Windows) rather than through a shell: nothing is
    /// evaluated. Consecutive exports become one `set` call, consecutive unsets one
    /// `unset` call, in order.
    pub fn job_api_calls(&self) -> Vec<JobApiCall> {
        let mut calls: Vec<JobApiCall> = Vec::new();
        for change in &self.changes {
            match (change, calls.last_mut()) {
                (EnvChange::Export { name, value }, Some(JobApiCall::Set(values))) => {
                    values.push((name.clone(), value.clone()));
                }
                (EnvChange::Export { name, value }, _) => {
                    calls.push(JobApiCall::Set(vec![(name.clone(), value.clone())]));
                }
                (EnvChange::Unset { name }, Some(JobApiCall::Unset(names))) => {
                    names.push(name.clone());
                }
                (EnvChange::Unset { name }, _) => calls.push(JobApiCall::Unset(vec![name.clone()])),
            }
        }
        calls
    }

    /// The script: one `export` or `unset` line per change.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for change in &self.changes {
            match change {
                EnvChange::Export { name, value } => {
                    out.push_str("export ");
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&quote(value));
                }
                EnvChange::Unset { name } => {
                    out.push_str("unset ");
                    out.push_str(name);
                }
            }
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for HookScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// What a shell script changed in its exported environment, given the environment
/// before and after it ran.
///
/// Variables the shell maintains itself (`_`, `SHLVL`, `PWD`, `OLDPWD`) are ignored.
/// Names that cannot be exported by a hook (bash's exported functions such as
/// `BASH_FUNC_f%%`, read-only variables) are returned separately so the caller can say
/// they were skipped.
pub fn env_changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> (Vec<EnvChange>, Vec<String>) {
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    let relevant = |name: &str| !SHELL_MAINTAINED_VARIABLES.contains(&name);
    for (name, value) in after.iter().filter(|(name, _)| relevant(name)) {
        if before.get(name) == Some(value) {
            continue;
        }
        if check_name(name).is_err() || value.contains('\0') {
            skipped.push(name.clone());
            continue;
        }
        changes.push(EnvChange::Export { name: name.clone(), value: value.clone() });
    }
    for name in before.keys().filter(|name| relevant(name) && !after.contains_key(*name)) {
        if check_name(name).is_err() {
            skipped.push(name.clone());
            continue;
        }
        changes.push(EnvChange::Unset { name: name.clone() });
    }
    (changes, skipped)
}

/// Parses the output of `env -0`: `NAME=value` records separated by NUL bytes. Records
/// that are not valid UTF-8 or have no `=` are returned by name (or position) in the
/// second list.
pub fn parse_env_records<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut env = BTreeMap::new();
    let mut unreadable = Vec::new();
    for record in records {
        let Some(split) = record.iter().position(|b| *b == b'=') else {
            unreadable.push(String::from_utf8_lossy(record).into_owned());
            continue;
        };
        let (name, value) = (&record[..split], &record[split + 1..]);
        match (std::str::from_utf8(name), std::str::from_utf8(value)) {
            (Ok(name), Ok(value)) => {
                env.insert(name.to_owned(), value.to_owned());
            }
            (name, _) => unreadable.push(name.map_or_else(
                |_| String::from_utf8_lossy(&record[..split]).into_owned(),
                str::to_owned,
            )),
        }
    }
    (env, unreadable)
}

/// One of the stack's built-in plugins, switched by `<NAME>_PLUGIN_ENABLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinPlugin {
    Secrets,
    Ecr,
    DockerLogin,
}

impl BuiltinPlugin {
    pub const ALL: [BuiltinPlugin; 3] =
        [BuiltinPlugin::Secrets, BuiltinPlugin::Ecr, BuiltinPlugin::DockerLogin];

    /// The plugin's word in `PLUGINS_ENABLED`.
    pub fn word(self) -> &'static str {
        match self {
            BuiltinPlugin::Secrets => "secrets",
            BuiltinPlugin::Ecr => "ecr",
            BuiltinPlugin::DockerLogin => "docker-login",
        }
    }

    /// The variable that switches it per pipeline, and that later hooks test for `1`.
    pub fn flag(self) -> &'static str {
        match self {
            BuiltinPlugin::Secrets => "SECRETS_PLUGIN_ENABLED",
            BuiltinPlugin::Ecr => "ECR_PLUGIN_ENABLED",
            BuiltinPlugin::DockerLogin => "DOCKER_LOGIN_PLUGIN_ENABLED",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            BuiltinPlugin::Secrets => "Secrets",
            BuiltinPlugin::Ecr => "ECR",
            BuiltinPlugin::DockerLogin => "Docker-login",
        }
    }
}

/// Reads an on/off switch. Empty means "not set"; unknown words are `None` too, and
/// the caller decides (and warns).
pub fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" | "enabled" => Some(true),
        "false" | "0" | "off" | "no" | "disabled" | "none" => Some(false),
        _ => None,
    }
}

/// Which built-in plugins run for this job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSelection {
    /// `(plugin, enabled)` for each plugin, in [`BuiltinPlugin::ALL`] order.
    pub plugins: Vec<(BuiltinPlugin, bool)>,
    /// `PLUGINS_ENABLED` with the plugins the job switched off removed, when that
    /// changed it.
    pub plugins_enabled: Option<String>,
    /// Switch values that are not recognised words, as `(variable, value)`.
    pub unrecognised: Vec<(&'static str, String)>,
}

impl PluginSelection {
    pub fn is_enabled(&self, plugin: BuiltinPlugin) -> bool {
        self.plugins.iter().any(|(candidate, enabled)| *candidate == plugin && *enabled)
    }
}

/// Decides which built-in plugins run: those the stack enabled in `PLUGINS_ENABLED`
/// (all three when it is unset) that the job did not switch off with
/// `<NAME>_PLUGIN_ENABLED`.
///
/// An unrecognised switch value keeps the original stack's rule: the plugin stays on
/// when the value contains `on`, `1` or `true`.
pub fn select_plugins(env: &std::collections::HashMap<String, String>) -> PluginSelection {
    let stack_list = env.get("PLUGINS_ENABLED");
    let mut words: Vec<String> = match stack_list {
        Some(list) => list.split_whitespace().map(str::to_owned).collect(),
        None => BuiltinPlugin::ALL.iter().map(|plugin| plugin.word().to_owned()).collect(),
    };
    let mut unrecognised = Vec::new();
    for plugin in BuiltinPlugin::ALL {
        let value = env.get(plugin.flag()).map_or("", String::as_str);
        let switched_on = if value.trim().is_empty() {
            true
        } else {
            parse_switch(value).unwrap_or_else(|| {
                unrecognised.push((plugin.flag(), value.to_owned()));
                ["on", "1", "true"].iter().any(|word| value.contains(word))
            })
        };
        if !switched_on && let Some(position) = words.iter().position(|w| w == plugin.word()) {
            words.remove(position);
        }
    }
    let plugins = BuiltinPlugin::ALL
        .iter()
        .map(|plugin| (*plugin, words.iter().any(|w| w == plugin.word())))
        .collect();
    let new_list = words.join(" ");
    let plugins_enabled = match stack_list {
        Some(list) if list.split_whitespace().collect::<Vec<_>>().join(" ") != new_list => {
            Some(new_list)
        }
        _ => None,
    };
    PluginSelection { plugins, plugins_enabled, unrecognised }
}

/// The three directory names that identify a job's checkout under the build path, as
/// `fix-permissions AGENT ORG PIPELINE` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutDirs {
    pub agent: String,
    pub org: String,
    pub pipeline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "checkout path {checkout_path:?} is not BUILD_PATH/AGENT/ORG/PIPELINE under the build path {build_path:?}: {reason}"
)]
pub struct CheckoutPathError {
    pub build_path: String,
    pub checkout_path: String,
    pub reason: &'static str,
}

/// Splits `BUILDKITE_BUILD_CHECKOUT_PATH` into its three components below
/// `BUILDKITE_BUILD_PATH`. Each must be one plain path component (not empty, `.` or
/// `..`), which is also what fix-permissions checks.
pub fn checkout_dirs(
    build_path: &str,
    checkout_path: &str,
) -> Result<CheckoutDirs, CheckoutPathError> {
    let fail = |reason| CheckoutPathError {
        build_path: build_path.to_owned(),
        checkout_path: checkout_path.to_owned(),
        reason,
    };
    let base = build_path.trim_end_matches('/');
    if base.is_empty() {
        return Err(fail("the build path is empty"));
    }
    let rest = checkout_path
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| fail("it is outside the build path"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() != 3 {
        return Err(fail("it must be exactly three directories deep"));
    }
    if parts.iter().any(|part| part.is_empty() || *part == "." || *part == "..") {
        return Err(fail("a component is empty, '.' or '..'"));
    }
    Ok(CheckoutDirs {
        agent: parts[0].to_owned(),
        org: parts[1].to_owned(),
        pipeline: parts[2].to_owned(),
    })
}

/// The public ECR registry, which the ECR plugin accepts in place of an account id.
pub const ECR_PUBLIC_REGISTRY: &str = "public.ecr.aws";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ECR registry id {0:?}: expected a 12-digit AWS account id")]
pub struct RegistryIdError(pub String);

/// Splits ECR account lists (`"id1,id2"`, one or more values), trimming whitespace and
/// dropping empty entries; every id must be a 12-digit account id or `public.ecr.aws`.
pub fn ecr_account_ids<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, RegistryIdError> {
    let mut ids = Vec::new();
    for id in values.into_iter().flat_map(|value| value.split(',')).map(str::trim) {
        if id.is_empty() {
            continue;
        }
        let is_account = id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit());
        if !is_account && id != ECR_PUBLIC_REGISTRY {
            return Err(RegistryIdError(id.to_owned()));
        }
        if !ids.iter().any(|existing| existing == id) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// The registry host of an account's private ECR registry in a region.
pub fn ecr_registry_host(account_id: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("{account_id}.dkr.ecr.{region}.{suffix}")
}

/// The account id at the start of an ECR registry endpoint such as
/// `https://123456789012.dkr.ecr.us-east-1.amazonaws.com`.
pub fn ecr_endpoint_account(endpoint: &str) -> Option<&str> {
    let host = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let (account, rest) = host.split_once('.')?;
    (account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && rest.starts_with("dkr.ecr."))
    .then_some(account)
}

/// The socket and pid announced by `ssh-agent -s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAgentAddress {
    pub auth_sock: String,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshAgentOutputError {
    #[error("ssh-agent did not print {0}")]
    Missing(&'static str),
    #[error("ssh-agent printed a pid that is not a number: {0:?}")]
    BadPid(String),
}

/// Reads the `SSH_AUTH_SOCK=…; export SSH_AUTH_SOCK;` and `SSH_AGENT_PID=…;` lines of
/// `ssh-agent -s`. The output is parsed, never evaluated.
pub fn parse_ssh_agent_output(output: &str) -> Result<SshAgentAddress, SshAgentOutputError> {
    let value = |name: &str| {
        output.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(name)?.strip_prefix('=')?;
            Some(rest.split(';').next().unwrap_or_default().trim().to_owned())
        })
    };
    let auth_sock = value("SSH_AUTH_SOCK")
        .filter(|sock| !sock.is_empty())
        .ok_or(SshAgentOutputError::Missing("SSH_AUTH_SOCK"))?;
    let pid = value("SSH_AGENT_PID").ok_or(SshAgentOutputError::Missing("SSH_AGENT_PID"))?;
    let pid = pid.parse().map_err(|_| SshAgentOutputError::BadPid(pid))?;
    Ok(SshAgentAddress { auth_sock, pid })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::process::Command;

    use expect_test::expect;
    use proptest::prelude::*;
    use test_case::test_case;

    use super::*;

    /// The job API gets the same changes as the script, in order, grouped into as few
    /// calls as the order allows, every value as JSON on stdin.
    #[test]
    fn job_api_calls_carry_the_changes_in_order() {
        let mut script = HookScript::new();
        script.export("A", "it's $(x) `y` %P% ^&\n\"q\"").unwrap();
        script.export("B", "").unwrap();
        script.unset("C").unwrap();
        script.unset("D").unwrap();
        script.export("C", "back").unwrap();
        let calls = script.job_api_calls();
        assert_eq!(
            calls,
            [
                JobApiCall::Set(vec![
                    ("A".into(), "it's $(x) `y` %P% ^&\n\"q\"".into()),
                    ("B".into(), String::new())
                ]),
                JobApiCall::Unset(vec!["C".into(), "D".into()]),
                JobApiCall::Set(vec![("C".into(), "back".into())]),
            ]
        );
        let JobApiCall::Set(values) = &calls[0] else { unreachable!() };
        let input = JobApiCall::set_input(values).unwrap();
        let lines: Vec<serde_json::Value> =
            input.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines[0]["A"], "it's $(x) `y` %P% ^&\n\"q\"");
        assert_eq!(lines[1]["B"], "");
        let huge = [("BIG".to_owned(), "x".repeat(JOB_API_MAX_LINE))];
        assert_eq!(JobApiCall::set_input(&huge), Err("BIG".to_owned()));
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn renders_exports_and_unsets_quoted() {
        let mut script = HookScript::new();
        script.export("PLAIN", "abc").unwrap();
        script.export("HOSTILE", "'; rm -rf / #\n$(id) `id`").unwrap();
        script.export("EMPTY", "").unwrap();
        script.unset("GONE").unwrap();
        expect![[r#"
            export PLAIN=abc
            export HOSTILE=''\''; rm -rf / #
            $(id) `id`'
            export EMPTY=''
            unset GONE
        "#]]
        .assert_eq(&script.render());
    }

    #[test_case("9LIVES"; "leading digit")]
    #[test_case("A-B"; "dash")]
    #[test_case("A B"; "space")]
    #[test_case("A;id"; "semicolon")]
    #[test_case(""; "empty")]
    fn rejects_invalid_names(name: &str) {
        let mut script = HookScript::new();
        assert_eq!(script.export(name, "x"), Err(HookScriptError::InvalidName(name.to_owned())));
        assert!(script.unset(name).is_err());
        assert!(script.is_empty());
    }

    #[test]
    fn rejects_read_only_names_and_nul() {
        let mut script = HookScript::new();
        assert_eq!(
            script.export("UID", "0").unwrap_err().to_string(),
            "UID is a read-only shell variable and cannot be exported"
        );
        assert!(matches!(script.export("A", "a\0b"), Err(HookScriptError::NulInValue(_))));
    }

    #[test]
    fn diffs_environments() {
        let before: BTreeMap<String, String> =
            [("KEEP", "1"), ("CHANGE", "old"), ("DROP", "x"), ("SHLVL", "1"), ("_", "/bin/a")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        let after: BTreeMap<String, String> = [
            ("KEEP", "1"),
            ("CHANGE", "new"),
            ("ADD", "y"),
            ("SHLVL", "2"),
            ("_", "/bin/b"),
            ("BASH_FUNC_f%%", "() { :; }"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let (changes, skipped) = env_changes(&before, &after);
        assert_eq!(
            changes,
            vec![
                EnvChange::Export { name: "ADD".into(), value: "y".into() },
                EnvChange::Export { name: "CHANGE".into(), value: "new".into() },
                EnvChange::Unset { name: "DROP".into() },
            ]
        );
        assert_eq!(skipped, vec!["BASH_FUNC_f%%".to_owned()]);
    }

    #[test]
    fn parses_env_records() {
        let data: &[&[u8]] = &[b"A=1", b"B=x=y\nz", b"NOEQUALS", b"C=\xff", b""];
        let (env, unreadable) = parse_env_records(data.iter().copied().filter(|r| !r.is_empty()));
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("x=y\nz"));
        assert_eq!(unreadable, vec!["NOEQUALS".to_owned(), "C".to_owned()]);
    }

    #[test_case(&[], &[true, true, true], None; "defaults: everything on")]
    #[test_case(&[("PLUGINS_ENABLED", "secrets ecr docker-login")], &[true, true, true], None; "stack list")]
    #[test_case(&[("PLUGINS_ENABLED", "secrets")], &[true, false, false], None; "stack disabled two")]
    #[test_case(&[("PLUGINS_ENABLED", "secrets ecr docker-login"), ("ECR_PLUGIN_ENABLED", "false")], &[true, false, true], Some("secrets docker-login"); "job switches ecr off")]
    #[test_case(&[("SECRETS_PLUGIN_ENABLED", "0"), ("DOCKER_LOGIN_PLUGIN_ENABLED", "off")], &[false, true, false], None; "zero and off")]
    #[test_case(&[("ECR_PLUGIN_ENABLED", "TRUE")], &[true, true, true], None; "case insensitive")]
    #[test_case(&[("ECR_PLUGIN_ENABLED", "none")], &[true, false, true], None; "none switches off")]
    #[test_case(&[("PLUGINS_ENABLED", ""), ("ECR_PLUGIN_ENABLED", "true")], &[false, false, false], None; "job cannot enable what the stack disabled")]
    fn selects_plugins(vars: &[(&str, &str)], expected: &[bool], list: Option<&str>) {
        let selection = select_plugins(&env(vars));
        let enabled: Vec<bool> = selection.plugins.iter().map(|(_, on)| *on).collect();
        assert_eq!(enabled, expected);
        assert_eq!(selection.plugins_enabled.as_deref(), list);
        assert!(selection.unrecognised.is_empty());
    }

    #[test]
    fn unrecognised_switch_words_follow_the_original_rule_and_are_reported() {
        let selection = select_plugins(&env(&[
            ("SECRETS_PLUGIN_ENABLED", "maybe"),
            ("ECR_PLUGIN_ENABLED", "sure-on"),
        ]));
        assert!(!selection.is_enabled(BuiltinPlugin::Secrets));
        assert!(selection.is_enabled(BuiltinPlugin::Ecr));
        assert_eq!(
            selection.unrecognised,
            vec![
                ("SECRETS_PLUGIN_ENABLED", "maybe".to_owned()),
                ("ECR_PLUGIN_ENABLED", "sure-on".to_owned())
            ]
        );
    }

    #[test_case("/var/lib/buildkite-agent/builds", "/var/lib/buildkite-agent/builds/agent-1/org/pipe", Ok(("agent-1", "org", "pipe")); "normal")]
    #[test_case("/b/", "/b/a/o/p", Ok(("a", "o", "p")); "trailing slash on build path")]
    #[test_case("/b", "/elsewhere/a/o/p", Err("it is outside the build path"); "outside")]
    #[test_case("/b", "/bb/a/o/p", Err("it is outside the build path"); "prefix is not a parent")]
    #[test_case("/b", "/b/a/o", Err("it must be exactly three directories deep"); "too shallow")]
    #[test_case("/b", "/b/a/o/p/q", Err("it must be exactly three directories deep"); "too deep")]
    #[test_case("/b", "/b/../o/p", Err("a component is empty, '.' or '..'"); "dot dot")]
    #[test_case("/b", "/b/a//p", Err("a component is empty, '.' or '..'"); "empty component")]
    #[test_case("", "/a/o/p", Err("the build path is empty"); "no build path")]
    fn splits_checkout_paths(
        build: &str,
        checkout: &str,
        expected: Result<(&str, &str, &str), &str>,
    ) {
        let result = checkout_dirs(build, checkout)
            .map(|dirs| (dirs.agent, dirs.org, dirs.pipeline))
            .map_err(|error| error.reason);
        let expected = expected.map(|(a, o, p)| (a.to_owned(), o.to_owned(), p.to_owned()));
        assert_eq!(result, expected);
    }

    #[test]
    fn account_ids_are_validated_and_deduplicated() {
        assert_eq!(
            ecr_account_ids(["111122223333, 444455556666", "", "public.ecr.aws,111122223333"]),
            Ok(vec![
                "111122223333".to_owned(),
                "444455556666".to_owned(),
                "public.ecr.aws".to_owned()
            ])
        );
        assert_eq!(
            ecr_account_ids(["123", "--password=x"]).unwrap_err().to_string(),
            "invalid ECR registry id \"123\": expected a 12-digit AWS account id"
        );
    }

    #[test]
    fn registry_hosts_follow_the_partition() {
        assert_eq!(
            ecr_registry_host("111122223333", "us-west-2"),
            "111122223333.dkr.ecr.us-west-2.amazonaws.com"
        );
        assert_eq!(
            ecr_registry_host("111122223333", "cn-north-1"),
            "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            ecr_endpoint_account("https://111122223333.dkr.ecr.us-east-1.amazonaws.com"),
            Some("111122223333")
        );
        assert_eq!(ecr_endpoint_account("https://example.com"), None);
    }

    #[test]
    fn parses_ssh_agent_output() {
        let output = "SSH_AUTH_SOCK=/var/tmp/ssh-XXXXabcd/agent.41; export SSH_AUTH_SOCK;\nSSH_AGENT_PID=42; export SSH_AGENT_PID;\necho Agent pid 42;\n";
        assert_eq!(
            parse_ssh_agent_output(output),
            Ok(SshAgentAddress { auth_sock: "/var/tmp/ssh-XXXXabcd/agent.41".into(), pid: 42 })
        );
        assert_eq!(
            parse_ssh_agent_output("SSH_AGENT_PID=1;"),
            Err(SshAgentOutputError::Missing("SSH_AUTH_SOCK"))
        );
        assert_eq!(
            parse_ssh_agent_output("SSH_AUTH_SOCK=/s; export\nSSH_AGENT_PID=$(id);"),
            Err(SshAgentOutputError::BadPid("$(id)".into()))
        );
    }

    proptest! {
        // The script is evaluated by bash: whatever the value, the variable must come
        // out byte for byte and nothing else may run.
        #[test]
        fn bash_reads_back_any_exported_value(value in "[^\u{0}]{0,40}") {
            let mut script = HookScript::new();
            script.export("ELASTIC_CI_PROBE", &value).unwrap();
            let program = format!("{}printf '%s' \"$ELASTIC_CI_PROBE\"", script.render());
            let output = Command::new("bash").arg("-c").arg(&program).env_clear().output().unwrap();
            prop_assert!(output.status.success());
            prop_assert_eq!(String::from_utf8_lossy(&output.stdout).into_owned(), value);
        }
    }
}
