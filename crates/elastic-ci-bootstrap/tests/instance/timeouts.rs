//! Time limits on the commands the instance binary runs, with stubs that never end
//! first on `PATH`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use elastic_ci_bootstrap::child::CommandTimeouts;
use elastic_ci_bootstrap::files::Root;
use elastic_ci_bootstrap::system::{RealSystem, System};
use elastic_ci_core::boot::action::SystemAction;

/// A command that hangs as a client of a hung daemon does.
const HANGS: &str = "#!/bin/bash\nwhile :; do sleep 1; done\n";

/// See: child processes had no timeouts, so a hung dockerd hung the boot forever.
#[tokio::test]
async fn a_command_that_never_ends_fails_its_step_after_the_limit() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["systemctl", "docker", "mkfs.ext4"] {
        let path = bin.join(name);
        std::fs::write(&path, HANGS).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let env = HashMap::from([("PATH".to_owned(), format!("{}:/usr/bin:/bin", bin.display()))]);
    let system = RealSystem::new(Root::new(scratch.path()), None, env)
        .with_timeouts(CommandTimeouts::uniform(Duration::from_millis(300)));

    let error = system.perform(&SystemAction::systemctl(&["restart", "docker"])).await.unwrap_err();
    assert_eq!(format!("{error:#}"), "systemctl did not finish within 300ms and was killed");

    let error = system.perform(&SystemAction::WaitForDocker { attempts: 2 }).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.starts_with("docker is not running: "), "{message}");
    assert!(message.contains("docker did not finish within 300ms and was killed"), "{message}");

    let error = system
        .perform(&SystemAction::Run { command: vec!["mkfs.ext4".into(), "/dev/null".into()] })
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("mkfs.ext4 did not finish"), "{error:#}");
}
