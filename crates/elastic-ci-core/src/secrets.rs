//! The S3 secrets bucket: which keys are looked up, in which order, what they become
//! in the job, and the git-credentials format its credential helper serves.
//!
//! With `P` the per-pipeline prefix (`BUILDKITE_PLUGIN_S3_SECRETS_BUCKET_PREFIX`, or
//! else the pipeline slug):
//!
//! | category | keys, in order | effect |
//! |---|---|---|
//! | SSH keys | `P/private_ssh_key`, `P/id_rsa_github`, `private_ssh_key`, `id_rsa_github` | every key found is added to one ssh-agent, pipeline keys first |
//! | env files | `env`, `environment`, `P/env`, `P/environment` | evaluated by bash in this order, so the pipeline's win |
//! | git credentials | `git-credentials`, `P/git-credentials` | each found becomes a git credential helper |
//! | secret files | every key under `secret-files/` and `P/secret-files/` whose name ends in `_SECRET`, `_SECRET_KEY`, `_PASSWORD`, `_TOKEN` or `_ACCESS_KEY` | a variable named after the key's last segment, pipeline ones winning |

use crate::envfile::is_valid_name;
use crate::hooks::READ_ONLY_SHELL_VARIABLES;
use crate::secret::Secret;
use crate::shell::quote;

/// Name endings that make a secret file a variable, and that mark a variable's value
/// for redaction from the job log.
pub const SECRET_NAME_SUFFIXES: [&str; 5] =
    ["_SECRET", "_SECRET_KEY", "_PASSWORD", "_TOKEN", "_ACCESS_KEY"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsLayoutError {
    #[error(
        "no secrets prefix: set BUILDKITE_PLUGIN_S3_SECRETS_BUCKET_PREFIX or BUILDKITE_PIPELINE_SLUG"
    )]
    NoPrefix,
    #[error(
        "invalid BUILDKITE_PLUGIN_S3_SECRETS_BUCKET_PREFIX {0:?}: control characters are not allowed"
    )]
    InvalidPrefix(String),
}

/// The keys of one pipeline's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsLayout {
    prefix: String,
}

impl SecretsLayout {
    /// The layout for a job: `bucket_prefix` when set, otherwise the pipeline slug.
    /// Leading and trailing slashes are dropped, so `my-pipeline/` and `my-pipeline`
    /// name the same keys.
    pub fn new(
        bucket_prefix: Option<&str>,
        pipeline_slug: Option<&str>,
    ) -> Result<SecretsLayout, SecretsLayoutError> {
        fn pick(value: Option<&str>) -> Option<&str> {
            value.map(|v| v.trim_matches('/')).filter(|v| !v.is_empty())
        }
        let prefix =
            pick(bucket_prefix).or(pick(pipeline_slug)).ok_or(SecretsLayoutError::NoPrefix)?;
        if prefix.chars().any(char::is_control) {
            return Err(SecretsLayoutError::InvalidPrefix(prefix.to_owned()));
        }
        Ok(SecretsLayout { prefix: prefix.to_owned() })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn ssh_key_keys(&self) -> Vec<String> {
        let p = &self.prefix;
        vec![
            format!("{p}/private_ssh_key"),
            format!("{p}/id_rsa_github"),
            "private_ssh_key".to_owned(),
            "id_rsa_github".to_owned(),
        ]
    }

    pub fn env_file_keys(&self) -> Vec<String> {
        let p = &self.prefix;
        vec![
            "env".to_owned(),
            "environment".to_owned(),
            format!("{p}/env"),
            format!("{p}/environment"),
        ]
    }

    pub fn git_credentials_keys(&self) -> Vec<String> {
        vec!["git-credentials".to_owned(), format!("{}/git-credentials", self.prefix)]
    }

    /// The listing prefixes of secret files, global first. They end with `/`, so
    /// `secret-files-old/…` is not a secret file (the original matched it).
    pub fn secret_file_prefixes(&self) -> Vec<String> {
        vec!["secret-files/".to_owned(), format!("{}/secret-files/", self.prefix)]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret file {key:?}: {name:?} is not a usable variable name (letters, digits and '_', not starting with a digit)"
)]
pub struct SecretFileNameError {
    pub key: String,
    pub name: String,
}

/// The variable a secret file sets: `None` when the key is not a secret file (its name
/// does not end with one of [`SECRET_NAME_SUFFIXES`]), an error when its last segment is
/// not a valid variable name.
pub fn secret_file_variable(key: &str) -> Option<Result<String, SecretFileNameError>> {
    if !SECRET_NAME_SUFFIXES.iter().any(|suffix| key.ends_with(suffix)) {
        return None;
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    if is_valid_name(name) && !READ_ONLY_SHELL_VARIABLES.contains(&name) {
        Some(Ok(name.to_owned()))
    } else {
        Some(Err(SecretFileNameError { key: key.to_owned(), name: name.to_owned() }))
    }
}

/// The value a secret file's contents give its variable: the contents less one
/// trailing line ending (`\n` or `\r\n`), which editors and `echo` add and which is
/// never part of a password or token.
pub fn secret_file_value(contents: &str) -> &str {
    contents.strip_suffix('\n').map_or(contents, |rest| rest.strip_suffix('\r').unwrap_or(rest))
}

/// Whether a variable's value is handed to the agent's redactor: its name contains one
/// of [`SECRET_NAME_SUFFIXES`].
pub fn is_redacted_name(name: &str) -> bool {
    SECRET_NAME_SUFFIXES.iter().any(|suffix| name.contains(suffix))
}

/// A git credential helper command line that fetches `key` from `bucket` when git
/// asks: `!PROGRAM git-credential BUCKET REGION KEY`, every word shell-quoted (git runs
/// helpers through the shell).
pub fn credential_helper(program: &str, bucket: &str, region: &str, key: &str) -> String {
    format!("!{} git-credential {} {} {}", quote(program), quote(bucket), quote(region), quote(key))
}

/// `GIT_CONFIG_PARAMETERS` with one `credential.helper` entry per helper appended to
/// what the job already had. Git reads the variable as single-quoted words, each
/// `'name=value'`, with `'` written as `'\''`.
pub fn git_config_parameters(existing: Option<&str>, helpers: &[String]) -> String {
    let mut words: Vec<String> = existing
        .map(str::trim)
        .filter(|existing| !existing.is_empty())
        .map(str::to_owned)
        .into_iter()
        .collect();
    for helper in helpers {
        let entry = format!("credential.helper={helper}");
        words.push(format!("'{}'", entry.replace('\'', r"'\''")));
    }
    words.join(" ")
}

/// One line of a git-credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCredential {
    pub protocol: String,
    /// Host, with `:port` when the line has one.
    pub host: String,
    pub path: Option<String>,
    pub username: String,
    pub password: Secret,
}

/// A line of a git-credentials file that could not be read. It names the line by
/// number only: the line holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct GitCredentialsError {
    pub line: usize,
    pub reason: &'static str,
}

