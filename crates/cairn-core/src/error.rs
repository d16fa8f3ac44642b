//! Domain outcomes that every layer understands; the web crate maps them to HTTP.

/// What can go wrong in a domain operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was violated; `attribute` names the attribute (e.g. `userName`).
    #[error("{attribute} is already taken")]
    Conflict { attribute: &'static str },
    /// An `If-Match` (or internal optimistic) version check failed.
    #[error("the resource was changed by another request")]
    VersionMismatch,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("not authenticated")]
    Unauthorized,
    #[error("not allowed")]
    Forbidden,
    /// The storage backend cannot serve requests right now (busy, disk full, read-only,
    /// connection lost). Retryable.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
