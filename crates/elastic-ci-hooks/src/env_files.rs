//! Evaluating the secrets bucket's `env` and `environment` files.
//!
//! Users write these files as bash (`export`, `$(…)`, `set -euo pipefail`, `curl`), so
//! they are evaluated by bash, as the original stack did, with `allexport` on and
//! with errexit, nounset and pipefail, in one bash process, in lookup order, each
//! file with the job environment plus everything earlier files set.
//!
//! Unlike the original, the files' code never passes through the hook shim's `eval`:
//! the bash process here reports its exported environment before and after the files
//! ran, and the hook prints only the differences, as quoted `export`/`unset` lines.
//! The files' own output goes to the job log. What a file changes besides exported
//! variables (shell functions, options, the working directory) does not reach the
//! job, which is also what the agent does between hooks.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use elastic_ci_core::hooks::{EnvChange, env_changes, parse_env_records};

use crate::job::Job;
use crate::process;

/// The fixed program bash runs. File contents arrive on stdin as NUL-separated
/// (index, body) pairs, never as arguments. File descriptor 3 carries the
/// environment dumps and progress markers back; the files' own stdout goes to stderr.
const EVALUATOR: &str = r#"set -euo pipefail
exec 3>&1 1>&2
__ecs_dump() {
  local IFS=$'\n' __ecs_name
  for __ecs_name in $(builtin compgen -e); do
    if [[ -v $__ecs_name ]]; then builtin printf '%s=%s\0' "$__ecs_name" "${!__ecs_name}" >&3; fi
  done
  builtin printf '\0' >&3
}
trap 'if [[ $? -eq 0 && -z ${__ecs_finished:-} ]]; then builtin printf "exit\0" >&3; __ecs_dump; builtin printf "end\0" >&3; fi' EXIT
__ecs_dump
while IFS= read -r -d '' __ecs_index && IFS= read -r -d '' __ecs_body; do
  builtin printf 'file %s\0' "$__ecs_index" >&3
  set -o allexport
  eval "$__ecs_body" </dev/null 3>&-
  set +o allexport
done
unset __ecs_index __ecs_body
__ecs_finished=1
builtin printf 'done\0' >&3
__ecs_dump
builtin printf 'end\0' >&3
"#;

/// One env file: where it came from (for messages) and its contents.
pub(crate) struct EnvFile {
    pub(crate) name: String,
    pub(crate) body: Vec<u8>,
}

/// What the bash process reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    before: BTreeMap<String, String>,
    after: BTreeMap<String, String>,
    /// Index of the last file that started.
    last_file: Option<usize>,
    finished: bool,
    exited_early: bool,
    complete: bool,
    unreadable: Vec<String>,
}

fn parse_report(output: &[u8]) -> Report {
    let mut report = Report::default();
    let mut records = output.split(|b| *b == 0);
    let mut before = Vec::new();
    for record in records.by_ref() {
        if record.is_empty() {
            break;
        }
        before.push(record);
    }
    let (env, mut unreadable) = parse_env_records(before);
    report.before = env;
    let mut after = Vec::new();
    for record in records {
        if record.is_empty() {
            continue;
        }
        if record == b"end" {
            report.complete = true;
            break;
        }
        if record.contains(&b'=') {
            after.push(record);
        } else if let Some(index) = record.strip_prefix(b"file ") {
            report.last_file = std::str::from_utf8(index).ok().and_then(|i| i.parse().ok());
        } else if record == b"done" {
            report.finished = true;
        } else if record == b"exit" {
            report.exited_early = true;
        }
    }
    let (env, unreadable_after) = parse_env_records(after);
    report.after = env;
    unreadable.extend(unreadable_after);
    report.unreadable = unreadable;
    report
}

/// Evaluates the files and returns the changes they made to the exported environment.
pub(crate) fn evaluate(job: &Job<'_>, files: &[EnvFile]) -> anyhow::Result<Vec<EnvChange>> {
    let mut input = Vec::new();
    for (index, file) in files.iter().enumerate() {
        if file.body.contains(&0) {
            bail!("env file {} contains a NUL byte, which bash cannot evaluate", file.name);
        }
        input.extend_from_slice(index.to_string().as_bytes());
        input.push(0);
        input.extend_from_slice(&file.body);
        input.push(0);
    }
    let bash = process::find_program("bash", &job.env)
        .context("bash is not installed, so the secrets bucket's env files cannot be evaluated")?;
    let mut command = process::command(&bash, ["-c", EVALUATOR], &job.env);
    let (status, output) = process::run_piped(&mut command, input, job.config.limits.slow)?;
    let report = parse_report(&output);
    let file_name = |index: Option<usize>| {
        index.and_then(|i| files.get(i)).map_or("an env file", |file| file.name.as_str())
    };
    if !status.success() {
        bail!(
            "evaluating {} failed ({}); its output is above",
            file_name(report.last_file),
            process::describe(status)
        );
    }
    if !report.complete || !(report.finished || report.exited_early) {
        bail!(
            "evaluating {} did not finish normally (it may have replaced the shell's EXIT trap or closed file descriptor 3)",
            file_name(report.last_file)
        );
    }
    if report.exited_early {
        let skipped = report.last_file.map_or(0, |i| files.len().saturating_sub(i + 1));
        job.log.warning(&format!(
            "{} called exit: the variables set so far are kept and {skipped} later env file(s) were not evaluated",
            file_name(report.last_file)
        ));
    }
    for name in &report.unreadable {
        job.log.warning(&format!("skipping variable {name:?}: it is not UTF-8 text"));
    }
    let (changes, skipped) = env_changes(&report.before, &report.after);
    for name in skipped {
        job.log
            .warning(&format!("not passing {name:?} to the job: it cannot be exported by a hook"));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dumps_and_markers() {
        let output = b"A=1\0B=2\0\0file 0\0file 1\0done\0A=1\0C=3\0\0end\0";
        let report = parse_report(output);
        assert_eq!(report.before.len(), 2);
        assert_eq!(report.after.get("C").map(String::as_str), Some("3"));
        assert!(!report.after.contains_key("B"));
        assert_eq!(report.last_file, Some(1));
        assert!(report.finished && report.complete && !report.exited_early);

        let truncated = parse_report(b"A=1\0\0file 0\0");
        assert!(!truncated.complete && !truncated.finished);
        assert_eq!(truncated.last_file, Some(0));
    }
}
