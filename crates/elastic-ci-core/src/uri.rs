//! Sources the stack fetches configuration from: `s3://`, `ssm:`, `https://`, `http://`
//! and `file://`; and the rule for the Buildkite agent API endpoint
//! ([`parse_agent_endpoint`]).
//!
//! Parsing validates everything that can be validated without I/O, so a malformed
//! source is rejected before anything is downloaded or written.

use std::fmt;
use std::str::FromStr;

use url::Url;

/// Where a file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUri {
    /// One S3 object.
    S3(S3Uri),
    /// Every SSM parameter under a path, recursively.
    Ssm(SsmPath),
    /// An HTTPS (or, with a warning, plain HTTP) URL.
    Http(HttpUrl),
    /// An absolute path on the local file system.
    File(String),
}

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

/// `ssm:/a/path`: a parameter hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmPath(String);

/// An `https://` or `http://` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid source {shown:?}: {reason}")]
pub struct SourceUriError {
    /// The input with any credentials and query string removed.
    shown: String,
    reason: String,
}

const EXPECTED_SCHEMES: &str =
    "expected s3://BUCKET/KEY, ssm:/PATH, https://…, http://… or file:///PATH";

impl SourceUri {
    pub fn new(input: &str) -> Result<SourceUri, SourceUriError> {
        let fail = |reason: String| SourceUriError { shown: redact(input), reason };
        if input.is_empty() {
            return Err(fail(format!("empty source: {EXPECTED_SCHEMES}")));
        }
        if let Some(rest) = input.strip_prefix("s3://") {
            return S3Uri::from_parts(rest).map(SourceUri::S3).map_err(fail);
        }
        if let Some(rest) = input.strip_prefix("ssm:") {
            return SsmPath::new(rest).map(SourceUri::Ssm).map_err(fail);
        }
        let Some((scheme, _)) = input.split_once(':') else {
            let hint = if input.starts_with('/') {
                format!("; for a local file write file://{input}")
            } else {
                String::new()
            };
            return Err(fail(format!("no scheme: {EXPECTED_SCHEMES}{hint}")));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "https" | "http" => HttpUrl::new(input).map(SourceUri::Http).map_err(fail),
            "file" => parse_file_url(input).map(SourceUri::File).map_err(fail),
            other => Err(fail(format!("unsupported scheme {other:?}: {EXPECTED_SCHEMES}"))),
        }
    }

    /// The source in a form that is safe to log: URLs lose credentials and query strings
    /// (a pre-signed URL's query string is a credential).
    pub fn redacted(&self) -> String {
        match self {
            SourceUri::S3(s3) => s3.to_string(),
            SourceUri::Ssm(path) => format!("ssm:{path}"),
            SourceUri::Http(url) => url.redacted(),
            SourceUri::File(path) => format!("file://{path}"),
        }
    }
}

impl FromStr for SourceUri {
    type Err = SourceUriError;
    fn from_str(input: &str) -> Result<SourceUri, SourceUriError> {
        SourceUri::new(input)
    }
}

impl fmt::Display for SourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl S3Uri {
    /// Parses `s3://bucket/key`.
    pub fn new(input: &str) -> Result<S3Uri, SourceUriError> {
        let fail = |reason: String| SourceUriError { shown: redact(input), reason };
        let rest = input
            .strip_prefix("s3://")
            .ok_or_else(|| fail("expected s3://BUCKET/KEY".to_owned()))?;
        S3Uri::from_parts(rest).map_err(fail)
    }

    fn from_parts(rest: &str) -> Result<S3Uri, String> {
        let Some((bucket, key)) = rest.split_once('/') else {
            return Err("expected s3://BUCKET/KEY, found no key".to_owned());
        };
        validate_bucket_name(bucket)?;
        if key.is_empty() {
            return Err("expected s3://BUCKET/KEY, found an empty key".to_owned());
        }
        if key.ends_with('/') {
            return Err(format!("key {key:?} ends with '/': it names a prefix, not an object"));
        }
        if key.len() > 1024 {
            return Err(format!("key is {} bytes long: S3 keys are at most 1024 bytes", key.len()));
        }
        if key.chars().any(char::is_control) {
            return Err("key contains a control character".to_owned());
        }
        Ok(S3Uri { bucket: bucket.to_owned(), key: key.to_owned() })
    }
}

