//! Rules for git-mirror seed archives (`s3://<bucket>/git-mirror-seeds/*.tar`,
//! `*.tar.gz`, `*.zip`), which the boot extracts as root into the agent's mirrors
//! directory.
//!
//! A seed is untrusted input, and a bare repository is code as much as data: its
//! configuration, hooks and side files tell git which commands to run and where else
//! to read objects when the agent fetches into it. Judging those files is a losing
//! game (every git release adds keys that run commands), so nothing of that kind is
//! kept at all. [`SeedValidator`] accepts only:
//!
//! - entries under exactly one top-level directory, named after the archive;
//! - regular files and directories; never symlinks, hard links, devices, FIFOs or
//!   anything else;
//! - relative paths without `..`;
//! - at most [`SeedLimits`] entries and bytes.
//!
//! Of those, only the repository's data is created: `HEAD`, `objects/` (without
//! `objects/info/`, where alternates point git at other directories and URLs),
//! `refs/`, `packed-refs`, `shallow`, `logs/` and `description` ([`KEPT`]). Everything
//! else (`config`, `hooks/`, `info/`, `commondir`, `gitdir`, `worktrees/`,
//! `modules/`, `remotes/`, `branches/`, …) is skipped. The seed's `config` is read,
//! but only for two values checked against fixed forms, the origin's URL and the
//! object format; [`mirror_config`] then writes a fresh configuration from them.
//! Owners and setuid/setgid/sticky bits are never restored: the extractor applies
//! [`file_mode`].

use std::fmt;

/// The key prefix seeds live under; the instance role may list only this prefix.
pub const SEED_PREFIX: &str = "git-mirror-seeds/";

/// The top-level names of a bare mirror that are kept: repository data, which git
/// reads as data and never as instructions.
pub const KEPT: &[&str] =
    &["HEAD", "objects", "refs", "packed-refs", "shallow", "logs", "description"];

/// The most bytes of the seed's `config` that are read for [`mirror_config`].
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

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
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    Other(String),
}

/// What to do with an accepted entry: create it at `path` (relative to the staging
/// directory, starting with the mirror name), read it, or skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAction {
    CreateDir {
        path: Vec<String>,
    },
    /// A regular file; its mode comes from [`file_mode`].
    CreateFile {
        path: Vec<String>,
    },
    /// The seed's `config`: read at most [`MAX_CONFIG_BYTES`] of it into memory for
    /// [`mirror_config`], never written.
    ReadConfig,
    /// Not repository data: dropped.
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
    #[error("more than {0} entries")]
    TooManyEntries(u64),
    #[error("more than {0} bytes of content")]
    TooLarge(u64),
    #[error("no {0} (a bare git mirror has a HEAD file and an objects directory)")]
    NotAMirror(&'static str),
    #[error("its config is larger than {MAX_CONFIG_BYTES} bytes")]
    ConfigTooLarge,
    #[error(
        "its config names no usable origin URL (expected one remote \"origin\" url of the form https://, http://, ssh://, git:// or user@host:path)"
    )]
    NoOriginUrl,
    #[error("its config sets extensions.objectformat to {0:?}, expected sha1 or sha256")]
    UnknownObjectFormat(String),
}

