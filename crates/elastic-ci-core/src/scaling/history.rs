//! Rebuilding the cooldown state on a cold start from the group's scaling activities.
//!
//! A fresh execution environment has no memory of when it last scaled. The group's
//! activity history does: a successful activity caused by an explicit
//! SetDesiredCapacity call says whether it increased or shrank the capacity, and when.
//! Instances that terminate themselves cause activities too ("taken out of service in
//! response to a user request"), which do not match and are not counted as scale-ins.

use std::time::SystemTime;

use crate::fleet::ScalingActivity;
use crate::scaling::ScalingState;

/// The text Auto Scaling puts in the cause of an activity started by SetDesiredCapacity.
pub const EXPLICIT_SET_CAUSE: &str =
    "a user request explicitly set group desired capacity changing the desired capacity";

/// A scan over activities delivered newest first, page by page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityScan {
    want_scale_out: bool,
    want_scale_in: bool,
    found: ScalingState,
}

impl ActivityScan {
    /// A scan looking for the directions that are enabled.
    pub fn new(want_scale_out: bool, want_scale_in: bool) -> ActivityScan {
        ActivityScan { want_scale_out, want_scale_in, found: ScalingState::default() }
    }

    /// Looks at the next page of activities (newest first).
    pub fn observe(&mut self, activities: &[ScalingActivity]) {
        for activity in activities {
            if activity.status != "Successful" || !activity.cause.contains(EXPLICIT_SET_CAUSE) {
                continue;
            }
            if activity.cause.contains("increasing the capacity") {
                keep_first(&mut self.found.last_scale_out, activity.start_time);
            } else if activity.cause.contains("shrinking the capacity") {
                keep_first(&mut self.found.last_scale_in, activity.start_time);
            }
        }
    }

    /// Whether every wanted direction has been found, so no more pages are needed.
    /// A scan that wants nothing is done before it starts.
    pub fn is_done(&self) -> bool {
        (!self.want_scale_out || self.found.last_scale_out.is_some())
            && (!self.want_scale_in || self.found.last_scale_in.is_some())
    }

    /// The state found so far.
    pub fn state(&self) -> ScalingState {
        self.found
    }
}

fn keep_first(slot: &mut Option<SystemTime>, time: SystemTime) {
    if slot.is_none() {
        *slot = Some(time);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn activity(seconds: u64, status: &str, cause: &str) -> ScalingActivity {
        ScalingActivity {
            start_time: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            end_time: None,
            status: status.to_owned(),
            description: String::new(),
            cause: cause.to_owned(),
        }
    }

    const OUT: &str = "At 2026-08-05T10:35:05Z a user request explicitly set group desired capacity changing the desired capacity from 1 to 2. At 2026-08-05T10:35:14Z an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 1 to 2.";
    const IN: &str = "At 2026-08-05T11:00:00Z a user request explicitly set group desired capacity changing the desired capacity from 2 to 1. At 2026-08-05T11:00:05Z an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from 2 to 1.";
    const SELF_TERMINATION: &str = "At 2026-08-05T12:00:00Z instance i-0123 was taken out of service in response to a user request, shrinking the capacity from 2 to 1.";

    #[test]
    fn finds_the_latest_of_each_direction_across_pages() {
        let mut scan = ActivityScan::new(true, true);
        scan.observe(&[
            activity(500, "Successful", SELF_TERMINATION),
            activity(400, "Failed", OUT),
            activity(300, "Successful", OUT),
        ]);
        assert!(!scan.is_done());
        scan.observe(&[activity(200, "Successful", IN), activity(100, "Successful", OUT)]);
        assert!(scan.is_done());
        let state = scan.state();
        assert_eq!(state.last_scale_out, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(300)));
        assert_eq!(state.last_scale_in, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(200)));
    }

    #[test]
    fn a_disabled_direction_is_not_waited_for() {
        let mut scan = ActivityScan::new(true, false);
        assert!(!scan.is_done());
        scan.observe(&[activity(300, "Successful", OUT)]);
        assert!(scan.is_done());
        assert!(ActivityScan::new(false, false).is_done());
    }
}
