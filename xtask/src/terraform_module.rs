//! The Terraform module as a release artefact: a copy of `terraform/` with the release
//! stamped into it, archived as `terraform-module.tar.gz` beside the rendered template.
//!
//! The source module names no release, like the source template: its `main.tf` has
//! `stack_version = "0.0.0-dev"`, the default `lambda_bucket_prefix` and an
//! `ami_mapping` with empty ids. Stamping rewrites exactly those three locals in the
//! copy (so the source files stay as they are) and reads the copy back with an HCL
//! parser to check it says what was stamped. The archive holds the module at its root
//! (with `examples/`), so a `module` block can use its URL as `source`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, ensure};

use crate::template::{AMI_VARIANTS, AmiMappings, SOURCE_VERSION};

/// The module's directory, relative to the project root.
pub const SOURCE_DIR: &str = "terraform";
/// The archive's name in the release.
pub const ARCHIVE_NAME: &str = "terraform-module.tar.gz";

/// What a released module says about its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub version: String,
    pub lambda_bucket_prefix: String,
    /// Region → variant → AMI id (missing variants are empty strings).
    pub ami_mapping: AmiMappings,
}

/// Copies the module at `source` to `output` (replaced if it exists) with the release
/// stamped into `main.tf`. Without mappings the AMI map keeps its empty ids.
pub fn stamp(
    source: &Path,
    output: &Path,
    version: &str,
    lambda_bucket_prefix: &str,
    mappings: Option<&AmiMappings>,
) -> anyhow::Result<()> {
    if output.exists() {
        std::fs::remove_dir_all(output)
            .with_context(|| format!("failed to clear {}", output.display()))?;
    }
    for file in module_files(source)? {
        let relative = file.strip_prefix(source).context("a module file outside the module")?;
        let destination = output.join(relative);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::copy(&file, &destination)
            .with_context(|| format!("failed to copy {}", file.display()))?;
    }
    let main = output.join("main.tf");
    let text = std::fs::read_to_string(&main)
        .with_context(|| format!("failed to read {}", main.display()))?;
    let stamped = stamp_main(&text, version, lambda_bucket_prefix, mappings)?;
    std::fs::write(&main, &stamped)
        .with_context(|| format!("failed to write {}", main.display()))?;
    let read_back = read_stamp(&stamped)?;
    ensure!(
        read_back.version == version && read_back.lambda_bucket_prefix == lambda_bucket_prefix,
        "the stamped module reads back as version {} and prefix {}",
        read_back.version,
        read_back.lambda_bucket_prefix
    );
    if let Some(mappings) = mappings {
        for (region, row) in mappings {
            for (variant, ami) in row {
                ensure!(
                    read_back.ami_mapping.get(region).and_then(|row| row.get(variant)) == Some(ami),
                    "the stamped module lost {region} {variant}"
                );
            }
        }
    }
    Ok(())
}

/// `main.tf` with the three release locals replaced; fails unless each is found once.
pub fn stamp_main(
    text: &str,
    version: &str,
    lambda_bucket_prefix: &str,
    mappings: Option<&AmiMappings>,
) -> anyhow::Result<String> {
    let mut lines: Vec<String> = Vec::new();
    let (mut n_version, mut n_prefix, mut n_mapping) = (0, 0, 0);
    let mut source_lines = text.lines();
    while let Some(line) = source_lines.next() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let key = trimmed.split(['=', ' ']).next().unwrap_or_default();
        match key {
            "stack_version" if trimmed.contains(&format!("\"{SOURCE_VERSION}\"")) => {
                n_version += 1;
                lines.push(with_value(line, version)?);
            }
            "lambda_bucket_prefix" if trimmed.contains('"') => {
                n_prefix += 1;
                lines.push(with_value(line, lambda_bucket_prefix)?);
            }
            "ami_mapping" if trimmed.ends_with('{') => {
                n_mapping += 1;
                // The block ends at the first line back at this indentation.
                let mut block = vec![line.to_owned()];
                let mut closed = false;
                for inner in source_lines.by_ref() {
                    block.push(inner.to_owned());
                    if inner.trim() == "}" && inner.len() - inner.trim_start().len() == indent.len()
                    {
                        closed = true;
                        break;
                    }
                }
                ensure!(closed, "the ami_mapping block of main.tf does not end");
                match mappings {
                    Some(mappings) => lines.extend(mapping_block(mappings, indent)),
                    None => lines.extend(block),
                }
            }
            _ => lines.push(line.to_owned()),
        }
    }
    ensure!(
        (n_version, n_prefix, n_mapping) == (1, 1, 1),
        "main.tf must set stack_version = \"{SOURCE_VERSION}\", lambda_bucket_prefix and ami_mapping once each in its locals (found {n_version}, {n_prefix}, {n_mapping})"
    );
    Ok(lines.join("\n") + "\n")
}

