//! Describe calls to the local AWS emulator for the services whose SDK crates the
//! workspace does not build (IAM, EC2, Lambda, CloudWatch Logs, EventBridge), for the
//! deploy tests and the local demo.
//!
//! Each would be another large crate compiled for a handful of read calls, so they go
//! out as plain HTTP requests (reqwest) instead, and Query-protocol answers are read
//! with the SDK's own XML reader (`aws-smithy-xml`). moto routes a request by the
//! credential scope of its `Authorization` header and does not check the signature;
//! real AWS would reject these requests, and nothing but the tests and the demo sends
//! them.

use std::time::Duration;

use anyhow::{Context, ensure};
use aws_smithy_xml::decode::{Document, try_data};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};

/// The emulator at `endpoint` (`http://127.0.0.1:PORT`).
pub struct MotoApi {
    endpoint: String,
    client: reqwest::Client,
}

impl MotoApi {
    pub fn new(endpoint: &str) -> MotoApi {
        // Building a client without TLS settings or a proxy cannot fail; a failure
        // falls back to the default client, which only lacks the timeout.
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
        MotoApi { endpoint: endpoint.trim_end_matches('/').to_owned(), client }
    }

    /// An AWS Query-protocol call (IAM, EC2): form parameters in, XML out.
    pub async fn query(&self, service: &str, version: &str, params: &[(&str, &str)]) -> String {
        self.try_query(service, version, params).await.unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// [`MotoApi::query`], failing with an error instead of a panic.
    pub async fn try_query(
        &self,
        service: &str,
        version: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", version);
        form.extend_pairs(params);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        self.send(
            service,
            reqwest::Method::POST,
            "/",
            &[(CONTENT_TYPE.as_str(), content_type)],
            form.finish(),
        )
        .await
    }

    /// An AWS JSON 1.1 call (CloudWatch Logs, EventBridge).
    pub async fn json(
        &self,
        service: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
        let text = self
            .send(service, reqwest::Method::POST, "/", &headers, body.to_string())
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
        // Actions that return nothing (EnableRule, PutRetentionPolicy) answer an empty body.
        if text.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{target}: {error}: {text}"))
    }

    /// A REST-JSON GET (Lambda).
    pub async fn get(&self, service: &str, path: &str) -> serde_json::Value {
        self.try_get(service, path).await.unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// [`MotoApi::get`], failing with an error instead of a panic.
    pub async fn try_get(&self, service: &str, path: &str) -> anyhow::Result<serde_json::Value> {
        let text = self.send(service, reqwest::Method::GET, path, &[], String::new()).await?;
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
    }

    async fn send(
        &self,
        service: &str,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> anyhow::Result<String> {
        let region = elastic_ci_testkit::moto::REGION;
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20240101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let mut header_map = HeaderMap::new();
        header_map.insert(AUTHORIZATION, HeaderValue::from_str(&authorization)?);
        for (name, value) in headers {
            header_map.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        let url = format!("{}{path}", self.endpoint);
        let response = self
            .client
            .request(method.clone(), &url)
            .headers(header_map)
            .body(body)
            .send()
            .await
            .with_context(|| format!("failed to reach moto at {}", self.endpoint))?;
        let status = response.status();
        let text = response.text().await.context("failed to read moto's answer")?;
        ensure!(status.is_success(), "{service} {method} {path} answered {status}\n{text}");
        Ok(text)
    }
}

/// The text of every `<tag>…</tag>` element that holds text, unescaped, in document
/// order. A document that is not well-formed XML yields the elements before the fault.
pub fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let mut document = Document::new(xml);
    let mut values = Vec::new();
    while let Some(start) = document.next_start_element() {
        if start.local() == tag {
            // An element that holds elements rather than text is skipped whole.
            if let Ok(text) = try_data(&mut document.scoped_to(start)) {
                values.push(text.into_owned());
            }
        }
    }
    values
}

/// The text of the first `<tag>…</tag>` element.
pub fn xml_first(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

/// A form-encoded text as IAM returns policy documents: `%XX` escapes, `+` for space.
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_policy_documents() {
        let document = r#"{"Resource": "arn:aws:s3:::a b/*", "Sid": "x+y"}"#;
        let encoded: String = url::form_urlencoded::byte_serialize(document.as_bytes()).collect();
        assert_eq!(percent_decode(&encoded), document);
        assert_eq!(percent_decode("%7B%22a%22%3A%20%22b%22%7D"), r#"{"a": "b"}"#);
    }

    #[test]
    fn reads_repeated_xml_elements() {
        let xml = "<r><member>a&amp;b</member><x/><member>&lt;c&gt;</member></r>";
        assert_eq!(xml_all(xml, "member"), ["a&b", "<c>"]);
        assert_eq!(xml_first(xml, "missing"), None);
    }

    #[test]
    fn reads_elements_at_any_depth_and_with_namespaces() {
        let xml = r#"<?xml version="1.0"?><Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><item><launchTemplateData><userData>dXNlcg==</userData><tagSet><item><value>buildkite-agent</value></item></tagSet></launchTemplateData></item></Response>"#;
        assert_eq!(xml_first(xml, "userData").as_deref(), Some("dXNlcg=="));
        assert_eq!(xml_all(xml, "value"), ["buildkite-agent"]);
    }
}
