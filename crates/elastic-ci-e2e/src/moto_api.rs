//! Describe calls to the local AWS emulator for the services whose SDK crates the
//! workspace does not build (IAM, EC2, Lambda, CloudWatch Logs, EventBridge), for the
//! deploy tests and the local demo.
//!
//! Each would be another large crate compiled for a handful of read calls, so they go
//! out as plain HTTP/1.0 requests instead. moto routes a request by the credential
//! scope of its `Authorization` header and does not check the signature; real AWS
//! would reject these requests, and nothing but the tests and the demo sends them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, ensure};

/// The emulator at `endpoint` (`http://127.0.0.1:PORT`).
pub struct MotoApi {
    address: String,
}

impl MotoApi {
    pub fn new(endpoint: &str) -> MotoApi {
        let address = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
        MotoApi { address }
    }

    /// An AWS Query-protocol call (IAM, EC2): form parameters in, XML out.
    pub fn query(&self, service: &str, version: &str, params: &[(&str, &str)]) -> String {
        self.try_query(service, version, params).unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// [`MotoApi::query`], failing with an error instead of a panic.
    pub fn try_query(
        &self,
        service: &str,
        version: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let mut body = format!("Version={version}");
        for (name, value) in params {
            body.push_str(&format!("&{name}={}", percent_encode(value)));
        }
        let headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")];
        self.send(service, "POST", "/", &headers, &body)
    }

    /// An AWS JSON 1.1 call (CloudWatch Logs, EventBridge).
    pub fn json(&self, service: &str, target: &str, body: &serde_json::Value) -> serde_json::Value {
        let headers = [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", target)];
        let text = self
            .send(service, "POST", "/", &headers, &body.to_string())
            .unwrap_or_else(|error| panic!("{error:#}"));
        // Actions that return nothing (EnableRule, PutRetentionPolicy) answer an empty body.
        if text.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{target}: {error}: {text}"))
    }

    /// A REST-JSON GET (Lambda).
    pub fn get(&self, service: &str, path: &str) -> serde_json::Value {
        self.try_get(service, path).unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// [`MotoApi::get`], failing with an error instead of a panic.
    pub fn try_get(&self, service: &str, path: &str) -> anyhow::Result<serde_json::Value> {
        let text = self.send(service, "GET", path, &[], "")?;
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
    }

    fn send(
        &self,
        service: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(&self.address)
            .with_context(|| format!("failed to connect to moto at {}", self.address))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20240101/{}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n",
            self.address,
            elastic_ci_testkit::moto::REGION,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).context("failed to send to moto")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).context("failed to read moto's answer")?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).unwrap_or_default();
        ensure!(status == "200", "{service} {method} {path} answered {head}\n{body}");
        Ok(body.to_owned())
    }
}

/// The text of every `<tag>…</tag>` element, unescaped, in document order.
pub fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        values.push(xml_unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    values
}

/// The text of the first `<tag>…</tag>` element.
pub fn xml_first(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// IAM returns policy documents percent-encoded.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) =
                text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(byte);
            i += 3;
            continue;
        }
        decoded.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_policy_documents() {
        let document = r#"{"Resource": "arn:aws:s3:::a b/*", "Sid": "x+y"}"#;
        assert_eq!(percent_decode(&percent_encode(document)), document);
        assert_eq!(percent_decode("%7B%22a%22%3A%20%22b%22%7D"), r#"{"a": "b"}"#);
    }

    #[test]
    fn reads_repeated_xml_elements() {
        let xml = "<r><member>a&amp;b</member><x/><member>&lt;c&gt;</member></r>";
        assert_eq!(xml_all(xml, "member"), ["a&b", "<c>"]);
        assert_eq!(xml_first(xml, "missing"), None);
    }
}
