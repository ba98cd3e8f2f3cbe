//! `elastic-ci export-trace`: reads builds and their jobs from the Buildkite REST API
//! and writes a job trace in the simulator's format (JSON Lines).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Args;
use elastic_ci_buildkite::rest::{BuildsQuery, RestClient};
use elastic_ci_core::lifecycle::{format_rfc3339, parse_rfc3339};
use elastic_ci_core::secret::Secret;
use serde_json::json;

use crate::error::InputError;
use crate::render::parse_since;

/// Arguments of `elastic-ci export-trace`.
#[derive(Debug, Args)]
pub struct ExportTraceArgs {
    /// The organization's slug.
    #[arg(long, value_name = "SLUG")]
    pub org: String,

    /// Only this pipeline's builds (its slug).
    #[arg(long, value_name = "SLUG")]
    pub pipeline: Option<String>,

    /// Only jobs that targeted this queue (agent query rule queue=Q; jobs without one
    /// count as queue "default").
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,

    /// How far back.
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Duration,

    /// The REST API's base URL.
    #[arg(long, value_name = "URL", default_value = "https://api.buildkite.com/v2")]
    pub api_url: String,

    /// Pages of builds read at most (100 builds each).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_pages: u32,
}

/// Runs `export-trace`.
pub async fn run(
    args: &ExportTraceArgs,
    env: &HashMap<String, String>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let token = env
        .get("BUILDKITE_API_TOKEN")
        .filter(|token| !token.trim().is_empty())
        .map(|token| Secret::new(token.trim().to_owned()))
        .ok_or_else(|| {
            InputError::new(
                "set BUILDKITE_API_TOKEN to a Buildkite API access token with read_builds",
            )
        })?;
    // The token goes to this URL: HTTPS, or plain HTTP to this machine only.
    let base = elastic_ci_core::uri::parse_agent_endpoint(&args.api_url).ok_or_else(|| {
        InputError::new(format!(
            "invalid --api-url {:?}: expected an https:// URL (http:// only to localhost)",
            args.api_url
        ))
    })?;
    let client = RestClient::new(&base, token).context("failed to build the Buildkite client")?;
    let since = SystemTime::now().checked_sub(args.since).unwrap_or(SystemTime::UNIX_EPOCH);
    let query = BuildsQuery {
        organization: args.org.clone(),
        pipeline: args.pipeline.clone(),
        created_from: format_rfc3339(since),
        max_pages: args.max_pages,
    };
    let builds = client.builds(&query).await.context("failed to read builds")?;
    let mut jobs = Vec::new();
    for build in &builds {
        for job in &build.jobs {
            let queue = job.queue().unwrap_or_else(|| "default".to_owned());
            if args.queue.as_ref().is_some_and(|wanted| *wanted != queue) {
                continue;
            }
            let (Some(scheduled), Some(started), Some(finished)) = (
                job.scheduled_at.as_deref().and_then(parse_rfc3339),
                job.started_at.as_deref().and_then(parse_rfc3339),
                job.finished_at.as_deref().and_then(parse_rfc3339),
            ) else {
                continue;
            };
            let runnable = job.runnable_at.as_deref().and_then(parse_rfc3339).unwrap_or(scheduled);
            jobs.push((
                job.id.clone(),
                queue,
                scheduled,
                runnable.max(scheduled),
                finished.duration_since(started).unwrap_or_default(),
            ));
        }
    }
    let Some(origin) = jobs.iter().map(|job| job.2).min() else {
        writeln!(out, "# no finished jobs since {}", format_rfc3339(since))?;
        return Ok(());
    };
    jobs.sort_by_key(|job| job.2);
    writeln!(
        out,
        "# exported from organization {} since {}: {} jobs",
        args.org,
        format_rfc3339(since),
        jobs.len()
    )?;
    let secs = |time: SystemTime| time.duration_since(origin).unwrap_or_default().as_secs_f64();
    for (id, queue, visible, ready, duration) in jobs {
        let line = json!({
            "job_id": id,
            "queue": queue,
            "visible_at_s": secs(visible),
            "ready_at_s": secs(ready),
            "duration_s": duration.as_secs_f64(),
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
