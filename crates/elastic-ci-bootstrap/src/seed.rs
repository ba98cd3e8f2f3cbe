//! Git-mirror seeding: bare mirrors extracted from `s3://<bucket>/git-mirror-seeds/`
//! archives into the agent's mirrors directory, so the first checkouts on a new
//! instance fetch only what changed.
//!
//! Best effort: a seed that cannot be listed, downloaded, extracted or validated is
//! skipped with a warning and the boot goes on. Extraction happens in-process under
//! the rules of [`elastic_ci_core::archive`]: nothing outside one top-level directory,
//! no links of any kind, no devices, no owners or special mode bits, bounded size, and
//! only the repository's data kept. The seed's `config` is never written: the mirror
//! gets a fresh one from [`mirror_config`]. Each seed is extracted into a staging
//! directory on the mirrors volume and renamed into place only once complete, so a
//! mirror is either whole or absent.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use elastic_ci_aws::s3::ObjectStore;
use elastic_ci_core::archive::{
    ArchiveFormat, EntryAction, EntryKind, MAX_CONFIG_BYTES, SEED_PREFIX, SeedArchive, SeedError,
    SeedKeyRejection, SeedLimits, SeedValidator, file_mode, mirror_config, seed_archive,
};
use tracing::{info, warn};

/// What happened to each listed seed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub seeded: Vec<String>,
    /// (key, reason)
    pub skipped: Vec<(String, String)>,
}

/// Seeds `dir` from the bucket's `git-mirror-seeds/` prefix. Never fails: problems
/// are logged and reported.
pub async fn seed_git_mirrors(
    objects: &dyn ObjectStore,
    bucket: &str,
    dir: &Path,
    limits: SeedLimits,
) -> SeedReport {
    let mut report = SeedReport::default();
    // The instance role may list only this exact prefix.
    let listing = match objects.list(bucket, SEED_PREFIX).await {
        Ok(listing) => listing,
        Err(error) => {
            warn!(error = %error, "WARNING: Failed to list git mirror seeds in s3://{bucket}/{SEED_PREFIX}, continuing with empty git-mirrors...");
            report.skipped.push((format!("s3://{bucket}/{SEED_PREFIX}"), error.to_string()));
            return report;
        }
    };
    let mut seeds = Vec::new();
    for object in listing {
        match seed_archive(&object.key) {
            Ok(seed) => seeds.push((seed, object.size)),
            Err(SeedKeyRejection::NotAnArchive) => {}
            Err(SeedKeyRejection::BadName(name)) => {
                warn!(key = %object.key, "WARNING: seed name {name:?} is not usable, skipping");
                report.skipped.push((object.key.clone(), format!("unusable name {name:?}")));
            }
        }
    }
    if seeds.is_empty() {
        info!("No git mirror seeds found.");
    }
    for (seed, size) in seeds {
        match seed_one(objects, bucket, dir, &seed, size, limits).await {
            Ok(()) => {
                info!(mirror = %seed.name, key = %seed.key, "Seeded git mirror {}", seed.name);
                report.seeded.push(seed.name);
            }
            Err(reason) => {
                warn!(key = %seed.key, reason = %reason, "WARNING: skipping git mirror seed, continuing without it...");
                report.skipped.push((seed.key, reason));
            }
        }
    }
    report
}

