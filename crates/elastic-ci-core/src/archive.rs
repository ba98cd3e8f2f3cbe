//! Rules for git-mirror seed archives (`s3://<bucket>/git-mirror-seeds/*.tar`,
//! `*.tar.gz`, `*.zip`), which the boot extracts as root into the agent's mirrors
//! directory.
//!
//! A seed is untrusted input that runs as code later (a bare repository's hooks and
//! config run when the agent fetches into it), so [`SeedValidator`] accepts only:
//!
//! - entries under exactly one top-level directory, named after the archive;
//! - regular files, directories and symlinks; never hard links, devices, FIFOs or
//!   anything else;
//! - relative paths without `..`, and nothing below a symlink the archive created;
//! - symlinks whose target is relative, has `..` components only at its start, and
//!   stays inside the mirror, so that following any chain of them never leaves it;
//! - at most [`SeedLimits`] entries and bytes.
//!
//! Files under the mirror's `hooks/` are dropped, and a `config` that sets a key which
//! runs commands ([`dangerous_git_config_key`]) rejects the seed. Owners and
//! setuid/setgid/sticky bits are never restored: the extractor applies [`file_mode`].

use std::collections::HashSet;
use std::fmt;

/// The key prefix seeds live under; the instance role may list only this prefix.
pub const SEED_PREFIX: &str = "git-mirror-seeds/";

/// How a seed is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    TarGz,
    Zip,
}

/// A seed object and the mirror it should produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedArchive {
    pub key: String,
    /// The mirror directory name: the key's last segment without its extension.
    pub name: String,
    pub format: ArchiveFormat,
}

/// Why a listed key is not seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedKeyRejection {
    /// Not `.tar`, `.tar.gz` or `.zip` (`.tgz` is not accepted, as before).
    NotAnArchive,
    /// The name left after removing the extension is unusable.
    BadName(String),
}

/// Reads a listed key: the archive name is the key's last segment, so nested keys
/// are accepted.
pub fn seed_archive(key: &str) -> Result<SeedArchive, SeedKeyRejection> {
    let file_name = key.rsplit('/').next().unwrap_or_default();
    let (name, format) = if let Some(name) = file_name.strip_suffix(".tar.gz") {
        (name, ArchiveFormat::TarGz)
    } else if let Some(name) = file_name.strip_suffix(".tar") {
        (name, ArchiveFormat::Tar)
    } else if let Some(name) = file_name.strip_suffix(".zip") {
        (name, ArchiveFormat::Zip)
    } else {
        return Err(SeedKeyRejection::NotAnArchive);
    };
    if !is_normal_component(name) || name.starts_with('.') {
        return Err(SeedKeyRejection::BadName(name.to_owned()));
    }
    Ok(SeedArchive { key: key.to_owned(), name: name.to_owned(), format })
}

/// What an archive entry claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink { target: String },
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    Other(String),
}

/// What to do with an accepted entry: create it at `path` (relative to the staging
/// directory, starting with the mirror name), or skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAction {
    CreateDir {
        path: Vec<String>,
    },
    /// A regular file; its mode comes from [`file_mode`].
    CreateFile {
        path: Vec<String>,
    },
    CreateSymlink {
        path: Vec<String>,
        target: String,
    },
    /// Dropped on purpose (a hook script).
    Skip {
        path: Vec<String>,
    },
}

/// Bounds on one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedLimits {
    pub max_entries: u64,
    pub max_bytes: u64,
}

impl SeedLimits {
    /// Large enough for the mirror of a big monorepo, small enough that a zip bomb
    /// fails instead of filling the mirrors volume.
    pub const DEFAULT: SeedLimits =
        SeedLimits { max_entries: 5_000_000, max_bytes: 200 * 1024 * 1024 * 1024 };
}

