//! `cargo xtask pin-downloads`: pins the third-party files the agent image installs.
//!
//! `packer/linux/versions.auto.pkrvars.hcl` is the one place the image build takes its
//! downloads from: for each file, its version, its URL per architecture and the SHA-256
//! digest of each. Packer passes the URL and digest of the image's architecture to
//! `scripts/install-downloads.sh`, which downloads that URL and refuses a file with
//! another digest; the scripts build no URL of their own.
//!
//! This task reads the versions from that file, works out every URL from the patterns
//! in [`DOWNLOADS`], downloads each file for both architectures, computes its digest,
//! checks it against the upstream checksum file where the project publishes one, and
//! writes the file again. To bump a download, change its `_version` and run the task.
//!
//! Nothing is written unless every download and check succeeded; the new file replaces
//! the old one by a rename.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use sha2::{Digest, Sha256};

use crate::flags::PinDownloadsArgs;
use crate::image_checks::TEMPLATE_DIR;
use crate::project;

/// The file of the image template that pins downloads.
pub const VERSIONS_FILE: &str = "versions.auto.pkrvars.hcl";

/// The architectures of the image, as Packer's `arch` variable names them.
const ARCHES: [&str; 2] = ["x86_64", "arm64"];

/// Largest file accepted: the largest download is tens of megabytes.
const MAX_DOWNLOAD_BYTES: u64 = 512 * 1024 * 1024;

/// One third-party file of the image. In the patterns, `{version}` is the pinned
/// version, `{goarch}` is `amd64` or `arm64` and `{machine}` is `x86_64` or `aarch64`.
#[derive(Debug, Clone, Copy)]
struct Download {
    /// The variables' prefix: `<name>_version`, `<name>_url`, `<name>_sha256`.
    pub(crate) name: &'static str,
    pub(crate) url: &'static str,
    /// Upstream's checksum file (`<hex digest>  <file name>` lines), where it has one.
    pub(crate) checksums: Option<&'static str>,
}

/// Every download of the image.
const DOWNLOADS: [Download; 4] = [
    Download {
        name: "buildkite_agent",
        url: "https://github.com/buildkite/agent/releases/download/v{version}/buildkite-agent-linux-{goarch}-{version}.tar.gz",
        checksums: None,
    },
    Download {
        name: "buildkite_agent_beta",
        url: "https://github.com/buildkite/agent/releases/download/v{version}/buildkite-agent-linux-{goarch}-{version}.tar.gz",
        checksums: None,
    },
    Download {
        name: "docker_compose",
        url: "https://github.com/docker/compose/releases/download/v{version}/docker-compose-linux-{machine}",
        checksums: Some(
            "https://github.com/docker/compose/releases/download/v{version}/checksums.txt",
        ),
    },
    Download {
        name: "docker_buildx",
        url: "https://github.com/docker/buildx/releases/download/v{version}/buildx-v{version}.linux-{goarch}",
        checksums: Some(
            "https://github.com/docker/buildx/releases/download/v{version}/checksums.txt",
        ),
    },
];

/// What gets written for one download.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pinned {
    pub(crate) version: String,
    /// By architecture.
    pub(crate) urls: BTreeMap<String, String>,
    pub(crate) digests: BTreeMap<String, String>,
}

pub(crate) fn run(args: &PinDownloadsArgs) -> anyhow::Result<()> {
    let path =
        args.file.clone().unwrap_or_else(|| project::root().join(TEMPLATE_DIR).join(VERSIONS_FILE));
    let plan = plan(&path, args.base_url.as_deref())?;

    if args.dry_run {
        for planned in &plan {
            for (_, url) in &planned.urls {
                println!("would download {url}");
            }
            if let Some(checksums) = &planned.checksums {
                println!("would check against {checksums}");
            }
        }
        return Ok(());
    }

    let pinned = project::block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .https_only(true)
            .build()
            .context("failed to build the HTTP client")?;
        let mut pinned = BTreeMap::new();
        for PlannedDownload { name, version, urls, checksums } in &plan {
            let published = match checksums {
                Some(url) => Some(parse_checksums(&fetch_text(&client, url).await?, url)?),
                None => None,
            };
            let mut digests = BTreeMap::new();
            for (arch, url) in urls {
                let digest = fetch_digest(&client, url).await?;
                if let Some(published) = &published {
                    let file = file_name(url);
                    let expected = published.get(file).ok_or_else(|| {
                        anyhow!(
                            "the checksum file {} has no line for {file}",
                            checksums.as_deref().unwrap_or_default()
                        )
                    })?;
                    ensure!(
                        expected == &digest,
                        "{url} has SHA-256 {digest}, but the checksum file {} says {expected}: not pinning it",
                        checksums.as_deref().unwrap_or_default()
                    );
                }
                eprintln!("{name} {arch}: {digest}  {url}");
                digests.insert(arch.clone(), digest);
            }
            pinned.insert(
                (*name).to_owned(),
                Pinned { version: version.clone(), urls: urls.iter().cloned().collect(), digests },
            );
        }
        anyhow::Ok(pinned)
    })?;

    let text = render(&pinned);
    write_atomically(&path, &text)?;
    eprintln!(
        "pinned {} downloads for {} in {}",
        pinned.len(),
        ARCHES.join(" and "),
        path.display()
    );
    Ok(())
}

