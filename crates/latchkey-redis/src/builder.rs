//! Building a [`RedisStore`]: on a URL through [`RedisStoreBuilder`], or on a
//! connection the application made.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::StoreError;
use redis::aio::{ConnectionLike, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use crate::RedisSetupError;
use crate::per_thread::PerThreadConnection;
use crate::store::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisStore, STORE, Shared};
use crate::tls::connection_info;
use crate::transport::backend;

/// Configures a [`RedisStore`] on a URL.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    command_timeout: Duration,
    connect_timeout: Option<Duration>,
    pub(crate) tls: crate::tls::TlsSettings,
}

impl RedisStoreBuilder {
    /// The prefix of every key the store writes. Default: `latchkey:`.
    ///
    /// Give each application (or test) its own prefix to share one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most one store operation may take, including waiting for a
    /// reconnection, before it fails with [`StoreError::Timeout`].
    ///
    /// Default: 1 second; a session read sits in front of every request, so a
    /// Redis outage should turn into a quick error response, not a hung worker.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The most one connection attempt may take. Default: the command timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Builds the store without contacting Redis: the connection is made on
    /// first use and remade whenever it breaks, so the application can start
    /// while Redis is down. Call [`RedisStore::ping`] to check at start-up.
    ///
    /// Must be called inside a Tokio runtime (e.g. in `#[actix_web::main]`).
    ///
    /// # Errors
    ///
    /// [`RedisSetupError::Url`] when the URL is not a Redis URL,
    /// [`RedisSetupError::Tls`] when its TLS settings are not usable (a
    /// `rediss://` URL without a TLS feature, a root certificate that does not
    /// parse or is given for a `redis://` URL, no root certificate to trust).
    pub fn build(self) -> Result<RedisStore, RedisSetupError> {
        let client = self.tls.client(&self.url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout.unwrap_or(self.command_timeout)))
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = PerThreadConnection::new(client, config);
        Ok(RedisStore::new(
            conn,
            self.prefix,
            self.command_timeout,
            false,
        ))
    }
}

impl RedisStore<PerThreadConnection> {
    /// Configures a store on a `redis://` (or, with TLS, `rediss://`) URL.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: None,
            tls: crate::tls::TlsSettings::default(),
        }
    }

    /// A store on `url` with the defaults, checked with a `PING`.
    ///
    /// # Errors
    ///
    /// What [`build`](RedisStoreBuilder::build) refuses, and
    /// [`RedisSetupError::CheckFailed`] when Redis does not answer its `PING`
    /// within the timeout, or refuses it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), latchkey_redis::RedisSetupError> {
    /// let store = latchkey_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, RedisSetupError> {
        let store = Self::builder(url).build()?;
        store.ping().await.map_err(RedisSetupError::CheckFailed)?;
        Ok(store)
    }
}

impl RedisStore<ClusterConnection> {
    /// A store on a Redis Cluster, given some of its nodes' URLs; the client
    /// discovers the rest, follows slot moves and fails over with the cluster.
    ///
    /// # Errors
    ///
    /// [`RedisSetupError::Url`] or [`RedisSetupError::Tls`] when a URL
    /// cannot be used, as for [`build`](RedisStoreBuilder::build);
    /// [`RedisSetupError::Cluster`] when the URLs do not fit together;
    /// [`RedisSetupError::CheckFailed`] when no node answers within the
    /// timeout, or the cluster refuses the connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use latchkey_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), latchkey_redis::RedisSetupError> {
    /// let nodes = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"];
    /// let store = RedisStore::connect_cluster(nodes, Duration::from_secs(1)).await?
    ///     .with_prefix("myapp:");
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_cluster<I, U>(nodes: I, timeout: Duration) -> Result<Self, RedisSetupError>
    where
        I: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        let urls: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        for url in &urls {
            connection_info(url)?;
        }
        // The client must not re-send a command on its own: after a dropped
        // connection it cannot know whether a write ran. The store re-sends only
        // what provably did not run (see `send`).
        let client = redis::cluster::ClusterClient::builder(urls)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(0)
            .build()
            .map_err(RedisSetupError::Cluster)?;
        let conn = match tokio::time::timeout(timeout, client.get_async_connection()).await {
            Ok(conn) => conn.map_err(|err| RedisSetupError::CheckFailed(backend(err)))?,
            Err(_) => {
                return Err(RedisSetupError::CheckFailed(StoreError::Timeout {
                    store: STORE,
                    after: timeout,
                }));
            }
        };
        Ok(Self::new(conn, DEFAULT_PREFIX.to_owned(), timeout, true))
    }

    /// A store on an existing cluster connection.
    ///
    /// Build its `ClusterClient` with `.retries(0)`, as
    /// [`connect_cluster`](Self::connect_cluster) does: a client that re-sends
    /// a command after a dropped connection can run a write twice. The store
    /// itself re-sends what the cluster provably refused (redirects, "try
    /// again", no connection to the node) and reads.
    pub fn from_cluster_connection(conn: ClusterConnection) -> Self {
        Self::new(
            conn,
            DEFAULT_PREFIX.to_owned(),
            DEFAULT_COMMAND_TIMEOUT,
            true,
        )
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store on an existing connection (a `ConnectionManager`, a
    /// `MultiplexedConnection`, ...), with the default prefix and timeout.
    pub fn from_connection(conn: C) -> Self {
        Self::new(
            conn,
            DEFAULT_PREFIX.to_owned(),
            DEFAULT_COMMAND_TIMEOUT,
            false,
        )
    }

    /// This store with another key prefix; see [`RedisStoreBuilder::prefix`].
    ///
    /// For a store made from a connection (`from_connection`,
    /// `connect_cluster`, `from_cluster_connection`), which has no builder; a
    /// store on a URL takes its prefix from [`RedisStoreBuilder::prefix`].
    pub fn with_prefix(self, prefix: impl Into<String>) -> Self {
        self.reconfigure(|shared| shared.prefix = prefix.into())
    }

    /// This store with another timeout; see [`RedisStoreBuilder::command_timeout`].
    ///
    /// For a store made from a connection, like [`with_prefix`](Self::with_prefix).
    pub fn with_command_timeout(self, timeout: Duration) -> Self {
        self.reconfigure(|shared| shared.timeout = timeout)
    }

    fn reconfigure(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared::new(
            self.shared.prefix.clone(),
            self.shared.timeout,
            self.shared.cluster,
        );
        change(&mut shared);
        Self {
            conn: self.conn,
            shared: Arc::new(shared),
        }
    }
}
