//! The small system files the boot sequence writes: systemd slice and drop-ins, the
//! extra sudoers rule, the authorized-keys refresher and fstab lines.

use crate::boot::config::ResourceLimits;
use crate::shell;

/// `/etc/systemd/system/buildkite-agent.slice`.
pub fn agent_slice(limits: &ResourceLimits) -> String {
    format!(
        "[Unit]\n\
         Description=Buildkite Agent Slice\n\
         Before=slices.target\n\
         \n\
         [Slice]\n\
         MemoryHigh={}\n\
         MemoryMax={}\n\
         MemorySwapMax={}\n\
         CPUWeight={}\n\
         CPUQuota={}\n\
         IOWeight={}\n",
        limits.memory_high,
        limits.memory_max,
        limits.memory_swap_max,
        limits.cpu_weight,
        limits.cpu_quota,
        limits.io_weight
    )
}

/// `/etc/systemd/system/buildkite-agent.service.d/10-resource-limits.conf`.
pub fn resource_limits_drop_in() -> String {
    "[Service]\nSlice=buildkite-agent.slice\nIgnoreOnIsolate=yes\n".to_owned()
}

/// `/etc/systemd/system/buildkite-agent.service.d/environment.conf`.
pub fn environment_drop_in(terminate_after_job: bool) -> String {
    format!(
        "[Service]\nEnvironment=\"BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB={terminate_after_job}\"\n"
    )
}

/// `/etc/sudoers.d/buildkite-agent-additional`.
pub fn sudoers_additional(commands: &str) -> String {
    format!("buildkite-agent ALL=NOPASSWD: {commands}\n")
}

/// `/usr/local/bin/refresh_authorized_keys`, run hourly as root by a timer.
///
/// Unlike the original it stops at the first failure, never touches `/tmp` (the fetch
/// writes a temporary file beside the destination and renames it), quotes every
/// embedded value so none can run as code, and changes the owner of the link itself
/// should the file have been replaced by one (`chown -h`).
pub fn refresh_authorized_keys(bootstrap: &str, source: &str, home: &str, user: &str) -> String {
    let keys = format!("{home}/.ssh/authorized_keys");
    format!(
        "#!/bin/bash\n\
         # Written by elastic-ci-bootstrap: refreshes {user}'s authorized SSH keys.\n\
         set -euo pipefail\n\
         {bootstrap} fetch {source} {keys} --mode 0600\n\
         chown -h {owner} {keys}\n",
        bootstrap = shell::quote(bootstrap),
        source = shell::quote(source),
        keys = shell::quote(&keys),
        owner = shell::quote(&format!("{user}:")),
        user = user.replace('\n', " "),
    )
}

/// An fstab line for a bind mount.
pub fn bind_mount_fstab_line(source: &str, target: &str) -> String {
    format!("{source} {target} none defaults,bind 0 0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_script_quotes_the_url() {
        let script = refresh_authorized_keys(
            "/usr/local/bin/elastic-ci-bootstrap",
            "https://example.com/keys?$(touch /tmp/pwned)",
            "/home/ec2-user",
            "ec2-user",
        );
        expect_test::expect![[r#"
            #!/bin/bash
            # Written by elastic-ci-bootstrap: refreshes ec2-user's authorized SSH keys.
            set -euo pipefail
            /usr/local/bin/elastic-ci-bootstrap fetch 'https://example.com/keys?$(touch /tmp/pwned)' /home/ec2-user/.ssh/authorized_keys --mode 0600
            chown -h ec2-user: /home/ec2-user/.ssh/authorized_keys
        "#]]
        .assert_eq(&script);
    }
}
