//! `PostgresStore`: the session contract on PostgreSQL.

use std::future::Future;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use latchkey_core::{
    Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionData, SessionId,
    SessionStore, StoreError, Timestamp,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use crate::ident::{Identifier, InvalidIdentifier};
use crate::migrate::{MIGRATIONS, bookkeeping, bookkeeping_table, lock_key, render};
use crate::sql::Statements;

const STORE: &str = "postgres";

/// Default schema.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default table.
pub const DEFAULT_TABLE: &str = "latchkey_sessions";
/// Default bound on one store operation, pool wait and retry included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default most connections of a pool the store builds.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default rows deleted per cleanup statement.
pub const DEFAULT_CLEANUP_BATCH: i64 = 5_000;

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
    pool: Pool,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    schema: Identifier,
    table: Identifier,
    timeout: Duration,
    cleanup_batch: i64,
    sql: Statements,
    runtime: RuntimeSlot,
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

/// Configures a [`PostgresStore`], on a URL ([`PostgresStore::builder`]) or on
/// a pool the application built ([`PostgresStore::builder_on_pool`]).
#[derive(Clone)]
#[must_use]
pub struct PostgresStoreBuilder {
    source: Source,
    schema: Identifier,
    table: Identifier,
    pool_size: Option<usize>,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    statement_timeout: Option<Duration>,
    application_name: Option<String>,
    cleanup_batch: i64,
    pub(crate) tls: crate::tls::TlsSettings,
}

/// Where the store's connections come from.
#[derive(Clone)]
enum Source {
    Url(String),
    Pool(Pool),
}

impl std::fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show only which kind of source it is.
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        f.debug_struct("PostgresStoreBuilder")
            .field("source", &source)
            .field("schema", &self.schema.as_str())
            .field("table", &self.table.as_str())
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Why a store could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A schema or table name that is not a plain identifier.
    Identifier(InvalidIdentifier),
    /// The URL is not a PostgreSQL connection string.
    Url(String),
    /// A setting that shapes the connections (`pool_size`, `connect_timeout`,
    /// `statement_timeout`, `application_name`, TLS) was given for a store on
    /// the application's own pool: configure that pool instead.
    PoolSetting(&'static str),
    /// TLS cannot be set up as asked: the URL's `sslmode` requires TLS and this
    /// build has no TLS feature, contradicts the builder's TLS settings, or a
    /// root certificate does not parse or none is to be found.
    Tls(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Identifier(err) => err.fmt(f),
            ConfigError::Url(err) => write!(f, "not a PostgreSQL URL: {err}"),
            ConfigError::PoolSetting(setting) => write!(
                f,
                "{setting} shapes the pool's connections; set it on the pool given to builder_on_pool"
            ),
            ConfigError::Tls(err) => write!(f, "TLS: {err}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl PostgresStoreBuilder {
    /// The schema of the sessions table. Default: `public`.
    ///
    /// # Errors
    ///
    /// When `schema` is not a plain identifier; see [`Identifier`].
    pub fn schema(mut self, schema: &str) -> Result<Self, ConfigError> {
        self.schema = Identifier::new(schema).map_err(ConfigError::Identifier)?;
        Ok(self)
    }

    /// The sessions table. Default: `latchkey_sessions`.
    ///
    /// # Errors
    ///
    /// When `table` is not a plain identifier; see [`Identifier`].
    pub fn table(mut self, table: &str) -> Result<Self, ConfigError> {
        self.table = Identifier::new(table).map_err(ConfigError::Identifier)?;
        Ok(self)
    }

    /// The most connections the pool opens. Default: 16, enough to keep a few
    /// workers' concurrent requests off each other's backs without tying up many
    /// server processes.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size.max(1));
        self
    }

    /// The most one store operation may take, waiting for a connection and a
    /// retry on a broken one included. Default: 2 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most opening one connection may take. Default: the operation timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The server-side `statement_timeout` of the store's connections, so the
    /// server also gives up on a statement the client stopped waiting for.
    /// Default: the operation timeout.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// The `application_name` the connections report in `pg_stat_activity`.
    /// Default: `latchkey`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Rows deleted per statement by [`delete_expired`](SessionStore::delete_expired).
    /// Default: 5,000, which keeps each statement's locks short on a busy table.
    pub fn cleanup_batch(mut self, rows: i64) -> Self {
        self.cleanup_batch = rows.max(1);
        self
    }

    /// Builds the store and, on a URL, its pool, without connecting;
    /// connections open on first use.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Url`] when the URL does not parse;
    /// [`ConfigError::Tls`] when TLS cannot be set up as asked;
    /// [`ConfigError::PoolSetting`] for a connection setting given on the
    /// application's own pool.
    pub fn build(self) -> Result<PostgresStore, ConfigError> {
        let pool = match &self.source {
            Source::Url(url) => self.url_pool(url)?,
            Source::Pool(pool) => {
                let own_pool_settings = [
                    ("pool_size", self.pool_size.is_some()),
                    ("connect_timeout", self.connect_timeout.is_some()),
                    ("statement_timeout", self.statement_timeout.is_some()),
                    ("application_name", self.application_name.is_some()),
                    ("TLS", self.tls.is_set()),
                ];
                if let Some((setting, _)) = own_pool_settings.iter().find(|(_, set)| *set) {
                    return Err(ConfigError::PoolSetting(setting));
                }
                pool.clone()
            }
        };
        Ok(PostgresStore::new(
            pool,
            self.schema,
            self.table,
            self.timeout,
            self.cleanup_batch,
        ))
    }

    fn url_pool(&self, url: &str) -> Result<Pool, ConfigError> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| ConfigError::Url(e.to_string()))?;
        config.connect_timeout(self.connect_timeout.unwrap_or(self.timeout));
        config.application_name(self.application_name.as_deref().unwrap_or("latchkey"));
        let statement_timeout = self.statement_timeout.unwrap_or(self.timeout);
        config.options(format!(
            "-c statement_timeout={}",
            statement_timeout.as_millis()
        ));
        let manager = self.tls.manager(
            config,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        )?;
        Pool::builder(manager)
            .max_size(self.pool_size.unwrap_or(DEFAULT_POOL_SIZE))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.connect_timeout.unwrap_or(self.timeout)))
            .recycle_timeout(Some(self.timeout))
            .build()
            .map_err(|e| ConfigError::Url(e.to_string()))
    }
}

