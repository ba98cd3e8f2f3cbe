//! Terminal output outside the command's data: the one error line on stderr.

use std::io::Write;

/// Writes one line to stderr, ignoring failures (there is nowhere left to report them).
pub(crate) fn error_line(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Whether the failure is stdout closed by its reader.
pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes a question to stderr without a newline.
pub(crate) fn prompt(question: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
}
