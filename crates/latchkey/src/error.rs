//! What can go wrong in a handler's use of the session, and what the client sees.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use latchkey_core::StoreError;

/// A session operation failed.
///
/// As an actix-web error it answers with an opaque body that names no internals:
/// store failures with the middleware's configured status (503 by default),
/// everything else with a 500.
///
/// # Examples
///
/// ```
/// use actix_web::ResponseError as _;
///
/// let err = latchkey::Error::TooManyKeys { limit: 8 };
/// assert_eq!(err.status_code(), actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
/// assert_eq!(err.to_string(), "session would hold more than 8 keys");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session store failed or timed out.
    #[error("session store failed")]
    Store(#[from] StoreError),
    /// A value could not be serialized into the session.
    #[error("session value for key {key:?} could not be serialized")]
    Serialize {
        /// The key being written.
        key: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value did not deserialize into the requested type.
    #[error("session value for key {key:?} could not be deserialized")]
    Deserialize {
        /// The key being read.
        key: String,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The change would make the session larger than the configured bound; the
    /// session is left as it was.
    #[error("session would grow to {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// The size the session would have had.
        size: usize,
        /// The configured bound.
        limit: usize,
    },
    /// The change would give the session more keys than the configured bound;
    /// the session is left as it was.
    #[error("session would hold more than {limit} keys")]
    TooManyKeys {
        /// The configured bound.
        limit: usize,
    },
    /// Concurrent requests kept changing the session; the change was not saved.
    #[error("session changed concurrently {retries} times; the change was not saved")]
    ConflictRetriesExhausted {
        /// How many times the change was replayed.
        retries: u32,
    },
    /// The request's session work (load, waiting for its turn, write-back) took
    /// longer than the configured
    /// [session deadline](crate::SessionMiddlewareBuilder::session_deadline).
    #[error("session work exceeded its deadline of {deadline:?}")]
    DeadlineExceeded {
        /// The configured deadline.
        deadline: std::time::Duration,
    },
    /// [`Session::remember`](crate::Session::remember) asked for an idle
    /// timeout under a millisecond or above the configured
    /// [bound](crate::SessionMiddlewareBuilder::max_remembered_idle_timeout);
    /// the session is left as it was.
    #[error("remembered idle timeout {requested:?} is not within 1 ms ..= {max:?}")]
    RememberOutOfBounds {
        /// The idle timeout asked for.
        requested: std::time::Duration,
        /// The configured bound.
        max: std::time::Duration,
    },
    /// The application tried to write a key starting with `latchkey.`, which
    /// the library keeps for its own values (flash messages, the CSRF token,
    /// the last proof of identity); the session is left as it was.
    #[error("session key {key:?} is reserved: keys starting with \"latchkey.\" are the library's")]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// `Session` was extracted in an app without `SessionMiddleware`.
    #[error("Session was used without SessionMiddleware wrapping the app")]
    MissingMiddleware,
    /// The session was taken or changed after the middleware wrote it back (in
    /// a middleware outside `SessionMiddleware`, or through a `Session` kept
    /// past the request): nothing done then could be saved.
    #[error("the session was used after SessionMiddleware wrote it back")]
    WrittenBack,
}

impl Error {
    /// Whether the error reached the client as the configured store-error status.
    pub(crate) fn is_store_failure(&self) -> bool {
        matches!(
            self,
            Error::Store(_)
                | Error::ConflictRetriesExhausted { .. }
                | Error::DeadlineExceeded { .. }
        )
    }
}

/// The body of every store-failure response: says nothing of the store.
pub(crate) const STORE_FAILURE_BODY: &str = "Session service temporarily unavailable.";

/// The answer to a request whose session store failed: the middleware's
/// configured status and an opaque body, the one place it is built.
#[derive(Debug, thiserror::Error)]
#[error("session store failed")]
pub(crate) struct StoreUnavailable(pub(crate) StatusCode);

impl ResponseError for StoreUnavailable {
    fn status_code(&self) -> StatusCode {
        self.0
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.0)
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(STORE_FAILURE_BODY)
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        if self.is_store_failure() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.is_store_failure() {
            return StoreUnavailable(self.status_code()).error_response();
        }
        HttpResponse::build(self.status_code())
            .content_type("text/plain; charset=utf-8")
            .body("Internal server error.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody as _;

    #[test]
    fn store_failures_answer_opaquely() {
        let err = Error::Store(StoreError::backend(
            "redis",
            std::io::Error::other("10.0.0.7:6379 refused"),
        ));
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().try_into_bytes().unwrap();
        assert_eq!(body, STORE_FAILURE_BODY.as_bytes());
    }

    #[test]
    fn sources_are_kept() {
        use std::error::Error as _;
        let err = Error::from(StoreError::backend(
            "redis",
            std::io::Error::other("refused"),
        ));
        let store = err.source().unwrap();
        assert_eq!(store.source().unwrap().to_string(), "refused");
    }
}
