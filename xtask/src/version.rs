//! Release versions: what a release tag looks like, and which builds are releases.
//!
//! A release tag is `vMAJOR.MINOR.PATCH`, optionally with a pre-release suffix of
//! letters, digits and dots (`v1.2.0-rc.1`). Every other build's version is what
//! `git describe --tags --long --always --dirty` says (`v1.2.0-3-gabc1234`, `abc1234-dirty`),
//! which never has that shape.

use anyhow::anyhow;

/// A release tag's parts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReleaseVersion {
    pub(crate) numbers: [u64; 3],
    /// The pre-release suffix after `-`, if any.
    pub(crate) pre_release: Option<String>,
}

impl ReleaseVersion {
    /// Parses `vX.Y.Z` or `vX.Y.Z-PRE`; `None` for anything else.
    pub(crate) fn parse(tag: &str) -> Option<ReleaseVersion> {
        let rest = tag.strip_prefix('v')?;
        let (release, pre_release) = match rest.split_once('-') {
            Some((release, pre)) => (release, Some(pre)),
            None => (rest, None),
        };
        let mut numbers = [0u64; 3];
        let mut parts = release.split('.');
        for number in &mut numbers {
            let part = parts.next()?;
            if part.is_empty() || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            *number = part.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        if let Some(pre) = pre_release {
            let valid = !pre.is_empty()
                && pre.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric())
                });
            if !valid {
                return None;
            }
        }
        Some(ReleaseVersion { numbers, pre_release: pre_release.map(str::to_owned) })
    }

    /// Whether this is a stable release (no pre-release suffix).
    pub(crate) fn is_stable(&self) -> bool {
        self.pre_release.is_none()
    }
}

/// Checks that a tag being released is a release tag.
pub(crate) fn validate_release_tag(tag: &str) -> anyhow::Result<ReleaseVersion> {
    ReleaseVersion::parse(tag).ok_or_else(|| {
        anyhow!(
            "invalid release tag {tag:?}: expected vMAJOR.MINOR.PATCH, such as v1.2.3 (or a pre-release such as v1.2.3-rc.1)"
        )
    })
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test_case("v1.2.3", Some(([1, 2, 3], None)); "stable")]
    #[test_case("v10.0.12", Some(([10, 0, 12], None)); "several digits")]
    #[test_case("v1.2.3-rc.1", Some(([1, 2, 3], Some("rc.1"))); "pre-release")]
    #[test_case("v1.2.3-3-gabc1234", None; "git describe of a later commit")]
    #[test_case("v1.2.3-dirty-x", None; "two suffixes")]
    #[test_case("v1.2", None; "two numbers")]
    #[test_case("v1.2.3.4", None; "four numbers")]
    #[test_case("1.2.3", None; "no v")]
    #[test_case("v1.2.x", None; "not a number")]
    #[test_case("v1.2.3-", None; "empty suffix")]
    #[test_case("release-1", None; "another scheme")]
    fn parses_release_tags(tag: &str, expected: Option<([u64; 3], Option<&str>)>) {
        let parsed = ReleaseVersion::parse(tag)
            .map(|version| (version.numbers, version.pre_release.clone()));
        assert_eq!(parsed, expected.map(|(numbers, pre)| (numbers, pre.map(str::to_owned))));
    }

    #[test]
    fn names_the_tag_it_refuses() {
        let error = validate_release_tag("v1.2").unwrap_err();
        assert!(error.to_string().starts_with("invalid release tag \"v1.2\": expected vMAJOR"));
        assert!(validate_release_tag("v1.2.0").unwrap().is_stable());
        assert!(!validate_release_tag("v1.2.0-beta").unwrap().is_stable());
    }
}
