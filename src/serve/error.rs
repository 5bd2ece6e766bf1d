//! Every error a request can get, as one enum mapped to an HTTP status and OpenAI's error
//! body `{"error": {"message", "type", "param"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: a field is missing, has the wrong type or is out of range (`param` names it).
    Invalid {
        param: Option<String>,
        message: String,
    },
    /// 404: no model with this id is served (`param` = `model`).
    UnknownModel { id: String, known: Vec<String> },
    /// 400: the model cannot do what the route asks (`param` = `model`).
    WrongModel { id: String, message: String },
    /// 404 / 405: no such route or method.
    NotFound(String),
    /// 413: the body or the token count is over a limit.
    TooLarge {
        param: Option<String>,
        message: String,
    },
    /// 429: every request slot is busy.
    Busy { limit: usize },
    /// 503: the server is shutting down.
    ShuttingDown,
    /// 500: the model failed.
    Internal(String),
    /// Any status axum's extractors decided (malformed JSON: 400, wrong content type: 415).
    Rejected { status: StatusCode, message: String },
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<String>,
    code: Option<&'a str>,
}

impl ApiError {
    /// A bad value of `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::WrongModel { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnknownModel { .. } | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Rejected { status, .. } => *status,
        }
    }

    fn parts(&self) -> (String, &'static str, Option<String>) {
        match self {
            ApiError::Invalid { param, message } => {
                (message.clone(), "invalid_request_error", param.clone())
            }
            ApiError::UnknownModel { id, known } => (
                format!(
                    "model `{id}` is not served here; use one of: {} (GET /v1/models)",
                    known.join(", ")
                ),
                "invalid_request_error",
                Some("model".into()),
            ),
            ApiError::WrongModel { id, message } => (
                format!("model `{id}`: {message}"),
                "invalid_request_error",
                Some("model".into()),
            ),
            ApiError::NotFound(m) => (m.clone(), "not_found_error", None),
            ApiError::TooLarge { param, message } => {
                (message.clone(), "invalid_request_error", param.clone())
            }
            ApiError::Busy { limit } => (
                format!(
                    "all {limit} request slots are busy; retry later (the server's --max-concurrency)"
                ),
                "rate_limit_error",
                None,
            ),
            ApiError::ShuttingDown => ("the server is shutting down".into(), "server_error", None),
            ApiError::Internal(m) => (m.clone(), "server_error", None),
            ApiError::Rejected { message, .. } => (message.clone(), "invalid_request_error", None),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let (message, kind, param) = self.parts();
        serde_json::to_value(Body {
            error: Inner {
                message,
                kind,
                param,
                code: None,
            },
        })
        .unwrap_or_default()
    }
}

/// Seconds a client told 429 waits before retrying (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::Busy { .. }) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let message = r.body_text();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge {
                param: None,
                message: format!("{message}; the body limit is the server's --max-body-bytes"),
            };
        }
        // serde_path_to_error puts the field first: "…: max_tokens: invalid type: …".
        match field_error(&message) {
            Some((param, message)) => ApiError::Invalid {
                param: Some(param),
                message,
            },
            None => ApiError::Rejected { status, message },
        }
    }
}

/// What axum's JSON rejection says of a field, in the API's words: (`param`, message).
/// `"…target type: prompt: data did not match any variant of untagged enum Texts at line 1
/// column 24"` → (`prompt`, "`prompt` must be a string, a list of strings, …").
fn field_error(text: &str) -> Option<(String, String)> {
    let (syntax, rest) = match text.split_once("target type: ") {
        Some((_, rest)) => (false, rest),
        None => (true, text.split_once("as JSON: ")?.1),
    };
    let rest = rest.split(" at line ").next().unwrap_or(rest);
    if let Some(field) = rest
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        return Some((
            field.to_string(),
            format!("`{field}` is missing; the request needs it"),
        ));
    }
    let (path, what) = rest.split_once(": ")?;
    let field = path.split(['.', '[']).next().unwrap_or(path);
    if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let message = if syntax {
        format!("the body is not valid JSON at `{path}`: {what}")
    } else if what.contains("untagged enum Texts") {
        format!(
            "`{path}` must be a string, a list of strings, a list of token ids or a list of such lists"
        )
    } else {
        format!("`{path}`: {what}")
    };
    Some((field.to_string(), message))
}
