//! Shared by the release-task tests: the xtask binary, and throwaway git repositories.

#![allow(dead_code, reason = "each test binary uses its own part of the support module")]

use std::path::Path;
use std::process::Command;

/// The xtask binary under test.
pub(crate) fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

/// A git repository in a temporary directory, on branch `main`.
pub(crate) struct GitRepo {
    dir: tempfile::TempDir,
}

impl GitRepo {
    pub(crate) fn new() -> GitRepo {
        let repo = GitRepo { dir: tempfile::tempdir().unwrap() };
        repo.git(&["init", "--quiet", "--initial-branch", "main"]);
        repo
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository with a fixed identity; returns its trimmed output.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Commits a change and returns the commit's id.
    pub(crate) fn commit(&self, message: &str) -> String {
        std::fs::write(self.path().join("file.txt"), message).unwrap();
        self.git(&["add", "file.txt"]);
        self.git(&["commit", "--quiet", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}
