//! Why a store could not be set up.

use latchkey_core::StoreError;

/// Why a [`RedisStore`](crate::RedisStore) could not be set up.
///
/// Named for its crate so that a glob import of `latchkey::redis::*` next to
/// `latchkey::*` shadows nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The URL is not a Redis URL (`redis://`, `rediss://`, `unix://`,
    /// and their `valkey` forms).
    #[error("not a Redis URL")]
    Url(#[source] redis::RedisError),
    /// The nodes given to
    /// [`connect_cluster`](crate::RedisStore::connect_cluster) do not make
    /// one cluster client: none, or different credentials or TLS settings.
    #[error("the node URLs do not make a cluster client")]
    Cluster(#[source] redis::RedisError),
    /// TLS cannot be set up as asked: a `rediss://` URL in a build without a
    /// TLS feature, a root certificate that does not parse or was given for a
    /// plain-text URL, or no root certificate to trust.
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong, and what to do about it.
        reason: &'static str,
        /// The TLS library's error, when it reported one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The check at start-up failed: Redis did not answer in time, or
    /// refused (a wrong password, say). From
    /// [`connect`](crate::RedisStore::connect) and
    /// [`connect_cluster`](crate::RedisStore::connect_cluster), which check
    /// at once, never from [`build`](crate::RedisStoreBuilder::build).
    #[error("Redis failed the start-up check")]
    CheckFailed(#[source] StoreError),
}

impl RedisSetupError {
    pub(crate) fn tls(reason: &'static str, source: impl Into<Option<redis::RedisError>>) -> Self {
        Self::Tls {
            reason,
            source: source.into().map(|err| Box::new(err) as _),
        }
    }
}