async fn seed_one(
    objects: &dyn ObjectStore,
    bucket: &str,
    dir: &Path,
    seed: &SeedArchive,
    size: u64,
    limits: SeedLimits,
) -> Result<(), String> {
    let target = dir.join(&seed.name);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(format!("{} already exists", target.display()));
    }
    if size > limits.max_bytes {
        return Err(format!(
            "the archive is {size} bytes, more than the limit of {}",
            limits.max_bytes
        ));
    }
    // Staging lives on the mirrors volume, so the final move is a same-filesystem
    // rename, and is removed (with whatever a failed extraction left) on drop.
    let staging =
        tempfile::Builder::new().prefix(".git-mirror-seed-").tempdir_in(dir).map_err(|error| {
            format!("could not create a staging directory in {}: {error}", dir.display())
        })?;
    let download = staging.path().join(format!("download.{}", seed.format));
    let mut file = tokio::fs::File::create(&download)
        .await
        .map_err(|error| format!("could not create {}: {error}", download.display()))?;
    objects
        .download(bucket, &seed.key, &mut file)
        .await
        .map_err(|error| format!("download failed: {error}"))?;
    drop(file);

    let extract_dir = staging.path().join("extract");
    let (name, format) = (seed.name.clone(), seed.format);
    let extract_to = extract_dir.clone();
    let config =
        tokio::task::spawn_blocking(move || extract(&download, format, &extract_to, &name, limits))
            .await
            .map_err(|error| format!("extraction task failed: {error}"))?
            .map_err(|error| match error {
                ExtractError::Invalid(reason) => format!(
                    "{} does not contain a single bare git mirror named {}: {reason}",
                    seed.key, seed.name
                ),
                ExtractError::Io(reason) => format!("Failed to extract {}: {reason}", seed.key),
            })?;

    let mirror = extract_dir.join(&seed.name);
    write_new_file(&mirror.join("config"), config.as_bytes(), 0o644)
        .map_err(|error| format!("Failed to write the config of mirror {}: {error}", seed.name))?;
    std::fs::rename(&mirror, &target)
        .map_err(|error| format!("Failed to move mirror {} into place: {error}", seed.name))?;
    Ok(())
}

/// Why an extraction stopped.
#[derive(Debug)]
pub(crate) enum ExtractError {
    /// The archive breaks a rule.
    Invalid(SeedError),
    /// Reading the archive or writing the files failed.
    Io(String),
}

impl From<SeedError> for ExtractError {
    fn from(error: SeedError) -> ExtractError {
        ExtractError::Invalid(error)
    }
}

fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ExtractError {
    move |error| ExtractError::Io(format!("{context}: {error}"))
}

/// Extracts `archive` into `dest` (created), entry by entry, under the seed rules, and
/// returns the configuration to write into the mirror (which the archive's files do
/// not include).
pub(crate) fn extract(
    archive: &Path,
    format: ArchiveFormat,
    dest: &Path,
    mirror: &str,
    limits: SeedLimits,
) -> Result<String, ExtractError> {
    std::fs::create_dir(dest).map_err(io(format!("creating {}", dest.display())))?;
    let mut extraction =
        Extraction { dest, validator: SeedValidator::new(mirror, limits), config: None };
    let file = File::open(archive).map_err(io(format!("opening {}", archive.display())))?;
    match format {
        ArchiveFormat::Tar => extract_tar(BufReader::new(file), &mut extraction)?,
        ArchiveFormat::TarGz => {
            extract_tar(flate2::read::GzDecoder::new(BufReader::new(file)), &mut extraction)?;
        }
        ArchiveFormat::Zip => extract_zip(file, &mut extraction)?,
    }
    extraction.validator.finish()?;
    Ok(mirror_config(extraction.config.as_deref())?)
}

/// One extraction under way: where it writes, its rules, and the seed's `config` once
/// read.
struct Extraction<'a> {
    dest: &'a Path,
    validator: SeedValidator,
    config: Option<Vec<u8>>,
}

impl Extraction<'_> {
    /// Checks one entry and carries out what the rules say.
    fn entry(
        &mut self,
        path: &str,
        kind: &EntryKind,
        content: &mut dyn Read,
        archive_mode: u32,
        size: u64,
    ) -> Result<(), ExtractError> {
        match self.validator.check(path, kind, size)? {
            EntryAction::ReadConfig => {
                let mut config = Vec::new();
                content
                    .take(MAX_CONFIG_BYTES + 1)
                    .read_to_end(&mut config)
                    .map_err(io(format!("reading {path:?}")))?;
                if config.len() as u64 > MAX_CONFIG_BYTES {
                    return Err(SeedError::ConfigTooLarge.into());
                }
                self.config = Some(config);
                Ok(())
            }
            action => apply(self.dest, &action, content, archive_mode, size),
        }
    }
}

