//! Validation of HTTP exchanges against the providers' official OpenAPI documents in
//! `specs/`: request bodies our clients send, response bodies our simulators return.

use crate::Provider;

/// One request/response pair as it crossed the wire.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exchange {
    pub provider: Provider,
    /// Upper-case HTTP method.
    pub method: String,
    /// The concrete path without the query string, e.g. `/v1/projects/abcdefghijklmnopqrst`.
    pub path: String,
    pub status: u16,
    /// `None` when there was no body or it was not JSON.
    pub request_body: Option<serde_json::Value>,
    pub response_body: Option<serde_json::Value>,
}

/// Which side of an exchange broke the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Direction {
    Request,
    Response,
}

/// One way in which an exchange does not match its provider's spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub provider: Provider,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub direction: Direction,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {} {} -> {} ({:?}): {}",
            self.provider, self.method, self.path, self.status, self.direction, self.message
        )
    }
}
