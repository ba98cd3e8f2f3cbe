//! The commands' own words: the dry-run plan on stdout (data), and the messages that
//! `check-disk` and `fix-permissions` print on stderr for job logs, word for word as
//! the original scripts did. Everything else goes through `tracing`.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the CLI output module")]

/// One line on stderr.
pub(crate) fn say(line: &str) {
    eprintln!("{line}");
}

/// Text on stdout.
pub(crate) fn print(text: &str) {
    print!("{text}");
}
