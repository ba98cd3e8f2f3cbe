//! `fix-permissions`: argument validation through the binary, and the walk itself
//! through the library on a builds directory of the test's own (the binary's is fixed
//! to /var/lib/buildkite-agent/builds on purpose).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use elastic_ci_bootstrap::fixperms::{BUILDS_DIR, fix_tree};

use crate::{assert_help_mentions, command, stderr};

fn run(args: &[&str]) -> std::process::Output {
    command(&HashMap::new()).arg("fix-permissions").args(args).output().unwrap()
}

#[test]
fn refuses_bad_arguments_with_the_original_exit_statuses() {
    let output = run(&["agent", "org"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "Usage: fix-permissions AGENT_DIR ORG_DIR PIPELINE_DIR\n");
    for args in [
        ["..", "org", "pipe"],
        ["agent", "../..", "etc"],
        ["agent", "org", "pipe/../../x"],
        ["agent", ".", "pipe"],
        ["", "org", "pipe"],
        ["/etc", "org", "pipe"],
        ["--root", "/", "x"],
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).starts_with("Invalid argument \""),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn nothing_checked_out_yet_is_success() {
    // No builds directory on a test machine (and never a test's own: it is fixed).
    assert!(!Path::new(BUILDS_DIR).join("agent-x/org-x/pipeline-x").exists());
    let output = run(&["agent-x", "org-x", "pipeline-x"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

fn owner(path: &Path) -> (u32, u32) {
    let metadata = std::fs::symlink_metadata(path).unwrap();
    (metadata.uid(), metadata.gid())
}

/// Whether the test may change owners to arbitrary ids.
fn privileged() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn gives_the_checkout_back_without_following_links() {
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let checkout = base.path().join("agent-1/org/pipe");
    std::fs::create_dir_all(checkout.join("src/deep/er")).unwrap();
    std::fs::write(checkout.join("src/deep/er/file"), "x").unwrap();
    std::fs::write(checkout.join("top"), "x").unwrap();
    std::fs::write(outside.path().join("secret"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), checkout.join("link-to-secret"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), checkout.join("src/link-to-dir")).unwrap();
    std::fs::hard_link(outside.path().join("secret"), checkout.join("hard-link")).unwrap();
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let target = if privileged() {
        // Root-owned leftovers, as a container leaves them.
        for path in ["", "src", "src/deep/er/file", "top", "link-to-secret", "hard-link"] {
            std::os::unix::fs::lchown(checkout.join(path), Some(0), Some(0)).unwrap();
        }
        (4242, 4343)
    } else {
        me
    };
    let before_outside = owner(&outside.path().join("secret"));
    let stats = fix_tree(base.path(), ["agent-1", "org", "pipe"], || Ok(target)).unwrap();
    for path in [
        "",
        "src",
        "src/deep",
        "src/deep/er",
        "src/deep/er/file",
        "top",
        "link-to-secret",
        "src/link-to-dir",
    ] {
        assert_eq!(owner(&checkout.join(path)), target, "{path}");
    }
    // Neither a link's target nor a hard-linked file changes hands.
    assert_eq!(owner(&outside.path().join("secret")), before_outside);
    assert_eq!(owner(outside.path()), me);
    assert_eq!(
        stats.n_hard_links_skipped.load(std::sync::atomic::Ordering::Relaxed),
        u64::from(privileged())
    );
    assert_eq!(owner(&base.path().join("agent-1")), me);
}

#[test]
fn refuses_a_symlink_anywhere_on_the_way_to_the_checkout() {
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("org/pipe")).unwrap();
    std::os::unix::fs::symlink(outside.path(), base.path().join("agent-1")).unwrap();
    std::fs::create_dir_all(base.path().join("agent-2/org")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("org/pipe"),
        base.path().join("agent-2/org/pipe"),
    )
    .unwrap();
    std::fs::create_dir_all(base.path().join("agent-3/org")).unwrap();
    std::fs::write(base.path().join("agent-3/org/pipe"), "not a directory").unwrap();
    for agent in ["agent-1", "agent-2", "agent-3"] {
        let failure = fix_tree(base.path(), [agent, "org", "pipe"], || Ok((1, 1))).unwrap_err();
        assert_eq!(failure.code, 3, "{agent}: {failure:?}");
        assert!(failure.message.starts_with("Couldn't open "), "{failure:?}");
    }
    // A missing checkout or builds directory is not an error; a missing user is 4.
    assert!(fix_tree(base.path(), ["agent-9", "org", "pipe"], || Ok((1, 1))).is_ok());
    assert!(fix_tree(&base.path().join("missing"), ["a", "b", "c"], || Ok((1, 1))).is_ok());
    std::fs::create_dir_all(base.path().join("agent-4/org/pipe")).unwrap();
    let failure =
        fix_tree(base.path(), ["agent-4", "org", "pipe"], || Err("no user".into())).unwrap_err();
    assert_eq!((failure.code, failure.message.as_str()), (4, "no user"));
}

#[test]
fn help_lists_exit_statuses() {
    assert_help_mentions(
        &["fix-permissions"],
        &[
            "sudo",
            "never following a symlink",
            "1 wrong",
            "2 invalid",
            "3 the checkout",
            "4 no buildkite-agent",
            "5 a",
        ],
    );
}
