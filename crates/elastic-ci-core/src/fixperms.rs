//! `fix-permissions AGENT ORG PIPELINE`: the rules that keep a command run through
//! sudo by every job from changing the owner of anything but one checkout.

/// The exit statuses jobs see (the original program's, kept as they are).
pub mod exit {
    /// Wrong number of arguments.
    pub const USAGE: u8 = 1;
    /// An argument is not one plain directory name.
    pub const INVALID_ARGUMENT: u8 = 2;
    /// The checkout cannot be opened safely (a symlink, not a directory, a mount).
    pub const OPEN: u8 = 3;
    /// The agent user does not exist.
    pub const USER: u8 = 4;
    /// Changing an owner failed.
    pub const CHOWN: u8 = 5;
}

/// Why the arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixPermsArgsError {
    #[error("Usage: {program} AGENT_DIR ORG_DIR PIPELINE_DIR")]
    Usage { program: String },
    #[error("Invalid argument {0:?}")]
    InvalidArgument(String),
}

impl FixPermsArgsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            FixPermsArgsError::Usage { .. } => exit::USAGE,
            FixPermsArgsError::InvalidArgument(_) => exit::INVALID_ARGUMENT,
        }
    }
}

/// The three directory names, validated: each must be exactly one path component
/// equal to its lexically cleaned form, so `""`, `.`, `..`, `a/b`, `./a` and `a/` are
/// all refused.
pub fn validate_args<'a>(
    program: &str,
    args: &'a [String],
) -> Result<[&'a str; 3], FixPermsArgsError> {
    let [agent, org, pipeline] = args else {
        return Err(FixPermsArgsError::Usage { program: program.to_owned() });
    };
    for arg in [agent, org, pipeline] {
        if !is_single_component(arg) {
            return Err(FixPermsArgsError::InvalidArgument(arg.clone()));
        }
    }
    Ok([agent, org, pipeline])
}

/// One plain directory name.
pub fn is_single_component(arg: &str) -> bool {
    !arg.is_empty() && arg != "." && arg != ".." && !arg.contains('/') && !arg.contains('\0')
}

/// The remark the heartbeat adds when the walk is slow.
pub fn slowness(files_per_sec: u64, cpu_percent_per_core: u64) -> Option<&'static str> {
    if files_per_sec < 100 {
        Some("barely making progress (check for disk hang or severe EBS throttling)")
    } else if files_per_sec < 2000 && cpu_percent_per_core < 25 {
        Some("EBS-bound (mostly blocked on disk I/O)")
    } else {
        None
    }
}

/// The advice printed once after two slow heartbeats in a row.
pub const SLOW_ADVICE: &str =
    "set DOCKER_USERNS_REMAP=true to skip fix-perms entirely, or provision more EBS IOPS";

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test_case(&["agent-1", "org", "pipe"], Ok(()))]
    #[test_case(&["agent-1", "org"], Err(1))]
    #[test_case(&["a", "b", "c", "d"], Err(1))]
    #[test_case(&["", "org", "pipe"], Err(2))]
    #[test_case(&["agent", ".", "pipe"], Err(2))]
    #[test_case(&["agent", "org", ".."], Err(2))]
    #[test_case(&["agent/", "org", "pipe"], Err(2))]
    #[test_case(&["./agent", "org", "pipe"], Err(2))]
    #[test_case(&["agent", "o/../rg", "pipe"], Err(2))]
    #[test_case(&["agent", "org", "/etc"], Err(2))]
    fn validates(list: &[&str], expected: Result<(), u8>) {
        let args = args(list);
        let got = validate_args("fix", &args).map(|_| ()).map_err(|error| error.exit_code());
        assert_eq!(got, expected);
    }

    #[test]
    fn messages() {
        let args = args(&["a", "..", "c"]);
        assert_eq!(validate_args("fix", &args).unwrap_err().to_string(), "Invalid argument \"..\"");
        assert_eq!(
            validate_args("fix", &[]).unwrap_err().to_string(),
            "Usage: fix AGENT_DIR ORG_DIR PIPELINE_DIR"
        );
    }

    #[test]
    fn slowness_verdicts() {
        assert_eq!(
            slowness(50, 90),
            Some("barely making progress (check for disk hang or severe EBS throttling)")
        );
        assert_eq!(slowness(1000, 10), Some("EBS-bound (mostly blocked on disk I/O)"));
        assert_eq!(slowness(1000, 50), None);
        assert_eq!(slowness(5000, 5), None);
    }
}