/// `line` with its quoted value replaced, the alignment before it kept.
fn with_value(line: &str, value: &str) -> anyhow::Result<String> {
    let start = line.find('"').context("no quoted value")?;
    let end = start + 1 + line[start + 1..].find('"').context("an unterminated value")?;
    Ok(format!("{}\"{value}\"{}", &line[..start], &line[end + 1..]))
}

fn mapping_block(mappings: &AmiMappings, indent: &str) -> Vec<String> {
    let mut rows = mappings.clone();
    // The module falls back to us-east-1's row for regions it does not know.
    rows.entry("us-east-1".to_owned()).or_default();
    let mut lines = vec![format!("{indent}ami_mapping = {{")];
    for (region, row) in &rows {
        let columns: Vec<String> = AMI_VARIANTS
            .iter()
            .map(|variant| {
                format!("{variant} = \"{}\"", row.get(*variant).map_or("", String::as_str))
            })
            .collect();
        lines.push(format!("{indent}  {region} = {{ {} }}", columns.join(", ")));
    }
    lines.push(format!("{indent}}}"));
    lines
}

/// What a module's `main.tf` says about its release.
pub fn read_stamp(main_tf: &str) -> anyhow::Result<Stamp> {
    let body: hcl::Body = hcl::from_str(main_tf).context("main.tf is not valid HCL")?;
    let locals = body
        .blocks()
        .filter(|block| block.identifier() == "locals")
        .flat_map(|block| block.body().attributes())
        .map(|attribute| (attribute.key().to_owned(), attribute.expr().clone()))
        .collect::<std::collections::BTreeMap<_, _>>();
    let string = |name: &str| -> anyhow::Result<String> {
        match locals.get(name) {
            Some(hcl::Expression::String(value)) => Ok(value.clone()),
            _ => Err(anyhow!("main.tf has no string local {name}")),
        }
    };
    let mut ami_mapping = AmiMappings::new();
    let Some(hcl::Expression::Object(regions)) = locals.get("ami_mapping") else {
        return Err(anyhow!("main.tf has no ami_mapping object"));
    };
    for (region, row) in regions {
        let hcl::Expression::Object(row) = row else {
            return Err(anyhow!("ami_mapping.{region} is not an object"));
        };
        let row = row
            .iter()
            .filter_map(|(variant, ami)| match ami {
                hcl::Expression::String(ami) if !ami.is_empty() => {
                    Some((object_key(variant), ami.clone()))
                }
                _ => None,
            })
            .collect();
        ami_mapping.insert(object_key(region), row);
    }
    Ok(Stamp {
        version: string("stack_version")?,
        lambda_bucket_prefix: string("lambda_bucket_prefix")?,
        ami_mapping,
    })
}

fn object_key(key: &hcl::ObjectKey) -> String {
    match key {
        hcl::ObjectKey::Identifier(identifier) => identifier.to_string(),
        hcl::ObjectKey::Expression(hcl::Expression::String(text)) => text.clone(),
        other => other.to_string(),
    }
}

/// Archives the module directory `dir` as a gzip-compressed tar at `archive`, entries
/// sorted, owned by root, dated 0 and 0644 (0755 for directories), so the same module
/// gives the same bytes.
pub fn archive(dir: &Path, archive: &Path) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", archive.display()));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("failed to create {}", partial.display()))?;
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut builder = tar::Builder::new(encoder);
    let mut directories = std::collections::BTreeSet::new();
    for file in module_files(dir)? {
        let relative = file.strip_prefix(dir).context("a module file outside the module")?;
        for ancestor in relative.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() && directories.insert(ancestor.to_path_buf()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_mtime(0);
                builder
                    .append_data(&mut header, ancestor, std::io::empty())
                    .context("failed to archive the module")?;
            }
        }
        let body =
            std::fs::read(&file).with_context(|| format!("failed to read {}", file.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(body.len() as u64);
        header.set_mtime(0);
        builder
            .append_data(&mut header, relative, body.as_slice())
            .context("failed to archive the module")?;
    }
    let mut encoder = builder.into_inner().context("failed to finish the archive")?;
    encoder.flush().context("failed to write the archive")?;
    encoder.finish().context("failed to write the archive")?;
    std::fs::rename(&partial, archive)
        .with_context(|| format!("failed to write {}", archive.display()))
}

