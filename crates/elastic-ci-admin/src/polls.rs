//! The scaler's per-poll log lines (JSON, target `elastic_ci_scaler::poll`), read back
//! from its log group.

use std::time::SystemTime;

use elastic_ci_core::lifecycle::parse_rfc3339;
use serde::Serialize;

/// The log target of the scaler's per-poll line.
pub const POLL_TARGET: &str = "elastic_ci_scaler::poll";

/// One poll of the scaler.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollLine {
    #[serde(serialize_with = "crate::render::serialize_time")]
    pub time: SystemTime,
    pub scheduled_jobs: Option<u64>,
    pub running_jobs: Option<u64>,
    pub waiting_jobs: Option<u64>,
    pub total_agents: Option<u64>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub desired_capacity: Option<u64>,
    pub in_service: Option<u64>,
    pub pending: Option<u64>,
    pub target_capacity: Option<u64>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub error_type: Option<String>,
}

impl PollLine {
    /// Reads one log message; `None` for any other line. `fallback_time` (the log
    /// event's) is used when the line has no readable `timestamp`.
    pub fn parse(message: &str, fallback_time: SystemTime) -> Option<PollLine> {
        let json: serde_json::Value = serde_json::from_str(message.trim()).ok()?;
        if json.get("target").and_then(serde_json::Value::as_str) != Some(POLL_TARGET) {
            return None;
        }
        let number = |name: &str| json.get(name).and_then(serde_json::Value::as_u64);
        let text =
            |name: &str| json.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
        Some(PollLine {
            time: text("timestamp").and_then(|time| parse_rfc3339(&time)).unwrap_or(fallback_time),
            scheduled_jobs: number("scheduled_jobs"),
            running_jobs: number("running_jobs"),
            waiting_jobs: number("waiting_jobs"),
            total_agents: number("total_agents"),
            min_size: number("min_size"),
            max_size: number("max_size"),
            desired_capacity: number("desired_capacity"),
            in_service: number("in_service"),
            pending: number("pending"),
            target_capacity: number("target_capacity"),
            reason: text("reason"),
            error: text("error"),
            error_type: text("error_type"),
        })
    }

    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    /// The decision's conclusion: the reason after its numbers (`scale out from 0 to
    /// 4`, `scale-out cooldown, 12.0s left`).
    pub fn conclusion(&self) -> Option<&str> {
        let reason = self.reason.as_deref()?;
        Some(reason.rsplit_once(": ").map_or(reason, |(_, conclusion)| conclusion))
    }

    /// Jobs that need an agent: scheduled plus waiting.
    pub fn jobs_wanting_agents(&self) -> u64 {
        self.scheduled_jobs.unwrap_or(0).saturating_add(self.waiting_jobs.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log lines are data anyone with the instance role's log grants could write:
    /// counts at the top of their range neither panic nor wrap.
    #[test]
    fn huge_counts_saturate() {
        let message = format!(
            r#"{{"target":"{POLL_TARGET}","scheduled_jobs":{},"waiting_jobs":1}}"#,
            u64::MAX
        );
        let line = PollLine::parse(&message, SystemTime::UNIX_EPOCH).expect("a poll line");
        assert_eq!(line.jobs_wanting_agents(), u64::MAX);
    }

    #[test]
    fn reads_the_scalers_poll_line() {
        let line = r#"{"timestamp":"2024-05-01T10:00:00.123456Z","level":"INFO","message":"poll","queue":"default","scheduled_jobs":3,"running_jobs":1,"waiting_jobs":2,"total_agents":1,"desired_capacity":0,"max_size":10,"target_capacity":4,"reason":"3 scheduled, 1 running, 2 waiting jobs need 4 agents, 4 instances; capacity 4 within [0, 10]; group desired 0, in service 0, pending 0: scale out from 0 to 4","applied":"Set","target":"elastic_ci_scaler::poll"}"#;
        let poll = PollLine::parse(line, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(poll.scheduled_jobs, Some(3));
        assert_eq!(poll.target_capacity, Some(4));
        assert_eq!(poll.conclusion(), Some("scale out from 0 to 4"));
        assert!(poll.succeeded());
        assert_eq!(poll.jobs_wanting_agents(), 5);
        assert!(poll.time > SystemTime::UNIX_EPOCH);
        assert_eq!(PollLine::parse(r#"{"target":"other"}"#, SystemTime::UNIX_EPOCH), None);
        assert_eq!(PollLine::parse("START RequestId: 1", SystemTime::UNIX_EPOCH), None);
    }
}
