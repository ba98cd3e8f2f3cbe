//! A process environment as text: what each binary's `from_env` shim reads.
//!
//! `std::env::vars()` panics on a variable whose name or value is not UTF-8, and an
//! instance binary's environment is partly written by jobs (the agent's env file, a
//! hook's job environment), so a job could crash `terminate` that way. The shims read
//! `vars_os()` instead and hand it to [`from_os_vars`], which keeps every UTF-8
//! variable and names the others, for the binary to warn about once its logging is up.

use std::collections::HashMap;
use std::ffi::OsString;

/// The UTF-8 variables of an environment, and the names of those left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEnvironment {
    pub vars: HashMap<String, String>,
    /// Names (lossily converted) of the variables whose name or value is not UTF-8.
    pub skipped: Vec<String>,
}

impl TextEnvironment {
    /// One warning line per variable left out, naming it.
    pub fn warnings(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|name| {
                format!("ignoring environment variable {name:?}: its name or value is not UTF-8")
            })
            .collect()
    }
}

/// Splits `vars` (as `std::env::vars_os()` yields them) into the UTF-8 variables and
/// the names of the others. Values are never kept for skipped variables: they may be
/// secrets.
pub fn from_os_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> TextEnvironment {
    let mut environment = TextEnvironment { vars: HashMap::new(), skipped: Vec::new() };
    for (name, value) in vars {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => {
                environment.vars.insert(name, value);
            }
            (Ok(name), Err(_)) => environment.skipped.push(name),
            (Err(name), _) => environment.skipped.push(name.to_string_lossy().into_owned()),
        }
    }
    environment.skipped.sort();
    environment
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use proptest::prelude::*;

    use super::*;

    fn os(bytes: &[u8]) -> OsString {
        OsString::from_vec(bytes.to_vec())
    }

    #[test]
    fn keeps_text_and_names_the_rest() {
        let environment = from_os_vars([
            (os(b"PATH"), os(b"/usr/bin")),
            (os(b"BAD_VALUE"), os(b"\xff\xfe")),
            (os(b"BAD_\xffNAME"), os(b"ok")),
            (os(b"EMPTY"), os(b"")),
        ]);
        assert_eq!(
            environment.vars,
            HashMap::from([
                ("PATH".to_owned(), "/usr/bin".to_owned()),
                ("EMPTY".to_owned(), String::new())
            ])
        );
        assert_eq!(environment.skipped, ["BAD_VALUE", "BAD_\u{fffd}NAME"]);
        assert_eq!(
            environment.warnings()[0],
            "ignoring environment variable \"BAD_VALUE\": its name or value is not UTF-8"
        );
    }

    proptest! {
        /// Arbitrary bytes never panic, and every variable is either kept or named.
        #[test]
        fn never_panics_and_names_every_variable_left_out(
            vars in proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..8),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ),
                0..10,
            )
        ) {
            let environment =
                from_os_vars(vars.iter().map(|(name, value)| (os(name), os(value))));
            for (name, value) in &vars {
                match (std::str::from_utf8(name), std::str::from_utf8(value)) {
                    (Ok(name), Ok(_)) => prop_assert!(environment.vars.contains_key(name)),
                    _ => prop_assert!(environment
                        .skipped
                        .contains(&String::from_utf8_lossy(name).into_owned())),
                }
            }
        }
    }
}