/// Why a seed is rejected; the whole seed is then skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("entry {0:?} has an absolute path")]
    AbsolutePath(String),
    #[error("entry {0:?} has a '..' component")]
    ParentComponent(String),
    #[error("entry {0:?} has an empty path, a backslash or a NUL byte")]
    BadPath(String),
    #[error("entry {path:?} is outside the single top-level directory {mirror:?}")]
    OutsideMirror { path: String, mirror: String },
    #[error("entry {0:?}: the top-level entry must be a directory")]
    TopLevelNotDirectory(String),
    #[error("entry {path:?} is a {kind}, which seeds may not contain")]
    ForbiddenKind { path: String, kind: String },
    #[error("entry {0:?} lies below a symlink of the archive")]
    BelowSymlink(String),
    #[error("symlink {path:?} -> {target:?} {reason}")]
    BadSymlink { path: String, target: String, reason: &'static str },
    #[error("more than {0} entries")]
    TooManyEntries(u64),
    #[error("more than {0} bytes of content")]
    TooLarge(u64),
    #[error("no {0} (a bare git mirror has a HEAD file and an objects directory)")]
    NotAMirror(&'static str),
    #[error("its config sets {0}, which runs commands")]
    DangerousConfig(String),
}

/// Checks the entries of one archive, in archive order.
#[derive(Debug)]
pub struct SeedValidator {
    mirror: String,
    limits: SeedLimits,
    symlinks: HashSet<Vec<String>>,
    n_entries: u64,
    n_bytes: u64,
    has_head: bool,
    has_objects: bool,
}

impl SeedValidator {
    pub fn new(mirror: &str, limits: SeedLimits) -> SeedValidator {
        SeedValidator {
            mirror: mirror.to_owned(),
            limits,
            symlinks: HashSet::new(),
            n_entries: 0,
            n_bytes: 0,
            has_head: false,
            has_objects: false,
        }
    }

    /// Checks one entry of `size` content bytes.
    pub fn check(
        &mut self,
        raw_path: &str,
        kind: &EntryKind,
        size: u64,
    ) -> Result<EntryAction, SeedError> {
        self.n_entries += 1;
        if self.n_entries > self.limits.max_entries {
            return Err(SeedError::TooManyEntries(self.limits.max_entries));
        }
        self.n_bytes = self.n_bytes.saturating_add(size);
        if self.n_bytes > self.limits.max_bytes {
            return Err(SeedError::TooLarge(self.limits.max_bytes));
        }
        let path = normalize(raw_path)?;
        if path[0] != self.mirror {
            return Err(SeedError::OutsideMirror {
                path: raw_path.to_owned(),
                mirror: self.mirror.clone(),
            });
        }
        for depth in 1..path.len() {
            if self.symlinks.contains(&path[..depth]) {
                return Err(SeedError::BelowSymlink(raw_path.to_owned()));
            }
        }
        if path.len() == 1 && *kind != EntryKind::Directory {
            return Err(SeedError::TopLevelNotDirectory(raw_path.to_owned()));
        }
        let forbidden = |kind: &str| SeedError::ForbiddenKind {
            path: raw_path.to_owned(),
            kind: kind.to_owned(),
        };
        let in_hooks = path.len() > 2 && path[1] == "hooks";
        // Archives may leave directories implicit: anything below objects/ means the
        // extractor creates objects/ as a directory.
        if path.len() > 2 && path[1] == "objects" {
            self.has_objects = true;
        }
        match kind {
            EntryKind::Directory => {
                if path.len() == 2 && path[1] == "objects" {
                    self.has_objects = true;
                }
                Ok(EntryAction::CreateDir { path })
            }
            _ if in_hooks && matches!(kind, EntryKind::File | EntryKind::Symlink { .. }) => {
                Ok(EntryAction::Skip { path })
            }
            EntryKind::File => {
                if path.len() == 2 && path[1] == "HEAD" {
                    self.has_head = true;
                }
                Ok(EntryAction::CreateFile { path })
            }
            EntryKind::Symlink { target } => {
                check_symlink_target(raw_path, &path, target)?;
                self.symlinks.insert(path.clone());
                Ok(EntryAction::CreateSymlink { path, target: target.clone() })
            }
            EntryKind::HardLink => Err(forbidden("hard link")),
            EntryKind::CharDevice => Err(forbidden("character device")),
            EntryKind::BlockDevice => Err(forbidden("block device")),
            EntryKind::Fifo => Err(forbidden("FIFO")),
            EntryKind::Other(other) => Err(forbidden(other)),
        }
    }

    /// After the last entry: the seed must be a bare mirror.
    pub fn finish(&self) -> Result<(), SeedError> {
        if !self.has_head {
            return Err(SeedError::NotAMirror("HEAD file"));
        }
        if !self.has_objects {
            return Err(SeedError::NotAMirror("objects directory"));
        }
        Ok(())
    }
}

/// The permission bits to give an extracted file: readable by all, executable if the
/// archive said so, never setuid, setgid, sticky or writable by others.
pub fn file_mode(archive_mode: u32) -> u32 {
    if archive_mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

fn is_normal_component(component: &str) -> bool {
    !component.is_empty() && component != "." && component != ".." && !component.contains('/')
}

/// Splits an entry path into normal components: `.` and empty components (from
/// `./x` or a trailing `/`) are dropped; absolute paths, `..`, backslashes and NUL are
/// refused.
fn normalize(raw: &str) -> Result<Vec<String>, SeedError> {
    if raw.starts_with('/') {
        return Err(SeedError::AbsolutePath(raw.to_owned()));
    }
    if raw.contains(['\\', '\0']) {
        return Err(SeedError::BadPath(raw.to_owned()));
    }
    let mut components = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(SeedError::ParentComponent(raw.to_owned())),
            other => components.push(other.to_owned()),
        }
    }
    if components.is_empty() {
        return Err(SeedError::BadPath(raw.to_owned()));
    }
    Ok(components)
}

