//! Why one attempt at an operation failed, and what the caller is told.

use std::time::Duration;

use deadpool_postgres::PoolError;
use latchkey_core::StoreError;

use crate::store::STORE;

/// Why one attempt at an operation failed.
pub(crate) enum Failure {
    Pool(PoolError),
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<PoolError> for Failure {
    fn from(err: PoolError) -> Self {
        Failure::Pool(err)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Self {
        Failure::Db(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

impl Failure {
    /// The connection was found closed (the server restarted, or an
    /// administrator terminated the backend), before or while the statement
    /// ran: only an idempotent statement may be retried on a fresh connection.
    pub(crate) fn connection_was_closed(&self) -> bool {
        matches!(self, Failure::Db(err) if err.is_closed())
    }

    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            Failure::Pool(PoolError::Timeout(_)) => StoreError::Timeout {
                store: STORE,
                after: Duration::ZERO,
            },
            Failure::Pool(err) => StoreError::backend(STORE, err),
            Failure::Db(err) => StoreError::backend(STORE, err),
            Failure::Store(err) => err,
        }
    }
}
