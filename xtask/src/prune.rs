//! `cargo xtask ami prune`: deregisters old agent images that no release needs, and
//! deletes their snapshots, in every region named. A dry run unless `--yes`.
//!
//! The candidates are the account's images named `elastic-ci-stack-*` (every OS and
//! architecture `cargo xtask ami` builds). An image is kept when
//!
//! - its `Version` tag is a release (`vX.Y.Z` or a pre-release such as `vX.Y.Z-rc.1`):
//!   published templates name it for good;
//! - it is one of the `--keep` newest images of its region, OS and architecture (the
//!   default branch's latest images, which branch templates use, among them);
//! - it is younger than `--older-than`;
//! - it is not `available` (a build or copy in progress, or a failed one EC2 cleans up).
//!
//! Everything else is deregistered, then its snapshots are deleted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use elastic_ci_aws::ec2::{ImageState, MachineImages, OwnedImage};
use elastic_ci_core::lifecycle::parse_rfc3339;

use crate::ami::validate_region;
use crate::flags::PruneArgs;
use crate::project;
use crate::version::ReleaseVersion;

/// The names of every image `cargo xtask ami` builds.
pub(crate) const IMAGE_NAME_PATTERN: &str = "elastic-ci-stack-*";

/// Why an image stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Keep {
    Release(String),
    Newest(usize),
    TooRecent,
    NotAvailable(String),
}

/// What pruning a region does to each image.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) delete: Vec<OwnedImage>,
    pub(crate) keep: Vec<(OwnedImage, Keep)>,
}

pub(crate) fn run(args: &PruneArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let older_than = parse_age(&args.older_than)?;
    let regions = if args.regions.is_empty() {
        vec![crate::ami::default_region(env)]
    } else {
        args.regions.clone()
    };
    for region in &regions {
        validate_region(region)?;
    }
    project::block_on(async {
        let images = crate::ami::machine_images(env).await;
        prune(&images, &regions, args.keep, older_than, args.yes, SystemTime::now()).await
    })
}

/// Plans and (with `yes`) carries out the pruning of every region, printing one line
/// per image deleted or to delete, and a summary.
pub(crate) async fn prune(
    images: &dyn MachineImages,
    regions: &[String],
    keep: usize,
    older_than: Duration,
    yes: bool,
    now: SystemTime,
) -> anyhow::Result<()> {
    let (mut n_deleted, mut n_kept) = (0usize, 0usize);
    for region in regions {
        let owned = images
            .owned_images(region, IMAGE_NAME_PATTERN)
            .await
            .with_context(|| format!("failed to list the images in {region}"))?;
        let plan = plan(owned, keep, older_than, now);
        n_kept += plan.keep.len();
        for image in &plan.delete {
            let snapshots = if image.snapshot_ids.is_empty() {
                "no snapshot".to_owned()
            } else {
                image.snapshot_ids.join(", ")
            };
            if !yes {
                println!(
                    "would deregister {region} {} ({}, {}) and delete {snapshots}",
                    image.image_id, image.name, image.creation_date
                );
                continue;
            }
            images
                .deregister_image(region, &image.image_id)
                .await
                .with_context(|| format!("failed to deregister {} in {region}", image.image_id))?;
            for snapshot in &image.snapshot_ids {
                images.delete_snapshot(region, snapshot).await.with_context(|| {
                    format!(
                        "failed to delete snapshot {snapshot} of {} in {region}",
                        image.image_id
                    )
                })?;
            }
            println!(
                "deregistered {region} {} ({}) and deleted {snapshots}",
                image.image_id, image.name
            );
        }
        n_deleted += plan.delete.len();
    }
    let verb = if yes { "deleted" } else { "would delete" };
    eprintln!(
        "{verb} {n_deleted} image{} in {} region{}, kept {n_kept}{}",
        plural(n_deleted),
        regions.len(),
        plural(regions.len()),
        if yes || n_deleted == 0 { "" } else { " (a dry run: pass --yes to delete)" }
    );
    Ok(())
}

/// Sorts one region's images into those to delete and those to keep (see the module
/// documentation).
pub(crate) fn plan(
    images: Vec<OwnedImage>,
    keep: usize,
    older_than: Duration,
    now: SystemTime,
) -> Plan {
    let mut plan = Plan::default();
    // Newest first, per OS and architecture (the name's second and third words).
    let mut groups: BTreeMap<(String, String), Vec<OwnedImage>> = BTreeMap::new();
    for image in images {
        if let Some(version) = image.tags.get("Version")
            && ReleaseVersion::parse(version).is_some()
        {
            let version = version.clone();
            plan.keep.push((image, Keep::Release(version)));
            continue;
        }
        if image.state != ImageState::Available {
            let state = image.state.to_string();
            plan.keep.push((image, Keep::NotAvailable(state)));
            continue;
        }
        let os = image.name.split('-').nth(3).unwrap_or_default().to_owned();
        groups.entry((os, image.architecture.clone())).or_default().push(image);
    }
    for (_, mut group) in groups {
        group.sort_by(|a, b| (&b.creation_date, &b.image_id).cmp(&(&a.creation_date, &a.image_id)));
        for (rank, image) in group.into_iter().enumerate() {
            let created = parse_rfc3339(&image.creation_date);
            // An image whose age cannot be told is kept: it may be new.
            let old_enough = created
                .and_then(|created| now.duration_since(created).ok())
                .is_some_and(|age| age >= older_than);
            if rank < keep {
                plan.keep.push((image, Keep::Newest(rank + 1)));
            } else if !old_enough {
                plan.keep.push((image, Keep::TooRecent));
            } else {
                plan.delete.push(image);
            }
        }
    }
    plan
}

