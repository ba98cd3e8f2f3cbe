//! The Buildkite REST API's builds, with their jobs, for exporting a job trace.
//!
//! `GET {base}/organizations/{org}/builds` (or `…/pipelines/{pipeline}/builds`) with
//! `created_from` and `per_page=100`, following the `Link: <…>; rel="next"` header.
//! Every page is read up to [`MAX_PAGE_BYTES`]; the token is sent as a sensitive
//! header, only to the base URL's scheme, host and port, and never appears in an error.

use std::time::Duration;

use elastic_ci_core::secret::Secret;
use reqwest::header::{AUTHORIZATION, HeaderValue, LINK};
use serde::Deserialize;
use tracing::instrument;
use url::Url;

use crate::{ClientBuildError, USER_AGENT};

/// The largest page read.
pub const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildsQuery {
    pub organization: String,
    pub pipeline: Option<String>,
    /// RFC 3339: builds created at or after.
    pub created_from: String,
    pub max_pages: u32,
}

/// A build and its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Build {
    #[serde(default)]
    pub jobs: Vec<Job>,
}

/// One job of a build, with the times that matter to a trace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub agent_query_rules: Vec<String>,
    pub scheduled_at: Option<String>,
    pub runnable_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl Job {
    /// The queue the job targeted (`queue=…` rule), if it names one.
    pub fn queue(&self) -> Option<String> {
        self.agent_query_rules
            .iter()
            .find_map(|rule| rule.strip_prefix("queue=").map(str::to_owned))
    }
}

/// A failed read of the REST API. Messages name the URL, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    #[error("GET {url}: the API token was refused (HTTP {status})")]
    Unauthorized { url: String, status: u16 },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url}: invalid answer: {reason}")]
    InvalidAnswer { url: String, reason: String },
}

/// The REST API client.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
}

impl RestClient {
    pub fn new(base: &Url, token: Secret) -> Result<RestClient, ClientBuildError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(ClientBuildError)?;
        Ok(RestClient { http, base: base.clone(), token })
    }

    /// The first page's URL.
    pub fn builds_url(&self, query: &BuildsQuery) -> Url {
        let mut url = self.base.clone();
        let mut path =
            format!("{}/organizations/{}", url.path().trim_end_matches('/'), query.organization);
        if let Some(pipeline) = &query.pipeline {
            path.push_str(&format!("/pipelines/{pipeline}"));
        }
        path.push_str("/builds");
        url.set_path(&path);
        url.query_pairs_mut()
            .clear()
            .append_pair("created_from", &query.created_from)
            .append_pair("per_page", "100");
        url
    }

    /// Every build of the query, across pages (at most `max_pages`).
    #[instrument(skip_all, fields(organization = %query.organization))]
    pub async fn builds(&self, query: &BuildsQuery) -> Result<Vec<Build>, RestError> {
        let mut builds = Vec::new();
        let mut next = Some(self.builds_url(query));
        let mut pages = 0;
        while let Some(url) = next.take() {
            if pages >= query.max_pages {
                break;
            }
            pages += 1;
            let shown = url.to_string();
            let transport = |error: reqwest::Error| RestError::Transport {
                url: shown.clone(),
                message: crate::describe_transport(&error),
            };
            let mut authorization =
                HeaderValue::from_str(&format!("Bearer {}", self.token.expose())).map_err(
                    |_| RestError::Transport {
                        url: shown.clone(),
                        message: "the API token contains characters not allowed in an HTTP header"
                            .to_owned(),
                    },
                )?;
            authorization.set_sensitive(true);
            let response = self
                .http
                .get(url.clone())
                .header(AUTHORIZATION, authorization)
                .send()
                .await
                .map_err(transport)?;
            let status = response.status().as_u16();
            if status == 401 || status == 403 {
                return Err(RestError::Unauthorized { url: shown, status });
            }
            if status != 200 {
                return Err(RestError::Status { url: shown, status });
            }
            next = response
                .headers()
                .get(LINK)
                .and_then(|link| link.to_str().ok())
                .and_then(next_link)
                .and_then(|link| url.join(&link).ok());
            // The token goes with every page: a next page elsewhere is not followed.
            if let Some(link) = &next
                && link.origin() != self.base.origin()
            {
                return Err(RestError::InvalidAnswer {
                    url: shown,
                    reason: format!(
                        "its next page is on another server ({}); not followed, so that the token stays with {}",
                        link.origin().ascii_serialization(),
                        self.base.origin().ascii_serialization()
                    ),
                });
            }
            let (body, complete) =
                crate::read_capped(response, MAX_PAGE_BYTES).await.map_err(transport)?;
            if !complete {
                return Err(RestError::InvalidAnswer {
                    url: shown,
                    reason: format!("larger than {MAX_PAGE_BYTES} bytes"),
                });
            }
            let page: Vec<Build> = serde_json::from_slice(&body).map_err(|error| {
                RestError::InvalidAnswer { url: shown.clone(), reason: error.to_string() }
            })?;
            builds.extend(page);
        }
        Ok(builds)
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|param| param.trim() == "rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_next_link() {
        let header = "<https://api.buildkite.com/v2/organizations/o/builds?page=2>; rel=\"next\", <https://api.buildkite.com/v2/organizations/o/builds?page=5>; rel=\"last\"";
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.buildkite.com/v2/organizations/o/builds?page=2")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
    }
}
