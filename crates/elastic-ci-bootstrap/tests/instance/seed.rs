//! Git-mirror seeding from S3 (moto) with archives built here, hostile ones included.
//! Entry names are written into the tar headers byte for byte, bypassing the tar
//! crate's own checks, as an attacker's tool would.

use std::io::Write;
use std::path::Path;

use elastic_ci_aws::s3::S3ObjectStore;
use elastic_ci_bootstrap::seed::seed_git_mirrors;
use elastic_ci_core::archive::SeedLimits;
use elastic_ci_testkit::moto::moto;
use elastic_ci_testkit::names::unique_name;

/// One entry of a test archive.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    File(&'static [u8]),
    Executable(&'static [u8]),
    Dir,
    Symlink(String),
    HardLink(String),
    CharDevice,
    Fifo,
}

/// A seed's config naming its origin.
const ORIGIN_CONFIG: &[u8] =
    b"[core]\n\tbare = true\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n";

/// The config every seeded mirror gets, whatever its seed's said.
const FRESH_CONFIG: &str = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n[remote \"origin\"]\n\turl = \"https://github.com/org/repo.git\"\n\tfetch = +refs/*:refs/*\n\tmirror = true\n";

/// The entries of a small bare mirror named `name`, with a hook script.
pub(crate) fn mirror_entries(name: &str) -> Vec<(String, Entry)> {
    vec![
        (format!("{name}/"), Entry::Dir),
        (format!("{name}/HEAD"), Entry::File(b"ref: refs/heads/main\n")),
        (format!("{name}/config"), Entry::File(ORIGIN_CONFIG)),
        (format!("{name}/objects/"), Entry::Dir),
        (format!("{name}/objects/pack/pack-1.pack"), Entry::File(b"PACK")),
        (format!("{name}/refs/heads/main"), Entry::File(b"0123456789abcdef\n")),
        (format!("{name}/hooks/post-update"), Entry::Executable(b"#!/bin/sh\ntouch /tmp/hooked\n")),
    ]
}

fn with(mut entries: Vec<(String, Entry)>, extra: &[(&str, Entry)]) -> Vec<(String, Entry)> {
    entries.extend(extra.iter().map(|(name, entry)| ((*name).to_owned(), entry.clone())));
    entries
}

/// A tar archive with the names written raw.
pub(crate) fn tar(entries: &[(String, Entry)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, entry) in entries {
        let mut header = tar::Header::new_gnu();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        let (kind, mode, data, link): (tar::EntryType, u32, &[u8], Option<&str>) = match entry {
            Entry::File(data) => (tar::EntryType::Regular, 0o4644, data, None),
            Entry::Executable(data) => (tar::EntryType::Regular, 0o6755, data, None),
            Entry::Dir => (tar::EntryType::Directory, 0o755, b"", None),
            Entry::Symlink(target) => (tar::EntryType::Symlink, 0o777, b"", Some(target)),
            Entry::HardLink(target) => (tar::EntryType::Link, 0o644, b"", Some(target)),
            Entry::CharDevice => (tar::EntryType::Char, 0o666, b"", None),
            Entry::Fifo => (tar::EntryType::Fifo, 0o666, b"", None),
        };
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        if let Some(link) = link {
            header.set_link_name_literal(link).unwrap();
        }
        if matches!(entry, Entry::CharDevice) {
            header.set_device_major(8).unwrap();
            header.set_device_minor(0).unwrap();
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub(crate) fn tar_gz(entries: &[(String, Entry)]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar(entries)).unwrap();
    encoder.finish().unwrap()
}

pub(crate) fn zip(entries: &[(String, Entry)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, entry) in entries {
        match entry {
            Entry::Dir => writer.add_directory(name.as_str(), options).unwrap(),
            Entry::Symlink(target) => {
                writer.add_symlink(name.as_str(), target.as_str(), options).unwrap()
            }
            Entry::File(data) | Entry::Executable(data) => {
                writer.start_file(name.as_str(), options.unix_permissions(0o644)).unwrap();
                writer.write_all(data).unwrap();
            }
            Entry::CharDevice => writer.start_file(name.as_str(), options).unwrap(),
            other => panic!("no zip form for {other:?}"),
        }
    }
    let mut bytes = writer.finish().unwrap().into_inner();
    for (name, entry) in entries {
        if matches!(entry, Entry::CharDevice) {
            set_unix_mode(&mut bytes, name, 0o020_666);
        }
    }
    bytes
}

/// Rewrites the Unix mode of `name` in a zip's central directory: the writer offers no
/// way to record a device, an attacker's tool does.
fn set_unix_mode(zip: &mut [u8], name: &str, mode: u32) {
    const CENTRAL_HEADER: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    let at = (0..zip.len() - 46)
        .find(|&i| {
            zip[i..i + 4] == CENTRAL_HEADER && {
                let name_len = usize::from(u16::from_le_bytes([zip[i + 28], zip[i + 29]]));
                zip.get(i + 46..i + 46 + name_len) == Some(name.as_bytes())
            }
        })
        .expect("central directory entry");
    // "Made by" Unix, so readers take the high 16 bits of the attributes as the mode.
    zip[at + 5] = 3;
    zip[at + 38..at + 42].copy_from_slice(&(mode << 16).to_le_bytes());
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A mirror whose only hostile part is its `config`.
fn mirror_with_config(name: &str, config: &'static [u8]) -> Vec<(String, Entry)> {
    mirror_entries(name)
        .into_iter()
        .map(
            |(path, entry)| {
                if path.ends_with("/config") { (path, Entry::File(config)) } else { (path, entry) }
            },
        )
        .collect()
}

#[tokio::test]
async fn seeds_good_mirrors_and_skips_hostile_archives() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("seeds").await;
    let scratch = tempfile::tempdir().unwrap();
    let mirrors = scratch.path().join("git-mirrors");
    std::fs::create_dir(&mirrors).unwrap();
    // Where escaping entries would land.
    let outside = scratch.path().join("escaped");
    let absolute = format!("{}/absolute", scratch.path().display());
    std::fs::create_dir(mirrors.join("existing")).unwrap();

    let archives: Vec<(&str, Vec<u8>)> = vec![
        ("good.tar.gz", tar_gz(&mirror_entries("good"))),
        ("team/plain.tar", tar(&mirror_entries("plain"))),
        ("zipped.zip", zip(&mirror_entries("zipped"))),
        (
            "dotdot.tar",
            tar(&with(mirror_entries("dotdot"), &[("dotdot/../../escaped", Entry::File(b"x"))])),
        ),
        ("absolute.tar", tar(&with(mirror_entries("absolute"), &[(&absolute, Entry::File(b"x"))]))),
        (
            "linkout.tar",
            tar(&with(
                mirror_entries("linkout"),
                &[("linkout/refs/tags", Entry::Symlink("/etc".into()))],
            )),
        ),
        (
            "linkin.tar.gz",
            tar_gz(&with(
                mirror_entries("linkin"),
                &[("linkin/packed-refs", Entry::Symlink("refs/heads/main".into()))],
            )),
        ),
        (
            "ziplink.zip",
            zip(&with(
                mirror_entries("ziplink"),
                &[("ziplink/packed-link", Entry::Symlink("objects/pack".into()))],
            )),
        ),
        ("device.tar", tar(&with(mirror_entries("device"), &[("device/sda", Entry::CharDevice)]))),
        ("fifo.tar", tar(&with(mirror_entries("fifo"), &[("fifo/pipe", Entry::Fifo)]))),
        (
            "hardlink.tar",
            tar(&with(
                mirror_entries("hardlink"),
                &[("hardlink/shadow", Entry::HardLink("/etc/shadow".into()))],
            )),
        ),
        ("two.tar", tar(&[mirror_entries("two"), mirror_entries("other")].concat())),
        (
            "zipslip.zip",
            zip(&with(mirror_entries("zipslip"), &[("zipslip/../../escaped", Entry::File(b"x"))])),
        ),
        (
            "zipdevice.zip",
            zip(&with(mirror_entries("zipdevice"), &[("zipdevice/sda", Entry::CharDevice)])),
        ),
        (
            "nohead.tar",
            tar(&[("nohead/".to_owned(), Entry::Dir), ("nohead/objects/".to_owned(), Entry::Dir)]),
        ),
        (
            "extorigin.tar",
            tar(&mirror_with_config(
                "extorigin",
                b"[remote \"origin\"]\n\turl = ext::sh -c touch% /tmp/pwned\n",
            )),
        ),
        ("existing.tar", tar(&mirror_entries("existing"))),
        ("notes.txt", b"not an archive".to_vec()),
        ("good.tgz", tar_gz(&mirror_entries("tgz"))),
    ];
    for (key, body) in archives {
        moto.put_object(&bucket, &format!("git-mirror-seeds/{key}"), body).await;
    }
    // Outside the prefix: never listed.
    moto.put_object(&bucket, "elsewhere/stray.tar", tar(&mirror_entries("stray"))).await;

    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let report = seed_git_mirrors(&store, &bucket, &mirrors, SeedLimits::DEFAULT).await;

    let mut seeded = report.seeded.clone();
    seeded.sort();
    assert_eq!(seeded, ["good", "plain", "zipped"]);
    let reasons: Vec<String> =
        report.skipped.iter().map(|(key, reason)| format!("{key}: {reason}")).collect();
    for expected in [
        "dotdot.tar: git-mirror-seeds/dotdot.tar does not contain a single bare git mirror named dotdot: entry \"dotdot/../../escaped\" has a '..' component",
        "has an absolute path",
        "entry \"linkout/refs/tags\" is a symlink, which seeds may not contain",
        "entry \"linkin/packed-refs\" is a symlink",
        "entry \"ziplink/packed-link\" is a symlink",
        "entry \"device/sda\" is a character device",
        "entry \"fifo/pipe\" is a FIFO",
        "entry \"hardlink/shadow\" is a hard link",
        "entry \"other/\" is outside the single top-level directory \"two\"",
        "zipslip.zip: git-mirror-seeds/zipslip.zip does not contain a single bare git mirror named zipslip: entry \"zipslip/../../escaped\" has a '..' component",
        "entry \"zipdevice/sda\" is a character device",
        "no HEAD file",
        "extorigin.tar: git-mirror-seeds/extorigin.tar does not contain a single bare git mirror named extorigin: its config names no usable origin URL",
        "existing.tar: ",
    ] {
        assert!(
            reasons.iter().any(|reason| reason.contains(expected)),
            "{expected:?} not in {reasons:#?}"
        );
    }
    assert_eq!(report.skipped.len(), 14, "{reasons:#?}");

    // Only the good mirrors (and the pre-existing one) are there; staging is gone,
    // nothing escaped, and hooks, setuid bits and devices did not come along.
    assert_eq!(names_in(&mirrors), ["existing", "good", "plain", "zipped"]);
    assert!(!outside.exists() && !Path::new(&absolute).exists());
    assert_eq!(
        std::fs::read_to_string(mirrors.join("good/HEAD")).unwrap(),
        "ref: refs/heads/main\n"
    );
    assert!(!mirrors.join("good/hooks/post-update").exists());
    assert_eq!(names_in(&mirrors.join("plain")), ["HEAD", "config", "objects", "refs"]);
    assert_eq!(std::fs::read_to_string(mirrors.join("zipped/config")).unwrap(), FRESH_CONFIG);
    let mode = |path: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions())
            & 0o7777
    };
    assert_eq!(mode(&mirrors.join("good/HEAD")), 0o644);
    assert_eq!(mode(&mirrors.join("good/config")), 0o644);
    assert_eq!(names_in(&mirrors.join("existing")), Vec::<String>::new());
}

/// Seeds whose `config`, hooks or side files would make git run a command or read
/// outside the mirror: each is seeded with only its repository data and a fresh
/// config, so nothing of the seed's configuration survives.
/// See: git-mirror seed archives ran code on `git fetch`.
#[tokio::test]
async fn a_seeds_configuration_is_never_kept() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("seed-config").await;
    let mirrors = tempfile::tempdir().unwrap();
    let hostile: Vec<(&str, Vec<(String, Entry)>)> = vec![
        (
            "notutf8",
            mirror_with_config(
                "notutf8",
                b"[core]\n\tfsmonitor = touch /tmp/pwned \xff\xfe\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n",
            ),
        ),
        (
            "extinsteadof",
            mirror_with_config(
                "extinsteadof",
                b"[protocol \"ext\"]\n\tallow = always\n[url \"ext::sh -c touch% /tmp/pwned\"]\n\tinsteadOf = https://\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n",
            ),
        ),
        (
            "alternaterefs",
            mirror_with_config(
                "alternaterefs",
                b"[core]\n\talternateRefsCommand = touch /tmp/pwned\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n",
            ),
        ),
        (
            "commands",
            mirror_with_config(
                "commands",
                b"[core]\n\tfsmonitor = x\n\tsshCommand = x\n\thooksPath = /tmp\n\tgitProxy = x\n\taskPass = x\n[uploadpack]\n\tpackObjectsHook = x\n[credential]\n\thelper = !x\n[filter \"lfs\"]\n\tprocess = x\n\tsmudge = x\n[include]\n\tpath = /tmp/x\n[includeIf \"gitdir:/\"]\n\tpath = /tmp/x\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n\tuploadpack = x\n",
            ),
        ),
        (
            "sidefiles",
            with(
                mirror_entries("sidefiles"),
                &[
                    ("sidefiles/objects/info/alternates", Entry::File(b"/etc\n")),
                    ("sidefiles/objects/info/http-alternates", Entry::File(b"https://x/\n")),
                    ("sidefiles/commondir", Entry::File(b"/etc\n")),
                    ("sidefiles/gitdir", Entry::File(b"/etc\n")),
                    ("sidefiles/info/attributes", Entry::File(b"* filter=x\n")),
                    ("sidefiles/worktrees/w/gitdir", Entry::File(b"/etc\n")),
                    ("sidefiles/modules/m/config", Entry::File(b"[core]\nfsmonitor=x\n")),
                    ("sidefiles/config.worktree", Entry::File(b"[core]\nfsmonitor=x\n")),
                ],
            ),
        ),
    ];
    for (name, entries) in &hostile {
        moto.put_object(&bucket, &format!("git-mirror-seeds/{name}.tar"), tar(entries)).await;
    }
    // A top-level `hooks` that is a link into `objects/`, where hook scripts could be
    // planted as objects: refused whole.
    moto.put_object(
        &bucket,
        "git-mirror-seeds/hookslink.tar",
        tar(&with(
            mirror_entries("hookslink"),
            &[("hookslink/hooks", Entry::Symlink("objects".into()))],
        )),
    )
    .await;

    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let report = seed_git_mirrors(&store, &bucket, mirrors.path(), SeedLimits::DEFAULT).await;

    let mut seeded = report.seeded.clone();
    seeded.sort();
    assert_eq!(seeded, ["alternaterefs", "commands", "extinsteadof", "notutf8", "sidefiles"]);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(
        report.skipped[0].1.contains("entry \"hookslink/hooks\" is a symlink"),
        "{:?}",
        report.skipped
    );
    for name in seeded {
        let mirror = mirrors.path().join(&name);
        assert_eq!(names_in(&mirror), ["HEAD", "config", "objects", "refs"], "{name}");
        assert_eq!(names_in(&mirror.join("objects")), ["pack"], "{name}");
        assert_eq!(std::fs::read_to_string(mirror.join("config")).unwrap(), FRESH_CONFIG, "{name}");
    }
    assert!(!mirrors.path().join("hookslink").exists());
}

#[tokio::test]
async fn a_bomb_is_stopped_by_the_size_limit_and_listing_failures_are_warnings() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("seed-limits").await;
    let big: &'static [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    moto.put_object(
        &bucket,
        "git-mirror-seeds/bomb.tar.gz",
        tar_gz(&with(mirror_entries("bomb"), &[("bomb/objects/big", Entry::File(big))])),
    )
    .await;
    let mirrors = tempfile::tempdir().unwrap();
    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let limits = SeedLimits { max_entries: 1000, max_bytes: 32 * 1024 };
    let report = seed_git_mirrors(&store, &bucket, mirrors.path(), limits).await;
    assert!(report.seeded.is_empty());
    assert!(
        report.skipped[0].1.contains("more than 32768 bytes of content"),
        "{:?}",
        report.skipped
    );
    assert_eq!(names_in(mirrors.path()), Vec::<String>::new());

    let missing = unique_name("no-such-bucket");
    let report = seed_git_mirrors(&store, &missing, mirrors.path(), limits).await;
    assert!(report.seeded.is_empty());
    assert!(report.skipped[0].1.contains("ListObjectsV2"), "{:?}", report.skipped);
}
