//! Errors of the store contract.

use std::error::Error as StdError;
use std::time::Duration;

/// A boxed error from a store's driver, kept whole so `source()` chains work.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a store operation failed.
///
/// Outcomes that are part of the contract (a compare-and-set conflict, a session
/// that is gone) are not errors: see [`SaveOutcome`](crate::SaveOutcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `create` found a session under this id already; retry with a new token.
    #[error("a session with this id already exists")]
    IdCollision,
    /// The store holds as many sessions as it was configured to.
    #[error("the session store is full ({capacity} sessions)")]
    CapacityExceeded {
        /// The configured bound.
        capacity: usize,
    },
    /// The backend did not answer within the configured time.
    #[error("{store} did not answer within {after:?}")]
    Timeout {
        /// Which backend, e.g. `"redis"`.
        store: &'static str,
        /// The configured timeout.
        after: Duration,
    },
    /// The backend failed: connection refused, protocol error, query error, ...
    #[error("{store} failed")]
    Backend {
        /// Which backend, e.g. `"postgres"`.
        store: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A stored record could not be decoded.
    #[error("stored session could not be decoded")]
    Corrupt {
        /// The decoding error.
        #[source]
        source: BoxError,
    },
    /// A record could not be encoded for the store.
    #[error("session could not be encoded for the store")]
    Encode {
        /// The encoding error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Wraps a driver error, keeping it as the `source()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::error::Error as _;
    /// use latchkey_core::StoreError;
    ///
    /// let err = StoreError::backend("redis", std::io::Error::other("connection refused"));
    /// assert_eq!(err.to_string(), "redis failed");
    /// assert_eq!(err.source().unwrap().to_string(), "connection refused");
    /// ```
    pub fn backend(store: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            store,
            source: source.into(),
        }
    }

    /// Wraps an error met while decoding a stored record.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey_core::StoreError;
    ///
    /// let bad = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    /// assert!(matches!(StoreError::corrupt(bad), StoreError::Corrupt { .. }));
    /// ```
    pub fn corrupt(source: impl Into<BoxError>) -> Self {
        Self::Corrupt {
            source: source.into(),
        }
    }

    /// Wraps an error met while encoding a record.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey_core::StoreError;
    ///
    /// let err = StoreError::encode(std::io::Error::other("too deep"));
    /// assert!(matches!(err, StoreError::Encode { .. }));
    /// ```
    pub fn encode(source: impl Into<BoxError>) -> Self {
        Self::Encode {
            source: source.into(),
        }
    }
}

/// Why a session token could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The text is not 43 characters of unpadded base64url encoding 32 bytes.
    #[error("malformed session token")]
    Malformed,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Entropy(#[source] std::io::Error),
}
