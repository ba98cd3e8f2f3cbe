//! `fetch SOURCE DEST`: download a file from S3, SSM, HTTP(S) or the local file system,
//! and put it in place atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use elastic_ci_aws::s3::ObjectStore;
use elastic_ci_aws::ssm::ParameterStore;
use elastic_ci_core::envfile;
use elastic_ci_core::uri::{HttpUrl, SourceUri};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

/// What a fetch can reach. S3 and SSM clients are optional so that HTTP and file
/// sources never touch AWS (no region lookup, no credentials).
#[derive(Clone)]
pub(crate) struct Backends {
    pub(crate) objects: Option<Arc<dyn ObjectStore>>,
    pub(crate) parameters: Option<Arc<dyn ParameterStore>>,
    pub(crate) http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("{0}")]
    Aws(#[from] elastic_ci_aws::error::AwsError),
    #[error("{0}")]
    Download(#[from] elastic_ci_aws::s3::DownloadError),
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    EnvFile(#[from] envfile::EnvFileError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Destination(String),
    #[error("internal: {0} client not configured")]
    NotConfigured(&'static str),
}

/// What was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub(crate) n_bytes: u64,
    /// For `ssm:` sources, the number of variables written.
    pub(crate) n_variables: Option<usize>,
}

/// Builds the HTTP client used for `https://` and `http://` sources: follows up to ten
/// redirects, gives up on connecting after ten seconds and on the whole download after
/// `timeout`.
#[cfg(test)]
pub(crate) fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    http_client_trusting(timeout, None)
}

/// The same, trusting only `roots` when given instead of the system's certificate
/// authorities.
pub(crate) fn http_client_trusting(
    timeout: Duration,
    roots: Option<Vec<reqwest::Certificate>>,
) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("elastic-ci-bootstrap/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout);
    match roots {
        Some(roots) => builder.tls_certs_only(roots).build(),
        None => builder.build(),
    }
}

/// Fetches `source` into `dest` with permission bits `mode`.
///
/// The content goes to a temporary file beside `dest`, created with mode 0600, and is
/// renamed over `dest` only once complete and synced: on any error `dest` is untouched
/// and the temporary file is removed.
pub(crate) async fn fetch(
    source: &SourceUri,
    dest: &Path,
    mode: u32,
    backends: &Backends,
) -> Result<Fetched, FetchError> {
    let dir = check_destination(dest)?;
    let io_error = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { what, path, source }
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".elastic-ci-fetch.").suffix(".tmp");
    crate::platform::private_temp_file(&mut builder);
    let temp = builder.tempfile_in(&dir).map_err(io_error("creating a temporary file in", &dir))?;
    let mut file = tokio::fs::File::from_std(
        temp.reopen().map_err(io_error("opening the temporary file", temp.path()))?,
    );

    let fetched = match source {
        SourceUri::S3(s3) => {
            let objects = backends.objects.as_deref().ok_or(FetchError::NotConfigured("S3"))?;
            let n_bytes = objects.download(&s3.bucket, &s3.key, &mut file).await?;
            Fetched { n_bytes, n_variables: None }
        }
        SourceUri::Ssm(path) => {
            let parameters =
                backends.parameters.as_deref().ok_or(FetchError::NotConfigured("SSM"))?;
            let found = parameters.get_by_path(path.as_str()).await?;
            if found.is_empty() {
                warn!(path = %path, "no parameters under this path: writing an empty env file");
            }
            let (assignments, warnings) = envfile::assignments_from_parameters(
                found
                    .into_iter()
                    .map(|parameter| (parameter.name, parameter.value.expose().to_owned())),
            );
            for warning in &warnings {
                warn!("{warning}");
            }
            let header = format!(
                "Environment from SSM parameters under {path}, written by elastic-ci-bootstrap fetch."
            );
            let text = envfile::render(
                Some(&header),
                assignments.iter().map(|(name, value)| (name, value.as_str())),
            )?;
            file.write_all(text.as_bytes()).await.map_err(io_error("writing", temp.path()))?;
            Fetched { n_bytes: text.len() as u64, n_variables: Some(assignments.len()) }
        }
        SourceUri::Http(url) => {
            if !url.is_https() {
                warn!(url = %url.redacted(), "fetching over plain http: the content can be read and changed in transit");
            }
            let n_bytes = download_http(&backends.http, url, &mut file).await?;
            Fetched { n_bytes, n_variables: None }
        }
        SourceUri::File(path) => {
            let path = Path::new(path);
            let mut input = tokio::fs::File::open(path).await.map_err(io_error("reading", path))?;
            let n_bytes =
                tokio::io::copy(&mut input, &mut file).await.map_err(io_error("reading", path))?;
            Fetched { n_bytes, n_variables: None }
        }
    };

    file.flush().await.map_err(io_error("writing", temp.path()))?;
    crate::platform::set_mode(temp.path(), mode)
        .map_err(io_error("setting the mode of", temp.path()))?;
    file.sync_all().await.map_err(io_error("syncing", temp.path()))?;
    drop(file);
    temp.persist(dest).map_err(|error| FetchError::Io {
        what: "renaming into",
        path: dest.to_owned(),
        source: error.error,
    })?;
    info!(source = %source, dest = %dest.display(), n_bytes = fetched.n_bytes, mode = format!("{mode:04o}"), "fetched");
    Ok(fetched)
}

