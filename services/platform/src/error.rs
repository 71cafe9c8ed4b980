//! The one error shape every API answers with:
//! `{"error": {"type", "code", "message", "param"?}}` and an honest status code.
//!
//! Client-facing errors carry what the caller can act on. Internal failures are logged
//! with their detail and leave as a bare `api_error` 500, so nothing internal leaks.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An error as callers see it. Also what services pass each other over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{status} {kind}/{code}: {message}")]
pub struct ApiError {
    #[serde(skip, default = "internal_status")]
    pub status: u16,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub param: Option<String>,
}

fn internal_status() -> u16 {
    500
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: u16, kind: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: kind.into(),
            code: code.into(),
            message: message.into(),
            param: None,
        }
    }

    /// 400: a field is missing or wrong.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            ..Self::new(400, "invalid_request_error", "parameter_invalid", message)
        }
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    /// 404: does not exist, or belongs to someone else (callers cannot tell which).
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "resource_missing",
            format!("no such {what}: '{id}'"),
        )
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(409, "invalid_request_error", code, message)
    }

    /// 401.
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::new(401, "authentication_error", code, message)
    }

    /// 503: a dependency could not be reached; safe to retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "api_error", "service_unavailable", message)
    }

    /// 500. The detail is logged here and never sent.
    #[track_caller]
    pub fn internal(err: impl std::fmt::Display) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(at = %at, "internal error: {err:#}");
        Self::new(
            500,
            "api_error",
            "internal_error",
            "an internal error occurred",
        )
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The response body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self })
    }
}

impl From<sqlx::Error> for ApiError {
    #[track_caller]
    fn from(err: sqlx::Error) -> Self {
        Self::internal(err)
    }
}

impl From<anyhow::Error> for ApiError {
    #[track_caller]
    fn from(err: anyhow::Error) -> Self {
        Self::internal(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status_code(), axum::Json(self.body())).into_response()
    }
}

/// `axum::Json` whose rejections answer in our error shape.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let detail = std::error::Error::source(&e).map_or(e.body_text(), |s| s.to_string());
            let param = field_named_by(&detail).map(str::to_owned);
            ApiError {
                param,
                ..ApiError::bad_request("parameter_invalid", detail)
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "body_invalid",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            415,
            "invalid_request_error",
            "content_type_invalid",
            "send the body as application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            body_too_large()
        }
        other => ApiError::bad_request("body_invalid", other.body_text()),
    }
}

/// The field a serde message is about, when it names one: only "missing field `x`",
/// "unknown field `x`" and "duplicate field `x`" do. Other messages quote the offending
/// value instead ("invalid type: integer `-3137`, expected …"), which is no parameter.
fn field_named_by(message: &str) -> Option<&str> {
    ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|opening| message.strip_prefix(opening))
        .and_then(|rest| rest.split('`').next())
}

/// 413 in our shape.
pub fn body_too_large() -> ApiError {
    ApiError::new(
        413,
        "invalid_request_error",
        "body_too_large",
        "the request body is too large",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_has_type_code_message_and_optional_param() {
        let body = ApiError::invalid("amount", "must be positive").body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "amount");
        let body = ApiError::not_found("payment", "pay_x").body();
        assert!(body["error"].get("param").is_none());
        assert!(body["error"].get("status").is_none());
    }

    #[test]
    fn param_is_a_field_name_never_the_offending_value() {
        let named = [
            ("missing field `url` at line 1 column 2", Some("url")),
            (
                "unknown field `colour`, expected one of `url`, `events`",
                Some("colour"),
            ),
            ("duplicate field `url` at line 1 column 30", Some("url")),
            (
                "invalid type: integer `-3137`, expected a sequence at line 1 column 15",
                None,
            ),
            ("invalid value: string `x`, expected one of `a`", None),
        ];
        for (message, field) in named {
            assert_eq!(field_named_by(message), field, "{message}");
        }
    }
}
