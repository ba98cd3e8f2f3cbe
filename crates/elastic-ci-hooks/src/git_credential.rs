//! `elastic-ci-hooks git-credential BUCKET REGION KEY get`: the git credential helper
//! that the secrets bucket's `git-credentials` files are served by.
//!
//! Git runs it with its request (`protocol=…`, `host=…`) on stdin. The helper reads the
//! file from S3 at that moment (credentials are never written to disk), picks the
//! entry for the requested protocol and host, and answers on stdout. Lines it cannot
//! parse are reported by number only, never echoed: they hold passwords. A file larger
//! than the secrets' cap is refused, naming the key.

use anyhow::Context;
use elastic_ci_core::secrets::{
    parse_credential_request, parse_git_credentials, render_credential, select_credential,
};

use crate::clients::Clients;
use crate::joblog::JobLog;
use crate::secrets::{CappedBuffer, MAX_OBJECT_BYTES};

/// Answers one request; `store` and `erase` do nothing.
pub(crate) async fn answer(
    clients: &dyn Clients,
    log: &JobLog,
    bucket: &str,
    region: &str,
    key: &str,
    action: &str,
    request: &str,
) -> anyhow::Result<String> {
    if action != "get" {
        return Ok(String::new());
    }
    let store = clients.object_store(Some(region).filter(|r| !r.is_empty())).await;
    let mut body = CappedBuffer::new(MAX_OBJECT_BYTES);
    store
        .download(bucket, key, &mut body)
        .await
        .with_context(|| format!("failed to download s3://{bucket}/{key}"))?;
    let text = String::from_utf8(body.into_inner())
        .with_context(|| format!("s3://{bucket}/{key} is not UTF-8 text"))?;
    let (credentials, errors) = parse_git_credentials(&text);
    for error in errors {
        log.line(&format!("elastic-ci-hooks git-credential: skipping s3://{bucket}/{key} {error}"));
    }
    let request = parse_credential_request(request);
    Ok(select_credential(&credentials, &request).map(render_credential).unwrap_or_default())
}
