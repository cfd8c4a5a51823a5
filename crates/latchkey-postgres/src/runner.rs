//! Running statements on pooled connections within the operation timeout,
//! retried only where sending twice is harmless.

use std::future::Future;

use deadpool_postgres::{Object, PoolError};
use latchkey_core::StoreError;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::failure::Failure;
use crate::store::{PostgresStore, STORE};

/// A statement's parameter.
pub(crate) type Param<'a> = dyn ToSql + Sync + 'a;

impl PostgresStore {
    pub(crate) fn timed_out(&self) -> StoreError {
        StoreError::Timeout {
            store: STORE,
            after: self.shared.timeout,
        }
    }

    /// Runs an idempotent `attempt` (a read, a delete, a touch) on a pooled
    /// connection within the timeout, once more on a fresh connection if the
    /// first one turned out to be closed: sending it twice is harmless.
    pub(crate) async fn run<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let work = async {
            let first = attempt(self.pool.get().await?).await;
            match first {
                Err(failure) if failure.connection_was_closed() => {
                    tracing::debug!("postgres connection was closed; retrying on a fresh one");
                    attempt(self.open_connection().await?).await
                }
                other => other,
            }
        };
        self.bounded(work).await
    }

    /// Runs a write that must not be sent twice (create, compare-and-set): a
    /// connection seen closed before sending is replaced, but once the statement
    /// went out, a failure is reported, never retried. tokio-postgres reports a
    /// connection that died while the statement was in flight as closed too,
    /// and the statement may have committed.
    pub(crate) async fn run_once<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.bounded(async { attempt(self.open_connection().await?).await })
            .await
    }

    /// Executes one idempotent statement, prepared once per connection, as
    /// [`run`](Self::run) does, returning how many rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&Param<'_>],
    ) -> Result<u64, StoreError> {
        self.run(|client| async move {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.execute(&stmt, params).await?)
        })
        .await
    }

    /// The rows of one idempotent query, prepared once per connection, as
    /// [`run`](Self::run) does.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        self.run(|client| async move {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, params).await?)
        })
        .await
    }

    /// The row, if any, of one idempotent query, prepared once per
    /// connection, as [`run`](Self::run) does.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        self.run(|client| async move {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query_opt(&stmt, params).await?)
        })
        .await
    }

    /// A pooled connection that is not known to be closed.
    async fn open_connection(&self) -> Result<Object, Failure> {
        for _ in 0..3 {
            let client = self.pool.get().await?;
            if !client.is_closed() {
                return Ok(client);
            }
            // Dropped connections that report closed are discarded by the pool.
        }
        Ok(self.pool.get().await?)
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.shared.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failure::Pool(PoolError::Timeout(_)))) | Err(_) => Err(self.timed_out()),
            Ok(Err(failure)) => Err(failure.into_store_error()),
        }
    }
}