/// Rejects destinations that cannot be replaced by a rename, before any download.
fn check_destination(dest: &Path) -> Result<PathBuf, FetchError> {
    if dest.as_os_str().is_empty() {
        return Err(FetchError::Destination("the destination path is empty".to_owned()));
    }
    if dest.is_dir() {
        return Err(FetchError::Destination(format!(
            "destination {} is a directory",
            dest.display()
        )));
    }
    let dir = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(FetchError::Destination(format!(
            "destination directory {} does not exist",
            dir.display()
        )));
    }
    Ok(dir)
}

async fn download_http(
    client: &reqwest::Client,
    url: &HttpUrl,
    file: &mut tokio::fs::File,
) -> Result<u64, FetchError> {
    // reqwest errors print the URL, query string included; a pre-signed URL's query
    // string is a credential, so every message uses the redacted form instead.
    let shown = url.redacted();
    let describe = |error: reqwest::Error| {
        let cause = if error.is_timeout() {
            "timed out".to_owned()
        } else if error.is_redirect() {
            "too many redirects".to_owned()
        } else if error.is_connect() {
            format!("could not connect: {}", source_chain(&error))
        } else {
            source_chain(&error)
        };
        FetchError::Http(format!("GET {shown}: {cause}"))
    };
    let mut response = client.get(url.as_str()).send().await.map_err(describe)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Http(format!("GET {shown}: HTTP {status}")));
    }
    let mut n_bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        file.write_all(&chunk).await.map_err(|source| FetchError::Io {
            what: "writing the download of",
            path: PathBuf::from(&shown),
            source,
        })?;
        n_bytes += chunk.len() as u64;
    }
    Ok(n_bytes)
}

/// The causes of a reqwest error, without the URL it carries.
fn source_chain(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() { "request failed".to_owned() } else { parts.join(": ") }
}

#[cfg(test)]
mod tests {
    use elastic_ci_aws::fake::{FakeObjectStore, FakeParameterStore};
    use elastic_ci_testkit::http::{TestServer, download_routes};

    use super::*;

    fn backends(objects: Arc<FakeObjectStore>, parameters: Arc<FakeParameterStore>) -> Backends {
        Backends {
            objects: Some(objects),
            parameters: Some(parameters),
            http: http_client(Duration::from_secs(2)).unwrap(),
        }
    }

    fn fakes() -> (Arc<FakeObjectStore>, Arc<FakeParameterStore>) {
        (Arc::new(FakeObjectStore::default()), Arc::new(FakeParameterStore::default()))
    }

