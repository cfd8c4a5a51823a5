//! `PostgresStore`: the session contract on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use latchkey_core::{
    Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionId, SessionStore,
    StoreError, Timestamp,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use crate::ident::Identifier;
use crate::rows::{decode, idle_timeout_param, system_time, version_param};
use crate::sql::Statements;

pub(crate) const STORE: &str = "postgres";

/// A [`SessionStore`] on PostgreSQL, over a `deadpool-postgres` pool.
///
/// Cloning is cheap; clones share the pool. Run [`PostgresStore::migrate`] once
/// at start-up.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use latchkey_postgres::PostgresStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::builder("postgres://app@127.0.0.1:5432/app")
///     .schema("sessions")?
///     .pool_size(16)
///     .timeout(Duration::from_secs(1))
///     .build()?;
/// store.migrate().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: Pool,
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) schema: Identifier,
    pub(crate) table: Identifier,
    pub(crate) timeout: Duration,
    pub(crate) cleanup_batch: i64,
    pub(crate) sql: Statements,
    pub(crate) runtime: RuntimeSlot,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.shared.schema.as_str())
            .field("table", &self.shared.table.as_str())
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    pub(crate) fn new(
        pool: Pool,
        schema: Identifier,
        table: Identifier,
        timeout: Duration,
        cleanup_batch: i64,
    ) -> Self {
        let sql = Statements::new(&schema, &table);
        Self {
            pool,
            shared: Arc::new(Shared {
                schema,
                table,
                timeout,
                cleanup_batch,
                sql,
                runtime: RuntimeSlot::new(),
            }),
        }
    }

    /// The pool, e.g. for health checks or metrics.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The schema of the sessions table.
    pub fn schema(&self) -> &str {
        self.shared.schema.as_str()
    }

    /// The sessions table.
    pub fn table(&self) -> &str {
        self.shared.table.as_str()
    }
}

/// How often `create` tries again when the row that blocked its insert went
/// away before it could be taken over; past it, a collision is reported and
/// the caller draws a new id.
const CREATE_ATTEMPTS: usize = 3;

/// The most statements `delete_by_owner` runs: each after the second only finds
/// sessions renewed while the previous one ran.
const DELETE_BY_OWNER_PASSES: usize = 8;