/// The module's files, sorted: everything under `dir` except Terraform's working files
/// (`.terraform/`, state, lock files).
fn module_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)
            .with_context(|| format!("failed to list {}", current.display()))?
        {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == ".terraform"
                || name.ends_with(".tfstate")
                || name.ends_with(".tfstate.backup")
                || name == ".terraform.lock.hcl"
            {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project;
    use crate::template::parse_mappings;

    fn mappings() -> AmiMappings {
        parse_mappings(
            "eu-west-1:\n  linuxamd64: ami-0123456789abcdef0\n  linuxarm64: ami-0123456789abcdef1\n",
            Path::new("m.yml"),
        )
        .unwrap()
    }

    fn source_main() -> String {
        std::fs::read_to_string(project::root().join(SOURCE_DIR).join("main.tf")).unwrap()
    }

    #[test]
    fn the_source_module_is_unstamped() {
        let stamp = read_stamp(&source_main()).unwrap();
        assert_eq!(stamp.version, SOURCE_VERSION);
        assert!(stamp.ami_mapping.values().all(|row| row.is_empty()), "{stamp:?}");
    }

    #[test]
    fn stamps_the_version_prefix_and_amis_and_nothing_else() {
        let source = source_main();
        let stamped = stamp_main(&source, "v1.2.3", "my-lambdas", Some(&mappings())).unwrap();
        let stamp = read_stamp(&stamped).unwrap();
        assert_eq!(stamp.version, "v1.2.3");
        assert_eq!(stamp.lambda_bucket_prefix, "my-lambdas");
        assert_eq!(stamp.ami_mapping["eu-west-1"]["linuxarm64"], "ami-0123456789abcdef1");
        // The fallback row the module reads for unknown regions is always there.
        assert!(stamp.ami_mapping.contains_key("us-east-1"), "{stamp:?}");
        let changed: Vec<&str> =
            stamped.lines().filter(|line| !source.lines().any(|old| old == *line)).collect();
        assert_eq!(changed.len(), 3, "{changed:#?}");
        assert!(changed[0].trim_start().starts_with("stack_version "), "{changed:#?}");
        assert!(changed[0].ends_with(" = \"v1.2.3\""), "{changed:#?}");
        assert!(changed[1].trim_start().starts_with("lambda_bucket_prefix "), "{changed:#?}");
        assert!(changed[2].contains("linuxarm64 = \"ami-0123456789abcdef1\""), "{changed:#?}");
        assert_eq!(stamped.lines().count(), source.lines().count() + 1);
    }

    #[test]
    fn refuses_a_main_tf_without_the_release_locals() {
        let error = stamp_main("locals {\n  x = 1\n}\n", "v1", "p", None).unwrap_err();
        assert!(error.to_string().contains("found 0, 0, 0"), "{error}");
    }

    #[test]
    fn the_archive_unpacks_to_the_stamped_module_with_its_examples() {
        let work = tempfile::tempdir().unwrap();
        let module = work.path().join("module");
        stamp(
            &project::root().join(SOURCE_DIR),
            &module,
            "v1.2.3",
            "my-lambdas",
            Some(&mappings()),
        )
        .unwrap();
        let archive_path = work.path().join(ARCHIVE_NAME);
        archive(&module, &archive_path).unwrap();
        let again = work.path().join("again.tar.gz");
        archive(&module, &again).unwrap();
        assert_eq!(std::fs::read(&archive_path).unwrap(), std::fs::read(&again).unwrap());

        let mut unpacked = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&archive_path).unwrap(),
        ));
        let out = work.path().join("out");
        unpacked.unpack(&out).unwrap();
        let stamp = read_stamp(&std::fs::read_to_string(out.join("main.tf")).unwrap()).unwrap();
        assert_eq!(stamp.version, "v1.2.3");
        assert!(out.join("examples/minimal/main.tf").is_file());
        assert!(out.join("variables.tf").is_file());
    }
}