/// Why one attempt at an operation failed.
enum Failure {
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
    fn connection_was_closed(&self) -> bool {
        matches!(self, Failure::Db(err) if err.is_closed())
    }

    fn into_store_error(self) -> StoreError {
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

fn system_time(at: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.as_millis())
}

fn timestamp(at: SystemTime) -> Timestamp {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::encode(format!("version {version} exceeds bigint")))
}

/// A session's own idle timeout as the `idle_timeout_ms` column holds it.
fn idle_timeout_param(record: &Record) -> Option<i64> {
    record.idle_timeout.map(|timeout| {
        i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    })
}

/// Reads a record from the columns `data, version, owner, created_at,
/// idle_expires_at, absolute_expires_at, idle_timeout_ms, last_seen_at`
/// starting at `offset`.
fn decode(row: &Row, offset: usize) -> Result<Record, StoreError> {
    let get_err = StoreError::corrupt;
    let Json(data): Json<SessionData> = row.try_get(offset).map_err(get_err)?;
    let version: i64 = row.try_get(offset + 1).map_err(get_err)?;
    let created_at = timestamp(row.try_get(offset + 3).map_err(get_err)?);
    // NULL for a row written before the column existed: as good as created.
    let last_seen: Option<SystemTime> = row.try_get(offset + 7).map_err(get_err)?;
    Ok(Record {
        data,
        version: u64::try_from(version).map_err(StoreError::corrupt)?,
        owner: row.try_get(offset + 2).map_err(get_err)?,
        created_at,
        last_seen: last_seen.map_or(created_at, timestamp),
        deadlines: Deadlines {
            idle: timestamp(row.try_get(offset + 4).map_err(get_err)?),
            absolute: timestamp(row.try_get(offset + 5).map_err(get_err)?),
        },
        idle_timeout: row
            .try_get::<_, Option<i64>>(offset + 6)
            .map_err(get_err)?
            .map(|millis| u64::try_from(millis).map(Duration::from_millis))
            .transpose()
            .map_err(StoreError::corrupt)?,
    })
}