/// `30d`, `12h`, `90m` or `0s`.
pub(crate) fn parse_age(text: &str) -> anyhow::Result<Duration> {
    let unit_secs = match text.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => 0,
    };
    let number = text.get(..text.len().saturating_sub(1)).unwrap_or_default();
    match number.parse::<u64>() {
        Ok(value) if unit_secs > 0 && number.chars().all(|c| c.is_ascii_digit()) => {
            Ok(Duration::from_secs(value.saturating_mul(unit_secs)))
        }
        _ => bail!("invalid age {text:?}: expected a whole number and s, m, h or d, such as 30d"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_images::TestImages;

    const DAY: Duration = Duration::from_secs(86_400);

    fn image(id: &str, arch: &str, created: &str, version: &str) -> OwnedImage {
        OwnedImage {
            image_id: id.to_owned(),
            name: format!("elastic-ci-stack-linux-{arch}-{version}-1"),
            state: ImageState::Available,
            architecture: arch.to_owned(),
            creation_date: created.to_owned(),
            snapshot_ids: vec![format!("snap-{id}")],
            tags: BTreeMap::from([("Version".to_owned(), version.to_owned())]),
        }
    }

    fn now() -> SystemTime {
        parse_rfc3339("2025-03-01T00:00:00Z").unwrap()
    }

    fn ids(images: &[OwnedImage]) -> Vec<&str> {
        images.iter().map(|image| image.image_id.as_str()).collect()
    }

    #[test]
    fn keeps_releases_the_newest_per_architecture_and_recent_images() {
        let images = vec![
            image("a1", "x86_64", "2025-01-01T00:00:00.000Z", "v1.0.0-1-gaaaaaaa"),
            image("a2", "x86_64", "2025-01-02T00:00:00.000Z", "v1.0.0-2-gbbbbbbb"),
            image("a3", "x86_64", "2025-02-28T00:00:00.000Z", "v1.0.0-3-gccccccc"),
            image("r1", "x86_64", "2024-01-01T00:00:00.000Z", "v1.0.0"),
            image("p1", "x86_64", "2024-01-01T00:00:00.000Z", "v1.1.0-rc.1"),
            image("b1", "arm64", "2025-01-01T00:00:00.000Z", "v1.0.0-1-gaaaaaaa"),
            image("b2", "arm64", "2025-01-03T00:00:00.000Z", "abc1234-dirty"),
        ];
        let plan = plan(images, 1, 30 * DAY, now());
        assert_eq!(ids(&plan.delete), ["b1", "a2", "a1"]);
        let kept: Vec<(&str, &Keep)> =
            plan.keep.iter().map(|(image, why)| (image.image_id.as_str(), why)).collect();
        assert!(kept.contains(&("r1", &Keep::Release("v1.0.0".to_owned()))), "{kept:?}");
        assert!(kept.contains(&("p1", &Keep::Release("v1.1.0-rc.1".to_owned()))), "{kept:?}");
        assert!(kept.contains(&("a3", &Keep::Newest(1))), "{kept:?}");
        assert!(kept.contains(&("b2", &Keep::Newest(1))), "{kept:?}");
        // Old enough to go, but younger than 30 days counted from now.
        let plan_week = super::plan(
            vec![image("a2", "x86_64", "2025-02-25T00:00:00.000Z", "x")],
            0,
            7 * DAY,
            now(),
        );
        assert_eq!(plan_week.keep[0].1, Keep::TooRecent);
    }

    #[test]
    fn keeps_images_that_are_not_available_or_whose_age_is_unknown() {
        let mut pending = image("x1", "x86_64", "2020-01-01T00:00:00.000Z", "dev");
        pending.state = ImageState::Pending;
        let unknown = image("x2", "x86_64", "yesterday", "dev");
        let plan = plan(vec![pending, unknown], 0, Duration::ZERO, now());
        assert!(plan.delete.is_empty(), "{:?}", plan.delete);
        assert_eq!(plan.keep[0].1, Keep::NotAvailable("pending".to_owned()));
        assert_eq!(plan.keep[1].1, Keep::TooRecent);
    }

    #[test]
    fn reads_ages_and_names_a_bad_one() {
        assert_eq!(parse_age("30d").unwrap(), 30 * DAY);
        assert_eq!(parse_age("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_age("0s").unwrap(), Duration::ZERO);
        for bad in ["", "d", "30", "-1d", "+1d", "1.5h", "3w"] {
            let error = parse_age(bad).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "invalid age {bad:?}: expected a whole number and s, m, h or d, such as 30d"
                )
            );
        }
    }

    #[tokio::test]
    async fn a_dry_run_deletes_nothing_and_yes_deregisters_before_deleting_snapshots() {
        let images = TestImages {
            owned: vec![
                image("a1", "x86_64", "2025-01-01T00:00:00.000Z", "dev"),
                image("a2", "x86_64", "2025-01-02T00:00:00.000Z", "dev"),
            ],
            ..TestImages::default()
        };
        let regions = ["us-east-1".to_owned(), "eu-west-1".to_owned()];
        prune(&images, &regions, 1, DAY, false, now()).await.unwrap();
        assert_eq!(
            *images.calls.lock().unwrap(),
            ["list us-east-1 elastic-ci-stack-*", "list eu-west-1 elastic-ci-stack-*"]
        );
        images.calls.lock().unwrap().clear();
        prune(&images, &regions[..1], 1, DAY, true, now()).await.unwrap();
        assert_eq!(
            *images.calls.lock().unwrap(),
            [
                "list us-east-1 elastic-ci-stack-*",
                "deregister us-east-1 a1",
                "delete us-east-1 snap-a1"
            ]
        );
    }
}
