//! The one error type of every handler: a status and the contract's JSON error body
//! (`beacon_api::ErrorBody`), from store errors and axum's rejections.

use super::*;

/// An error answer: a status and a JSON body `{"error": "...", "field"?: "...", "offset"?: n}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short, lowercase, says what to do next.
    pub message: String,
    /// The JSON path of the offending field, when there is one.
    pub field: Option<String>,
    /// The byte offset of the offending frame, for frame bodies.
    pub offset: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            offset: None,
        }
    }
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub(super) fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The contract's error shape (`beacon_api::ErrorBody`, `Error` in openapi.json).
        let body = crate::model::ErrorBody {
            error: self.message,
            field: self.field,
            offset: self.offset,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            StoreError::Internal(m) => {
                tracing::error!("{m}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal store error; see the service log",
                )
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(format!(
            "bad path: {}; device ids are integers 0..=4294967295",
            e.body_text()
        ))
        .field("id")
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large (--max-body-bytes); split the batch".to_owned()
        } else {
            format!("cannot read the request body: {}", e.body_text())
        };
        Self::new(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        let text = e.body_text();
        let err = Self::bad_request(format!("bad query string: {text}"));
        match query_field(&text) {
            Some(field) => err.field(field),
            None => err,
        }
    }
}

/// The parameter a query-string error is about: axum reports `<field>: <problem>`, or
/// ``unknown field `x`, expected ...``.
pub(super) fn query_field(text: &str) -> Option<String> {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    if let Some(rest) = detail.strip_prefix("unknown field `") {
        return rest.split_once('`').map(|(f, _)| f.to_owned());
    }
    let (field, _) = detail.split_once(": ")?;
    (!field.is_empty()
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then(|| field.to_owned())
}

/// The bare media type of a request (`application/json`), lowercase; empty when absent.
pub(super) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}