impl FromStr for S3Uri {
    type Err = SourceUriError;
    fn from_str(input: &str) -> Result<S3Uri, SourceUriError> {
        S3Uri::new(input)
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Checks an S3 bucket name against the naming rules for buckets.
pub fn validate_bucket_name(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("empty bucket name".to_owned());
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!("bucket name {bucket:?} must be 3 to 63 characters long"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    if !bucket.chars().all(allowed) {
        return Err(format!(
            "bucket name {bucket:?} may contain only lowercase letters, digits, '.' and '-'"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(bucket.chars().next()) || !edge_ok(bucket.chars().last()) {
        return Err(format!("bucket name {bucket:?} must start and end with a letter or digit"));
    }
    if bucket.contains("..") {
        return Err(format!("bucket name {bucket:?} must not contain '..'"));
    }
    Ok(())
}

impl SsmPath {
    /// Validates a parameter hierarchy path such as `/buildkite/agent/env`.
    ///
    /// Only the leading `ssm:` is part of the scheme; the path itself must be absolute,
    /// must not be the root (which would read every parameter the role can see), and
    /// may contain only the characters SSM allows in parameter names.
    pub fn new(path: &str) -> Result<SsmPath, String> {
        if path.is_empty() {
            return Err("expected ssm:/PATH, found an empty path".to_owned());
        }
        if !path.starts_with('/') {
            return Err(format!("SSM path {path:?} must start with '/'"));
        }
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        if trimmed.is_empty() {
            return Err("SSM path \"/\" would read every parameter in the account: name a hierarchy such as /buildkite/env".to_owned());
        }
        if trimmed.contains("//") {
            return Err(format!("SSM path {path:?} contains an empty segment"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/');
        if let Some(bad) = trimmed.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "SSM path {path:?} contains {bad:?}: parameter names allow only letters, digits, '_', '.', '-' and '/'"
            ));
        }
        if trimmed.len() > 2048 {
            return Err(format!(
                "SSM path is {} characters long: at most 2048 are allowed",
                trimmed.len()
            ));
        }
        Ok(SsmPath(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SsmPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl HttpUrl {
    pub fn new(input: &str) -> Result<HttpUrl, String> {
        let url = Url::parse(input).map_err(|error| format!("malformed URL: {error}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!(
                "expected an https:// or http:// URL, found scheme {:?}",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("URL has no host".to_owned());
        }
        Ok(HttpUrl(url))
    }

    /// The full URL, credentials and query string included: only for the request itself.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// The URL without credentials, query string or fragment.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// What [`parse_agent_endpoint`] accepts, for error messages.
pub const AGENT_ENDPOINT_EXPECTED: &str =
    "an https:// URL (http:// only to a loopback host: 127.0.0.0/8, ::1 or localhost)";

/// `BUILDKITE_AGENT_ENDPOINT`: an `https://` URL with a host. Plain `http://` would send
/// the agent token in clear, so it is accepted only for a loopback host (127.0.0.0/8,
/// `::1`, `localhost`), where local tests and emulators run.
pub fn parse_agent_endpoint(input: &str) -> Option<Url> {
    let url = Url::parse(input).ok()?;
    let loopback = match url.host()? {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(address) => address.is_loopback(),
        url::Host::Ipv6(address) => address.is_loopback(),
    };
    match url.scheme() {
        "https" => Some(url),
        "http" if loopback => Some(url),
        _ => None,
    }
}

fn parse_file_url(input: &str) -> Result<String, String> {
    let url = Url::parse(input).map_err(|error| format!("malformed file URL: {error}"))?;
    match url.host_str() {
        None | Some("" | "localhost") => {}
        Some(host) => {
            return Err(format!(
                "file URL names host {host:?}: only local files (file:///PATH) are supported"
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("file URL must not have a query or fragment".to_owned());
    }
    let path = url
        .to_file_path()
        .map_err(|()| "file URL does not name an absolute local path".to_owned())?;
    let path = path.to_str().ok_or_else(|| "file URL path is not valid UTF-8".to_owned())?;
    if path == "/" || path.ends_with('/') {
        return Err(format!("file URL path {path:?} names a directory, not a file"));
    }
    Ok(path.to_owned())
}

fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Setting these on an http(s) URL cannot fail; ignoring the result keeps this total.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

/// What of a raw, possibly malformed input may be shown in an error message.
fn redact(input: &str) -> String {
    if let Ok(url) = Url::parse(input)
        && url.has_host()
    {
        return redact_url(&url);
    }
    // Not a URL with a host: S3 and SSM sources carry no credentials. Control characters
    // are escaped by the `{:?}` formatting of the error.
    input.to_owned()
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test_case("https://agent.buildkite.com/v3", true; "https")]
    #[test_case("https://10.0.0.1:8443/v3", true; "https to a private address")]
    #[test_case("http://127.0.0.1:9000/v3", true; "http to ipv4 loopback")]
    #[test_case("http://127.1.2.3/v3", true; "http anywhere in 127/8")]
    #[test_case("http://[::1]:9000/v3", true; "http to ipv6 loopback")]
    #[test_case("http://localhost:9000/v3", true; "http to localhost")]
    #[test_case("http://LOCALHOST/v3", true; "localhost in capitals")]
    #[test_case("http://agent.buildkite.com/v3", false; "http to a public host")]
    #[test_case("http://10.0.0.1/v3", false; "http to a private address")]
    #[test_case("http://localhost.example.com/v3", false; "a name that only starts with localhost")]
    #[test_case("http://128.0.0.1/v3", false; "http just outside 127/8")]
    #[test_case("ftp://localhost/v3", false; "another scheme")]
    #[test_case("agent.buildkite.com", false; "no scheme")]
    #[test_case("https://", false; "no host")]
    fn agent_endpoints_need_https_except_on_loopback(input: &str, accepted: bool) {
        assert_eq!(parse_agent_endpoint(input).is_some(), accepted, "{input}");
    }

    fn s3(bucket: &str, key: &str) -> SourceUri {
        SourceUri::S3(S3Uri { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    #[test_case("s3://my-bucket/agent.env", s3("my-bucket", "agent.env"); "s3 object")]
    #[test_case("s3://my.bucket-1/a/b/c.sh", s3("my.bucket-1", "a/b/c.sh"); "s3 nested key")]
    #[test_case("s3://bkt/with space and ünïcode", s3("bkt", "with space and ünïcode"); "s3 raw key")]
    #[test_case("ssm:/buildkite/env", SourceUri::Ssm(SsmPath("/buildkite/env".into())); "ssm path")]
    #[test_case("ssm:/buildkite/env/", SourceUri::Ssm(SsmPath("/buildkite/env".into())); "ssm trailing slash")]
    #[test_case("file:///etc/buildkite/agent.env", SourceUri::File("/etc/buildkite/agent.env".into()); "file")]
    #[test_case("file://localhost/etc/x", SourceUri::File("/etc/x".into()); "file localhost")]
    #[test_case("file:///tmp/a%20b", SourceUri::File("/tmp/a b".into()); "file percent decoded")]
    fn parses(input: &str, expected: SourceUri) {
        assert_eq!(SourceUri::new(input).unwrap(), expected);
    }

    #[test_case("https://example.com/bootstrap.sh", true; "https")]
    #[test_case("HTTPS://EXAMPLE.com/x", true; "upper case scheme")]
    #[test_case("http://10.0.0.1:8080/agent.env", false; "http")]
    fn parses_http(input: &str, https: bool) {
        let SourceUri::Http(url) = SourceUri::new(input).unwrap() else {
            panic!("not http: {input}")
        };
        assert_eq!(url.is_https(), https);
    }

    #[test_case("", "empty source"; "empty")]
    #[test_case("/etc/x", "for a local file write file:///etc/x"; "bare path")]
    #[test_case("ftp://host/x", "unsupported scheme \"ftp\""; "ftp")]
    #[test_case("gs://bucket/x", "unsupported scheme \"gs\""; "gcs")]
    #[test_case("s3://", "found no key"; "s3 nothing")]
    #[test_case("s3://bucket", "found no key"; "s3 no key")]
    #[test_case("s3://bucket/", "empty key"; "s3 empty key")]
    #[test_case("s3://bucket/dir/", "names a prefix"; "s3 prefix")]
    #[test_case("s3://Bucket/x", "lowercase letters"; "s3 upper case bucket")]
    #[test_case("s3://ab/x", "3 to 63"; "s3 short bucket")]
    #[test_case("s3://-ab/x", "start and end"; "s3 leading dash")]
    #[test_case("s3://a..b/x", "'..'"; "s3 double dot")]
    #[test_case("s3://bucket/a\nb", "control character"; "s3 newline in key")]
    #[test_case("ssm:", "empty path"; "ssm empty")]
    #[test_case("ssm:relative/path", "must start with '/'"; "ssm relative")]
    #[test_case("ssm:/", "every parameter"; "ssm root")]
    #[test_case("ssm:/a//b", "empty segment"; "ssm empty segment")]
    #[test_case("ssm:/a/$(id)", "contains '$'"; "ssm shell")]
    #[test_case("ssm:/a/ssm:b", "contains ':'"; "only the prefix is the scheme")]
    #[test_case("https://", "malformed URL"; "https no host")]
    #[test_case("file://host/etc/x", "only local files"; "file remote host")]
    #[test_case("file:///", "names a directory"; "file root")]
    #[test_case("file:///etc/x?y=1", "query"; "file query")]
    fn rejects(input: &str, reason: &str) {
        let error = SourceUri::new(input).unwrap_err().to_string();
        assert!(error.contains(reason), "{input:?}: {error}");
    }

    #[test]
    fn errors_and_display_hide_credentials_and_query_strings() {
        let uri =
            SourceUri::new("https://user:pa55@example.com/x.sh?X-Amz-Signature=abc#frag").unwrap();
        assert_eq!(uri.to_string(), "https://example.com/x.sh?…");
        let SourceUri::Http(url) = &uri else { panic!() };
        assert!(url.as_str().contains("X-Amz-Signature=abc"));

        let error =
            SourceUri::new("ftp://user:pa55@example.com/x?token=abc").unwrap_err().to_string();
        assert!(!error.contains("pa55") && !error.contains("token=abc"), "{error}");
        assert!(error.contains("ftp://example.com/x?…"), "{error}");
    }

    #[test]
    fn s3_uri_from_str_requires_the_scheme() {
        assert_eq!("s3://bkt/k".parse::<S3Uri>().unwrap().to_string(), "s3://bkt/k");
        assert!("bkt/k".parse::<S3Uri>().is_err());
    }
}
