//! RFC 9457 problem details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem response. `code` is the stable, machine-readable reason clients switch on.
///
/// It is also the problem's schema in the OpenAPI document, under the component name
/// `ProblemDoc` that generated clients know; the doc comments of its fields are the published
/// descriptions. Members other than the typed ones (`extensions`) are not in the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ProblemDoc, description = "A problem (RFC 9457), as every 4xx and 5xx is.")]
pub struct Problem {
    // Each code has its own type URI (`about:blank` style is avoided).
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// The stable code clients switch on (`insufficient_funds`, `pin_wrong`, …).
    pub code: String,
    // Never secrets.
    /// This occurrence, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `invalid_request`: the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `pin_wrong`: guesses left before the PIN locks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    /// For `limit_exceeded`: the spending limit the operation would pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<ExceededLimit>,
    /// Other extension members (RFC 9457 §3.2).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

/// A spending limit an operation would pass, and what remains under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExceededLimit {
    /// `withdrawal`, `transfer` or `hold`.
    pub kind: &'static str,
    /// `per_transaction`, `rolling_24h`, `rolling_7d` or `rolling_30d`.
    pub window: &'static str,
    /// What one operation may still send under it, minor units.
    pub remaining_minor: i64,
}

impl Problem {
    /// A problem with `status`, stable `code` and `title`.
    #[must_use]
    pub fn new(status: StatusCode, code: &str, title: &str) -> Self {
        Self {
            kind: format!("https://coffer.dev/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: None,
            field: None,
            attempts_left: None,
            limit: None,
            extensions: serde_json::Map::new(),
        }
    }

    /// Adds an extension member (beyond the typed `field` and `attempts_left`).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// Adds the detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}
