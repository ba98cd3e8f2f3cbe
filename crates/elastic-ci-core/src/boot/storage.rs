//! Instance storage and `/tmp`, planned from what the instance has now, so that the
//! step does the right thing on every boot:
//!
//! - `/mnt/ephemeral` already mounted: nothing to do;
//! - no instance-store NVMe device: nothing to do (not an error);
//! - one device: used directly; several: a RAID-0 array `/dev/md0`, created only when
//!   it does not exist yet;
//! - a device that already holds ext4 is mounted as it is, never formatted again;
//! - `/etc/fstab` gets one line for `/mnt/ephemeral`, replacing any earlier one.
//!
//! The binary gathers [`StorageFacts`] through its `System` (the mount table, `nvme
//! list`, `blkid`) and executes [`ops`]; `--dry-run` prints them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::boot::action::SystemAction;
use crate::boot::plan::{EPHEMERAL_PATH, Op};

pub const TMP_PATH: &str = "/tmp";
/// The array over several instance-store devices.
pub const RAID_DEVICE: &str = "/dev/md0";
pub const RAID_CHUNK_KIB: u32 = 256;
pub const MDADM_CONF_PATH: &str = "/etc/mdadm.conf";
/// 32 MiB of readahead on the array, in 512-byte sectors.
pub const RAID_READAHEAD_SECTORS: u32 = 65_536;
/// The model `nvme list` shows for instance-store volumes.
pub const INSTANCE_STORE_MODEL: &str = "Amazon EC2 NVMe Instance Storage";
pub const MOUNT_OPTIONS: &str = "defaults,noatime";
/// `nofail`: instance storage is blank again after a stop and start, and a failed
/// mount must not keep the instance from booting (the boot formats it again).
pub const FSTAB_OPTIONS: &str = "defaults,noatime,nofail";

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fs_type: String,
}

/// What `blkid` says of a device path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockDevice {
    /// There is no such device (an array not assembled).
    Absent,
    /// The device holds no file system `blkid` recognises.
    Blank,
    /// The device holds this file system type (`ext4`, `linux_raid_member`, …).
    Formatted(String),
}

/// What the storage step needs to know about the instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageFacts {
    /// The file system type mounted at `/tmp`, if any.
    pub tmp_fs_type: Option<String>,
    /// What is mounted at `/mnt/ephemeral`, if anything.
    pub ephemeral: Option<Mount>,
    /// Instance-store NVMe devices, from `nvme list`.
    pub devices: Vec<String>,
    /// `blkid` of each path of [`devices_to_probe`].
    pub block_devices: BTreeMap<String, BlockDevice>,
}

/// Whether the step needs the mount table at all.
pub fn needs_mounts(mount_tmpfs_at_tmp: bool, instance_storage: bool) -> bool {
    !mount_tmpfs_at_tmp || instance_storage
}

/// The device paths whose contents decide the plan: the one device, or the array.
pub fn devices_to_probe(devices: &[String]) -> Vec<String> {
    match devices {
        [] => Vec::new(),
        [device] => vec![device.clone()],
        _ => vec![RAID_DEVICE.to_owned()],
    }
}

/// Parses `/proc/self/mounts` (`SOURCE TARGET TYPE OPTIONS 0 0`, with spaces and
/// other special characters as octal escapes such as `\040`).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = unescape_octal(fields.next()?);
            let target = unescape_octal(fields.next()?);
            let fs_type = unescape_octal(fields.next()?);
            Some(Mount { source, target, fs_type })
        })
        .collect()
}

/// The mount visible at `target`: the last one listed, since a later mount hides
/// earlier ones at the same place.
pub fn mounted_at<'a>(mounts: &'a [Mount], target: &str) -> Option<&'a Mount> {
    mounts.iter().rev().find(|mount| mount.target == target)
}

/// The instance-store devices in `nvme list` output: the first column of the lines
/// that name the instance-store model. Anything that is not a plain `/dev/…` path is
/// ignored.
pub fn instance_store_devices(nvme_list: &str) -> Vec<String> {
    nvme_list
        .lines()
        .filter(|line| line.contains(INSTANCE_STORE_MODEL))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|device| {
            device.strip_prefix("/dev/").is_some_and(|name| {
                !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            })
        })
        .map(str::to_owned)
        .collect()
}

/// The fstab line of `/mnt/ephemeral` on `device`.
pub fn ephemeral_fstab_line(device: &str) -> String {
    format!("{device} {EPHEMERAL_PATH} ext4 {FSTAB_OPTIONS} 0 0")
}

