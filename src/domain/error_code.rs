//! The error code catalogue: a stable code on every ERROR/FAILED event and failed attempt,
//! with a level and what to do about it.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Timeout,
    Unauthorized,
    ConnectionError,
    BlockedAddress,
    UntrustedServer,
    NotFound,
    Duplicate,
    RateLimited,
    ServerError,
    InvalidSchema,
    TemplateError,
    TransformTimeout,
    TransformMemory,
    TransformError,
    OutputTooLarge,
    LookupNotFound,
    InvalidApiResponse,
    SourceError,
    Aborted,
    Unknown,
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorCodeInfo {
    pub code: ErrorCode,
    /// `warning` or `error`.
    pub level: &'static str,
    /// A few words to show in a list.
    pub title: &'static str,
    pub description: &'static str,
    pub action: &'static str,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::Timeout,
        ErrorCode::Unauthorized,
        ErrorCode::ConnectionError,
        ErrorCode::BlockedAddress,
        ErrorCode::UntrustedServer,
        ErrorCode::NotFound,
        ErrorCode::Duplicate,
        ErrorCode::RateLimited,
        ErrorCode::ServerError,
        ErrorCode::InvalidSchema,
        ErrorCode::TemplateError,
        ErrorCode::TransformTimeout,
        ErrorCode::TransformMemory,
        ErrorCode::TransformError,
        ErrorCode::OutputTooLarge,
        ErrorCode::LookupNotFound,
        ErrorCode::InvalidApiResponse,
        ErrorCode::SourceError,
        ErrorCode::Aborted,
        ErrorCode::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::ConnectionError => "CONNECTION_ERROR",
            ErrorCode::BlockedAddress => "BLOCKED_ADDRESS",
            ErrorCode::UntrustedServer => "UNTRUSTED_SERVER",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Duplicate => "DUPLICATE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::ServerError => "SERVER_ERROR",
            ErrorCode::InvalidSchema => "INVALID_SCHEMA",
            ErrorCode::TemplateError => "TEMPLATE_ERROR",
            ErrorCode::TransformTimeout => "TRANSFORM_TIMEOUT",
            ErrorCode::TransformMemory => "TRANSFORM_MEMORY",
            ErrorCode::TransformError => "TRANSFORM_ERROR",
            ErrorCode::OutputTooLarge => "OUTPUT_TOO_LARGE",
            ErrorCode::LookupNotFound => "LOOKUP_NOT_FOUND",
            ErrorCode::InvalidApiResponse => "INVALID_API_RESPONSE",
            ErrorCode::SourceError => "SOURCE_ERROR",
            ErrorCode::Aborted => "ABORTED",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// A few words naming what went wrong.
    pub fn title(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Timeout => "Timed out",
            Unauthorized => "Credentials refused",
            ConnectionError => "Could not connect",
            BlockedAddress => "Internal address refused",
            UntrustedServer => "Server not trusted",
            NotFound => "Not found",
            Duplicate => "Duplicate or conflict",
            RateLimited => "Rate limited",
            ServerError => "Server error at the other system",
            InvalidSchema => "Record refused as invalid",
            TemplateError => "Template failed",
            TransformTimeout => "Transformation too slow",
            TransformMemory => "Transformation out of memory",
            TransformError => "Transformation failed",
            OutputTooLarge => "Output too large",
            LookupNotFound => "Lookup key missing",
            InvalidApiResponse => "Unexpected answer",
            SourceError => "Source could not be read",
            Aborted => "Aborted",
            Unknown => "Unexpected error",
        }
    }

    pub fn info(self) -> ErrorCodeInfo {
        use ErrorCode::*;
        let (level, description, action) = match self {
            Timeout => ("warning", "The other system did not answer in time.", "Usually passes on retry; if it persists, raise the destination's timeout or check the system's status."),
            Unauthorized => ("error", "The other system refused the credentials.", "Check the key's credentials and permissions, then replicate the event."),
            ConnectionError => ("warning", "The other system could not be reached.", "Check the URL (or host, port and TLS setting) and that the system is up; retries continue on the schedule."),
            BlockedAddress => ("error", "The URL's host is, or resolves to, an internal address (loopback, private, link-local, shared, multicast, reserved or cloud metadata), which Wharf does not call.", "Use the system's public address; if the internal host is meant to be reached, an operator adds it to outbound.allow (a network or host name), then replicate."),
            UntrustedServer => ("error", "The server's TLS certificate or SSH host key is not the one the key trusts: Wharf does not send credentials or data to a server it cannot identify.", "If the server's certificate or host key was changed on purpose, put the new one in the key (`tls_ca`, `host_key`), then replicate; otherwise ask the server's owner, as someone may be in the way."),
            NotFound => ("error", "The other system has no such resource, endpoint, folder or recipient.", "Check the destination's URL, path or addresses, or the record's references, then replicate."),
            Duplicate => ("warning", "The other system reports a conflict or duplicate.", "Check whether the record already exists there before replicating."),
            RateLimited => ("warning", "The other system asked us to slow down.", "Nothing to do: retries honour its Retry-After."),
            ServerError => ("warning", "The other system failed with a server error.", "Usually passes on retry; contact the system's support if it persists."),
            InvalidSchema => ("error", "The record does not have the shape the other system expects.", "Fix the transformation or the source data, then replicate with an edited payload."),
            TemplateError => ("error", "The template could not be rendered.", "Fix the template; test it with POST /transformations/{id}/test."),
            TransformTimeout => ("error", "The transformation ran past its time limit.", "Look for loops in the transformation code."),
            TransformMemory => ("error", "The transformation ran past its memory or stack limit.", "Reduce what the transformation builds in memory; look for runaway recursion."),
            TransformError => ("error", "The transformation failed: it threw, or returned something that is not an output.", "Read the message (it gives the line and column), fix the code or the record, and test it with POST /transformations/{id}/test."),
            OutputTooLarge => ("error", "The transformation's output is larger than the configured limit.", "Split the record (return an array) or raise transform.max_output_kib."),
            LookupNotFound => ("error", "A lookup table has no entry for the key and no default was given.", "Add the key to the lookup table (or give a default), then replicate the event."),
            InvalidApiResponse => ("error", "The other system answered with something unexpected.", "Check the response excerpt on the attempt."),
            SourceError => ("error", "The source could not be read.", "Check the source's URL, key and params, then replicate the job."),
            Aborted => ("warning", "Stopped by a user or because the stream was deactivated.", "Replicate when ready."),
            Unknown => ("error", "An unexpected error occurred.", "Check the message; report it if it persists."),
        };
        ErrorCodeInfo {
            code: self,
            level,
            title: self.title(),
            description,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_lists_every_code_once_with_what_to_do() {
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let info = code.info();
            assert!(matches!(info.level, "warning" | "error"), "{code:?}");
            assert!(
                !info.title.is_empty() && !info.description.is_empty() && !info.action.is_empty()
            );
            let shown = serde_json::to_value(code).unwrap();
            assert_eq!(shown, code.as_str());
        }
        let blocked = ErrorCode::BlockedAddress.info();
        assert_eq!(ErrorCode::BlockedAddress.as_str(), "BLOCKED_ADDRESS");
        assert_eq!(blocked.level, "error");
        assert!(blocked.action.contains("outbound.allow"));
    }
}
