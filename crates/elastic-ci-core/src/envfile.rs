//! The env-file format shared by systemd's `EnvironmentFile=` and bash's `source`.
//!
//! Each assignment is written as `NAME="VALUE"` with exactly four characters escaped by
//! a backslash: `\`, `"`, `$` and `` ` ``. Newlines and every other character are
//! written as they are. Both consumers read that back byte for byte:
//!
//! - systemd's env-file parser, inside double quotes, turns `\` followed by one of
//!   `` "\`$ `` into that character and keeps every other character, newlines included;
//! - bash, inside double quotes, gives `\` the same meaning before those four characters,
//!   and with `$` and `` ` `` escaped nothing inside the quotes is expanded or run.
//!
//! So no value can end its quotes early, start another assignment, or run a command.
//! Names must match `[A-Za-z_][A-Za-z0-9_]*`, the rule both consumers apply. NUL cannot
//! be represented in either and is rejected.
//!
//! [`parse`] implements systemd's parser (quoted, unquoted and concatenated values,
//! comments, line continuations), so it reads what [`render`] writes and the
//! `KEY="value"` files users write by hand.

use std::fmt;

/// A valid environment variable name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    #[error(
        "invalid environment variable name {0:?}: expected a letter or '_' followed by letters, digits or '_'"
    )]
    InvalidName(String),
    #[error("the value of {0} contains a NUL byte, which environment variables cannot hold")]
    NulInValue(String),
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
}