/// Parses a git-credentials file (`scheme://user:password@host[:port][/path]` per
/// line, user and password percent-encoded as git's credential store writes them).
/// Blank lines and `#` comments are skipped; a last line without a newline counts.
pub fn parse_git_credentials(text: &str) -> (Vec<GitCredential>, Vec<GitCredentialsError>) {
    let mut credentials = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_credential_line(line) {
            Ok(credential) => credentials.push(credential),
            Err(reason) => errors.push(GitCredentialsError { line: index + 1, reason }),
        }
    }
    (credentials, errors)
}

fn parse_credential_line(line: &str) -> Result<GitCredential, &'static str> {
    let (scheme, rest) = line.split_once("://").ok_or("expected scheme://user:password@host")?;
    if scheme.is_empty()
        || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err("the scheme is not a URL scheme");
    }
    // The last `@` ends the user information, so a raw `@` or `/` in a password that
    // was written by hand without percent-encoding still parses.
    let (userinfo, host_and_path) = rest.rsplit_once('@').ok_or("no user:password@ part")?;
    let (user, password) = userinfo.split_once(':').ok_or("no password after the user name")?;
    let (host, path) = match host_and_path.split_once('/') {
        Some((host, path)) => (host, Some(path).filter(|path| !path.is_empty())),
        None => (host_and_path, None),
    };
    if host.is_empty() {
        return Err("no host");
    }
    let username = percent_decode(user).ok_or("the user name is not UTF-8 text")?;
    let password = percent_decode(password).ok_or("the password is not UTF-8 text")?;
    if username.is_empty() || password.is_empty() {
        return Err("the user name or the password is empty");
    }
    if [&username, &password].iter().any(|value| value.contains(['\n', '\r', '\0'])) {
        return Err("the user name or the password contains a line break or NUL");
    }
    Ok(GitCredential {
        protocol: scheme.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        path: path.map(str::to_owned),
        username,
        password: Secret::new(password),
    })
}

/// Decodes `%XX` escapes; anything else, including a `%` not followed by two hex
/// digits, is kept as it is. `None` when the result is not UTF-8.
fn percent_decode(input: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(input).decode_utf8().ok()?;
    Some(decoded.into_owned())
}

/// What git asks a credential helper for (`key=value` lines on its stdin).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialRequest {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub username: Option<String>,
}

