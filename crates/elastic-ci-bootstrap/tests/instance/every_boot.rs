//! The every-boot steps of `boot`: instance storage, `/tmp`, and Docker's daemon
//! configuration, with the recorded system answering from a `--system-state` file so
//! that each branch runs.

use elastic_ci_core::fleet::Health;
use elastic_ci_testkit::moto::moto;
use serde_json::{Value, json};

use crate::boot::Instance;
use crate::{files_under, stderr, stdout};

/// `nvme list` of nvme-cli 2 (with its Generic column) on an instance with two
/// instance-store devices besides the root volume.
const NVME_LIST: &str = "\
Node          Generic     SN                   Model                            Namespace  Usage                   Format       FW Rev
------------- ----------- -------------------- -------------------------------- ---------- ----------------------- ------------ --------
/dev/nvme0n1  /dev/ng0n1  vol0123456789abcdef0 Amazon Elastic Block Store       0x1        53.69 GB / 53.69 GB     512 B + 0 B  2.0
/dev/nvme1n1  /dev/ng1n1  AWS1A2B3C4D5E6F7G8H9 Amazon EC2 NVMe Instance Storage 0x1        474.00 GB / 474.00 GB   512 B + 0 B  0
/dev/nvme2n1  /dev/ng2n1  AWS9H8G7F6E5D4C3B2A1 Amazon EC2 NVMe Instance Storage 0x1        474.00 GB / 474.00 GB   512 B + 0 B  0
";

/// `nvme list` with only the first instance-store device.
fn one_device_listing() -> String {
    NVME_LIST.lines().filter(|line| !line.contains("nvme2n1")).collect::<Vec<_>>().join("\n")
}

async fn with_instance_storage() -> Option<Instance> {
    let mut instance = Instance::new(moto()?).await;
    instance.set("BUILDKITE_ENABLE_INSTANCE_STORAGE", "true");
    Some(instance)
}

/// The recorded actions of the storage step: those before Docker's configuration.
fn storage_actions(actions: &[Value]) -> Vec<Value> {
    let docker_config = json!({"action": "systemctl", "args": ["daemon-reload"]});
    actions.iter().take_while(|action| **action != docker_config).cloned().collect()
}

fn run(command: &[&str]) -> Value {
    json!({"action": "run", "command": command})
}

const MOUNT_MD0: [&str; 7] =
    ["mount", "-t", "ext4", "-o", "defaults,noatime", "/dev/md0", "/mnt/ephemeral"];
const MOUNT_NVME1: [&str; 7] =
    ["mount", "-t", "ext4", "-o", "defaults,noatime", "/dev/nvme1n1", "/mnt/ephemeral"];