/// `fstab` with `line` as the only entry for its mount point: other entries for that
/// mount point (duplicates, an earlier device) are dropped and `line` takes the place
/// of the first of them, or is appended. `None` when `fstab` is already so.
pub fn fstab_with_entry(fstab: &str, line: &str) -> Option<String> {
    let mount_point = fstab_mount_point(line)?;
    let mut lines: Vec<&str> = Vec::new();
    let mut placed = false;
    for existing in fstab.lines() {
        if fstab_mount_point(existing) == Some(mount_point) {
            if !placed {
                lines.push(line);
                placed = true;
            }
        } else {
            lines.push(existing);
        }
    }
    if !placed {
        lines.push(line);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    (text != fstab).then_some(text)
}

/// The second field of an fstab entry; `None` for comments and blank lines.
pub fn fstab_mount_point(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.starts_with('#') {
        return None;
    }
    line.split_whitespace().nth(1)
}

/// The storage step: `/tmp` first, then instance storage.
pub fn ops(mount_tmpfs_at_tmp: bool, instance_storage: bool, facts: &StorageFacts) -> Vec<Op> {
    let mut ops = Vec::new();
    let note = |text: String| Op::Note(text);
    let run = |command: &[&str]| {
        Op::System(SystemAction::Run { command: command.iter().map(|a| (*a).to_owned()).collect() })
    };
    if !mount_tmpfs_at_tmp {
        ops.push(note("Disabling automatic mount of tmpfs at /tmp".to_owned()));
        if facts.tmp_fs_type.as_deref() == Some("tmpfs") {
            // Lazily: something may already hold a file open in /tmp.
            ops.push(run(&["umount", "--lazy", TMP_PATH]));
        }
        ops.push(Op::System(SystemAction::systemctl(&["mask", "--now", "tmp.mount"])));
    }
    if !instance_storage {
        return ops;
    }
    if let Some(mount) = &facts.ephemeral {
        ops.push(note(format!(
            "{EPHEMERAL_PATH} is already mounted ({} {}): leaving it as it is",
            mount.source, mount.fs_type
        )));
        return ops;
    }
    let device = match facts.devices.as_slice() {
        [] => {
            ops.push(note(
                "No NVMe drives to mount. Please check that your instance type supports instance storage."
                    .to_owned(),
            ));
            return ops;
        }
        [device] => device.clone(),
        devices => {
            let mut create = vec![
                "mdadm".to_owned(),
                "--create".to_owned(),
                RAID_DEVICE.to_owned(),
                "--run".to_owned(),
                "--level=0".to_owned(),
                format!("--chunk={RAID_CHUNK_KIB}"),
                format!("--raid-devices={}", devices.len()),
            ];
            create.extend(devices.iter().cloned());
            match facts.block_devices.get(RAID_DEVICE) {
                None | Some(BlockDevice::Absent) => {
                    ops.push(Op::System(SystemAction::Run { command: create }));
                }
                Some(_) => ops.push(note(format!(
                    "{RAID_DEVICE} is already assembled: not creating it again"
                ))),
            }
            ops.push(Op::System(SystemAction::WriteRaidConfig {
                path: MDADM_CONF_PATH.to_owned(),
                array: RAID_DEVICE.to_owned(),
                devices: devices.to_vec(),
            }));
            ops.push(run(&[
                "blockdev",
                "--setra",
                &RAID_READAHEAD_SECTORS.to_string(),
                RAID_DEVICE,
            ]));
            RAID_DEVICE.to_owned()
        }
    };
    match facts.block_devices.get(&device) {
        Some(BlockDevice::Formatted(fs_type)) if fs_type == "ext4" => {
            ops.push(note(format!(
                "{device} already holds an ext4 file system: not formatting it"
            )));
        }
        _ => ops.push(run(&["mkfs.ext4", "-F", "-E", "nodiscard", &device])),
    }
    ops.push(Op::CreateDir { path: EPHEMERAL_PATH.to_owned(), mode: 0o755 });
    ops.push(run(&["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, &device, EPHEMERAL_PATH]));
    ops.push(Op::SetFstabEntry { line: ephemeral_fstab_line(&device) });
    ops
}

/// `\040` → ` ` and the like; anything else is kept as it is.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let digits = bytes.get(index + 1..index + 4);
        if bytes[index] == b'\\'
            && let Some(digits) = digits
            && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        {
            let value =
                digits.iter().fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                index += 4;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    const NVME_LIST: &str = "\
Node                  SN                   Model                                    Namespace Usage                      Format           FW Rev
--------------------- -------------------- ---------------------------------------- --------- -------------------------- ---------------- --------
/dev/nvme0n1          vol0123456789abcdef0 Amazon Elastic Block Store               1          53.69  GB /  53.69  GB    512   B +  0 B   1.0
/dev/nvme1n1          AWS1A2B3C4D5E6F7G8H9 Amazon EC2 NVMe Instance Storage         1         474.00  GB / 474.00  GB    512   B +  0 B   0
/dev/nvme2n1          AWS9H8G7F6E5D4C3B2A1 Amazon EC2 NVMe Instance Storage         1         474.00  GB / 474.00  GB    512   B +  0 B   0
";

    /// The ops, one per line, as `--dry-run` shows them.
    fn check(mount_tmpfs_at_tmp: bool, facts: &StorageFacts, expect: Expect) {
        let text: Vec<String> =
            ops(mount_tmpfs_at_tmp, true, facts).iter().map(ToString::to_string).collect();
        expect.assert_eq(&text.join("\n"));
    }

    fn devices(devices: &[&str], probed: &[(&str, BlockDevice)]) -> StorageFacts {
        StorageFacts {
            devices: devices.iter().map(|d| (*d).to_owned()).collect(),
            block_devices: probed.iter().map(|(d, b)| ((*d).to_owned(), b.clone())).collect(),
            ..StorageFacts::default()
        }
    }

    #[test]
    fn finds_instance_store_devices_in_nvme_list() {
        assert_eq!(instance_store_devices(NVME_LIST), ["/dev/nvme1n1", "/dev/nvme2n1"]);
        assert!(instance_store_devices("").is_empty());
        // nvme-cli 2 adds a Generic column after the node; the node stays first.
        let v2 = "/dev/nvme1n1 /dev/ng1n1 AWS123 Amazon EC2 NVMe Instance Storage 1 474.00 GB";
        assert_eq!(instance_store_devices(v2), ["/dev/nvme1n1"]);
        assert!(instance_store_devices("$(reboot) x Amazon EC2 NVMe Instance Storage").is_empty());
    }

    #[test]
    fn parses_the_mount_table() {
        let mounts = parse_mounts(
            "/dev/nvme0n1p1 / xfs rw,noatime 0 0\ntmpfs /tmp tmpfs rw,nosuid 0 0\n\
             /dev/md0 /mnt/ephemeral ext4 rw,noatime 0 0\n/dev/x /mnt/with\\040space ext4 rw 0 0\n\
             overlay /tmp overlay rw 0 0\n",
        );
        assert_eq!(mounted_at(&mounts, "/mnt/ephemeral").unwrap().source, "/dev/md0");
        assert_eq!(mounted_at(&mounts, "/mnt/with space").unwrap().source, "/dev/x");
        // The later mount hides the earlier one.
        assert_eq!(mounted_at(&mounts, "/tmp").unwrap().fs_type, "overlay");
        assert_eq!(mounted_at(&mounts, "/var"), None);
        assert_eq!(unescape_octal("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn one_device_is_formatted_and_mounted() {
        check(
            true,
            &devices(&["/dev/nvme1n1"], &[("/dev/nvme1n1", BlockDevice::Blank)]),
            expect![[r#"
                mkfs.ext4 -F -E nodiscard /dev/nvme1n1
                create directory /mnt/ephemeral (0755)
                mount -t ext4 -o defaults,noatime /dev/nvme1n1 /mnt/ephemeral
                set the /mnt/ephemeral line of /etc/fstab: /dev/nvme1n1 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0"#]],
        );
    }

    #[test]
    fn a_device_that_holds_ext4_is_mounted_without_formatting() {
        check(
            true,
            &devices(&["/dev/nvme1n1"], &[("/dev/nvme1n1", BlockDevice::Formatted("ext4".into()))]),
            expect![[r#"
                note: /dev/nvme1n1 already holds an ext4 file system: not formatting it
                create directory /mnt/ephemeral (0755)
                mount -t ext4 -o defaults,noatime /dev/nvme1n1 /mnt/ephemeral
                set the /mnt/ephemeral line of /etc/fstab: /dev/nvme1n1 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0"#]],
        );
        // Another file system is not ours to keep.
        let xfs =
            devices(&["/dev/nvme1n1"], &[("/dev/nvme1n1", BlockDevice::Formatted("xfs".into()))]);
        assert!(ops(true, true, &xfs)[0].to_string().starts_with("mkfs.ext4 -F"));
    }

    #[test]
    fn several_devices_make_a_raid_array() {
        check(
            true,
            &devices(&["/dev/nvme1n1", "/dev/nvme2n1"], &[("/dev/md0", BlockDevice::Absent)]),
            expect![[r#"
                mdadm --create /dev/md0 --run --level=0 --chunk=256 --raid-devices=2 /dev/nvme1n1 /dev/nvme2n1
                write /etc/mdadm.conf: DEVICE /dev/nvme1n1 /dev/nvme2n1, then `mdadm --detail --brief /dev/md0`
                blockdev --setra 65536 /dev/md0
                mkfs.ext4 -F -E nodiscard /dev/md0
                create directory /mnt/ephemeral (0755)
                mount -t ext4 -o defaults,noatime /dev/md0 /mnt/ephemeral
                set the /mnt/ephemeral line of /etc/fstab: /dev/md0 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0"#]],
        );
    }

    #[test]
    fn an_assembled_formatted_array_is_only_mounted() {
        check(
            true,
            &devices(
                &["/dev/nvme1n1", "/dev/nvme2n1"],
                &[("/dev/md0", BlockDevice::Formatted("ext4".into()))],
            ),
            expect![[r#"
                note: /dev/md0 is already assembled: not creating it again
                write /etc/mdadm.conf: DEVICE /dev/nvme1n1 /dev/nvme2n1, then `mdadm --detail --brief /dev/md0`
                blockdev --setra 65536 /dev/md0
                note: /dev/md0 already holds an ext4 file system: not formatting it
                create directory /mnt/ephemeral (0755)
                mount -t ext4 -o defaults,noatime /dev/md0 /mnt/ephemeral
                set the /mnt/ephemeral line of /etc/fstab: /dev/md0 /mnt/ephemeral ext4 defaults,noatime,nofail 0 0"#]],
        );
    }

    #[test]
    fn nothing_to_do_when_mounted_or_without_devices() {
        let mounted = StorageFacts {
            ephemeral: Some(Mount {
                source: "/dev/md0".into(),
                target: EPHEMERAL_PATH.into(),
                fs_type: "ext4".into(),
            }),
            ..devices(&["/dev/nvme1n1"], &[])
        };
        check(
            true,
            &mounted,
            expect!["note: /mnt/ephemeral is already mounted (/dev/md0 ext4): leaving it as it is"],
        );
        check(
            true,
            &StorageFacts::default(),
            expect![
                "note: No NVMe drives to mount. Please check that your instance type supports instance storage."
            ],
        );
        assert!(ops(true, false, &devices(&["/dev/nvme1n1"], &[])).is_empty());
    }

    #[test]
    fn tmpfs_at_tmp_is_switched_off_when_asked() {
        let tmpfs = StorageFacts { tmp_fs_type: Some("tmpfs".into()), ..StorageFacts::default() };
        let text = |facts: &StorageFacts| -> Vec<String> {
            ops(false, false, facts).iter().map(ToString::to_string).collect()
        };
        expect![[r#"
            [
                "note: Disabling automatic mount of tmpfs at /tmp",
                "umount --lazy /tmp",
                "systemctl mask --now tmp.mount",
            ]
        "#]]
        .assert_debug_eq(&text(&tmpfs));
        let disk = StorageFacts { tmp_fs_type: Some("xfs".into()), ..StorageFacts::default() };
        assert_eq!(
            text(&disk),
            ["note: Disabling automatic mount of tmpfs at /tmp", "systemctl mask --now tmp.mount"]
        );
        assert!(ops(true, false, &tmpfs).is_empty());
    }

    #[test]
    fn fstab_keeps_one_line_per_mount_point() {
        let line = ephemeral_fstab_line("/dev/md0");
        let fstab = "# comment\nUUID=abc / xfs defaults 0 0\n";
        assert_eq!(
            fstab_with_entry(fstab, &line).unwrap(),
            format!("# comment\nUUID=abc / xfs defaults 0 0\n{line}\n")
        );
        let done = fstab_with_entry(fstab, &line).unwrap();
        assert_eq!(fstab_with_entry(&done, &line), None);
        // An earlier device's line and a duplicate are replaced by one line, in place.
        let stale = "/dev/nvme1n1 /mnt/ephemeral ext4 defaults,noatime 0 0\nUUID=abc / xfs defaults 0 0\n/dev/nvme1n1 /mnt/ephemeral ext4 defaults,noatime 0 0";
        assert_eq!(
            fstab_with_entry(stale, &line).unwrap(),
            format!("{line}\nUUID=abc / xfs defaults 0 0\n")
        );
        assert_eq!(fstab_with_entry("", &line).unwrap(), format!("{line}\n"));
        // A commented-out entry is left alone.
        let commented = format!("#/dev/old /mnt/ephemeral ext4 defaults 0 0\n{line}\n");
        assert_eq!(fstab_with_entry(&commented, &line), None);
    }
}
