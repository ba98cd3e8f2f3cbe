//! Errors of every AWS adapter, classified by what a caller does about them.

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an AWS call ended in.
///
/// Callers branch on this, never on service error codes: the code sniffing lives in
/// [`AwsError::from_sdk`] alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The bucket, key, parameter, group or instance does not exist.
    NotFound,
    /// The credentials are missing, expired or lack the permission.
    AccessDenied,
    /// The service asked us to slow down; retried by the SDK and still failing.
    Throttled,
    /// The request was rejected as invalid (bad name, value out of range, …).
    Validation,
    /// The request never got an answer: connection refused, DNS, TLS, timeout.
    Transport,
    /// The service failed (5xx) or answered with an error we do not classify.
    Service,
}

impl fmt::Display for AwsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AwsErrorKind::NotFound => "not found",
            AwsErrorKind::AccessDenied => "access denied",
            AwsErrorKind::Throttled => "throttled",
            AwsErrorKind::Validation => "invalid request",
            AwsErrorKind::Transport => "could not reach the service",
            AwsErrorKind::Service => "service error",
        })
    }
}

/// A failed AWS call: which operation, on what, and why.
///
/// The message never contains request payloads (parameter values, object bodies,
/// tokens): only the service's own error code and message, which name resources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {resource}: {kind}{}", detail(.code.as_deref(), .message.as_str()))]
pub struct AwsError {
    pub kind: AwsErrorKind,
    pub operation: &'static str,
    pub resource: String,
    pub code: Option<String>,
    pub message: String,
}

fn detail(code: Option<&str>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(code), true) => format!(" ({code})"),
        (Some(code), false) => format!(" ({code}): {message}"),
        (None, true) => String::new(),
        (None, false) => format!(": {message}"),
    }
}

impl AwsError {
    pub fn new(
        kind: AwsErrorKind,
        operation: &'static str,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> AwsError {
        AwsError { kind, operation, resource: resource.into(), code: None, message: message.into() }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == AwsErrorKind::NotFound
    }

    /// Classifies an SDK error.
    pub fn from_sdk<E>(
        operation: &'static str,
        resource: impl Into<String>,
        error: SdkError<E, HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let resource = resource.into();
        match &error {
            SdkError::ServiceError(context) => {
                let status = context.raw().status().as_u16();
                let service_error = context.err();
                let code = service_error.code().map(str::to_owned);
                let message = service_error.message().unwrap_or_default().to_owned();
                let kind = classify(code.as_deref(), status);
                AwsError { kind, operation, resource, code, message }
            }
            // The SDK resolves credentials while dispatching; its only sign that none
            // were found is the error's text.
            SdkError::DispatchFailure(_)
                if DisplayErrorContext(&error).to_string().contains("no credentials found") =>
            {
                AwsError {
                    kind: AwsErrorKind::AccessDenied,
                    operation,
                    resource,
                    code: None,
                    message: "no AWS credentials found (environment, profile, web identity, container or instance)".to_owned(),
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => AwsError {
                kind: AwsErrorKind::Transport,
                operation,
                resource,
                code: None,
                message: DisplayErrorContext(&error).to_string(),
            },
            // ConstructionFailure and anything added later: the request could not be built.
            _ => AwsError {
                kind: AwsErrorKind::Validation,
                operation,
                resource,
                code: None,
                message: DisplayErrorContext(&error).to_string(),
            },
        }
    }
}

/// Maps a service error code (or, for code-less answers such as a HEAD 404, the HTTP
/// status) to a kind. Codes differ between services and protocols; these are the ones
/// S3, SSM, Auto Scaling, CloudWatch, ECR, CloudFormation, EC2 and STS send.
pub(crate) fn classify(code: Option<&str>, status: u16) -> AwsErrorKind {
    match code {
        Some(
            "NoSuchKey"
            | "NoSuchBucket"
            | "NotFound"
            | "NoSuchEntity"
            | "ParameterNotFound"
            | "ParameterVersionNotFound"
            | "ResourceNotFound"
            | "ResourceNotFoundException"
            | "RepositoryNotFoundException"
            | "RegistryNotFoundException"
            | "InvalidAMIID.NotFound"
            | "InvalidAMIID.Unavailable"
            | "InvalidSnapshot.NotFound",
        ) => AwsErrorKind::NotFound,
        Some(
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "Forbidden"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "AuthFailure"
            | "AllAccessDisabled",
        ) => AwsErrorKind::AccessDenied,
        Some(
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "SlowDown"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "ProvisionedThroughputExceededException"
            | "ScalingActivityInProgress",
        ) => AwsErrorKind::Throttled,
        Some(
            "ValidationError"
            | "ValidationException"
            | "InvalidParameterValue"
            | "InvalidParameterCombination"
            | "InvalidParameterException"
            | "InvalidRequest"
            | "InvalidArgument"
            | "InvalidBucketName"
            | "InvalidKeyId"
            | "InvalidInputException"
            | "MissingParameter"
            | "InvalidFilterKey"
            | "InvalidFilterValue"
            | "InvalidNextToken"
            | "ParameterLimitExceeded"
            | "LimitExceededException",
        ) => AwsErrorKind::Validation,
        _ => match status {
            404 => AwsErrorKind::NotFound,
            401 | 403 => AwsErrorKind::AccessDenied,
            429 => AwsErrorKind::Throttled,
            400..=499 => AwsErrorKind::Validation,
            _ => AwsErrorKind::Service,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_before_statuses() {
        assert_eq!(classify(Some("NoSuchKey"), 404), AwsErrorKind::NotFound);
        assert_eq!(classify(Some("ParameterNotFound"), 400), AwsErrorKind::NotFound);
        assert_eq!(classify(Some("AccessDeniedException"), 400), AwsErrorKind::AccessDenied);
        assert_eq!(classify(Some("Throttling"), 400), AwsErrorKind::Throttled);
        assert_eq!(classify(Some("ValidationError"), 400), AwsErrorKind::Validation);
        assert_eq!(classify(None, 404), AwsErrorKind::NotFound);
        assert_eq!(classify(None, 403), AwsErrorKind::AccessDenied);
        assert_eq!(classify(Some("SomethingNew"), 503), AwsErrorKind::Service);
    }

    #[test]
    fn message_names_operation_resource_and_cause() {
        let mut error = AwsError::new(
            AwsErrorKind::NotFound,
            "GetObject",
            "s3://b/k",
            "The specified key does not exist.",
        );
        error.code = Some("NoSuchKey".into());
        assert_eq!(
            error.to_string(),
            "GetObject s3://b/k: not found (NoSuchKey): The specified key does not exist."
        );
    }
}
