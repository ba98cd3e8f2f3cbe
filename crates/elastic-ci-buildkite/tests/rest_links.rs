//! The REST client follows a `Link: rel="next"` header only to the server it was given:
//! the API token goes with every page, so a next page elsewhere is an error, and that
//! server never hears from the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::http::header::LINK;
use axum::response::IntoResponse;
use axum::routing::get;
use elastic_ci_buildkite::rest::{BuildsQuery, RestClient, RestError};
use elastic_ci_core::secret::Secret;
use elastic_ci_testkit::http::TestServer;
use url::Url;

const TOKEN: &str = "bkua_rest_token_for_links";

fn query() -> BuildsQuery {
    BuildsQuery {
        organization: "acme".to_owned(),
        pipeline: None,
        created_from: "2026-01-01T00:00:00Z".to_owned(),
        max_pages: 10,
    }
}

/// A server whose first page links to `next`.
fn api_linking_to(next: String) -> TestServer {
    TestServer::http(Router::new().route(
        "/v2/organizations/acme/builds",
        get(move || {
            let link = format!("<{next}>; rel=\"next\"");
            async move { ([(LINK, link)], "[]").into_response() }
        }),
    ))
}

#[tokio::test]
async fn a_next_page_on_another_server_is_refused_and_never_asked_for() {
    let asked = Arc::new(AtomicU32::new(0));
    let counter = asked.clone();
    let elsewhere = TestServer::http(Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "[]" }
    }));
    // The same host on another port is another server too.
    let api = api_linking_to(elsewhere.url("/steal?page=2"));
    let base = Url::parse(&api.url("/v2")).unwrap();
    let client = RestClient::new(&base, Secret::new(TOKEN.to_owned())).unwrap();
    let error = client.builds(&query()).await.unwrap_err();
    assert!(matches!(error, RestError::InvalidAnswer { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("its next page is on another server"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the other server was asked");
}

#[tokio::test]
async fn a_next_page_on_the_same_server_is_followed() {
    let pages = Arc::new(AtomicU32::new(0));
    let counter = pages.clone();
    let server = TestServer::http(Router::new().route(
        "/v2/organizations/acme/builds",
        get(move |uri: axum::http::Uri| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if uri.query().is_some_and(|query| query.contains("page=2")) {
                    "[]".into_response()
                } else {
                    let link = "</v2/organizations/acme/builds?page=2>; rel=\"next\"";
                    ([(LINK, link)], "[{\"jobs\": []}]").into_response()
                }
            }
        }),
    ));
    let base = Url::parse(&server.url("/v2")).unwrap();
    let client = RestClient::new(&base, Secret::new(TOKEN.to_owned())).unwrap();
    let builds = client.builds(&query()).await.unwrap();
    assert_eq!(builds.len(), 1);
    assert_eq!(pages.load(Ordering::SeqCst), 2);
}