impl SessionStore for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        Some(&self.shared.runtime)
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let key = id.as_bytes().as_slice();
        let now = system_time(Timestamp::now());
        let row = self.query_opt(&self.shared.sql.load, &[&key, &now]).await?;
        row.map(|row| decode(&row, 0)).transpose()
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        let key = id.as_bytes().as_slice();
        let data = &Json(&record.data);
        let (created, idle, absolute, last_seen) = (
            system_time(record.created_at),
            system_time(record.deadlines.idle),
            system_time(record.deadlines.absolute),
            system_time(record.last_seen),
        );
        let now = system_time(Timestamp::now());
        let owner = record.owner.as_deref();
        let idle_timeout = idle_timeout_param(record);
        let inserted = self
            .run_once(|client| async move {
                let insert = client.prepare_cached(&self.shared.sql.create).await?;
                let replace = client
                    .prepare_cached(&self.shared.sql.replace_expired)
                    .await?;
                let is_live = client.prepare_cached(&self.shared.sql.is_live).await?;
                for _ in 0..CREATE_ATTEMPTS {
                    match client
                        .execute(
                            &insert,
                            &[
                                &key,
                                data,
                                &owner,
                                &created,
                                &idle,
                                &absolute,
                                &idle_timeout,
                                &last_seen,
                            ],
                        )
                        .await
                    {
                        Ok(_) => return Ok(true),
                        // Refused by the server, so nothing was written: the
                        // row under the id is live, expired, or going away.
                        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                        Err(err) => return Err(err.into()),
                    }
                    let replaced = client
                        .execute(
                            &replace,
                            &[
                                &key,
                                data,
                                &owner,
                                &created,
                                &idle,
                                &absolute,
                                &now,
                                &idle_timeout,
                                &last_seen,
                            ],
                        )
                        .await?;
                    if replaced == 1 {
                        return Ok(true);
                    }
                    if client.query_opt(&is_live, &[&key, &now]).await?.is_some() {
                        return Ok(false);
                    }
                    // The row went between the insert and the update (cleanup,
                    // a delete): the id is free, insert again.
                }
                Ok(false)
            })
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::IdCollision)
        }
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let key = id.as_bytes().as_slice();
        let expected = version_param(expected_version)?;
        let data = &Json(&record.data);
        let owner = record.owner.as_deref();
        let idle_timeout = idle_timeout_param(record);
        let (idle, absolute, last_seen) = (
            system_time(record.deadlines.idle),
            system_time(record.deadlines.absolute),
            system_time(record.last_seen),
        );
        let now = system_time(Timestamp::now());
        self.run_once(|client| async move {
            let stmt = client.prepare_cached(&self.shared.sql.save).await?;
            let saved = client
                .query_opt(
                    &stmt,
                    &[
                        &key,
                        &expected,
                        data,
                        &owner,
                        &idle,
                        &absolute,
                        &now,
                        &idle_timeout,
                        &last_seen,
                    ],
                )
                .await?;
            if let Some(row) = saved {
                let version: i64 = row.try_get(0).map_err(StoreError::corrupt)?;
                return Ok(SaveOutcome::Saved(
                    u64::try_from(version).map_err(StoreError::corrupt)?,
                ));
            }
            // Nothing written. A row live now was at another version; one
            // deleted since the update is missing, as if the save came after
            // the delete; a row gone or expired at the update stays so.
            let stmt = client.prepare_cached(&self.shared.sql.is_live).await?;
            Ok(match client.query_opt(&stmt, &[&key, &now]).await? {
                Some(_) => SaveOutcome::Conflict,
                None => SaveOutcome::Missing,
            })
        })
        .await
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = id.as_bytes().as_slice();
        let (idle, absolute) = (system_time(deadlines.idle), system_time(deadlines.absolute));
        let (now, seen_at) = (system_time(Timestamp::now()), system_time(seen_at));
        let updated = self
            .execute(
                &self.shared.sql.touch,
                &[&key, &idle, &absolute, &now, &seen_at],
            )
            .await?;
        Ok(updated == 1)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = id.as_bytes().as_slice();
        self.execute(&self.shared.sql.delete, &[&key]).await?;
        Ok(())
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        let key = id.as_bytes().as_slice();
        let expected = version_param(expected_version)?;
        let now = system_time(Timestamp::now());
        let row = self
            .run_once(|client| async move {
                let stmt = client
                    .prepare_cached(&self.shared.sql.delete_at_version)
                    .await?;
                Ok(client.query_one(&stmt, &[&key, &expected, &now]).await?)
            })
            .await?;
        let deleted: Option<i32> = row.try_get(0).map_err(StoreError::corrupt)?;
        let current: Option<i64> = row.try_get(1).map_err(StoreError::corrupt)?;
        Ok(match (deleted, current) {
            (Some(_), _) => DeleteOutcome::Deleted,
            (None, Some(_)) => DeleteOutcome::Conflict,
            (None, None) => DeleteOutcome::Missing,
        })
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        let now = system_time(Timestamp::now());
        let rows = self
            .query(&self.shared.sql.list_by_owner, &[&owner, &now])
            .await?;
        rows.iter()
            .map(|row| {
                let id: &[u8] = row.try_get(0).map_err(StoreError::corrupt)?;
                let id: [u8; 32] = id
                    .try_into()
                    .map_err(|_| StoreError::corrupt("session id is not 32 bytes"))?;
                Ok((SessionId::from_bytes(id), decode(row, 1)?))
            })
            .collect()
    }

    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let keep = keep.map(|id| id.as_bytes().as_slice());
        // A renewal racing this commits its new session before retiring the old
        // one. A statement that waited on the old one's row lock while it was
        // retired cannot see the new one (its snapshot is older), but the next
        // statement can: run until a statement after the first deletes nothing.
        let mut deleted = 0;
        for pass in 0..DELETE_BY_OWNER_PASSES {
            let now = system_time(Timestamp::now());
            let count = self
                .execute(&self.shared.sql.delete_by_owner, &[&owner, &now, &keep])
                .await?;
            deleted += count;
            if pass > 0 && count == 0 {
                break;
            }
        }
        Ok(deleted)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.delete_expired_in_batches().await
    }
}