/// A symlink target is accepted when it is relative, its `..` components all come
/// first, and those do not climb above the mirror. Resolution then only ever climbs
/// real directories of the mirror before descending, and every link it meets on the
/// way down obeys the same rule, so no chain of links can leave the mirror.
fn check_symlink_target(raw: &str, path: &[String], target: &str) -> Result<(), SeedError> {
    let bad = |reason: &'static str| SeedError::BadSymlink {
        path: raw.to_owned(),
        target: target.to_owned(),
        reason,
    };
    if target.is_empty() || target.contains(['\\', '\0']) {
        return Err(bad("has an empty or unusable target"));
    }
    if target.starts_with('/') {
        return Err(bad("points to an absolute path"));
    }
    let mut climbing = true;
    let mut n_up = 0;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if climbing => n_up += 1,
            ".." => return Err(bad("has '..' after a name")),
            _ => climbing = false,
        }
    }
    // The link's directory is `path[..len-1]`; the mirror root is `path[..1]`.
    let depth_below_mirror = path.len() - 2;
    if n_up > depth_below_mirror {
        return Err(bad("points outside the mirror"));
    }
    Ok(())
}

/// The first key of a git `config` file that makes git run a command or read another
/// file, if any. Section and key names are compared case-insensitively, as git does.
pub fn dangerous_git_config_key(config: &str) -> Option<String> {
    const DANGEROUS: &[&str] = &[
        "core.fsmonitor",
        "core.hookspath",
        "core.sshcommand",
        "core.askpass",
        "core.editor",
        "core.pager",
        "core.gitproxy",
        "credential.helper",
        "include.path",
        "uploadpack.packobjectshook",
        "sequence.editor",
    ];
    // Subsection keys: `[filter "x"] smudge = …`, `[includeIf "…"] path = …`, …
    const DANGEROUS_SUBSECTION_KEYS: &[(&str, &str)] = &[
        ("filter", "clean"),
        ("filter", "smudge"),
        ("filter", "process"),
        ("diff", "textconv"),
        ("diff", "command"),
        ("merge", "driver"),
        ("includeif", "path"),
        ("credential", "helper"),
        ("remote", "uploadpack"),
        ("remote", "receivepack"),
    ];
    let mut section = String::new();
    let mut subsection = false;
    for line in config.lines() {
        let line = line.trim();
        let line = if let Some(rest) = line.strip_prefix('[') {
            let Some((header, rest)) = rest.split_once(']') else { continue };
            let header = header.trim();
            let (name, sub) = match header.split_once(|c: char| c.is_whitespace() || c == '.') {
                Some((name, sub)) => (name, !sub.trim().is_empty()),
                None => (header, false),
            };
            section = name.to_ascii_lowercase();
            subsection = sub;
            rest.trim()
        } else {
            line
        };
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let key = line.split(['=', ' ', '\t']).next().unwrap_or_default().to_ascii_lowercase();
        let full = format!("{section}.{key}");
        let dangerous = if subsection {
            DANGEROUS_SUBSECTION_KEYS.contains(&(section.as_str(), key.as_str()))
        } else {
            DANGEROUS.contains(&full.as_str())
        };
        if dangerous {
            return Some(full);
        }
    }
    None
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveFormat::Tar => "tar",
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Zip => "zip",
        })
    }
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    fn check_all(entries: &[(&str, EntryKind)]) -> Result<Vec<EntryAction>, SeedError> {
        let mut validator = SeedValidator::new("repo", SeedLimits::DEFAULT);
        let actions = entries
            .iter()
            .map(|(path, kind)| validator.check(path, kind, 10))
            .collect::<Result<Vec<_>, _>>()?;
        validator.finish()?;
        Ok(actions)
    }

    fn mirror_with(extra: (&str, EntryKind)) -> Result<Vec<EntryAction>, SeedError> {
        check_all(&[
            ("repo/", EntryKind::Directory),
            ("repo/HEAD", EntryKind::File),
            ("repo/objects/", EntryKind::Directory),
            ("repo/refs/heads", EntryKind::Directory),
            extra,
        ])
    }

    fn link(target: &str) -> EntryKind {
        EntryKind::Symlink { target: target.to_owned() }
    }

    #[test_case("git-mirror-seeds/repo.tar.gz", Ok(("repo", ArchiveFormat::TarGz)))]
    #[test_case("git-mirror-seeds/team/repo.git.tar", Ok(("repo.git", ArchiveFormat::Tar)))]
    #[test_case("git-mirror-seeds/repo.zip", Ok(("repo", ArchiveFormat::Zip)))]
    #[test_case("git-mirror-seeds/repo.tgz", Err(SeedKeyRejection::NotAnArchive))]
    #[test_case("git-mirror-seeds/..tar", Err(SeedKeyRejection::BadName(".".into())))]
    #[test_case("git-mirror-seeds/.tar.gz", Err(SeedKeyRejection::BadName(String::new())))]
    #[test_case("git-mirror-seeds/.hidden.zip", Err(SeedKeyRejection::BadName(".hidden".into())))]
    fn names_seeds(key: &str, expected: Result<(&str, ArchiveFormat), SeedKeyRejection>) {
        let got = seed_archive(key).map(|seed| (seed.name, seed.format));
        assert_eq!(got, expected.map(|(name, format)| (name.to_owned(), format)));
    }

    #[test]
    fn accepts_a_bare_mirror_and_drops_hooks() {
        let actions = check_all(&[
            ("./repo/", EntryKind::Directory),
            ("./repo/HEAD", EntryKind::File),
            ("repo/objects", EntryKind::Directory),
            ("repo/hooks/", EntryKind::Directory),
            ("repo/hooks/post-checkout", EntryKind::File),
            ("repo/refs//heads/main", EntryKind::File),
            ("repo/objects/info/alt", link("../pack")),
            ("repo/packed", link("objects/pack/x.pack")),
        ])
        .unwrap();
        assert_eq!(
            actions[4],
            EntryAction::Skip { path: vec!["repo".into(), "hooks".into(), "post-checkout".into()] }
        );
        assert_eq!(
            actions[5],
            EntryAction::CreateFile {
                path: vec!["repo".into(), "refs".into(), "heads".into(), "main".into()]
            }
        );
    }

    #[test_case(("../evil", EntryKind::File), "entry \"../evil\" has a '..' component"; "dot dot")]
    #[test_case(("repo/../../evil", EntryKind::File), "has a '..' component"; "dot dot inside")]
    #[test_case(("/etc/cron.d/evil", EntryKind::File), "has an absolute path"; "absolute")]
    #[test_case(("other/HEAD", EntryKind::File), "outside the single top-level directory \"repo\""; "second mirror")]
    #[test_case(("repo/dev", EntryKind::BlockDevice), "is a block device"; "block device")]
    #[test_case(("repo/tty", EntryKind::CharDevice), "is a character device"; "char device")]
    #[test_case(("repo/fifo", EntryKind::Fifo), "is a FIFO"; "fifo")]
    #[test_case(("repo/hard", EntryKind::HardLink), "is a hard link"; "hard link")]
    #[test_case(("repo/out", link("/etc/shadow")), "points to an absolute path"; "absolute link")]
    #[test_case(("repo/out", link("../other")), "points outside the mirror"; "link above mirror")]
    #[test_case(("repo/refs/out", link("../../x")), "points outside the mirror"; "deep link above mirror")]
    #[test_case(("repo/refs/x", link("heads/../../..")), "has '..' after a name"; "late dot dot")]
    #[test_case(("repo/a\\b", EntryKind::File), "a backslash"; "backslash")]
    fn rejects(extra: (&str, EntryKind), expected: &str) {
        let error = mirror_with(extra).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }

    #[test]
    fn refuses_writing_through_a_symlink_of_the_archive() {
        let error = check_all(&[
            ("repo/", EntryKind::Directory),
            ("repo/x", link("objects")),
            ("repo/x/evil", EntryKind::File),
        ])
        .unwrap_err();
        assert_eq!(error, SeedError::BelowSymlink("repo/x/evil".into()));
    }

    #[test]
    fn top_level_must_be_a_directory_and_shape_a_mirror() {
        assert_eq!(
            check_all(&[("repo", EntryKind::File)]).unwrap_err(),
            SeedError::TopLevelNotDirectory("repo".into())
        );
        assert_eq!(
            check_all(&[("repo/", EntryKind::Directory), ("repo/HEAD", EntryKind::File)])
                .unwrap_err(),
            SeedError::NotAMirror("objects directory")
        );
        // HEAD as a symlink does not count: the shape check does not follow links.
        assert_eq!(
            check_all(&[("repo/objects/", EntryKind::Directory), ("repo/HEAD", link("objects")),])
                .unwrap_err(),
            SeedError::NotAMirror("HEAD file")
        );
    }

    #[test]
    fn enforces_limits() {
        let mut validator =
            SeedValidator::new("repo", SeedLimits { max_entries: 2, max_bytes: 100 });
        validator.check("repo/", &EntryKind::Directory, 0).unwrap();
        assert_eq!(
            validator.check("repo/big", &EntryKind::File, 101).unwrap_err(),
            SeedError::TooLarge(100)
        );
        let mut validator =
            SeedValidator::new("repo", SeedLimits { max_entries: 2, max_bytes: 100 });
        validator.check("repo/", &EntryKind::Directory, 0).unwrap();
        validator.check("repo/a", &EntryKind::File, 0).unwrap();
        assert_eq!(
            validator.check("repo/b", &EntryKind::File, 0).unwrap_err(),
            SeedError::TooManyEntries(2)
        );
    }

    #[test_case("[core]\n\tbare = true\n", None)]
    #[test_case("[core]\n\tfsmonitor = /tmp/x\n", Some("core.fsmonitor"))]
    #[test_case("[CORE]\n  HooksPath=/tmp\n", Some("core.hookspath"))]
    #[test_case("[core] sshCommand = evil\n", Some("core.sshcommand"))]
    #[test_case("[filter \"lfs\"]\n\tsmudge = git-lfs smudge\n", Some("filter.smudge"))]
    #[test_case("[include]\n\tpath = /etc/x\n", Some("include.path"))]
    #[test_case("[remote \"origin\"]\n\turl = https://x\n\tfetch = +refs/*:refs/*\n", None)]
    #[test_case("# core.fsmonitor = x\n", None)]
    fn spots_config_that_runs_commands(config: &str, expected: Option<&str>) {
        assert_eq!(dangerous_git_config_key(config).as_deref(), expected);
    }

    #[test]
    fn modes_drop_special_bits() {
        assert_eq!(file_mode(0o4755), 0o755);
        assert_eq!(file_mode(0o666), 0o644);
        assert_eq!(file_mode(0o100), 0o755);
    }
}
