//! The ARM error: an HTTP status and Azure's `{"error":{"code","message"}}` body.

use axum::http::StatusCode;

/// An error answered to an ARM request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArmError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl ArmError {
    /// An error with any status.
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 409 Conflict.
    pub(crate) fn conflict(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(StatusCode::CONFLICT, code, message)
    }

    /// 404 `ResourceNotFound`, worded as ARM words it.
    pub(crate) fn not_found(resource_type: &str, name: &str, rg: &str) -> ArmError {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The Resource '{resource_type}/{name}' under resource group '{rg}' was not found."),
        )
    }

    /// 404 `ResourceGroupNotFound`.
    pub(crate) fn resource_group_not_found(rg: &str) -> ArmError {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    }

    /// 400 `InvalidParameterValue`.
    pub(crate) fn invalid_parameter(message: impl Into<String>) -> ArmError {
        ArmError::bad_request("InvalidParameterValue", message)
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}
