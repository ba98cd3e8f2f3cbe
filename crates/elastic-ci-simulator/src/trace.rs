//! Job traces: what the simulator replays.
//!
//! A trace lists jobs with five fields: `job_id`, `queue`, `visible_at_s` (the job
//! exists and counts as *waiting*), `ready_at_s` (it can run: *scheduled* until an
//! agent takes it) and `duration_s`. Times are seconds from the start of the
//! simulation, decimals allowed, resolved to the microsecond.
//!
//! Two formats, told apart by the first line that is not blank or a comment:
//! - CSV: a header naming the five columns in any order (other columns are ignored),
//!   then one job per line; fields may be double-quoted (`""` is a quote inside).
//! - JSON Lines: one object per line with those keys (`job_id` a string or a number;
//!   other keys ignored).
//!
//! Lines starting with `#` are comments in both. A comment `# horizon_s=N` sets the
//! simulated horizon of the trace (the command line can override it).
//!
//! Parsing is pure (text in, [`Trace`] out) and every error names its line.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Deserialize;

/// Microseconds per second: the simulation's time unit is the microsecond.
pub const MICROS_PER_SEC: u64 = 1_000_000;

/// The latest time a trace may use (about 317 years), so that sums of times never
/// overflow.
const MAX_SECS: f64 = 1e10;

/// One job of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceJob {
    pub id: String,
    /// Index into [`Trace::queues`].
    pub queue: u32,
    pub visible_at_us: u64,
    pub ready_at_us: u64,
    pub duration_us: u64,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    pub jobs: Vec<TraceJob>,
    /// Queue names, in order of first appearance.
    pub queues: Vec<String>,
    /// The `# horizon_s=N` directive, if any.
    pub horizon_us: Option<u64>,
}

/// The trace formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    Csv,
    JsonLines,
}

/// A trace that does not parse, with the line at fault (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("the trace has no jobs")]
    Empty,
}

fn line_error(line: usize, reason: impl Into<String>) -> TraceError {
    TraceError::Line { line, reason: reason.into() }
}

const COLUMNS: [&str; 5] = ["job_id", "queue", "visible_at_s", "ready_at_s", "duration_s"];

impl Trace {
    /// Parses a trace, detecting the format from its first data line unless given.
    pub fn parse(text: &str, format: Option<TraceFormat>) -> Result<Trace, TraceError> {
        let mut builder = Builder::default();
        let mut format = format;
        let mut csv_columns: Option<[usize; 5]> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() {
                continue;
            }
            if let Some(comment) = content.strip_prefix('#') {
                builder.directive(line, comment.trim())?;
                continue;
            }
            let format = *format.get_or_insert(if content.starts_with('{') {
                TraceFormat::JsonLines
            } else {
                TraceFormat::Csv
            });
            match format {
                TraceFormat::JsonLines => builder.json_line(line, content)?,
                TraceFormat::Csv => match csv_columns {
                    None => csv_columns = Some(csv_header(line, content)?),
                    Some(columns) => builder.csv_line(line, raw, &columns)?,
                },
            }
        }
        if builder.trace.jobs.is_empty() {
            return Err(TraceError::Empty);
        }
        Ok(builder.trace)
    }

    /// The queue name of a job.
    pub fn queue_name(&self, job: &TraceJob) -> &str {
        &self.queues[job.queue as usize]
    }

    /// The trace as CSV, with its horizon directive; [`Trace::parse`] reads it back.
    pub fn to_csv(&self, comment: &str) -> String {
        let mut out = String::new();
        for line in comment.lines() {
            let _ = writeln!(out, "# {line}");
        }
        if let Some(horizon) = self.horizon_us {
            let _ = writeln!(out, "# horizon_s={}", format_secs(horizon));
        }
        out.push_str("job_id,queue,visible_at_s,ready_at_s,duration_s\n");
        for job in &self.jobs {
            let _ = writeln!(
                out,
                "{},{},{},{},{}",
                csv_field(&job.id),
                csv_field(self.queue_name(job)),
                format_secs(job.visible_at_us),
                format_secs(job.ready_at_us),
                format_secs(job.duration_us)
            );
        }
        out
    }
}

