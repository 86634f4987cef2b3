//! A small client of the gateway's HTTP API, for the commands that work through a running
//! server (`aimp index`, `aimp search`): the same endpoints and bodies any client uses.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// How many times a request answered 429 or 503 is tried again (after its Retry-After).
const RETRIES: u32 = 20;

/// An error answer of the gateway, with its API error fields.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    key: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, key: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            agent,
        }
    }

    /// Sends a request (again after 429/503, as the answer's Retry-After says) and answers
    /// the JSON body of a success, or the API error.
    fn call(
        &self,
        what: &str,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Result<Value, ApiFailure>> {
        for attempt in 0..=RETRIES {
            let mut response = send()
                .with_context(|| format!("{what}: cannot reach the gateway at {}", self.base))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = response
                .body_mut()
                .read_to_string()
                .with_context(|| format!("{what}: reading the answer"))?;
            if (200..300).contains(&status) {
                return Ok(Ok(if text.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text)
                        .with_context(|| format!("{what}: the answer is not JSON"))?
                }));
            }
            if (status == 429 || status == 503) && attempt < RETRIES {
                std::thread::sleep(Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 30)));
                continue;
            }
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = &body["error"];
            return Ok(Err(ApiFailure {
                status,
                code: error["code"].as_str().unwrap_or("unknown").to_string(),
                message: error["message"].as_str().unwrap_or(&text).to_string(),
                param: error["param"].as_str().map(str::to_string),
            }));
        }
        bail!("{what}: the gateway stayed busy after {RETRIES} retries")
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Result<Value, ApiFailure>> {
        let url = format!("{}{path}", self.base);
        let body = body.to_string();
        self.call(path, || {
            self.agent
                .post(&url)
                .header("X-API-Key", &self.key)
                .header("Content-Type", "application/json")
                .send(&body)
        })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Result<Value, ApiFailure>> {
        let url = format!("{}{path}", self.base);
        self.call(path, || {
            self.agent.get(&url).header("X-API-Key", &self.key).call()
        })
    }

    /// `POST /api/runs`
    pub fn run(&self, body: &Value) -> anyhow::Result<Result<Value, ApiFailure>> {
        self.post("/api/runs", body)
    }

    /// The upload flow; answers the `complete` body (with `media_ref` and `sha256`).
    pub fn upload(
        &self,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Result<Value, ApiFailure>> {
        let init = match self.post(
            "/api/media/upload/init",
            &json!({"filename": filename, "content_type": content_type,
                    "media_type": "image", "size_bytes": bytes.len()}),
        )? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let url = init["upload_url"]
            .as_str()
            .context("init answered no upload_url")?
            .to_string();
        let id = init["upload_id"]
            .as_str()
            .context("init answered no upload_id")?
            .to_string();
        if let Err(e) = self.call("upload PUT", || {
            self.agent
                .put(&url)
                .header("Content-Type", content_type)
                .send(bytes)
        })? {
            return Ok(Err(e));
        }
        self.post("/api/media/upload/complete", &json!({ "upload_id": id }))
    }
}

/// `Ok` or a readable error naming what failed.
pub fn expect_ok(what: &str, answer: Result<Value, ApiFailure>) -> anyhow::Result<Value> {
    answer.map_err(|e| anyhow::anyhow!("{what}: {e}"))
}
