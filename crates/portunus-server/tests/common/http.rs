//! A JSON-over-HTTP client for tests of an HTTP API: status and body whatever the status.
//! Shared with the tests of `portunus-client` and `llama-dashboard`, which include this file by path.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};

/// A JSON-over-HTTP client that returns status and body whatever the status.
pub struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Http {
            base: base.to_string(),
            agent,
        }
    }

    /// (status, JSON body) of a request with an optional bearer token.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let headers: Vec<(String, String)> = token
            .map(|t| vec![("Authorization".to_string(), format!("Bearer {t}"))])
            .unwrap_or_default();
        let (status, body, _) = self.raw(method, path, &headers, body);
        (status, body)
    }

    /// (status, JSON body, response headers) with arbitrary request headers.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<Value>,
    ) -> (u16, Value, Vec<(String, String)>) {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "GET" | "DELETE" if body.is_none() => {
                let mut req = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.call()
            }
            _ => {
                let mut req = match method {
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    "DELETE" => self.agent.delete(&url).force_send_body(),
                    _ => self.agent.post(&url),
                };
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.send_json(body.unwrap_or(json!({})))
            }
        };
        let mut response = result.unwrap();
        let status = response.status().as_u16();
        let out_headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            out_headers,
        )
    }
}

/// The error code of an error envelope.
pub fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or("<no error envelope>")
}
