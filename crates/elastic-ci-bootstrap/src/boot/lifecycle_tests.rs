//! The boot and the launch lifecycle hook: each way a boot ends completes the hook's
//! action as the group needs it (`CONTINUE` after a warm phase, a resume or a whole
//! boot; `ABANDON` after a failure), and a warm phase cut short runs again. The boot
//! runs against the in-memory Auto Scaling, SSM and S3 fakes (the local emulator does
//! not implement lifecycle actions) and the fake metadata service, with system actions
//! recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_aws::fake::{FakeObjectStore, FakeParameterStore, FakeScalingGroup, ScalingCall};
use elastic_ci_aws::imds::Imds;
use elastic_ci_core::fleet::{GroupSnapshot, LifecycleActionResult, LifecycleState};
use elastic_ci_testkit::imds::FakeImds;
use tempfile::TempDir;

use super::*;
use crate::system::RecordingSystem;
use elastic_ci_core::boot::plan::STATUS_FILE_PATH;

const INSTANCE: &str = "i-0123456789abcdef0";
const GROUP: &str = "ci-linux-AgentAutoScaleGroup-ABC123";
const TOKEN_PATH: &str = "/ci-linux/buildkite/agent-token";

/// One instance of the group, booting in a temporary root.
struct Booting {
    dir: TempDir,
    imds: FakeImds,
    parameters: Arc<FakeParameterStore>,
    scaling: Arc<FakeScalingGroup>,
    env: HashMap<String, String>,
}

impl Booting {
    fn new() -> Booting {
        let imds = FakeImds::start(INSTANCE, "us-east-1");
        imds.set_tag("aws:autoscaling:groupName", GROUP);
        let parameters = Arc::new(FakeParameterStore::default());
        parameters.put(TOKEN_PATH, "bkat-s3cr3t");
        let scaling = Arc::new(FakeScalingGroup::default());
        scaling.insert_group(GroupSnapshot {
            name: GROUP.into(),
            min_size: 0,
            max_size: 3,
            desired_capacity: 1,
            instances: vec![],
        });
        scaling.add_instance(GROUP, INSTANCE, LifecycleState::InService);
        let env = [
            ("BUILDKITE_STACK_NAME", "ci-linux"),
            ("BUILDKITE_STACK_VERSION", "v7.0.0"),
            ("BUILDKITE_STACK_DEPLOYED_BY", "cloudformation"),
            ("BUILDKITE_QUEUE", "default"),
            ("BUILDKITE_AGENT_TOKEN_PATH", TOKEN_PATH),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        Booting { dir: tempfile::tempdir().unwrap(), imds, parameters, scaling, env }
    }

    fn root(&self) -> Root {
        Root::new(self.dir.path().join("root"))
    }

    fn status(&self) -> String {
        std::fs::read_to_string(self.root().path(STATUS_FILE_PATH)).unwrap()
    }

    fn set_status(&self, status: &str) {
        files::write_atomic(&self.root().path(STATUS_FILE_PATH), 0o644, status.as_bytes()).unwrap();
    }

    fn recorded(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("actions.jsonl")).unwrap_or_default()
    }

    async fn boot(&self) -> Result<BootOutcome, BootFailure> {
        let system = RecordingSystem::open(&self.dir.path().join("actions.jsonl")).unwrap();
        let deps = BootDeps {
            root: self.root(),
            env: self.env.clone(),
            metadata: Arc::new(Imds::new(Some(&self.imds.endpoint())).unwrap()),
            parameters: self.parameters.clone(),
            objects: Arc::new(FakeObjectStore::default()),
            scaling: self.scaling.clone(),
            system: Arc::new(system),
            http: crate::fetch::http_client(Duration::from_secs(10)).unwrap(),
            metadata_backoff: metadata_backoff(Duration::from_millis(1)),
            seed_limits: SeedLimits::DEFAULT,
            deadline: Duration::from_secs(60),
        };
        boot(&deps).await
    }

    /// The lifecycle actions completed so far: hook and result.
    fn completions(&self) -> Vec<(String, LifecycleActionResult)> {
        self.scaling
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                ScalingCall::CompleteLifecycleAction { instance_id, hook_name, result } => {
                    assert_eq!(instance_id, INSTANCE);
                    Some((hook_name, result))
                }
                _ => None,
            })
            .collect()
    }
}

fn launch(result: LifecycleActionResult) -> (String, LifecycleActionResult) {
    (LAUNCH_HOOK_NAME.to_owned(), result)
}