impl PostgresStore {
    /// Configures a store on a `postgres://` URL.
    ///
    /// With a TLS feature, `sslmode=require` in the URL connects over TLS, and
    /// the builder's `tls_root_certificate` trusts a private certificate
    /// authority.
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            source: Source::Url(url.into()),
            schema: Identifier::default_schema(),
            table: Identifier::default_table(),
            pool_size: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: None,
            statement_timeout: None,
            application_name: None,
            cleanup_batch: DEFAULT_CLEANUP_BATCH,
            tls: crate::tls::TlsSettings::default(),
        }
    }

    /// Configures a store on a pool the application built: for a connector
    /// of its own (`postgres-openssl`, say), or a pool shared with the
    /// application's own queries. Every store setting of the builder applies
    /// (schema, table, timeout, cleanup batch); the settings that shape
    /// connections belong to the pool, and `build` refuses them here.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use deadpool_postgres::{Manager, Pool};
    /// use latchkey_postgres::PostgresStore;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config: tokio_postgres::Config = "postgres://app@127.0.0.1/app".parse()?;
    /// let pool = Pool::builder(Manager::new(config, tokio_postgres::NoTls)).build()?;
    /// let store = PostgresStore::builder_on_pool(pool)
    ///     .schema("sessions")?
    ///     .timeout(Duration::from_millis(500))
    ///     .build()?;
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// # run().unwrap();
    /// ```
    pub fn builder_on_pool(pool: Pool) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            source: Source::Pool(pool),
            ..Self::builder(String::new())
        }
    }

    /// A store on an existing pool, on `schema`.`table`, every other setting at
    /// its default; [`builder_on_pool`](Self::builder_on_pool) sets the rest.
    ///
    /// # Errors
    ///
    /// When `schema` or `table` is not a plain identifier.
    pub fn from_pool(pool: Pool, schema: &str, table: &str) -> Result<Self, ConfigError> {
        Self::builder_on_pool(pool)
            .schema(schema)?
            .table(table)?
            .build()
    }

    fn new(
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

    /// Creates the schema and table, or brings them up to date.
    ///
    /// Idempotent, and safe when several application instances start at once:
    /// migrations run in one transaction under an advisory lock, and each
    /// applied migration is recorded in `<table>_migrations`.
    ///
    /// # Errors
    ///
    /// When the server is unreachable or refuses a statement (e.g. the role
    /// may not create the schema).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let (schema, table) = (&self.shared.schema, &self.shared.table);
        let attempt = async {
            let mut client = Detached(Some(self.pool.get().await?));
            let Some(connection) = client.0.as_mut() else {
                return Err(Failure::Store(StoreError::corrupt("no connection")));
            };
            let tx = connection.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&lock_key(schema, table)],
            )
            .await?;
            tx.batch_execute(&bookkeeping(schema, table)).await?;
            let applied: Vec<i32> = tx
                .query(
                    &format!("SELECT version FROM {}", bookkeeping_table(schema, table)),
                    &[],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
                tx.batch_execute(&render(migration, schema, table)).await?;
                tx.execute(
                    &format!(
                        "INSERT INTO {} (version, name) VALUES ($1, $2)",
                        bookkeeping_table(schema, table)
                    ),
                    &[&migration.version, &migration.name],
                )
                .await?;
                tracing::info!(
                    migration = migration.name,
                    "applied session-store migration"
                );
            }
            tx.commit().await?;
            drop(client);
            Ok::<_, Failure>(())
        };
        // Migrations may wait on another instance's lock: allow more than one
        // operation's time.
        match tokio::time::timeout(self.shared.timeout * 10, attempt).await {
            Ok(result) => result.map_err(Failure::into_store_error),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> StoreError {
        StoreError::Timeout {
            store: STORE,
            after: self.shared.timeout,
        }
    }

    /// Runs an idempotent `attempt` (a read, a delete, a touch) on a pooled
    /// connection within the timeout, once more on a fresh connection if the
    /// first one turned out to be closed: sending it twice is harmless.
    async fn run<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
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
    async fn run_once<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.bounded(async { attempt(self.open_connection().await?).await })
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

    /// Deletes expired rows in batches until none are left, returning how many went.
    async fn delete_expired_in_batches(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let now = system_time(Timestamp::now());
            let batch = self.shared.cleanup_batch;
            let deleted = self
                .run(|client| async move {
                    let stmt = client
                        .prepare_cached(&self.shared.sql.delete_expired_batch)
                        .await?;
                    Ok(client.execute(&stmt, &[&now, &batch]).await?)
                })
                .await?;
            total += deleted;
            if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(total);
            }
            // Let other work at the table between batches.
            tokio::task::yield_now().await;
        }
    }
}

/// A connection taken out of the pool for good when dropped, whatever the exit.
/// A connection's socket is served by the runtime that made it, and `migrate`
/// usually runs on the main thread at start-up: pooled, a connection from there
/// would carry the workers' statements through the main thread.
struct Detached(Option<Object>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
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
        let row = self
            .run(|client| async move {
                let stmt = client.prepare_cached(&self.shared.sql.load).await?;
                Ok(client.query_opt(&stmt, &[&key, &now]).await?)
            })
            .await?;
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
            .run(|client| async move {
                let stmt = client.prepare_cached(&self.shared.sql.touch).await?;
                Ok(client
                    .execute(&stmt, &[&key, &idle, &absolute, &now, &seen_at])
                    .await?)
            })
            .await?;
        Ok(updated == 1)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = id.as_bytes().as_slice();
        self.run(|client| async move {
            let stmt = client.prepare_cached(&self.shared.sql.delete).await?;
            client.execute(&stmt, &[&key]).await?;
            Ok(())
        })
        .await
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
            .run(|client| async move {
                let stmt = client
                    .prepare_cached(&self.shared.sql.list_by_owner)
                    .await?;
                Ok(client.query(&stmt, &[&owner, &now]).await?)
            })
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
                .run(|client| async move {
                    let stmt = client
                        .prepare_cached(&self.shared.sql.delete_by_owner)
                        .await?;
                    Ok(client.execute(&stmt, &[&owner, &now, &keep]).await?)
                })
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