/// Parses git's request, up to the first blank line.
pub fn parse_credential_request(text: &str) -> CredentialRequest {
    let mut request = CredentialRequest::default();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = Some(value.to_owned());
        match key {
            "protocol" => request.protocol = value.map(|v| v.to_ascii_lowercase()),
            "host" => request.host = value.map(|v| v.to_ascii_lowercase()),
            "path" => request.path = value,
            "username" => request.username = value,
            _ => {}
        }
    }
    request
}

/// The first credential that fits git's request: same protocol and host (with port),
/// the same user name when git names one, the same path when both have one.
pub fn select_credential<'a>(
    credentials: &'a [GitCredential],
    request: &CredentialRequest,
) -> Option<&'a GitCredential> {
    let fits = |wanted: &Option<String>, have: &str| wanted.as_deref().is_none_or(|w| w == have);
    credentials.iter().find(|credential| {
        fits(&request.protocol, &credential.protocol)
            && fits(&request.host, &credential.host)
            && fits(&request.username, &credential.username)
            && match (&request.path, &credential.path) {
                (Some(wanted), Some(have)) => wanted.trim_matches('/') == have.trim_matches('/'),
                _ => true,
            }
    })
}

/// The answer for git: `protocol`, `host`, `username` and `password` lines.
pub fn render_credential(credential: &GitCredential) -> String {
    format!(
        "protocol={}\nhost={}\nusername={}\npassword={}\n",
        credential.protocol,
        credential.host,
        credential.username,
        credential.password.expose()
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use test_case::test_case;

    use super::*;

    #[test]
    fn lays_out_keys_in_lookup_order() {
        let layout = SecretsLayout::new(None, Some("my-pipeline")).unwrap();
        assert_eq!(
            layout.ssh_key_keys(),
            [
                "my-pipeline/private_ssh_key",
                "my-pipeline/id_rsa_github",
                "private_ssh_key",
                "id_rsa_github"
            ]
        );
        assert_eq!(
            layout.env_file_keys(),
            ["env", "environment", "my-pipeline/env", "my-pipeline/environment"]
        );
        assert_eq!(
            layout.git_credentials_keys(),
            ["git-credentials", "my-pipeline/git-credentials"]
        );
        assert_eq!(layout.secret_file_prefixes(), ["secret-files/", "my-pipeline/secret-files/"]);
    }

    #[test_case(Some("shared/team"), Some("slug"), Ok("shared/team"); "prefix wins")]
    #[test_case(Some(""), Some("slug"), Ok("slug"); "empty prefix falls back to the slug")]
    #[test_case(Some("/team/"), None, Ok("team"); "slashes trimmed")]
    #[test_case(None, None, Err(SecretsLayoutError::NoPrefix); "nothing")]
    #[test_case(Some("/"), Some(""), Err(SecretsLayoutError::NoPrefix); "only slashes")]
    #[test_case(Some("a\nb"), None, Err(SecretsLayoutError::InvalidPrefix("a\nb".into())); "control character")]
    fn resolves_the_prefix(
        prefix: Option<&str>,
        slug: Option<&str>,
        expected: Result<&str, SecretsLayoutError>,
    ) {
        let layout = SecretsLayout::new(prefix, slug);
        assert_eq!(layout.as_ref().map(SecretsLayout::prefix).map_err(Clone::clone), expected);
    }

    #[test_case("secret-files/DB_PASSWORD", Some(Ok("DB_PASSWORD")); "global")]
    #[test_case("p/secret-files/nested/API_TOKEN", Some(Ok("API_TOKEN")); "nested uses the basename")]
    #[test_case("secret-files/README", None; "not a secret name")]
    #[test_case("secret-files/my-app_TOKEN", Some(Err("my-app_TOKEN")); "invalid name")]
    #[test_case("secret-files/$(id)_TOKEN", Some(Err("$(id)_TOKEN")); "hostile name")]
    fn names_secret_files(key: &str, expected: Option<Result<&str, &str>>) {
        let result = secret_file_variable(key).map(|r| r.map_err(|e| e.name));
        assert_eq!(result, expected.map(|r| r.map(str::to_owned).map_err(str::to_owned)));
    }

    #[test]
    fn secret_file_values_lose_one_line_ending() {
        assert_eq!(secret_file_value("s3cr3t\n"), "s3cr3t");
        assert_eq!(secret_file_value("s3cr3t\r\n"), "s3cr3t");
        assert_eq!(secret_file_value("two\n\n"), "two\n");
        assert_eq!(secret_file_value("$HOME `id`"), "$HOME `id`");
    }

    #[test]
    fn redacts_names_containing_a_suffix() {
        assert!(is_redacted_name("DOCKER_LOGIN_PASSWORD"));
        assert!(is_redacted_name("MY_TOKEN_FILE"));
        assert!(!is_redacted_name("DOCKER_LOGIN_USER"));
    }

    #[test]
    fn builds_git_config_parameters() {
        let helper = credential_helper(
            "/usr/local/bin/elastic-ci-hooks",
            "bucket",
            "us-east-1",
            "it's/git-credentials",
        );
        assert_eq!(
            helper,
            r"!/usr/local/bin/elastic-ci-hooks git-credential bucket us-east-1 'it'\''s/git-credentials'"
        );
        let value = git_config_parameters(Some("'core.autocrlf=false'"), &[helper]);
        assert_eq!(
            value,
            r"'core.autocrlf=false' 'credential.helper=!/usr/local/bin/elastic-ci-hooks git-credential bucket us-east-1 '\''it'\''\'\'''\''s/git-credentials'\'''"
        );
        assert_eq!(git_config_parameters(None, &[]), "");
    }

    #[test]
    fn parses_credentials_files() {
        let text = "https://user:p%40ss%2Fw0rd@github.com\n# comment\n\nhttps://bot:raw@pass/word@git.example.com:8443/org\nnot a url\nhttps://nopassword@example.com\nhttps://last:line@last.example.com";
        let (credentials, errors) = parse_git_credentials(text);
        let summary: Vec<(&str, &str, Option<&str>, &str, &str)> = credentials
            .iter()
            .map(|c| {
                (
                    c.protocol.as_str(),
                    c.host.as_str(),
                    c.path.as_deref(),
                    c.username.as_str(),
                    c.password.expose(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("https", "github.com", None, "user", "p@ss/w0rd"),
                ("https", "git.example.com:8443", Some("org"), "bot", "raw@pass/word"),
                ("https", "last.example.com", None, "last", "line"),
            ]
        );
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 5: expected scheme://user:password@host",
                "line 6: no password after the user name"
            ]
        );
    }

    #[test]
    fn refuses_line_breaks_in_decoded_values() {
        let (credentials, errors) = parse_git_credentials("https://u:a%0Ahost=evil@example.com\n");
        assert!(credentials.is_empty());
        assert_eq!(
            errors[0].to_string(),
            "line 1: the user name or the password contains a line break or NUL"
        );
    }

    #[test]
    fn selects_by_protocol_host_and_user() {
        let (credentials, _) = parse_git_credentials(
            "https://a:1@github.com\nhttps://b:2@gitlab.com\nhttps://c:3@github.com:8443\nhttps://d:4@github.com/org/repo.git\n",
        );
        let request = |text: &str| parse_credential_request(text);
        let pick = |text: &str| {
            select_credential(&credentials, &request(text)).map(|c| c.username.as_str())
        };
        assert_eq!(pick("protocol=https\nhost=gitlab.com\n\n"), Some("b"));
        assert_eq!(pick("protocol=https\nhost=GitHub.com\n"), Some("a"));
        assert_eq!(pick("protocol=https\nhost=github.com:8443\n"), Some("c"));
        assert_eq!(pick("protocol=http\nhost=github.com\n"), None);
        assert_eq!(pick("protocol=https\nhost=github.com\nusername=d\n"), Some("d"));
        assert_eq!(pick("protocol=https\nhost=bitbucket.org\n"), None);
        let chosen =
            select_credential(&credentials, &request("protocol=https\nhost=gitlab.com\n")).unwrap();
        assert_eq!(
            render_credential(chosen),
            "protocol=https\nhost=gitlab.com\nusername=b\npassword=2\n"
        );
    }

    proptest! {
        /// A git-credentials object and git's request are outside input: any text is
        /// parsed (bad lines reported), never a panic.
        #[test]
        fn git_credentials_parsers_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            url_like in "(https?|ssh)?:?/{0,3}([a-z%:@]{0,8}@)?[a-z.:%0-9]{0,10}(/[a-z%]{0,6}){0,3}\n?",
        ) {
            for text in [String::from_utf8_lossy(&bytes).into_owned(), url_like] {
                let (credentials, _errors) = parse_git_credentials(&text);
                let request = parse_credential_request(&text);
                if let Some(credential) = select_credential(&credentials, &request) {
                    let _ = render_credential(credential);
                }
            }
        }

        /// The layout's inputs come from the job environment: any prefix or slug
        /// gives keys under it or an error, never a panic.
        #[test]
        fn the_layout_never_panics(prefix in proptest::option::of(".*"), slug in proptest::option::of(".*"), key in ".*") {
            if let Ok(layout) = SecretsLayout::new(prefix.as_deref(), slug.as_deref()) {
                let keys = [
                    layout.ssh_key_keys(),
                    layout.env_file_keys(),
                    layout.git_credentials_keys(),
                    layout.secret_file_prefixes(),
                ];
                for key in keys.iter().flatten() {
                    prop_assert!(!key.chars().any(char::is_control));
                }
            }
            let _ = secret_file_variable(&key);
            let _ = secret_file_value(&key);
            let _ = is_redacted_name(&key);
        }
    }
}
