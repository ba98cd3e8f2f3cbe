//! `cargo xtask release` only rehearses: the release itself is the pipeline's steps.

mod support;

use support::xtask;

#[test]
fn release_without_rehearse_is_refused_with_where_to_look() {
    let output = xtask().arg("release").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(
        stderr.trim(),
        "error: `cargo xtask release` only rehearses (--rehearse): a release is the pipeline's dist, ami, template and publish steps (see Releasing in the README)"
    );
}