impl EnvName {
    pub fn new(name: &str) -> Result<EnvName, EnvFileError> {
        if is_valid_name(name) {
            Ok(EnvName(name.to_owned()))
        } else {
            Err(EnvFileError::InvalidName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` is a valid variable name for both systemd and bash.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Quotes one value: `"` + value with `\`, `"`, `$` and `` ` `` escaped + `"`.
pub fn quote_value(name: &EnvName, value: &str) -> Result<String, EnvFileError> {
    if value.contains('\0') {
        return Err(EnvFileError::NulInValue(name.0.clone()));
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

/// Renders assignments, one per line, after an optional `#` comment header.
///
/// Every value is checked before anything is rendered, so an error never leaves a
/// partial file for the caller to write.
pub fn render<'a>(
    header: Option<&str>,
    entries: impl IntoIterator<Item = (&'a EnvName, &'a str)>,
) -> Result<String, EnvFileError> {
    let mut out = String::new();
    if let Some(header) = header {
        for line in header.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    for (name, value) in entries {
        out.push_str(name.as_str());
        out.push('=');
        out.push_str(&quote_value(name, value)?);
        out.push('\n');
    }
    Ok(out)
}

/// Parses an env file the way systemd's `EnvironmentFile=` does, returning the
/// assignments in file order (a later duplicate overrides an earlier one for systemd;
/// callers decide what to do with duplicates).
///
/// Unlike systemd, which skips a bad line with a warning, an invalid name or an
/// unterminated quote is an error naming the line.
pub fn parse(text: &str) -> Result<Vec<(EnvName, String)>, EnvFileError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        SingleQuote,
        DoubleQuote,
        DoubleQuoteEscape,
        Comment,
        CommentEscape,
    }

    let mut entries = Vec::new();
    let mut state = State::PreKey;
    let mut line = 1;
    let mut entry_line = 1;
    let mut key = String::new();
    let mut value = String::new();
    // Length of `value` up to its last non-whitespace character outside quotes, so that
    // trailing whitespace of an unquoted value can be dropped as systemd does.
    let mut value_keep = 0;

    let mut finish = |key: &mut String, value: &mut String, value_keep: usize, line: usize| {
        value.truncate(value_keep);
        let name = key.trim_end();
        if !is_valid_name(name) {
            return Err(EnvFileError::Syntax {
                line,
                reason: format!("invalid variable name {name:?}"),
            });
        }
        entries.push((EnvName(name.to_owned()), std::mem::take(value)));
        key.clear();
        Ok(())
    };

    for c in text.chars() {
        match state {
            State::PreKey => {
                if c == '#' || c == ';' {
                    state = State::Comment;
                } else if !c.is_whitespace() {
                    entry_line = line;
                    key.push(c);
                    state = State::Key;
                }
            }
            State::Key => {
                if c == '\n' || c == '\r' {
                    return Err(EnvFileError::Syntax {
                        line,
                        reason: format!("{:?} has no '=' and no value", key.trim_end()),
                    });
                } else if c == '=' {
                    state = State::PreValue;
                    value.clear();
                    value_keep = 0;
                } else {
                    key.push(c);
                }
            }
            State::PreValue => match c {
                '\n' | '\r' => {
                    finish(&mut key, &mut value, value_keep, entry_line)?;
                    state = State::PreKey;
                }
                '\'' => state = State::SingleQuote,
                '"' => state = State::DoubleQuote,
                '\\' => state = State::ValueEscape,
                c if c.is_whitespace() => {}
                c => {
                    value.push(c);
                    value_keep = value.len();
                    state = State::Value;
                }
            },
            State::Value => match c {
                '\n' | '\r' => {
                    finish(&mut key, &mut value, value_keep, entry_line)?;
                    state = State::PreKey;
                }
                '\\' => state = State::ValueEscape,
                c => {
                    value.push(c);
                    if !c.is_whitespace() {
                        value_keep = value.len();
                    }
                }
            },
            State::ValueEscape => {
                // A backslash-newline continues the line; any other escaped character
                // is taken literally.
                if c != '\n' && c != '\r' {
                    value.push(c);
                    value_keep = value.len();
                }
                state = State::Value;
            }
            State::SingleQuote => {
                if c == '\'' {
                    value_keep = value.len();
                    state = State::PreValue;
                } else {
                    value.push(c);
                }
            }
            State::DoubleQuote => match c {
                '"' => {
                    value_keep = value.len();
                    state = State::PreValue;
                }
                '\\' => state = State::DoubleQuoteEscape,
                c => value.push(c),
            },
            State::DoubleQuoteEscape => {
                match c {
                    '"' | '\\' | '`' | '$' => value.push(c),
                    '\n' => {}
                    c => {
                        value.push('\\');
                        value.push(c);
                    }
                }
                state = State::DoubleQuote;
            }
            State::Comment => match c {
                '\\' => state = State::CommentEscape,
                '\n' | '\r' => state = State::PreKey,
                _ => {}
            },
            State::CommentEscape => state = State::Comment,
        }
        if c == '\n' {
            line += 1;
        }
    }

    match state {
        State::PreKey | State::Comment | State::CommentEscape => {}
        State::Key => {
            return Err(EnvFileError::Syntax {
                line: entry_line,
                reason: format!("{:?} has no '=' and no value", key.trim_end()),
            });
        }
        State::SingleQuote | State::DoubleQuote | State::DoubleQuoteEscape => {
            return Err(EnvFileError::Syntax {
                line: entry_line,
                reason: format!("the value of {:?} has an unterminated quote", key.trim_end()),
            });
        }
        State::PreValue | State::Value | State::ValueEscape => {
            finish(&mut key, &mut value, value_keep, entry_line)?;
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use proptest::prelude::*;
    use test_case::test_case;

    use super::*;

    fn name(name: &str) -> EnvName {
        EnvName::new(name).unwrap()
    }

    fn parsed(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap().into_iter().map(|(name, value)| (name.0, value)).collect()
    }

    #[test]
    fn renders_hostile_values_inert() {
        let entries = [
            (name("PLAIN"), "http://proxy:3128"),
            (name("QUOTES"), r#"say "hi" and 'bye'"#),
            (name("SHELL"), "$(touch /tmp/pwned) `id` ${HOME} $HOME"),
            (name("BACKSLASH"), r"C:\path\ and \n and \"),
            (name("INJECT"), "x\"\nLD_PRELOAD=/tmp/evil.so\n#"),
            (name("UNICODE"), "héllo wörld ✓"),
            (name("EMPTY"), ""),
        ];
        let text = render(Some("written by a test"), entries.iter().map(|(n, v)| (n, *v))).unwrap();
        expect![[r#"
            # written by a test
            PLAIN="http://proxy:3128"
            QUOTES="say \"hi\" and 'bye'"
            SHELL="\$(touch /tmp/pwned) \`id\` \${HOME} \$HOME"
            BACKSLASH="C:\\path\\ and \\n and \\"
            INJECT="x\"
            LD_PRELOAD=/tmp/evil.so
            #"
            UNICODE="héllo wörld ✓"
            EMPTY=""
        "#]]
        .assert_eq(&text);
        let back = parsed(&text);
        assert_eq!(back.len(), entries.len());
        for ((n, v), (bn, bv)) in entries.iter().zip(&back) {
            assert_eq!((n.as_str(), *v), (bn.as_str(), bv.as_str()));
        }
    }

    #[test]
    fn rejects_nul_before_rendering_anything() {
        let entries = [(name("A"), "ok"), (name("B"), "a\0b")];
        let error = render(None, entries.iter().map(|(n, v)| (n, *v))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the value of B contains a NUL byte, which environment variables cannot hold"
        );
    }

    #[test_case("FOO", true)]
    #[test_case("_foo9", true)]
    #[test_case("9FOO", false)]
    #[test_case("FOO-BAR", false)]
    #[test_case("FOO.BAR", false)]
    #[test_case("", false)]
    #[test_case("ÜBER", false; "non ascii")]
    fn validates_names(candidate: &str, valid: bool) {
        assert_eq!(is_valid_name(candidate), valid);
        assert_eq!(EnvName::new(candidate).is_ok(), valid);
    }

    #[test_case("A=b", &[("A", "b")]; "unquoted")]
    #[test_case("  A = b  \n", &[("A", "b")]; "whitespace trimmed")]
    #[test_case("A='b  c'", &[("A", "b  c")]; "single quoted")]
    #[test_case("A='it\\'s'x", &[("A", "it\\s'x")]; "single quotes have no escapes")]
    #[test_case("A=\"a\\qb\"", &[("A", "a\\qb")]; "unknown escape kept")]
    #[test_case("A='x'\"y\" z", &[("A", "xyz")]; "concatenation")]
    #[test_case("A=a\\\nb", &[("A", "ab")]; "continuation")]
    #[test_case("# comment\n; other\n\nA=1\r\nB=2", &[("A", "1"), ("B", "2")]; "comments and crlf")]
    #[test_case("A=\nB", &[]; "missing equals is an error")]
    #[test_case("A=1\nA=2", &[("A", "1"), ("A", "2")]; "duplicates kept in order")]
    #[test_case("A=\"multi\nline\"", &[("A", "multi\nline")]; "newline in quotes")]
    fn parses_like_systemd(text: &str, expected: &[(&str, &str)]) {
        match parse(text) {
            Ok(entries) => {
                let entries: Vec<(&str, &str)> =
                    entries.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                assert_eq!(entries, expected);
            }
            Err(error) => assert!(expected.is_empty(), "{text:?}: {error}"),
        }
    }

    #[test_case("FOO-BAR=1", "line 1: invalid variable name \"FOO-BAR\""; "bad name")]
    #[test_case("A=1\nexport B=2", "line 2: invalid variable name \"export B\""; "export prefix")]
    #[test_case("A=1\nB=\"open", "line 2: the value of \"B\" has an unterminated quote"; "open quote")]
    #[test_case("JUSTAKEY", "line 1: \"JUSTAKEY\" has no '=' and no value"; "no equals")]
    fn reports_syntax_errors_with_line_numbers(text: &str, expected: &str) {
        assert_eq!(parse(text).unwrap_err().to_string(), expected);
    }

    proptest! {
        #[test]
        fn any_value_round_trips(
            values in proptest::collection::vec("[^\u{0}]*", 0..8),
            names in proptest::collection::vec("[A-Za-z_][A-Za-z0-9_]{0,12}", 8),
        ) {
            let entries: Vec<(EnvName, String)> =
                names.iter().zip(&values).map(|(n, v)| (name(n), v.clone())).collect();
            let text = render(Some("header"), entries.iter().map(|(n, v)| (n, v.as_str()))).unwrap();
            let back = parse(&text).unwrap();
            prop_assert_eq!(back, entries);
        }

        #[test]
        fn quoted_values_stay_on_one_assignment(value in "[\"'$`\\\\\n a-z=;]*") {
            let text = render(None, [(&name("ONLY"), value.as_str())]).unwrap();
            let back = parse(&text).unwrap();
            prop_assert_eq!(back.len(), 1);
            prop_assert_eq!(&back[0].1, &value);
        }
    }
}

/// Why a parameter did not become an assignment, or was overridden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterWarning {
    /// The last segment of the parameter's name is not a valid variable name.
    InvalidName { parameter: String, name: String },
    /// Two parameters map to the same variable; the later one wins.
    Duplicate { name: String, earlier: String, later: String },
}

impl fmt::Display for ParameterWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParameterWarning::InvalidName { parameter, name } => write!(
                f,
                "skipping parameter {parameter}: {name:?} is not a valid variable name (letters, digits and '_' only, not starting with a digit)"
            ),
            ParameterWarning::Duplicate { name, earlier, later } => {
                write!(f, "parameters {earlier} and {later} both set {name}: using {later}")
            }
        }
    }
}

/// Turns SSM parameters (full name, value) into env-file assignments: the variable
/// name is the last segment of the parameter name, ASCII-uppercased.
///
/// A name that is not a valid variable name is skipped; when several parameters map to
/// the same name the last one wins, in the place of the first. Each case yields a
/// warning that names parameters, never values.
pub fn assignments_from_parameters(
    parameters: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(EnvName, String)>, Vec<ParameterWarning>) {
    let mut assignments: Vec<(EnvName, String)> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    for (parameter, value) in parameters {
        let last_segment = parameter.rsplit('/').next().unwrap_or_default();
        let name = last_segment.to_ascii_uppercase();
        let Ok(name) = EnvName::new(&name) else {
            warnings.push(ParameterWarning::InvalidName { parameter, name });
            continue;
        };
        if let Some(index) = assignments.iter().position(|(existing, _)| *existing == name) {
            warnings.push(ParameterWarning::Duplicate {
                name: name.0.clone(),
                earlier: std::mem::replace(&mut sources[index], parameter.clone()),
                later: parameter,
            });
            assignments[index].1 = value;
        } else {
            assignments.push((name, value));
            sources.push(parameter);
        }
    }
    (assignments, warnings)
}

#[cfg(test)]
mod parameter_tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_come_from_the_last_segment_upper_cased() {
        let (assignments, warnings) = assignments_from_parameters([
            ("/bk/env/http_proxy".to_owned(), "http://p:3128".to_owned()),
            ("/bk/env/nested/No_Proxy".to_owned(), "169.254.169.254".to_owned()),
            ("/bk/env/foo-bar".to_owned(), "secret-1".to_owned()),
            ("/bk/env/a/FOO".to_owned(), "first".to_owned()),
            ("/bk/env/b/foo".to_owned(), "second".to_owned()),
        ]);
        let rendered: Vec<String> = assignments.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            rendered,
            ["HTTP_PROXY=http://p:3128", "NO_PROXY=169.254.169.254", "FOO=second"]
        );
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "skipping parameter /bk/env/foo-bar: \"FOO-BAR\" is not a valid variable name (letters, digits and '_' only, not starting with a digit)",
                "parameters /bk/env/a/FOO and /bk/env/b/foo both set FOO: using /bk/env/b/foo",
            ]
        );
        assert!(!warnings.iter().any(|w| w.contains("secret-1") || w.contains("second")));
    }

    proptest! {
        /// The env file comes from outside (an S3 object, a URL): any text, and text
        /// made of its own syntax, is parsed or refused, never a panic.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn parse_never_panics_on_env_like_text(
            text in "([A-Za-z_ ]{0,6}=?[\"'\\\\$`#; \ta-z\n]{0,12}\n?){0,12}"
        ) {
            let _ = parse(&text);
        }
    }
}