/// One download's URLs, as the task will fetch them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDownload {
    pub name: &'static str,
    pub version: String,
    /// `(arch, URL)` for each architecture.
    pub urls: Vec<(String, String)>,
    /// Upstream's checksum file, where there is one.
    pub checksums: Option<String>,
}

/// Every URL the task fetches for the versions in `path`, below `base_url` when given
/// (a mirror, `https://HOST[:PORT][/PATH]`).
pub fn plan(path: &Path, base_url: Option<&str>) -> anyhow::Result<Vec<PlannedDownload>> {
    let versions = read_versions(path)?;
    let base_url = base_url.map(validate_base_url).transpose()?;
    DOWNLOADS
        .iter()
        .map(|download| {
            let version = &versions[download.name];
            let urls = ARCHES
                .iter()
                .map(|arch| {
                    let url = expand(download.url, version, arch);
                    Ok(((*arch).to_owned(), rebase(&url, base_url.as_deref())?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let checksums = download
                .checksums
                .map(|pattern| rebase(&expand(pattern, version, ARCHES[0]), base_url.as_deref()))
                .transpose()?;
            Ok(PlannedDownload { name: download.name, version: version.clone(), urls, checksums })
        })
        .collect()
}

/// The `<name>_version` of every download, from the versions file.
fn read_versions(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let inputs: BTreeMap<String, hcl::Value> =
        hcl::from_str(&text).with_context(|| format!("{} is not valid HCL", path.display()))?;
    let mut versions = BTreeMap::new();
    for download in DOWNLOADS {
        let name = format!("{}_version", download.name);
        let version = inputs.get(&name).and_then(hcl::Value::as_str).ok_or_else(|| {
            anyhow!("{} has no {name}: set the version to pin (such as \"1.2.3\")", path.display())
        })?;
        ensure!(
            !version.is_empty()
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')),
            "invalid {name} {version:?} in {}: expected a version such as 1.2.3",
            path.display()
        );
        versions.insert(download.name.to_owned(), version.to_owned());
    }
    Ok(versions)
}

fn expand(pattern: &str, version: &str, arch: &str) -> String {
    let (goarch, machine) = match arch {
        "arm64" => ("arm64", "aarch64"),
        _ => ("amd64", "x86_64"),
    };
    pattern.replace("{version}", version).replace("{goarch}", goarch).replace("{machine}", machine)
}

/// `https://mirror.example` (no path, query or credentials); the upstream URLs' paths
/// are kept below it.
fn validate_base_url(base: &str) -> anyhow::Result<String> {
    let parsed =
        url::Url::parse(base).map_err(|error| anyhow!("invalid --base-url {base:?}: {error}"))?;
    ensure!(
        parsed.scheme() == "https"
            && parsed.host().is_some()
            && parsed.username().is_empty()
            && parsed.password().is_none()
            && parsed.query().is_none()
            && parsed.fragment().is_none(),
        "invalid --base-url {base:?}: expected https://HOST[:PORT][/PATH], without credentials or a query"
    );
    Ok(base.trim_end_matches('/').to_owned())
}

fn rebase(url: &str, base: Option<&str>) -> anyhow::Result<String> {
    let Some(base) = base else { return Ok(url.to_owned()) };
    let parsed = url::Url::parse(url).with_context(|| format!("invalid download URL {url}"))?;
    Ok(format!("{base}{}", parsed.path()))
}

fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Downloads `url` and returns its SHA-256 digest in lower-case hex.
async fn fetch_digest(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let mut response = get(client, url).await?;
    let mut hasher = Sha256::new();
    let mut n_bytes = 0u64;
    while let Some(chunk) =
        response.chunk().await.with_context(|| format!("failed to download {url}"))?
    {
        n_bytes += chunk.len() as u64;
        ensure!(n_bytes <= MAX_DOWNLOAD_BYTES, "{url} is larger than {MAX_DOWNLOAD_BYTES} bytes");
        hasher.update(&chunk);
    }
    ensure!(n_bytes > 0, "{url} is empty");
    Ok(hex(&hasher.finalize()))
}

async fn fetch_text(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = get(client, url).await?;
    let bytes = response.bytes().await.with_context(|| format!("failed to download {url}"))?;
    ensure!(bytes.len() <= 1024 * 1024, "{url} is larger than 1 MiB");
    String::from_utf8(bytes.to_vec()).with_context(|| format!("{url} is not text"))
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<reqwest::Response> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| anyhow!("failed to download {url}: {}", error_chain(&error)))?;
    let status = response.status();
    ensure!(status.is_success(), "failed to download {url}: HTTP {status}");
    Ok(response)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads `sha256sum` output: `<64 hex digits>  <name>` (or ` *<name>`) per line.
fn parse_checksums(text: &str, url: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut sums = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = line.split_once(char::is_whitespace).and_then(|(digest, name)| {
            let name = name.trim_start().trim_start_matches('*');
            let valid = digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit());
            (valid && !name.is_empty()).then(|| (name.to_owned(), digest.to_ascii_lowercase()))
        });
        let Some((name, digest)) = parsed else {
            bail!("{url} line {}: expected a SHA-256 digest and a file name", number + 1);
        };
        sums.insert(name, digest);
    }
    Ok(sums)
}

/// The versions file, as Packer reads it.
fn render(pinned: &BTreeMap<String, Pinned>) -> String {
    let mut text = String::from(
        "# Third-party software baked into the agent image: each file's version, its URL and\n\
         # its SHA-256 digest per architecture. Packer passes the URL and digest of the\n\
         # image's architecture to scripts/install-downloads.sh, which refuses any other file.\n\
         # Written by `cargo xtask pin-downloads`: to bump one, change its version and run it.\n",
    );
    for download in DOWNLOADS {
        let Some(pin) = pinned.get(download.name) else { continue };
        let name = download.name;
        text.push_str(&format!("\n{name}_version = \"{}\"\n", pin.version));
        for (suffix, values) in [("url", &pin.urls), ("sha256", &pin.digests)] {
            text.push_str(&format!("{name}_{suffix} = {{\n"));
            for arch in ARCHES {
                let value = values.get(arch).map_or("", String::as_str);
                text.push_str(&format!("  {arch:<6} = \"{value}\"\n"));
            }
            text.push_str("}\n");
        }
    }
    text
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    std::fs::write(&partial, text)
        .with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("failed to write {}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_each_architecture_and_rebases_on_a_mirror() {
        let url = expand(DOWNLOADS[2].url, "2.29.7", "arm64");
        assert_eq!(
            url,
            "https://github.com/docker/compose/releases/download/v2.29.7/docker-compose-linux-aarch64"
        );
        assert_eq!(
            expand(DOWNLOADS[3].url, "0.17.1", "x86_64"),
            "https://github.com/docker/buildx/releases/download/v0.17.1/buildx-v0.17.1.linux-amd64"
        );
        let base = validate_base_url("https://127.0.0.1:8443/mirror/").unwrap();
        assert_eq!(
            rebase(&url, Some(&base)).unwrap(),
            "https://127.0.0.1:8443/mirror/docker/compose/releases/download/v2.29.7/docker-compose-linux-aarch64"
        );
        for bad in ["http://mirror", "https://user:pw@mirror", "https://mirror/?x=1", "mirror"] {
            let error = validate_base_url(bad).unwrap_err();
            assert!(error.to_string().starts_with(&format!("invalid --base-url {bad:?}")));
        }
    }

    #[test]
    fn reads_checksum_files_and_names_a_bad_line() {
        let digest = "A".repeat(64);
        let sums = parse_checksums(&format!("{digest}  one\n{digest} *two\n\n"), "u").unwrap();
        assert_eq!(sums["one"], "a".repeat(64));
        assert_eq!(sums["two"], "a".repeat(64));
        let error = parse_checksums("abc  one\n", "https://x/sums").unwrap_err();
        assert_eq!(
            error.to_string(),
            "https://x/sums line 1: expected a SHA-256 digest and a file name"
        );
    }

    #[test]
    fn the_rendered_file_reads_back_with_every_version() {
        let pinned: BTreeMap<String, Pinned> = DOWNLOADS
            .iter()
            .map(|download| {
                let by_arch = |value: &str| {
                    ARCHES
                        .iter()
                        .map(|arch| ((*arch).to_owned(), format!("{value}-{arch}")))
                        .collect()
                };
                (
                    download.name.to_owned(),
                    Pinned {
                        version: "1.2.3".to_owned(),
                        urls: by_arch("u"),
                        digests: by_arch("d"),
                    },
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VERSIONS_FILE);
        std::fs::write(&path, render(&pinned)).unwrap();
        let versions = read_versions(&path).unwrap();
        assert_eq!(versions.len(), DOWNLOADS.len());
        assert!(versions.values().all(|version| version == "1.2.3"));
        let parsed: BTreeMap<String, hcl::Value> =
            hcl::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            parsed["docker_buildx_url"].as_object().and_then(|urls| urls["arm64"].as_str()),
            Some("u-arm64"),
            "{parsed:?}"
        );
    }

    #[test]
    fn the_shipped_file_names_the_urls_of_its_versions() {
        let path = project::root().join(TEMPLATE_DIR).join(VERSIONS_FILE);
        let versions = read_versions(&path).unwrap();
        let parsed: BTreeMap<String, hcl::Value> =
            hcl::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for download in DOWNLOADS {
            for arch in ARCHES {
                let shipped = parsed[&format!("{}_url", download.name)]
                    .as_object()
                    .and_then(|urls| urls.get(arch))
                    .and_then(hcl::Value::as_str);
                let expected = expand(download.url, &versions[download.name], arch);
                assert_eq!(shipped, Some(expected.as_str()), "{} {arch}", download.name);
            }
        }
    }
}