/// Checks the entries of one archive, in archive order.
#[derive(Debug)]
pub struct SeedValidator {
    mirror: String,
    limits: SeedLimits,
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
        let forbidden = |kind: &str| SeedError::ForbiddenKind {
            path: raw_path.to_owned(),
            kind: kind.to_owned(),
        };
        // Every entry is checked for its kind, kept or not, so that an archive with a
        // link or a device anywhere is refused whole.
        match kind {
            EntryKind::File | EntryKind::Directory => {}
            EntryKind::Symlink => return Err(forbidden("symlink")),
            EntryKind::HardLink => return Err(forbidden("hard link")),
            EntryKind::CharDevice => return Err(forbidden("character device")),
            EntryKind::BlockDevice => return Err(forbidden("block device")),
            EntryKind::Fifo => return Err(forbidden("FIFO")),
            EntryKind::Other(other) => return Err(forbidden(other)),
        }
        if path.len() == 1 {
            if *kind != EntryKind::Directory {
                return Err(SeedError::TopLevelNotDirectory(raw_path.to_owned()));
            }
            return Ok(EntryAction::CreateDir { path });
        }
        if path.len() == 2 && path[1] == "config" && *kind == EntryKind::File {
            return Ok(EntryAction::ReadConfig);
        }
        if !is_repository_data(&path[1..]) {
            return Ok(EntryAction::Skip { path });
        }
        // Archives may leave directories implicit: anything below objects/ means the
        // extractor creates objects/ as a directory.
        if path[1] == "objects" && (path.len() > 2 || *kind == EntryKind::Directory) {
            self.has_objects = true;
        }
        if *kind == EntryKind::Directory {
            return Ok(EntryAction::CreateDir { path });
        }
        if path.len() == 2 && path[1] == "HEAD" {
            self.has_head = true;
        }
        Ok(EntryAction::CreateFile { path })
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

/// Whether a path inside the mirror (without the mirror's own name) is repository
/// data that is kept.
fn is_repository_data(inside: &[String]) -> bool {
    if !KEPT.contains(&inside[0].as_str()) {
        return false;
    }
    // objects/info/ holds alternates and http-alternates (other object stores, local
    // or remote) besides caches git rebuilds; none of it is needed.
    !(inside[0] == "objects" && inside.get(1).is_some_and(|name| name == "info"))
}

/// The permission bits to give an extracted file: readable by all, executable if the
/// archive said so, never setuid, setgid, sticky or writable by others.
pub fn file_mode(archive_mode: u32) -> u32 {
    if archive_mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// The configuration written into a seeded mirror, as `git clone --mirror` writes it:
/// a bare repository whose `origin` fetches every ref.
///
/// Of the seed's own `config` (when it had one, at most [`MAX_CONFIG_BYTES`]) only two
/// values are read, each accepted only in a fixed form: the first `remote "origin"`
/// `url` ([`is_plain_remote_url`]) and `extensions.objectformat` (`sha1` or
/// `sha256`). Lines that are not UTF-8 are ignored; nothing else in it matters.
pub fn mirror_config(seed_config: Option<&[u8]>) -> Result<String, SeedError> {
    let mut url = None;
    let mut object_format = None;
    let mut section = (String::new(), None::<String>);
    for raw_line in seed_config.unwrap_or_default().split(|byte| *byte == b'\n') {
        let Ok(line) = std::str::from_utf8(raw_line) else { continue };
        let mut line = line.trim();
        if let Some(rest) = line.strip_prefix('[') {
            let Some((header, rest)) = rest.split_once(']') else { continue };
            section = section_name(header);
            line = rest.trim();
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim().to_ascii_lowercase();
        let value = unquote(value.trim());
        match (section.0.as_str(), section.1.as_deref(), key.as_str()) {
            ("remote", Some("origin"), "url") if url.is_none() => url = Some(value),
            ("extensions", None, "objectformat") => object_format = Some(value),
            _ => {}
        }
    }
    let url = url.flatten().filter(|url| is_plain_remote_url(url)).ok_or(SeedError::NoOriginUrl)?;
    let extensions = match object_format {
        None => None,
        Some(Some(format)) if format.eq_ignore_ascii_case("sha1") => None,
        Some(Some(format)) if format.eq_ignore_ascii_case("sha256") => Some("sha256"),
        Some(other) => return Err(SeedError::UnknownObjectFormat(other.unwrap_or_default())),
    };
    let version = if extensions.is_some() { 1 } else { 0 };
    let mut config = format!(
        "[core]\n\trepositoryformatversion = {version}\n\tfilemode = true\n\tbare = true\n"
    );
    if let Some(format) = extensions {
        config.push_str(&format!("[extensions]\n\tobjectformat = {format}\n"));
    }
    config.push_str(&format!(
        "[remote \"origin\"]\n\turl = \"{url}\"\n\tfetch = +refs/*:refs/*\n\tmirror = true\n"
    ));
    Ok(config)
}

/// Whether `url` is a remote URL git fetches from without running a helper program:
/// `https://`, `http://`, `ssh://` or `git://` followed by a host, or the scp-like
/// `[user@]host:path`. Transport helpers (`ext::…`, `fd::…`, `<name>::<address>`),
/// local paths, option-like values, whitespace, control characters, quotes and
/// backslashes are refused.
pub fn is_plain_remote_url(url: &str) -> bool {
    if url.is_empty()
        || url.len() > 2048
        || url.starts_with('-')
        || url.contains("::")
        || url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        return false;
    }
    for scheme in ["https://", "http://", "ssh://", "git://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return rest.split('/').next().is_some_and(|host| !host.is_empty());
        }
    }
    // scp-like: the part before the first ':' is `[user@]host`, with no '/', and what
    // follows is a path rather than another scheme's `//`.
    let Some((user_host, path)) = url.split_once(':') else { return false };
    !user_host.is_empty()
        && !path.is_empty()
        && !path.starts_with("//")
        && user_host.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

/// A section header's name (lowercase) and subsection: `remote "origin"` (subsection
/// kept as written) or the older `remote.origin` (lowercased, as git does).
fn section_name(header: &str) -> (String, Option<String>) {
    let header = header.trim();
    if let Some((name, sub)) = header.split_once(char::is_whitespace) {
        let sub = sub.trim();
        let sub = sub.strip_prefix('"').and_then(|sub| sub.strip_suffix('"')).unwrap_or(sub);
        return (name.to_ascii_lowercase(), Some(sub.to_owned()));
    }
    match header.split_once('.') {
        Some((name, sub)) => (name.to_ascii_lowercase(), Some(sub.to_ascii_lowercase())),
        None => (header.to_ascii_lowercase(), None),
    }
}

/// A value without comments and surrounding quotes, or `None` when it uses quoting or
/// escapes beyond one plain quoted string (such values are not used).
fn unquote(value: &str) -> Option<String> {
    if let Some(inner) = value.strip_prefix('"') {
        let (inner, rest) = inner.split_once('"')?;
        let rest = rest.trim();
        if !(rest.is_empty() || rest.starts_with(['#', ';'])) || inner.contains('\\') {
            return None;
        }
        return Some(inner.to_owned());
    }
    let value = value.split(['#', ';']).next().unwrap_or_default().trim();
    if value.contains(['"', '\\']) {
        return None;
    }
    Some(value.to_owned())
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
    use proptest::prelude::*;
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

    fn link(_target: &str) -> EntryKind {
        EntryKind::Symlink
    }

    fn path(raw: &str) -> Vec<String> {
        raw.split('/').map(str::to_owned).collect()
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
    fn keeps_repository_data_and_reads_only_the_config() {
        let actions = check_all(&[
            ("./repo/", EntryKind::Directory),
            ("./repo/HEAD", EntryKind::File),
            ("repo/objects", EntryKind::Directory),
            ("repo/config", EntryKind::File),
            ("repo/refs//heads/main", EntryKind::File),
            ("repo/objects/pack/pack-1.pack", EntryKind::File),
            ("repo/packed-refs", EntryKind::File),
        ])
        .unwrap();
        assert_eq!(actions[3], EntryAction::ReadConfig);
        assert_eq!(actions[4], EntryAction::CreateFile { path: path("repo/refs/heads/main") });
        assert_eq!(
            actions[5],
            EntryAction::CreateFile { path: path("repo/objects/pack/pack-1.pack") }
        );
    }

    /// Every file through which git runs a command or reads outside the repository is
    /// dropped, whatever it holds.
    /// See: git-mirror seed archives ran code on `git fetch`.
    #[test_case("repo/hooks/post-update"; "hook")]
    #[test_case("repo/hooks"; "hooks as a file")]
    #[test_case("repo/info/attributes"; "info attributes")]
    #[test_case("repo/info/exclude"; "info exclude")]
    #[test_case("repo/objects/info/alternates"; "alternates")]
    #[test_case("repo/objects/info/http-alternates"; "http alternates")]
    #[test_case("repo/commondir"; "commondir")]
    #[test_case("repo/gitdir"; "gitdir")]
    #[test_case("repo/config.worktree"; "worktree config")]
    #[test_case("repo/worktrees/w/gitdir"; "worktree gitdir")]
    #[test_case("repo/modules/sub/config"; "submodule config")]
    #[test_case("repo/modules/sub/hooks/pre-commit"; "submodule hook")]
    #[test_case("repo/remotes/origin"; "remotes file")]
    #[test_case("repo/branches/main"; "branches file")]
    #[test_case("repo/Config"; "config in another case")]
    fn drops_everything_but_repository_data(file: &str) {
        let actions = mirror_with((file, EntryKind::File)).unwrap();
        assert_eq!(actions[4], EntryAction::Skip { path: path(file) });
    }

    #[test]
    fn a_config_directory_is_dropped_rather_than_read() {
        let actions = mirror_with(("repo/config/", EntryKind::Directory)).unwrap();
        assert_eq!(actions[4], EntryAction::Skip { path: path("repo/config") });
    }

    #[test_case(("../evil", EntryKind::File), "entry \"../evil\" has a '..' component"; "dot dot")]
    #[test_case(("repo/../../evil", EntryKind::File), "has a '..' component"; "dot dot inside")]
    #[test_case(("/etc/cron.d/evil", EntryKind::File), "has an absolute path"; "absolute")]
    #[test_case(("other/HEAD", EntryKind::File), "outside the single top-level directory \"repo\""; "second mirror")]
    #[test_case(("repo/dev", EntryKind::BlockDevice), "is a block device"; "block device")]
    #[test_case(("repo/tty", EntryKind::CharDevice), "is a character device"; "char device")]
    #[test_case(("repo/fifo", EntryKind::Fifo), "is a FIFO"; "fifo")]
    #[test_case(("repo/hard", EntryKind::HardLink), "is a hard link"; "hard link")]
    #[test_case(("repo/out", link("/etc/shadow")), "is a symlink"; "absolute link")]
    #[test_case(("repo/packed", link("objects/pack/x.pack")), "is a symlink"; "link inside")]
    #[test_case(("repo/hooks", link("objects")), "\"repo/hooks\" is a symlink"; "hooks link into objects")]
    #[test_case(("repo/hooks/x", link("../objects")), "is a symlink"; "link in a dropped directory")]
    #[test_case(("repo/a\\b", EntryKind::File), "a backslash"; "backslash")]
    fn rejects(extra: (&str, EntryKind), expected: &str) {
        let error = mirror_with(extra).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
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
        assert_eq!(
            check_all(&[("repo/objects/info/alternates", EntryKind::File)]).unwrap_err(),
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

    const FRESH: &str = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n[remote \"origin\"]\n\turl = \"https://github.com/org/repo.git\"\n\tfetch = +refs/*:refs/*\n\tmirror = true\n";

    /// Whatever else the seed's config says, the mirror gets the same fresh one.
    /// See: git-mirror seed archives ran code on `git fetch`.
    #[test_case(b"[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n"; "plain")]
    #[test_case(b"[core]\n\tfsmonitor = touch /tmp/pwned\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n"; "fsmonitor")]
    #[test_case(b"[core]\n\talternateRefsCommand = touch /tmp/pwned\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n"; "alternate refs command")]
    #[test_case(b"[protocol \"ext\"]\n\tallow = always\n[url \"ext::sh -c touch% /tmp/pwned\"]\n\tinsteadOf = https://\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n"; "ext insteadof")]
    #[test_case(b"[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n\tuploadpack = touch /tmp/pwned\n[uploadpack]\n\tpackObjectsHook = x\n[credential]\n\thelper = !x\n[filter \"a\"]\n\tprocess = x\n[core]\n\tsshCommand = x\n\thooksPath = /tmp\n[include]\n\tpath = /tmp/x\n"; "many")]
    #[test_case(b"\xff\xfe[core]\n\tfsmonitor = x\xff\n[remote \"origin\"]\n\turl = https://github.com/org/repo.git\n"; "not utf-8")]
    #[test_case(b"[Remote.origin]\nURL = \"https://github.com/org/repo.git\" # comment\n[remote \"origin\"]\n\turl = ext::sh\n"; "old header, first url wins")]
    fn writes_a_fresh_config(seed: &[u8]) {
        assert_eq!(mirror_config(Some(seed)).unwrap(), FRESH);
    }

    #[test]
    fn keeps_a_sha256_object_format() {
        let config = mirror_config(Some(
            b"[extensions]\n\tobjectFormat = sha256\n[remote \"origin\"]\n\turl = git@github.com:org/repo.git\n",
        ))
        .unwrap();
        assert!(config.contains("repositoryformatversion = 1\n"), "{config}");
        assert!(config.contains("[extensions]\n\tobjectformat = sha256\n"), "{config}");
        assert!(config.contains("url = \"git@github.com:org/repo.git\"\n"), "{config}");
    }

    #[test_case(None, SeedError::NoOriginUrl; "no config")]
    #[test_case(Some(&b"[remote \"upstream\"]\n\turl = https://x/y\n"[..]), SeedError::NoOriginUrl; "no origin")]
    #[test_case(Some(&b"[remote \"origin\"]\n\turl = ext::sh -c touch% /tmp/x\n"[..]), SeedError::NoOriginUrl; "ext url")]
    #[test_case(Some(&b"[remote \"origin\"]\n\turl = \"https://x/\\\"y\"\n"[..]), SeedError::NoOriginUrl; "escaped quote")]
    #[test_case(Some(&b"[extensions]\nobjectformat = md5\n[remote \"origin\"]\nurl = https://x/y\n"[..]), SeedError::UnknownObjectFormat("md5".into()); "object format")]
    fn refuses_a_config_without_a_usable_origin(seed: Option<&[u8]>, expected: SeedError) {
        assert_eq!(mirror_config(seed).unwrap_err(), expected);
    }

    #[test_case("https://github.com/org/repo.git", true)]
    #[test_case("ssh://git@github.com:22/org/repo.git", true)]
    #[test_case("ssh://git@[::1]/org/repo.git", false; "ipv6 refused with the helper syntax")]
    #[test_case("git@github.com:org/repo.git", true)]
    #[test_case("git://host/repo", true)]
    #[test_case("ext::sh -c x", false)]
    #[test_case("fd::3", false)]
    #[test_case("-uhelp", false)]
    #[test_case("/srv/repo.git", false)]
    #[test_case("file:///srv/repo.git", false)]
    #[test_case("https://", false)]
    #[test_case("host:", false)]
    #[test_case("git@github.com/x:y", false)]
    #[test_case("https://h/a b", false)]
    fn recognises_plain_remote_urls(url: &str, expected: bool) {
        assert_eq!(is_plain_remote_url(url), expected);
    }

    #[test]
    fn modes_drop_special_bits() {
        assert_eq!(file_mode(0o4755), 0o755);
        assert_eq!(file_mode(0o666), 0o644);
        assert_eq!(file_mode(0o100), 0o755);
    }

    fn any_kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            Just(EntryKind::File),
            Just(EntryKind::Directory),
            Just(EntryKind::Symlink),
            Just(EntryKind::HardLink),
            Just(EntryKind::Fifo),
            ".*".prop_map(EntryKind::Other),
        ]
    }

    proptest! {
        /// Arbitrary entries never panic the validator, and whatever it lets through
        /// is a directory or a file of repository data inside the mirror.
        #[test]
        fn the_validator_never_panics_and_keeps_only_data(
            entries in proptest::collection::vec(("(repo/)?[a-zA-Z./\\\\-]{0,30}|.*", any_kind(), any::<u64>()), 0..20)
        ) {
            let mut validator = SeedValidator::new("repo", SeedLimits::DEFAULT);
            for (raw, kind, size) in &entries {
                match validator.check(raw, kind, *size) {
                    Ok(EntryAction::CreateFile { path } | EntryAction::CreateDir { path }) => {
                        prop_assert_eq!(&path[0], "repo");
                        prop_assert!(path.len() == 1 || is_repository_data(&path[1..]));
                        prop_assert!(path.iter().all(|component| is_normal_component(component)));
                        prop_assert!(matches!(kind, EntryKind::File | EntryKind::Directory));
                    }
                    Ok(EntryAction::ReadConfig | EntryAction::Skip { .. }) | Err(_) => {}
                }
            }
            let _ = validator.finish();
        }

        /// Arbitrary config bytes never panic, and any URL that ends up in the fresh
        /// config is a plain one.
        #[test]
        fn mirror_config_never_panics(seed in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(config) = mirror_config(Some(&seed)) {
                let url = config.lines().find_map(|line| line.strip_prefix("\turl = \"")).unwrap();
                prop_assert!(is_plain_remote_url(url.strip_suffix('"').unwrap()));
            }
        }

        #[test]
        fn mirror_config_never_panics_on_config_like_text(
            seed in "(\\[[a-zA-Z \".]{0,20}\\]\n|[a-zA-Z]{0,10} ?= ?[ -~]{0,30}\n|[\"#;\\\\]\n){0,10}"
        ) {
            let _ = mirror_config(Some(seed.as_bytes()));
        }
    }
}
