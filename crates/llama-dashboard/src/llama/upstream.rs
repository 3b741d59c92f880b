//! The HTTP client for llama-server: one connection pool (HTTP/1.1, keep-alive) for health
//! checks, model loading and the proxied requests, whose bodies stream both ways unbuffered.

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Why a request to llama-server got no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or sending failed (llama-server is down or restarting).
    #[error("llama-server at {0} did not answer: {1}")]
    Unreachable(String, String),
    /// It answered with something that is not JSON.
    #[error("llama-server at {0} answered with invalid JSON: {1}")]
    Invalid(String, String),
    /// It took longer than allowed.
    #[error("llama-server at {0} did not answer within {1:?}")]
    Timeout(String, Duration),
}

/// A client for one llama-server.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    base: String,
}

impl Upstream {
    /// A client for the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Upstream {
            client,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request whose URI is a path on the server; the response body streams.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| UpstreamError::Unreachable(self.base.clone(), format!("{e}")))?;
        *request.uri_mut() = uri;
        self.client
            .request(request)
            .await
            .map_err(|e| UpstreamError::Unreachable(self.base.clone(), e.to_string()))
    }

    /// A whole call: (status, body bytes), within `timeout`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let mut builder = Request::builder().method(method).uri(path);
        let body = match body {
            Some(value) => {
                builder = builder.header("content-type", "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let request = builder
            .body(body)
            .map_err(|e| UpstreamError::Unreachable(self.base.clone(), e.to_string()))?;
        let call = async {
            let response = self.send(request).await?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| UpstreamError::Unreachable(self.base.clone(), e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| UpstreamError::Timeout(self.base.clone(), timeout))?
    }

    /// A GET whose answer is text (e.g. Prometheus metrics): (status, text), within `timeout`.
    pub async fn text(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(u16, String), UpstreamError> {
        let (status, bytes) = self.call("GET", path, None, timeout).await?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A JSON call: (status, body; `null` when empty), within `timeout`.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), UpstreamError> {
        let (status, bytes) = self.call(method, path, body, timeout).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(|v| (status, v))
            .map_err(|e| UpstreamError::Invalid(self.base.clone(), e.to_string()))
    }
}