fn extract_tar(reader: impl Read, extraction: &mut Extraction<'_>) -> Result<(), ExtractError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(io("reading the archive"))? {
        let mut entry = entry.map_err(io("reading the archive"))?;
        let path = utf8(&entry.path_bytes())?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::HardLink,
            tar::EntryType::Char => EntryKind::CharDevice,
            tar::EntryType::Block => EntryKind::BlockDevice,
            tar::EntryType::Fifo => EntryKind::Fifo,
            other => EntryKind::Other(format!("{other:?} entry")),
        };
        let size = if kind == EntryKind::File { entry.size() } else { 0 };
        extraction.entry(&path, &kind, &mut entry, mode, size)?;
    }
    Ok(())
}

fn extract_zip(file: File, extraction: &mut Extraction<'_>) -> Result<(), ExtractError> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|error| ExtractError::Io(format!("reading the zip archive: {error}")))?;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|error| ExtractError::Io(format!("reading zip entry {index}: {error}")))?;
        let path = utf8(entry.name_raw())?;
        let mode = entry.unix_mode().unwrap_or(0o644);
        // The file type bits of the Unix mode, when the archive recorded one.
        let kind = match mode & 0o170_000 {
            _ if entry.is_dir() => EntryKind::Directory,
            _ if entry.is_symlink() => EntryKind::Symlink,
            0 | 0o100_000 => EntryKind::File,
            0o020_000 => EntryKind::CharDevice,
            0o060_000 => EntryKind::BlockDevice,
            0o010_000 => EntryKind::Fifo,
            0o140_000 => EntryKind::Other("socket".to_owned()),
            other => EntryKind::Other(format!("file of type {other:o}")),
        };
        let size = if kind == EntryKind::File { entry.size() } else { 0 };
        extraction.entry(&path, &kind, &mut entry, mode, size)?;
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<String, ExtractError> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
        ExtractError::Invalid(SeedError::BadPath(String::from_utf8_lossy(bytes).into_owned()))
    })
}

fn join(dest: &Path, components: &[String]) -> PathBuf {
    components.iter().fold(dest.to_owned(), |path, component| path.join(component))
}

/// Creates one accepted entry. Nothing is ever opened through a link: the archive
/// may hold none, the staging directory held nothing else, and files are created new
/// with `O_NOFOLLOW`.
fn apply(
    dest: &Path,
    action: &EntryAction,
    content: &mut dyn Read,
    archive_mode: u32,
    size: u64,
) -> Result<(), ExtractError> {
    match action {
        EntryAction::Skip { .. } | EntryAction::ReadConfig => Ok(()),
        EntryAction::CreateDir { path } => {
            let path = join(dest, path);
            std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))
        }
        EntryAction::CreateFile { path } => {
            let path = join(dest, path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            let mut file = create_new_file(&path, file_mode(archive_mode))
                .map_err(io(format!("creating {}", path.display())))?;
            // Never trust a declared size: read at most one byte more than it.
            let copied = std::io::copy(&mut content.take(size.saturating_add(1)), &mut file)
                .map_err(io(format!("writing {}", path.display())))?;
            if copied > size {
                return Err(ExtractError::Io(format!(
                    "{} holds more data than its declared {size} bytes",
                    path.display()
                )));
            }
            Ok(())
        }
    }
}

/// Creates `path`, which must not exist yet (not even as a dangling link), with `mode`.
fn create_new_file(path: &Path, mode: u32) -> std::io::Result<File> {
    crate::platform::create_new_file(path, mode)
}

fn write_new_file(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    create_new_file(path, mode)?.write_all(content)
}