fn starts_agent(recorded: &str) -> bool {
    recorded.contains(r#""args":["enable","--now","buildkite-agent"]"#)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_phase_holds_the_launch_hook_until_it_is_done_and_the_resume_completes_it_again() {
    let instance = Booting::new();
    instance.imds.set_target_lifecycle_state(Some("Warmed:Stopped"));
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Warmed);
    assert_eq!(instance.status(), plan::STATUS_WARMED, "the status is written before CONTINUE");
    assert_eq!(instance.completions(), [launch(LifecycleActionResult::Continue)]);
    assert!(!starts_agent(&instance.recorded()));

    instance.imds.set_target_lifecycle_state(Some("InService"));
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Resumed);
    assert_eq!(instance.completions(), vec![launch(LifecycleActionResult::Continue); 2]);
    assert!(starts_agent(&instance.recorded()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_boot_completes_the_launch_hook_and_so_does_a_reboot() {
    let instance = Booting::new();
    instance.imds.set_target_lifecycle_state(Some("InService"));
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Completed);
    assert_eq!(instance.completions(), [launch(LifecycleActionResult::Continue)]);
    // Back from the warm pool after a scale-in that reused it, or a plain reboot:
    // whichever, the group must not wait for a boot that has nothing left to do.
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::AlreadyCompleted);
    assert_eq!(instance.completions(), vec![launch(LifecycleActionResult::Continue); 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_boot_abandons_the_launch_hook_after_marking_the_instance_unhealthy() {
    let instance = Booting::new();
    instance.imds.set_target_lifecycle_state(Some("Warmed:Stopped"));
    instance.parameters.faults.fail_next("GetParameter", AwsErrorKind::NotFound, 1);
    let failure = instance.boot().await.unwrap_err();
    assert_eq!(failure.step, "agent-config");
    let calls = instance.scaling.calls();
    assert!(matches!(calls.first(), Some(ScalingCall::SetInstanceHealth { .. })), "{calls:?}");
    assert_eq!(instance.completions(), [launch(LifecycleActionResult::Abandon)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_target_lifecycle_state_no_launch_action_is_completed() {
    let instance = Booting::new();
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Completed);
    assert_eq!(instance.completions(), []);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_without_a_waiting_launch_action_does_not_fail_the_boot() {
    let instance = Booting::new();
    instance.imds.set_target_lifecycle_state(Some("InService"));
    // What the service answers: "No active Lifecycle Action found".
    instance.scaling.faults.fail_next("CompleteLifecycleAction", AwsErrorKind::Validation, 1);
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Completed);
    assert_eq!(instance.status(), plan::STATUS_COMPLETED);
    // Nor does an instance whose group cannot be told.
    let untagged = Booting::new();
    untagged.imds.disable_tags();
    untagged.imds.set_target_lifecycle_state(Some("InService"));
    assert_eq!(untagged.boot().await.unwrap(), BootOutcome::Completed);
    assert_eq!(untagged.completions(), []);
}

/// The group stops a warm-pool instance whatever its boot is doing when no launch
/// hook holds it: the status file then says what the warm phase wrote while it ran.
/// The next boot runs the warm phase again inside the pool, and the whole boot once
/// the group takes the instance, instead of refusing to go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_warm_phase_cut_short_runs_again_or_boots_in_full_when_taken_into_service() {
    let instance = Booting::new();
    let seen = instance.dir.path().join("status-during-the-warm-phase");
    let script = instance.dir.path().join("bootstrap.sh");
    let status_path = instance.root().path(STATUS_FILE_PATH);
    std::fs::write(&script, format!("cp '{}' '{}'\n", status_path.display(), seen.display()))
        .unwrap();
    let mut instance = instance;
    instance.env.insert(
        "BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT".into(),
        format!("file://{}", script.display()),
    );
    instance.imds.set_target_lifecycle_state(Some("Warmed:Stopped"));
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Warmed);
    let cut_short = std::fs::read_to_string(&seen).unwrap();

    // Stopped while the bootstrap script ran, then started inside the pool again.
    instance.set_status(&cut_short);
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Warmed);
    assert_eq!(instance.status(), plan::STATUS_WARMED);
    assert!(!starts_agent(&instance.recorded()));

    // Stopped while the bootstrap script ran, then taken into service.
    instance.set_status(&cut_short);
    instance.imds.set_target_lifecycle_state(Some("InService"));
    assert_eq!(instance.boot().await.unwrap(), BootOutcome::Completed);
    assert_eq!(instance.status(), plan::STATUS_COMPLETED);
    assert!(starts_agent(&instance.recorded()));
    assert!(
        !instance
            .scaling
            .calls()
            .iter()
            .any(|call| matches!(call, ScalingCall::SetInstanceHealth { .. })),
        "{:?}",
        instance.scaling.calls()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_boot_cut_short_still_refuses_to_go_on() {
    let instance = Booting::new();
    instance.set_status(plan::STATUS_STARTED);
    instance.imds.set_target_lifecycle_state(Some("InService"));
    let failure = instance.boot().await.unwrap_err();
    assert_eq!(failure.step, "status");
    assert_eq!(instance.completions(), [launch(LifecycleActionResult::Abandon)]);
}
