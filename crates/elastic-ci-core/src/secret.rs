//! Secrets that cannot leak through `Debug` or `Display`, and the one rule for reading
//! the agent token from where it is stored.

use std::fmt;

/// A secret value such as an agent token or a registry password.
///
/// `Debug` and `Display` print a fixed placeholder, so a secret that ends up in a log
/// field, an error message or a panic message shows nothing of its contents. The only
/// way to read it is [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call this only where the value is handed to its consumer
    /// (a config file, a request header, a child's stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

/// An agent token that is empty once surrounding whitespace is removed. Names where the
/// token was read from, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the agent token in {place} is empty or only whitespace")]
pub struct BlankTokenError {
    /// Where the token was stored, such as `SSM parameter "/buildkite/token"`.
    pub place: String,
}

/// The agent token as stored in `place` (an SSM parameter, a variable), without the
/// surrounding whitespace that pasting a token often adds (a trailing newline). The boot
/// and the scaler both read the token through this, so the token the agent registers
/// with is the one the scaler polls with.
pub fn agent_token(stored: &Secret, place: &str) -> Result<Secret, BlankTokenError> {
    let token = stored.expose().trim();
    if token.is_empty() {
        return Err(BlankTokenError { place: place.to_owned() });
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(<redacted>))");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test_case("token\n", "token"; "a pasted trailing newline")]
    #[test_case("  token \r\n", "token"; "spaces and a carriage return")]
    #[test_case("\ttok en", "tok en"; "inner whitespace is kept")]
    fn agent_tokens_lose_surrounding_whitespace(stored: &str, expected: &str) {
        let token = agent_token(&Secret::new(stored), "SSM parameter \"/t\"").unwrap();
        assert_eq!(token.expose(), expected);
    }

    #[test]
    fn a_blank_agent_token_names_its_place_but_not_its_value() {
        let error = agent_token(&Secret::new(" \n\t"), "SSM parameter \"/t\"").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the agent token in SSM parameter \"/t\" is empty or only whitespace"
        );
        assert!(agent_token(&Secret::new(""), "BUILDKITE_AGENT_TOKEN").is_err());
    }
}