/// Seconds in microseconds as the shortest exact decimal: `80.5`, `300`, `0.000001`.
pub fn format_secs(micros: u64) -> String {
    let whole = micros / MICROS_PER_SEC;
    let fraction = micros % MICROS_PER_SEC;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Seconds as a float, for statistics and plots.
#[allow(clippy::cast_precision_loss, reason = "simulated times stay far below 2^52 microseconds")]
pub fn secs_f64(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Seconds to microseconds, rounded; `None` when negative, not finite or too large.
pub fn micros_from_secs(secs: f64) -> Option<u64> {
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked above: finite, non-negative and at most 1e16 microseconds"
    )]
    let micros = (secs * 1e6).round() as u64;
    Some(micros)
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) || value.trim() != value {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[derive(Default)]
struct Builder {
    trace: Trace,
    queue_index: HashMap<String, u32>,
    /// First line of each job id, to report duplicates.
    ids: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct JsonJob {
    job_id: JsonId,
    queue: String,
    visible_at_s: f64,
    ready_at_s: f64,
    duration_s: f64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonId {
    Text(String),
    Number(serde_json::Number),
}

impl Builder {
    fn directive(&mut self, line: usize, comment: &str) -> Result<(), TraceError> {
        let Some(value) = comment.strip_prefix("horizon_s") else { return Ok(()) };
        let Some(value) = value.trim_start().strip_prefix('=') else { return Ok(()) };
        let value = value.trim();
        let horizon = value.parse::<f64>().ok().and_then(micros_from_secs).ok_or_else(|| {
            line_error(
                line,
                format!("invalid horizon_s {value:?}: expected a number of seconds, 0 or more"),
            )
        })?;
        self.trace.horizon_us = Some(horizon);
        Ok(())
    }

    fn json_line(&mut self, line: usize, content: &str) -> Result<(), TraceError> {
        let job: JsonJob = serde_json::from_str(content).map_err(|error| {
            line_error(line, format!("invalid JSON job: {error}; expected an object with job_id, queue, visible_at_s, ready_at_s and duration_s"))
        })?;
        let id = match job.job_id {
            JsonId::Text(text) => text,
            JsonId::Number(number) => number.to_string(),
        };
        self.push(line, id, job.queue, job.visible_at_s, job.ready_at_s, job.duration_s)
    }

    fn csv_line(&mut self, line: usize, raw: &str, columns: &[usize; 5]) -> Result<(), TraceError> {
        let fields = split_csv(line, raw)?;
        let width = columns.iter().max().copied().unwrap_or(0) + 1;
        if fields.len() < width {
            return Err(line_error(
                line,
                format!(
                    "expected at least {width} fields as in the header, found {}",
                    fields.len()
                ),
            ));
        }
        let [id, queue, visible, ready, duration] = columns.map(|column| fields[column].trim());
        let number = |name: &str, value: &str| {
            value.parse::<f64>().map_err(|_| {
                line_error(line, format!("invalid {name} {value:?}: expected a number of seconds"))
            })
        };
        self.push(
            line,
            id.to_owned(),
            queue.to_owned(),
            number("visible_at_s", visible)?,
            number("ready_at_s", ready)?,
            number("duration_s", duration)?,
        )
    }

    fn push(
        &mut self,
        line: usize,
        id: String,
        queue: String,
        visible_at_s: f64,
        ready_at_s: f64,
        duration_s: f64,
    ) -> Result<(), TraceError> {
        if id.is_empty() {
            return Err(line_error(line, "empty job_id"));
        }
        if queue.is_empty() {
            return Err(line_error(line, format!("empty queue for job {id:?}")));
        }
        let time = |name: &str, value: f64| {
            micros_from_secs(value).ok_or_else(|| {
                line_error(
                    line,
                    format!(
                        "invalid {name} {value} for job {id:?}: expected seconds from 0 to 1e10"
                    ),
                )
            })
        };
        let visible_at_us = time("visible_at_s", visible_at_s)?;
        let ready_at_us = time("ready_at_s", ready_at_s)?;
        let duration_us = time("duration_s", duration_s)?;
        if ready_at_us < visible_at_us {
            return Err(line_error(
                line,
                format!(
                    "job {id:?} is ready (ready_at_s {ready_at_s}) before it is visible (visible_at_s {visible_at_s})"
                ),
            ));
        }
        if let Some(first) = self.ids.insert(id.clone(), line) {
            return Err(line_error(
                line,
                format!("duplicate job_id {id:?} (first on line {first})"),
            ));
        }
        let next = u32::try_from(self.trace.queues.len()).unwrap_or(u32::MAX);
        let queue = *self.queue_index.entry(queue).or_insert_with_key(|name| {
            self.trace.queues.push(name.clone());
            next
        });
        self.trace.jobs.push(TraceJob { id, queue, visible_at_us, ready_at_us, duration_us });
        Ok(())
    }
}

fn csv_header(line: usize, content: &str) -> Result<[usize; 5], TraceError> {
    let names: Vec<String> =
        split_csv(line, content)?.into_iter().map(|name| name.trim().to_owned()).collect();
    let mut columns = [0; 5];
    for (slot, wanted) in columns.iter_mut().zip(COLUMNS) {
        *slot = names.iter().position(|name| name == wanted).ok_or_else(|| {
            line_error(
                line,
                format!(
                    "the CSV header has no {wanted} column; expected the columns {}",
                    COLUMNS.join(", ")
                ),
            )
        })?;
    }
    Ok(columns)
}

/// Splits one CSV line into fields, honouring double quotes.
fn split_csv(line: usize, raw: &str) -> Result<Vec<String>, TraceError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = raw.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            '"' if at_start && field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            _ => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(line_error(line, "unterminated quoted field"));
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test]
    fn reads_csv_with_columns_in_any_order_and_a_horizon() {
        let trace = Trace::parse(
            "# a comment\n# horizon_s=3600\nqueue,job_id,duration_s,ready_at_s,visible_at_s,extra\ndefault,\"a,1\",300,5,5,x\n\nother, b ,0.5,10.25,1,\n",
            None,
        )
        .unwrap();
        assert_eq!(trace.horizon_us, Some(3_600_000_000));
        assert_eq!(trace.queues, ["default", "other"]);
        assert_eq!(
            trace.jobs,
            [
                TraceJob {
                    id: "a,1".to_owned(),
                    queue: 0,
                    visible_at_us: 5_000_000,
                    ready_at_us: 5_000_000,
                    duration_us: 300_000_000
                },
                TraceJob {
                    id: "b".to_owned(),
                    queue: 1,
                    visible_at_us: 1_000_000,
                    ready_at_us: 10_250_000,
                    duration_us: 500_000
                },
            ]
        );
    }

    #[test]
    fn reads_json_lines() {
        let trace = Trace::parse(
            "{\"job_id\": 7, \"queue\": \"q\", \"visible_at_s\": 0, \"ready_at_s\": 1.5, \"duration_s\": 60, \"pipeline\": \"x\"}\n{\"job_id\": \"j\", \"queue\": \"q\", \"visible_at_s\": 2, \"ready_at_s\": 2, \"duration_s\": 0}\n",
            None,
        )
        .unwrap();
        assert_eq!(trace.jobs.len(), 2);
        assert_eq!(trace.jobs[0].id, "7");
        assert_eq!(trace.jobs[0].ready_at_us, 1_500_000);
        assert_eq!(trace.horizon_us, None);
    }

    #[test]
    fn csv_round_trips() {
        let text = "# horizon_s=90.5\njob_id,queue,visible_at_s,ready_at_s,duration_s\n\"x,\"\"y\"\"\",default,0.000001,1,2\n";
        let trace = Trace::parse(text, None).unwrap();
        assert_eq!(trace.jobs[0].id, "x,\"y\"");
        assert_eq!(Trace::parse(&trace.to_csv("generated"), None).unwrap(), trace);
        assert!(trace.to_csv("generated").starts_with("# generated\n# horizon_s=90.5\n"));
    }

    #[test_case("job_id,queue,visible_at_s,ready_at_s\n", "line 1: the CSV header has no duration_s column; expected the columns job_id, queue, visible_at_s, ready_at_s, duration_s"; "missing column")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\na,q,0,0\n", "line 2: expected at least 5 fields as in the header, found 4"; "short row")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\na,q,0,0,-5\n", "line 2: invalid duration_s -5 for job \"a\": expected seconds from 0 to 1e10"; "negative duration")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\na,q,0,0,ten\n", "line 2: invalid duration_s \"ten\": expected a number of seconds"; "not a number")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\na,q,0,0,NaN\n", "line 2: invalid duration_s NaN for job \"a\": expected seconds from 0 to 1e10"; "not finite")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\n\na,q,10,5,1\n", "line 3: job \"a\" is ready (ready_at_s 5) before it is visible (visible_at_s 10)"; "ready before visible")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\na,q,0,0,1\na,q,0,0,1\n", "line 3: duplicate job_id \"a\" (first on line 2)"; "duplicate id")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\n\"a,q,0,0,1\n", "line 2: unterminated quoted field"; "unterminated quote")]
    #[test_case("job_id,queue,visible_at_s,ready_at_s,duration_s\n,q,0,0,1\n", "line 2: empty job_id"; "empty id")]
    #[test_case("# horizon_s=soon\n", "line 1: invalid horizon_s \"soon\": expected a number of seconds, 0 or more"; "bad horizon")]
    #[test_case("{\"job_id\": \"a\", \"queue\": \"q\", \"visible_at_s\": 0, \"ready_at_s\": 0}\n", "line 1: invalid JSON job: missing field `duration_s` at line 1 column 65; expected an object with job_id, queue, visible_at_s, ready_at_s and duration_s"; "json missing key")]
    #[test_case("{\"job_id\": \"a\", \"queue\": \"q\", \"visible_at_s\": 0, \"ready_at_s\": 0, \"duration_s\": 1}\nnot json\n", "line 2: invalid JSON job: expected ident at line 1 column 2; expected an object with job_id, queue, visible_at_s, ready_at_s and duration_s"; "json garbage")]
    #[test_case("# only a comment\n", "the trace has no jobs"; "empty")]
    fn malformed_traces_name_the_line(text: &str, message: &str) {
        assert_eq!(Trace::parse(text, None).unwrap_err().to_string(), message);
    }

    #[test_case(0, "0")]
    #[test_case(80_500_000, "80.5")]
    #[test_case(1, "0.000001")]
    #[test_case(3_600_000_000, "3600")]
    fn formats_seconds_exactly(micros: u64, text: &str) {
        assert_eq!(format_secs(micros), text);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            for format in [None, Some(TraceFormat::Csv), Some(TraceFormat::JsonLines)] {
                let _ = Trace::parse(&text, format);
            }
        }

        #[test]
        fn parsing_never_panics_on_trace_like_lines(
            lines in proptest::collection::vec(
                r#"(# ?horizon_s=[-0-9.e]{0,12}|job_id,queue,visible_at_s,ready_at_s,duration_s|"?[a-z,"]{0,4}"?,[a-z]{0,3},[-0-9.eNa]{0,24},[-0-9.e]{0,24},[-0-9.einf]{0,24}(,x)?|\{"job_id": ?"[a-z]{0,3}", ?"queue": ?"[a-z]{0,2}", ?"visible_at_s": ?[-0-9.e]{1,24}, ?"ready_at_s": ?[-0-9.e]{1,24}, ?"duration_s": ?[-0-9.e]{1,24}\}?)"#,
                0..8,
            )
        ) {
            let _ = Trace::parse(&lines.join("\n"), None);
        }
    }
}
