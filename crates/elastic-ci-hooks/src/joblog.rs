//! The job log: what the hooks tell the person reading a build's output.
//!
//! The agent shows a hook's stderr in the job log and reads a few line prefixes as
//! structure: `~~~ title` starts a collapsed section, `--- title` an expanded one, and
//! a line `^^^ +++` expands the section above it (used before warnings and errors so
//! they are not hidden). This is the hooks' one output module: everything else logs
//! through it or through `tracing`.
//!
//! Nothing written here may contain a secret value: callers pass names of keys,
//! variables and registries, byte counts and process ids, never contents.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// Where job-log lines go: stderr in production, a buffer in tests.
#[derive(Clone)]
pub struct JobLog {
    sink: Arc<Mutex<dyn Write + Send>>,
}

impl std::fmt::Debug for JobLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobLog")
    }
}

impl JobLog {
    /// The process's stderr, which the agent copies into the job log.
    pub fn stderr() -> JobLog {
        JobLog { sink: Arc::new(Mutex::new(std::io::stderr())) }
    }

    /// A log kept in memory, returned with the buffer it writes to.
    pub fn in_memory() -> (JobLog, Arc<Mutex<Vec<u8>>>) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (JobLog { sink: Arc::new(Mutex::new(SharedBuffer(Arc::clone(&buffer)))) }, buffer)
    }

    /// A plain line.
    pub(crate) fn line(&self, text: &str) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        // A job log that cannot be written (the agent went away) is not a reason to
        // fail the hook: the work matters more than its commentary.
        let _ = writeln!(sink, "{text}");
        let _ = sink.flush();
    }

    /// `~~~ title`: a collapsed section.
    pub(crate) fn section(&self, title: &str) {
        self.line(&format!("~~~ {title}"));
    }

    /// `--- title`: an expanded section.
    pub(crate) fn open_section(&self, title: &str) {
        self.line(&format!("--- {title}"));
    }

    /// A warning, with the section it is in expanded.
    pub fn warning(&self, text: &str) {
        self.line("^^^ +++");
        self.line(&format!(":warning: {text}"));
    }

    /// An error, with the section it is in expanded.
    pub fn error(&self, text: &str) {
        self.line("^^^ +++");
        self.line(&format!(":rotating_light: {text}"));
    }
}

struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_agent_section_markers() {
        let (log, buffer) = JobLog::in_memory();
        log.section("Collapsed");
        log.open_section("Expanded");
        log.line("plain");
        log.warning("careful");
        log.error("broken");
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "~~~ Collapsed\n--- Expanded\nplain\n^^^ +++\n:warning: careful\n^^^ +++\n:rotating_light: broken\n"
        );
    }
}