    fn only_dest_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn writes_s3_object_with_mode_and_no_leftovers() {
        let (objects, parameters) = fakes();
        objects.put("bkt", "agent.env", "A=1\n");
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("env");
        let source = SourceUri::new("s3://bkt/agent.env").unwrap();
        let fetched = fetch(&source, &dest, 0o640, &backends(objects, parameters)).await.unwrap();
        assert_eq!(fetched.n_bytes, 4);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "A=1\n");
        #[cfg(unix)]
        assert_eq!(crate::platform::mode_of(&std::fs::metadata(&dest).unwrap()), 0o640);
        assert_eq!(only_dest_in(dir.path()), ["env"]);
    }

    #[tokio::test]
    async fn failure_leaves_destination_untouched() {
        let (objects, parameters) = fakes();
        objects.create_bucket("bkt");
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("env");
        std::fs::write(&dest, "previous").unwrap();
        let source = SourceUri::new("s3://bkt/missing").unwrap();
        let error = fetch(&source, &dest, 0o600, &backends(objects, parameters)).await.unwrap_err();
        assert!(error.to_string().contains("GetObject s3://bkt/missing: not found"), "{error}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "previous");
        assert_eq!(only_dest_in(dir.path()), ["env"]);
    }

    #[tokio::test]
    async fn ssm_path_becomes_an_env_file() {
        let (objects, parameters) = fakes();
        parameters.put("/bk/env/http_proxy", "http://p:3128");
        parameters.put("/bk/env/inject", "x\"\nLD_PRELOAD=/evil.so");
        parameters.put("/bk/env/bad-name", "skipped");
        parameters.put("/bk/other/NOT_MINE", "no");
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("env");
        let source = SourceUri::new("ssm:/bk/env").unwrap();
        let fetched = fetch(&source, &dest, 0o600, &backends(objects, parameters)).await.unwrap();
        assert_eq!(fetched.n_variables, Some(2));
        let text = std::fs::read_to_string(&dest).unwrap();
        let parsed = envfile::parse(&text).unwrap();
        let parsed: Vec<(&str, &str)> =
            parsed.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            parsed,
            [("HTTP_PROXY", "http://p:3128"), ("INJECT", "x\"\nLD_PRELOAD=/evil.so")]
        );
    }

    #[tokio::test]
    async fn http_statuses_redirects_and_timeouts() {
        let server = TestServer::http(download_routes(b"#!/bin/bash\necho hi\n".to_vec()));
        let (objects, parameters) = fakes();
        let backends = backends(objects, parameters);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("script");

        let ok = SourceUri::new(&server.url("/redirect")).unwrap();
        assert_eq!(fetch(&ok, &dest, 0o700, &backends).await.unwrap().n_bytes, 20);

        for (path, expected) in [
            ("/missing", "HTTP 404 Not Found"),
            ("/error", "HTTP 500"),
            ("/redirect-loop", "too many redirects"),
            ("/slow", "timed out"),
        ] {
            let source =
                SourceUri::new(&server.url(&format!("{path}?X-Amz-Signature=s3cr3t"))).unwrap();
            let error = fetch(&source, &dest, 0o700, &backends).await.unwrap_err().to_string();
            assert!(error.contains(expected), "{path}: {error}");
            assert!(!error.contains("s3cr3t"), "{path}: {error}");
        }
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "#!/bin/bash\necho hi\n");
    }

    #[tokio::test]
    async fn rejects_directories_and_missing_parents_before_fetching() {
        let (objects, parameters) = fakes();
        let backends = backends(objects, parameters);
        let dir = tempfile::tempdir().unwrap();
        let source = SourceUri::new("s3://bkt/x").unwrap();
        let error = fetch(&source, dir.path(), 0o600, &backends).await.unwrap_err().to_string();
        assert!(error.ends_with("is a directory"), "{error}");
        let error = fetch(&source, &dir.path().join("no/such/dir/x"), 0o600, &backends)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not exist"), "{error}");
    }
}
