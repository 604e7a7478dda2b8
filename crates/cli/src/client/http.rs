//! The HTTP side of the client: one [`Remote`] (base URL, token, output
//! mode) and the error type whose every variant exits 2.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use super::RemoteArgs;

/// Why a client command could not do what was asked (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad flags or arguments that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// Base URL.
        url: String,
        /// Cause.
        reason: String,
    },
    /// The server answered with an error (a problem document when it sent one).
    #[error("{}", describe_problem(*.status, .problem))]
    Api {
        /// HTTP status.
        status: u16,
        /// The problem document, or `{"detail": <body text>}`.
        problem: Value,
    },
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
}

impl ClientError {
    /// The JSON printed on stdout for `--json`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Api { problem, .. } => problem.clone(),
            other => serde_json::json!({"error": other.to_string(), "code": match other {
                Self::Usage(_) => "usage",
                Self::Connect { .. } => "connection",
                _ => "io",
            }}),
        }
    }
}

fn describe_problem(status: u16, p: &Value) -> String {
    let code = p["code"].as_str().unwrap_or("error");
    let detail = p["detail"].as_str().unwrap_or("");
    let mut s = format!("server answered {status} {code}: {detail}");
    if let Some(errors) = p["errors"].as_array() {
        for e in errors {
            s.push_str(&format!(
                "\n  {}{}: {}",
                e["index"]
                    .as_u64()
                    .map(|i| format!("item {i}, "))
                    .unwrap_or_default(),
                e["field"].as_str().unwrap_or("-"),
                e["reason"].as_str().unwrap_or(""),
            ));
        }
    }
    s
}

/// A server to talk to.
#[derive(Debug, Clone)]
pub struct Remote {
    base: String,
    token: Option<String>,
    /// Print JSON instead of text.
    pub json: bool,
    http: reqwest::Client,
}

impl Remote {
    /// Check the URL and build the HTTP client.
    pub fn new(a: &RemoteArgs) -> Result<Self, ClientError> {
        let url = url::Url::parse(a.url.trim())
            .map_err(|e| ClientError::Usage(format!("--url {:?} is not a URL: {e}", a.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Usage(format!(
                "--url must be http:// or https://, not {}",
                url.scheme()
            )));
        }
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        // No TCP user timeout (reqwest sets 30 s on Linux): while a busy
        // server validates a large upload its receive window can stay closed
        // for longer, and the upload must wait, not fail.
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let builder = builder.tcp_user_timeout(None);
        let http = builder
            .build()
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            token: a.token.clone().filter(|t| !t.trim().is_empty()),
            json: a.json,
            http,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (which starts with `/`), with the token if one is set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t.trim()),
            None => rb,
        }
    }

    fn connect_error(&self, e: reqwest::Error) -> ClientError {
        // reqwest's message names the URL; the cause chain says why.
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            reason = format!("{reason}: {s}");
            src = s.source();
        }
        ClientError::Connect {
            url: self.base.clone(),
            reason,
        }
    }

    /// Send; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        let resp = rb.send().await.map_err(|e| self.connect_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let problem = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| serde_json::json!({ "status": status.as_u16(), "detail": text }));
        Err(ClientError::Api {
            status: status.as_u16(),
            problem,
        })
    }

    /// Send and read a JSON body.
    pub async fn json(&self, rb: RequestBuilder) -> Result<Value, ClientError> {
        let resp = self.send(rb).await?;
        resp.json::<Value>()
            .await
            .map_err(|e| self.connect_error(e))
    }

    /// GET a JSON resource.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, path)).await
    }

    /// POST with no body, read JSON.
    pub async fn post(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.request(Method::POST, path)).await
    }
}

/// Percent-encode a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved characters).
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Print `v` as one JSON document on stdout.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> RemoteArgs {
        RemoteArgs {
            url: url.into(),
            token: Some("  ".into()),
            json: false,
        }
    }

    #[test]
    fn urls_are_checked_and_trimmed() {
        let r = Remote::new(&args("http://127.0.0.1:8080/")).unwrap();
        assert_eq!(r.base(), "http://127.0.0.1:8080");
        assert!(r.token.is_none(), "a blank token is no token");
        assert!(matches!(
            Remote::new(&args("nope")),
            Err(ClientError::Usage(_))
        ));
        assert!(matches!(
            Remote::new(&args("ftp://x")),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn problems_name_item_field_and_reason() {
        let p = serde_json::json!({"code": "invalid_type", "detail": "bad", "errors": [
            {"index": 3, "field": "iccid", "reason": "too short"}]});
        let s = describe_problem(422, &p);
        assert!(s.contains("422 invalid_type: bad"), "{s}");
        assert!(s.contains("item 3, iccid: too short"), "{s}");
        assert_eq!(enc("a b/c"), "a+b%2Fc");
        assert_eq!(seg("89 01/../x"), "89%2001%2F..%2Fx");
    }
}
