//! The HTTP client of the bench: one pooled `reqwest` client shared by every worker,
//! each call timed from sending the request to the last byte of the answer.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Which of the run's tokens a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads and the four supervisor actions.
    Supervisor,
    /// Creating conversations and writing the directory.
    Integration,
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// An answer the contract allows for a request that raced with the state or the
    /// rules: 409, 412 or 422, with its problem `code`.
    Refused(String),
    /// Anything else: 5xx, an unexpected 4xx, or no answer at all.
    Error(String),
}

/// An answered (or failed) call.
#[derive(Debug)]
pub struct Answer {
    pub status: Option<StatusCode>,
    pub body: Value,
    pub outcome: Outcome,
    /// Send to last byte; `None` when there was no answer.
    pub latency: Option<Duration>,
}

/// A daemon under test.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    supervisor: String,
    integration: String,
}

impl Api {
    pub fn new(base: &str, supervisor_token: String, integration_token: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            supervisor: supervisor_token,
            integration: integration_token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client and tokens against another daemon (its connections are pooled
    /// apart from this one's).
    pub fn at(&self, base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), ..self.clone() }
    }

    /// Makes one call. `if_match` sends `If-Match: "<version>"`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        role: Role,
        if_match: Option<u64>,
        body: Option<&Value>,
    ) -> Answer {
        let token = match role {
            Role::Supervisor => &self.supervisor,
            Role::Integration => &self.integration,
        };
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(v) = if_match {
            req = req.header("if-match", format!("\"{v}\""));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let started = Instant::now();
        let answer = async {
            let resp = req.send().await?;
            let status = resp.status();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        }
        .await;
        let latency = started.elapsed();
        match answer {
            Err(e) => {
                Answer { status: None, body: Value::Null, outcome: Outcome::Error(transport_error(&e)), latency: None }
            }
            Ok((status, bytes)) => {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let outcome = classify(status, &body);
                Answer { status: Some(status), body, outcome, latency: Some(latency) }
            }
        }
    }

    /// A GET that only reads, for set-up and bookkeeping (not measured).
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Role::Supervisor, None, None).await
    }
}

fn classify(status: StatusCode, body: &Value) -> Outcome {
    let code = body["code"].as_str().unwrap_or("").to_owned();
    if status.is_success() {
        Outcome::Ok
    } else if matches!(status.as_u16(), 409 | 412 | 422) {
        Outcome::Refused(if code.is_empty() { status.as_u16().to_string() } else { code })
    } else {
        let detail = body["detail"].as_str().unwrap_or("");
        Outcome::Error(format!("HTTP {} {code}: {detail}", status.as_u16()).trim_end_matches([' ', ':']).to_owned())
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_ok_refused_or_errors() {
        assert_eq!(classify(StatusCode::OK, &Value::Null), Outcome::Ok);
        let refusal = json!({"code": "not_eligible", "detail": "no"});
        assert_eq!(classify(StatusCode::UNPROCESSABLE_ENTITY, &refusal), Outcome::Refused("not_eligible".into()));
        assert_eq!(classify(StatusCode::PRECONDITION_FAILED, &Value::Null), Outcome::Refused("412".into()));
        let bad = json!({"code": "bad_request", "detail": "unknown field"});
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &bad),
            Outcome::Error("HTTP 400 bad_request: unknown field".into())
        );
        assert_eq!(classify(StatusCode::BAD_GATEWAY, &Value::Null), Outcome::Error("HTTP 502".into()));
    }
}
