//! Configuring a [`PostgresStore`]: its table, its timeouts and where its
//! connections come from.

use std::str::FromStr as _;
use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::error::PostgresConfigError;
use crate::ident::Identifier;
use crate::store::PostgresStore;

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

impl PostgresStoreBuilder {
    /// The schema of the sessions table. Default: `public`.
    ///
    /// # Errors
    ///
    /// When `schema` is not a plain identifier; see [`Identifier`].
    pub fn schema(mut self, schema: &str) -> Result<Self, PostgresConfigError> {
        self.schema = Identifier::new(schema).map_err(PostgresConfigError::Identifier)?;
        Ok(self)
    }

    /// The sessions table. Default: `latchkey_sessions`.
    ///
    /// # Errors
    ///
    /// When `table` is not a plain identifier; see [`Identifier`].
    pub fn table(mut self, table: &str) -> Result<Self, PostgresConfigError> {
        self.table = Identifier::new(table).map_err(PostgresConfigError::Identifier)?;
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

    /// Rows deleted per statement by [`delete_expired`](latchkey_core::SessionStore::delete_expired).
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
    /// [`PostgresConfigError::Url`] when the URL does not parse;
    /// [`PostgresConfigError::Tls`] when TLS cannot be set up as asked;
    /// [`PostgresConfigError::Pool`] when the pool cannot be built;
    /// [`PostgresConfigError::PoolSetting`] for a connection setting given on the
    /// application's own pool.
    pub fn build(self) -> Result<PostgresStore, PostgresConfigError> {
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
                    return Err(PostgresConfigError::PoolSetting(setting));
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

    fn url_pool(&self, url: &str) -> Result<Pool, PostgresConfigError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(PostgresConfigError::Url)?;
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
            .map_err(PostgresConfigError::Pool)
    }
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
    pub fn from_pool(pool: Pool, schema: &str, table: &str) -> Result<Self, PostgresConfigError> {
        Self::builder_on_pool(pool)
            .schema(schema)?
            .table(table)?
            .build()
    }
}
