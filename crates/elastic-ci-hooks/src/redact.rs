//! Handing secret values to the agent's redactor, so they are masked in the job log
//! even when they reach it under a name the agent does not redact by itself.
//!
//! Values go to `buildkite-agent redactor add --format json` on stdin, as a JSON
//! object, in chunks of at most about 1 MiB. Redaction is best effort: a missing or
//! old agent is a warning, never a failed job.

use std::collections::BTreeSet;

use crate::job::Job;
use crate::process;

/// Values this long or longer are not redacted (the agent's limit).
const MAX_VALUE_BYTES: usize = 65_536;
/// Chunk size for one `redactor add` call.
const MAX_CHUNK_BYTES: usize = 1 << 20;

/// Splits values into JSON objects `{"secret_0": …, …}` of at most [`MAX_CHUNK_BYTES`]
/// each. Whitespace-only values are dropped and the rest trimmed, as the agent would.
fn chunks(values: &BTreeSet<String>) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = serde_json::Map::new();
    let mut current_bytes = 2;
    for (index, value) in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).enumerate() {
        let key = format!("secret_{index}");
        let entry_bytes = key.len() + serde_json::Value::from(value).to_string().len() + 4;
        if !current.is_empty() && current_bytes + entry_bytes > MAX_CHUNK_BYTES {
            chunks.push(serde_json::Value::Object(std::mem::take(&mut current)).to_string());
            current_bytes = 2;
        }
        current.insert(key, value.into());
        current_bytes += entry_bytes;
    }
    if !current.is_empty() {
        chunks.push(serde_json::Value::Object(current).to_string());
    }
    chunks
}

/// Adds `values` to the redactor of the job's agent.
pub(crate) fn add(job: &Job<'_>, values: BTreeSet<String>) {
    let (values, too_large): (BTreeSet<String>, BTreeSet<String>) =
        values.into_iter().partition(|value| value.len() < MAX_VALUE_BYTES);
    for value in &too_large {
        job.log.warning(&format!(
            "a secret of {} bytes is too large for redaction and may appear in the log",
            value.len()
        ));
    }
    let chunks = chunks(&values);
    if chunks.is_empty() {
        return;
    }
    let Some(agent) = process::find_program("buildkite-agent", &job.env) else {
        job.log.line("buildkite-agent not found, secrets will not be redacted");
        return;
    };
    let n_chunks = chunks.len();
    for (index, chunk) in chunks.into_iter().enumerate() {
        let mut command =
            process::command(&agent, ["redactor", "add", "--format", "json"], &job.env);
        match process::run_with_input(&mut command, chunk.as_bytes(), job.config.limits.quick) {
            Ok(status) if status.success() => {}
            Ok(_) | Err(_) => {
                job.log.warning(&format!(
                    "failed to add secrets to the redactor (chunk {} of {n_chunks}): some secrets may appear in logs; buildkite-agent v3.67.0 or later is needed",
                    index + 1
                ));
                return;
            }
        }
    }
    job.log.line(&format!("Added {} secrets to the redactor", values.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_limit_and_keep_every_value() {
        let values: BTreeSet<String> = (0..40)
            .map(|i| format!("{i:02}{}", "x".repeat(60_000)))
            .chain([" \n".to_owned()])
            .collect();
        let all = chunks(&values);
        assert!(all.len() > 1);
        let mut seen = 0;
        for chunk in &all {
            assert!(chunk.len() <= MAX_CHUNK_BYTES, "{}", chunk.len());
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(chunk).unwrap();
            seen += object.len();
        }
        assert_eq!(seen, 40);
        assert_eq!(chunks(&BTreeSet::from(["  ".to_owned()])), Vec::<String>::new());
        assert_eq!(
            chunks(&BTreeSet::from([" a\"b ".to_owned()])),
            vec![r#"{"secret_0":"a\"b"}"#.to_owned()]
        );
    }
}