#[tokio::test(flavor = "multi_thread")]
async fn several_devices_become_one_raid_array() {
    let Some(instance) = with_instance_storage().await else { return };
    let output = instance.boot_with_state(&json!({"nvme_list": NVME_LIST}));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        storage_actions(&instance.actions()),
        [
            run(&[
                "mdadm",
                "--create",
                "/dev/md0",
                "--run",
                "--level=0",
                "--chunk=256",
                "--raid-devices=2",
                "/dev/nvme1n1",
                "/dev/nvme2n1"
            ]),
            json!({"action": "write-raid-config", "path": "/etc/mdadm.conf", "array": "/dev/md0", "devices": ["/dev/nvme1n1", "/dev/nvme2n1"]}),
            run(&["blockdev", "--setra", "65536", "/dev/md0"]),
            run(&["mkfs.ext4", "-F", "-E", "nodiscard", "/dev/md0"]),
            run(&MOUNT_MD0),
        ]
    );
    // The array's line comes before the bind mounts that need it.
    assert_eq!(
        instance.read("/etc/fstab"),
        "/dev/md0 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0\n\
         /mnt/ephemeral/git-mirrors /var/lib/buildkite-agent/git-mirrors none defaults,bind 0 0\n\
         /mnt/ephemeral/builds /var/lib/buildkite-agent/builds none defaults,bind 0 0\n"
    );
    // Builds and Docker's data live on the array.
    let daemon: Value = serde_json::from_str(&instance.read("/etc/docker/daemon.json")).unwrap();
    assert_eq!(daemon["data-root"], "/mnt/ephemeral/docker");
    assert!(instance.path("/mnt/ephemeral/docker").is_dir());
    assert!(instance.actions().contains(&json!({"action": "bind-mount", "source": "/mnt/ephemeral/builds", "target": "/var/lib/buildkite-agent/builds"})));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_device_is_formatted_and_mounted() {
    let Some(instance) = with_instance_storage().await else { return };
    let state = json!({"nvme_list": one_device_listing(), "block_devices": {"/dev/nvme1n1": null}});
    let output = instance.boot_with_state(&state);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        storage_actions(&instance.actions()),
        [run(&["mkfs.ext4", "-F", "-E", "nodiscard", "/dev/nvme1n1"]), run(&MOUNT_NVME1)]
    );
    assert!(
        instance
            .read("/etc/fstab")
            .starts_with("/dev/nvme1n1 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_holds_ext4_is_mounted_without_formatting() {
    let Some(instance) = with_instance_storage().await else { return };
    let state =
        json!({"nvme_list": one_device_listing(), "block_devices": {"/dev/nvme1n1": "ext4"}});
    let output = instance.boot_with_state(&state);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(storage_actions(&instance.actions()), [run(&MOUNT_NVME1)]);
    assert!(
        stderr(&output)
            .contains("/dev/nvme1n1 already holds an ext4 file system: not formatting it")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assembled_array_with_ext4_is_neither_created_nor_formatted() {
    let Some(instance) = with_instance_storage().await else { return };
    let state = json!({"nvme_list": NVME_LIST, "block_devices": {"/dev/md0": "ext4"}});
    let output = instance.boot_with_state(&state);
    assert!(output.status.success(), "{}", stderr(&output));
    let actions = storage_actions(&instance.actions());
    assert_eq!(actions.last(), Some(&run(&MOUNT_MD0)));
    let commands: Vec<&str> =
        actions.iter().filter_map(|action| action["command"][0].as_str()).collect();
    assert_eq!(commands, ["blockdev", "mount"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn mounted_instance_storage_is_left_alone() {
    let Some(instance) = with_instance_storage().await else { return };
    let state = json!({
        "nvme_list": NVME_LIST,
        "mounts": [{"source": "/dev/md0", "target": "/mnt/ephemeral", "fs_type": "ext4"}],
    });
    let output = instance.boot_with_state(&state);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(storage_actions(&instance.actions()), Vec::<Value>::new());
    assert!(
        stderr(&output)
            .contains("/mnt/ephemeral is already mounted (/dev/md0 ext4): leaving it as it is")
    );
    // Only the bind mounts' lines: nothing for /mnt/ephemeral itself.
    assert!(!instance.read("/etc/fstab").contains(" /mnt/ephemeral "));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_nvme_device_is_not_an_error() {
    let Some(instance) = with_instance_storage().await else { return };
    let output = instance.boot_with_state(&json!({"nvme_list": ""}));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(storage_actions(&instance.actions()), Vec::<Value>::new());
    assert!(stderr(&output).contains(
        "No NVMe drives to mount. Please check that your instance type supports instance storage."
    ));
    // As in the original, Docker's data root moves to /mnt/ephemeral all the same.
    assert!(instance.path("/mnt/ephemeral/docker").is_dir());
}

#[tokio::test(flavor = "multi_thread")]
async fn fstab_keeps_one_line_for_the_mount_point() {
    let Some(instance) = with_instance_storage().await else { return };
    let line = "/dev/nvme1n1 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0";
    instance.put(
        "/etc/fstab",
        &format!(
            "UUID=0a1b / xfs defaults,noatime 1 1\n{line}\n/dev/nvme9n1 /mnt/ephemeral ext4 defaults 0 0\n{line}\n"
        ),
    );
    let state =
        json!({"nvme_list": one_device_listing(), "block_devices": {"/dev/nvme1n1": "ext4"}});
    let output = instance.boot_with_state(&state);
    assert!(output.status.success(), "{}", stderr(&output));
    let fstab = instance.read("/etc/fstab");
    assert!(
        fstab.starts_with(&format!("UUID=0a1b / xfs defaults,noatime 1 1\n{line}\n")),
        "{fstab}"
    );
    assert_eq!(fstab.lines().filter(|entry| entry.contains(" /mnt/ephemeral ")).count(), 1);

    // A second boot, with the storage now mounted, changes nothing of it.
    let again = instance.boot_with_state(&json!({
        "nvme_list": one_device_listing(),
        "mounts": [{"source": "/dev/nvme1n1", "target": "/mnt/ephemeral", "fs_type": "ext4"}],
    }));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(instance.read("/etc/fstab"), fstab);
}

#[tokio::test(flavor = "multi_thread")]
async fn tmpfs_at_tmp_is_unmounted_and_masked_when_switched_off() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    instance.set("BUILDKITE_MOUNT_TMPFS_AT_TMP", "false");
    let tmpfs = json!({"mounts": [{"source": "tmpfs", "target": "/tmp", "fs_type": "tmpfs"}]});
    let output = instance.boot_with_state(&tmpfs);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        storage_actions(&instance.actions()),
        [
            run(&["umount", "--lazy", "/tmp"]),
            json!({"action": "systemctl", "args": ["mask", "--now", "tmp.mount"]}),
        ]
    );
    assert!(stderr(&output).contains("Disabling automatic mount of tmpfs at /tmp"));

    // At the next boot /tmp is no tmpfs any more: nothing to unmount.
    let n_actions = instance.actions().len();
    let again = instance.boot_with_state(&json!({}));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        storage_actions(&instance.actions()[n_actions..]),
        [json!({"action": "systemctl", "args": ["mask", "--now", "tmp.mount"]})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_json_keeps_the_image_settings_and_gets_the_stack_ones() {
    let Some(instance) = with_instance_storage().await else { return };
    let mut instance = instance;
    for (name, value) in [
        ("DOCKER_NETWORKING_PROTOCOL", "dualstack"),
        ("DOCKER_IPV4_ADDRESS_POOL_1", "10.10.0.0/16"),
        ("DOCKER_FIXED_CIDR_V4", "172.17.1.0/24"),
        ("DOCKER_FIXED_CIDR_V6", "fd00:1::/64"),
        ("DOCKER_PRUNE_UNTIL", "1d"),
    ] {
        instance.set(name, value);
    }
    instance.put("/etc/docker/daemon.json", "{\n  \"storage-driver\": \"overlay2\"\n}\n");
    let state = json!({"users": {"buildkite-agent": 2001}, "groups": {"docker": 993}});
    let output = instance.boot_with_state(&state);
    assert!(output.status.success(), "{}", stderr(&output));
    expect_test::expect![[r#"
        {
          "data-root": "/mnt/ephemeral/docker",
          "default-address-pools": [
            {
              "base": "10.10.0.0/16",
              "size": 20
            },
            {
              "base": "192.168.0.0/16",
              "size": 24
            },
            {
              "base": "2001:db8:2::/104",
              "size": 112
            }
          ],
          "experimental": true,
          "fixed-cidr": "172.17.1.0/24",
          "fixed-cidr-v6": "fd00:1::/64",
          "ip6tables": true,
          "ipv6": true,
          "storage-driver": "overlay2",
          "userns-remap": "buildkite-agent"
        }
    "#]]
    .assert_eq(&instance.read("/etc/docker/daemon.json"));
    assert_eq!(
        instance.read("/etc/subuid"),
        "buildkite-agent:2001:1\nbuildkite-agent:100000:65536\n"
    );
    assert_eq!(
        instance.read("/etc/subgid"),
        "buildkite-agent:993:1\nbuildkite-agent:100000:65536\n"
    );
    // The GC timers prune with the stack's age, in a unit Docker understands.
    for service in ["docker-gc", "docker-low-disk-gc"] {
        assert_eq!(
            instance.read(&format!("/etc/systemd/system/{service}.service.d/prune-until.conf")),
            "[Service]\nEnvironment=DOCKER_PRUNE_UNTIL=24h\n"
        );
    }
    assert!(
        instance
            .read("/var/lib/buildkite-agent/cfn-env")
            .contains("set_always DOCKER_PRUNE_UNTIL 24h\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_daemon_json_fails_the_boot_and_is_left_as_it_was() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    let corrupt = "{\"storage-driver\": \"overlay2\",\n";
    instance.put("/etc/docker/daemon.json", corrupt);
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("error: boot failed at step docker-config: /etc/docker/daemon.json is not valid JSON (left unchanged): EOF while parsing"),
        "{log}"
    );
    assert_eq!(instance.read("/etc/docker/daemon.json"), corrupt);
    let docker_dir: Vec<_> = files_under(&instance.path("/etc/docker")).into_keys().collect();
    assert_eq!(docker_dir.len(), 1, "{docker_dir:?}");
    // Docker was not restarted, nothing else ran, and the instance is replaced.
    assert!(!instance.actions().iter().any(|action| action["args"][0] == "restart"));
    assert_eq!(instance.health().await, Health::Unhealthy);
    assert_eq!(instance.signals(), [false]);
    assert!(!instance.path("/var/log/elastic-stack-bootstrap-status").exists());
    assert!(!instance.path("/var/lib/buildkite-agent/cfn-env").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_json_that_is_not_an_object_is_refused() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    instance.put("/etc/docker/daemon.json", "[\"storage-driver\"]\n");
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(
            "boot failed at step docker-config: /etc/docker/daemon.json (left unchanged): expected a JSON object, found an array"
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(instance.read("/etc/docker/daemon.json"), "[\"storage-driver\"]\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_the_every_boot_steps() {
    let Some(instance) = with_instance_storage().await else { return };
    let mut instance = instance;
    instance.set("BUILDKITE_MOUNT_TMPFS_AT_TMP", "false");
    let path = instance.work.path().join("state.json");
    std::fs::write(&path, json!({"nvme_list": NVME_LIST}).to_string()).unwrap();
    let output = instance.boot(&["--dry-run", "--system-state", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = stdout(&output);
    for needle in [
        " 1. instance-storage (every boot)",
        "- note: Disabling automatic mount of tmpfs at /tmp",
        "- systemctl mask --now tmp.mount",
        "- mdadm --create /dev/md0 --run --level=0 --chunk=256 --raid-devices=2 /dev/nvme1n1 /dev/nvme2n1",
        "- mkfs.ext4 -F -E nodiscard /dev/md0",
        "- set the /mnt/ephemeral line of /etc/fstab: /dev/md0 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0",
        " 2. docker-config (every boot)",
        "- write /etc/subuid (0644)",
        "- set in /etc/docker/daemon.json, keeping its other keys: {\"data-root\":\"/mnt/ephemeral/docker\",",
        "- systemctl enable --now docker-gc.timer docker-low-disk-gc.timer",
        "- systemctl restart docker.service",
        " 3. docker-binfmt (every boot, best effort)",
        " 4. cfn-env",
    ] {
        assert!(plan.contains(needle), "{needle:?} missing from:\n{plan}");
    }
    assert!(files_under(instance.root.path()).is_empty());
    assert!(instance.actions().is_empty());
}

#[test]
fn a_system_state_needs_recorded_actions_and_must_be_valid() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{\"mount\": []}").unwrap();
    let output = crate::command(&Default::default())
        .args(["boot", "--dry-run", "--system-state"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--record-actions"), "{}", stderr(&output));
    let output = crate::command(&Default::default())
        .args(["boot", "--root"])
        .arg(dir.path())
        .arg("--record-actions")
        .arg(dir.path().join("actions.jsonl"))
        .arg("--system-state")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains(&format!("invalid system state {}: unknown field `mount`", state.display())),
        "{}",
        stderr(&output)
    );
}
