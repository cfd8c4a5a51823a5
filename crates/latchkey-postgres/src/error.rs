//! Why a store could not be built.

use crate::ident::InvalidIdentifier;

/// Why a [`PostgresStore`](crate::PostgresStore) could not be built.
///
/// Named for its crate so that a glob import of `latchkey::postgres::*` next to
/// `latchkey::*` does not shadow the middleware's `ConfigError`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresConfigError {
    /// A schema or table name that is not a plain identifier.
    #[error("invalid schema or table name")]
    Identifier(#[source] InvalidIdentifier),
    /// The URL is not a PostgreSQL connection string.
    #[error("not a PostgreSQL URL")]
    Url(#[source] tokio_postgres::Error),
    /// The pool could not be built from the URL's connection settings.
    #[error("the connection pool could not be built")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// A setting that shapes the connections (`pool_size`, `connect_timeout`,
    /// `statement_timeout`, `application_name`, TLS) was given for a store on
    /// the application's own pool: configure that pool instead.
    #[error("{0} shapes the pool's connections; set it on the pool given to builder_on_pool")]
    PoolSetting(&'static str),
    /// TLS cannot be set up as asked: the URL's `sslmode` requires TLS and this
    /// build has no TLS feature, contradicts the builder's TLS settings, or a
    /// root certificate does not parse or none is to be found.
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong, and what to do about it.
        reason: String,
        /// The TLS library's error, when it reported one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}
