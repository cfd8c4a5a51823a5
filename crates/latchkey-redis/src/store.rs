//! `RedisStore`: the session contract on Redis.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionId, SessionStore,
    StoreError, Timestamp,
};
use redis::aio::{ConnectionLike, ConnectionManagerConfig};

use crate::per_thread::PerThreadConnection;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, RedisResult, Value};

use crate::layout::{StoredSession, encode_tail};
use crate::scripts::{Call, Scripts, is_noscript, pipeline};

const STORE: &str = "redis";

/// The most passes `delete_by_owner` makes over an owner's index: each pass
/// after the first only finds sessions renewed while the previous one ran.
const DELETE_BY_OWNER_PASSES: usize = 8;

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "latchkey:";

/// Default bound on one store operation, round trips and reconnect waits included.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// A [`SessionStore`] on Redis.
///
/// Generic over the connection so that any `redis` async connection works; the
/// default, [`PerThreadConnection`], gives every thread that uses the store
/// its own auto-reconnecting, multiplexed
/// [`ConnectionManager`](redis::aio::ConnectionManager), so a worker's
/// commands never cross threads. Cloning is cheap.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use latchkey_redis::RedisStore;
///
/// # async fn run() -> Result<(), latchkey_core::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .prefix("myapp:session:")
///     .command_timeout(Duration::from_millis(500))
///     .build()?;
/// store.ping().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore<C = PerThreadConnection> {
    conn: C,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    prefix: String,
    timeout: Duration,
    scripts: Scripts,
    /// Redis Cluster: a session key and an owner index live in different slots,
    /// so commands for several keys go out one per key, concurrently, instead of
    /// as one pipeline (which a cluster refuses across slots).
    cluster: bool,
    runtime: RuntimeSlot,
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.shared.prefix)
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

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
    /// [`StoreError::Backend`] when the URL is not a Redis URL, or its TLS
    /// settings are not usable (a root certificate that does not parse, or
    /// given for a `redis://` URL; no root certificate to trust).
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let client = self.tls.client(&self.url).map_err(backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout.unwrap_or(self.command_timeout)))
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = PerThreadConnection::new(client, config);
        Ok(RedisStore::from_connection(conn)
            .with_prefix(self.prefix)
            .with_command_timeout(self.command_timeout))
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
    /// When the URL is invalid or Redis does not answer within the timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), latchkey_core::StoreError> {
    /// let store = latchkey_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::builder(url).build()?;
        store.ping().await?;
        Ok(store)
    }
}

impl RedisStore<ClusterConnection> {
    /// A store on a Redis Cluster, given some of its nodes' URLs; the client
    /// discovers the rest, follows slot moves and fails over with the cluster.
    ///
    /// # Errors
    ///
    /// When no node answers within the timeout or the URLs are invalid.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use latchkey_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), latchkey_core::StoreError> {
    /// let nodes = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"];
    /// let store = RedisStore::connect_cluster(nodes, Duration::from_secs(1)).await?
    ///     .with_prefix("myapp:");
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_cluster<I, U>(nodes: I, timeout: Duration) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        let urls: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        // The client must not re-send a command on its own: after a dropped
        // connection it cannot know whether a write ran. The store re-sends only
        // what provably did not run (see `send`).
        let client = redis::cluster::ClusterClient::builder(urls)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(0)
            .build()
            .map_err(backend)?;
        let conn = match tokio::time::timeout(timeout, client.get_async_connection()).await {
            Ok(conn) => conn.map_err(backend)?,
            Err(_) => {
                return Err(StoreError::Timeout {
                    store: STORE,
                    after: timeout,
                });
            }
        };
        Ok(Self::from_cluster_connection(conn).with_command_timeout(timeout))
    }

    /// A store on an existing cluster connection.
    ///
    /// Build its `ClusterClient` with `.retries(0)`, as
    /// [`connect_cluster`](Self::connect_cluster) does: a client that re-sends
    /// a command after a dropped connection can run a write twice. The store
    /// itself re-sends what the cluster provably refused (redirects, "try
    /// again", no connection to the node) and reads.
    pub fn from_cluster_connection(conn: ClusterConnection) -> Self {
        let store = Self::from_connection(conn);
        store.reconfigure(|shared| shared.cluster = true)
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store on an existing connection (a `ConnectionManager`, a
    /// `MultiplexedConnection`, ...), with the default prefix and timeout.
    pub fn from_connection(conn: C) -> Self {
        Self {
            conn,
            shared: Arc::new(Shared {
                prefix: DEFAULT_PREFIX.to_owned(),
                timeout: DEFAULT_COMMAND_TIMEOUT,
                scripts: Scripts::new(),
                cluster: false,
                runtime: RuntimeSlot::new(),
            }),
        }
    }

    /// This store with another key prefix; see [`RedisStoreBuilder::prefix`].
    pub fn with_prefix(self, prefix: impl Into<String>) -> Self {
        self.reconfigure(|shared| shared.prefix = prefix.into())
    }

    /// This store with another timeout; see [`RedisStoreBuilder::command_timeout`].
    pub fn with_command_timeout(self, timeout: Duration) -> Self {
        self.reconfigure(|shared| shared.timeout = timeout)
    }

    fn reconfigure(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared {
            prefix: self.shared.prefix.clone(),
            timeout: self.shared.timeout,
            scripts: Scripts::new(),
            cluster: self.shared.cluster,
            runtime: RuntimeSlot::new(),
        };
        change(&mut shared);
        Self {
            conn: self.conn,
            shared: Arc::new(shared),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The Redis key of a session: `{prefix}s:{64 hex digits of the id}`.
    pub fn session_key(&self, id: &SessionId) -> String {
        self.member_key(&id.to_hex())
    }

    /// The Redis key of an owner's index: `{prefix}o:{owner}`.
    pub fn owner_key(&self, owner: &str) -> String {
        format!("{}o:{owner}", self.shared.prefix)
    }

    /// Checks that Redis answers.
    ///
    /// # Errors
    ///
    /// When it does not, within the command timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move { redis::cmd("PING").query_async::<()>(&mut conn).await })
            .await
    }

    /// Runs `work` within the command timeout, mapping failures to `StoreError`.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.shared.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if err.is_timeout() => Err(self.timeout()),
            Ok(Err(err)) => Err(backend(err)),
            Err(_) => Err(self.timeout()),
        }
    }

    fn timeout(&self) -> StoreError {
        StoreError::Timeout {
            store: STORE,
            after: self.shared.timeout,
        }
    }

    /// Sends one command. On a cluster, sends it again when the cluster refused
    /// it unexecuted (a redirect during resharding or failover, a cluster not
    /// ready, no connection to the node), and, for `Resend::Always`, after any
    /// connection failure. A single server's connection manager reconnects by
    /// itself and never re-sends.
    async fn send<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        resend: Resend,
    ) -> RedisResult<T> {
        let mut conn = self.conn.clone();
        let mut attempt = 0;
        loop {
            let result = cmd.query_async::<T>(&mut conn).await;
            let again = match &result {
                Err(err) if self.shared.cluster && attempt < CLUSTER_RESENDS => {
                    refused_unexecuted(err)
                        || (resend == Resend::Always
                            && (err.is_io_error() || err.is_connection_dropped()))
                }
                _ => false,
            };
            if !again {
                return result;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(25) * attempt).await;
        }
    }

    /// Sends the calls in one pipeline, reloading scripts the server lost.
    async fn eval(&self, calls: Vec<Call>) -> Result<Vec<Value>, StoreError> {
        if self.shared.cluster {
            return self.eval_per_key(calls).await;
        }
        if let [call] = calls.as_slice() {
            return self.eval_one(call).await.map(|value| vec![value]);
        }
        let mut conn = self.conn.clone();
        let scripts = &self.shared.scripts;
        let results = self
            .bounded(async move {
                let mut results: Vec<Value> = pipeline(&calls).query_async(&mut conn).await?;
                let lost: Vec<usize> = (0..results.len())
                    .filter(|&i| is_noscript(&results[i]))
                    .collect();
                if lost.is_empty() {
                    return Ok(results);
                }
                tracing::debug!(count = lost.len(), "redis lost its script cache; reloading");
                let mut load = redis::pipe();
                for &i in &lost {
                    if let Some(source) =
                        calls.get(i).and_then(|call| scripts.source_of(&call.hash))
                    {
                        load.cmd("SCRIPT").arg("LOAD").arg(source);
                    }
                }
                load.query_async::<Vec<Value>>(&mut conn).await?;
                let again: Vec<Call> = lost.iter().filter_map(|&i| calls.get(i).cloned()).collect();
                let retried: Vec<Value> = pipeline(&again).query_async(&mut conn).await?;
                for (i, value) in lost.into_iter().zip(retried) {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = value;
                    }
                }
                Ok(results)
            })
            .await?;
        Ok(results)
    }

    /// One call, sent as a plain command rather than a pipeline of one: the
    /// common case, which then needs no pipeline to build.
    async fn eval_one(&self, call: &Call) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        let scripts = &self.shared.scripts;
        self.bounded(async move {
            match call.command().query_async::<Value>(&mut conn).await {
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    tracing::debug!("redis lost its script cache; reloading");
                    if let Some(source) = scripts.source_of(&call.hash) {
                        redis::cmd("SCRIPT")
                            .arg("LOAD")
                            .arg(source)
                            .query_async::<Value>(&mut conn)
                            .await?;
                    }
                    call.command().query_async::<Value>(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// The cluster form of [`eval`](Self::eval): each call on its own, all at
    /// once, each routed to its key's node.
    async fn eval_per_key(&self, calls: Vec<Call>) -> Result<Vec<Value>, StoreError> {
        let scripts = &self.shared.scripts;
        let one = |call: Call| async move {
            match self
                .send::<Value>(call.command(), Resend::OnlyIfUnsent)
                .await
            {
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    if let Some(source) = scripts.source_of(&call.hash) {
                        // Routed to every primary by the cluster client.
                        let mut load = redis::cmd("SCRIPT");
                        load.arg("LOAD").arg(source);
                        self.send::<Value>(&load, Resend::Always).await?;
                    }
                    self.send::<Value>(call.command(), Resend::OnlyIfUnsent)
                        .await
                }
                other => other,
            }
        };
        self.bounded(futures_util::future::try_join_all(
            calls.into_iter().map(one),
        ))
        .await
    }

    /// The values of several session keys: one `MGET`, or one `GET` per key
    /// on a cluster (whose keys live in different slots).
    async fn load_many(&self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if self.shared.cluster {
            let one = |key: String| async move {
                let mut cmd = redis::cmd("GET");
                cmd.arg(key);
                self.send::<Option<Vec<u8>>>(&cmd, Resend::Always).await
            };
            return self
                .bounded(futures_util::future::try_join_all(
                    keys.into_iter().map(one),
                ))
                .await;
        }
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        self.bounded(self.send(&cmd, Resend::Always)).await
    }

    /// The session key of an owner-index member (a hex id).
    fn member_key(&self, member: &str) -> String {
        format!("{}s:{member}", self.shared.prefix)
    }

    /// The hex ids in an owner's index.
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(index);
        self.bounded(self.send(&cmd, Resend::Always)).await
    }

    /// Drops entries from an owner's index.
    async fn drop_index_members(
        &self,
        index: &str,
        members: Vec<String>,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(index).arg(members);
        self.bounded(self.send::<()>(&cmd, Resend::Always)).await
    }

    fn index_call(&self, owner: &str, id: &SessionId, absolute: Timestamp) -> Call {
        Call::new(
            &self.shared.scripts.index_add,
            self.owner_key(owner).into_bytes(),
        )
        .arg(id.to_hex())
        .arg(absolute.as_millis())
        .arg(Timestamp::now().as_millis())
    }

    /// Makes sure the owner's index holds the session, unless the session's
    /// value already records that it does (`indexed`): adds it to the index,
    /// then records that in the value. Entries are never removed on an owner
    /// change (readers check each entry's owner), so a recorded entry stays
    /// true for as long as the session exists; a failure leaves nothing
    /// recorded, and the next save or touch of the session adds it again.
    async fn reindex(
        &self,
        id: &SessionId,
        indexed: bool,
        owner: Option<&str>,
        absolute: Timestamp,
    ) -> Result<(), StoreError> {
        let Some(owner) = owner.filter(|_| !indexed) else {
            return Ok(());
        };
        integer(
            self.eval(vec![self.index_call(owner, id, absolute)])
                .await?
                .into_iter()
                .next(),
        )?;
        let mark = Call::new(
            &self.shared.scripts.mark_indexed,
            self.session_key(id).into_bytes(),
        )
        .arg(owner);
        integer(self.eval(vec![mark]).await?.into_iter().next())?;
        Ok(())
    }

    /// Removes a deleted session from the indexes that held it.
    async fn unindex(&self, id: &SessionId, owners: &[Value]) -> Result<(), StoreError> {
        let member = id.to_hex();
        let mut calls = Vec::new();
        for owner in owners {
            let owner = text(owner)?;
            calls.push(
                Call::new(
                    &self.shared.scripts.index_remove,
                    self.owner_key(&owner).into_bytes(),
                )
                .arg(&member),
            );
        }
        if calls.is_empty() {
            return Ok(());
        }
        for reply in self.eval(calls).await? {
            integer(Some(reply))?;
        }
        Ok(())
    }
}

/// A script's reply: an integer status, or a list of values on success.
enum Reply {
    Status(i64),
    List(Vec<Value>),
}

fn reply(value: Option<Value>) -> Result<Reply, StoreError> {
    match value {
        Some(Value::Int(n)) => Ok(Reply::Status(n)),
        Some(Value::Array(values)) => Ok(Reply::List(values)),
        Some(Value::ServerError(err)) => Err(backend(err.into())),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply {other:?}"
        ))),
    }
}

/// A text element of a script's list reply.
fn text(value: &Value) -> Result<String, StoreError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).map_err(StoreError::corrupt),
        Value::SimpleString(text) => Ok(text.clone()),
        Value::Nil => Ok(String::new()),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply element {other:?}"
        ))),
    }
}

/// An integer element of a script's list reply.
fn number(value: Option<&Value>) -> Result<i64, StoreError> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply element {other:?}"
        ))),
    }
}

/// How often a cluster command the cluster refused is sent again.
const CLUSTER_RESENDS: u32 = 5;

/// Whether a command may be sent again after it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resend {
    /// Reads and other idempotent commands: after any failure.
    Always,
    /// Writes: only when the failure proves the command did not run.
    OnlyIfUnsent,
}

/// Whether the error proves the command was not executed: the cluster answered
/// with a redirect or a "not now", or had no connection to send it on.
fn refused_unexecuted(err: &RedisError) -> bool {
    use redis::ServerErrorKind as Refusal;
    matches!(
        err.kind(),
        redis::ErrorKind::Server(
            Refusal::Moved
                | Refusal::Ask
                | Refusal::TryAgain
                | Refusal::ClusterDown
                | Refusal::MasterDown
                | Refusal::ReadOnly
                | Refusal::BusyLoading
        ) | redis::ErrorKind::ClusterConnectionNotFound
    )
}

fn backend(err: RedisError) -> StoreError {
    if is_unreadable_value(&err) {
        return StoreError::corrupt(err);
    }
    StoreError::backend(STORE, err)
}

/// Whether Redis refused the call because of what the session's key holds (a
/// value no script can read, or a key of another type) rather than because of
/// the server or the connection.
fn is_unreadable_value(err: &RedisError) -> bool {
    err.code() == Some("WRONGTYPE")
        || err
            .detail()
            .is_some_and(|detail| detail.starts_with("latchkey:"))
}

/// The integer a script returned, or the error it raised.
fn integer(value: Option<Value>) -> Result<i64, StoreError> {
    match value {
        Some(Value::Int(n)) => Ok(n),
        Some(Value::ServerError(err)) => Err(backend(err.into())),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply {other:?}"
        ))),
    }
}

/// The record in a session value; `None` for an absent key.
fn decode(value: Option<Vec<u8>>) -> Result<Option<Record>, StoreError> {
    value
        .map(|bytes| StoredSession::decode(&bytes).map(|stored| stored.record))
        .transpose()
}

impl<C> SessionStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        STORE
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        Some(&self.shared.runtime)
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.session_key(id));
        let value: Option<Vec<u8>> = self.bounded(self.send(&cmd, Resend::Always)).await?;
        let now = Timestamp::now();
        Ok(decode(value)?.filter(|record| !record.is_expired_at(now)))
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        let mut created = record.clone();
        created.version = 1;
        let value = StoredSession {
            record: created,
            indexed_by: Vec::new(),
        }
        .encode()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.session_key(id))
            .arg(value)
            .arg("NX")
            .arg("PXAT")
            .arg(record.deadlines.expires_at().as_millis());
        // `OK` when set, nil when the key exists.
        let set: Option<String> = self.bounded(self.send(&cmd, Resend::OnlyIfUnsent)).await?;
        if set.is_none() {
            return Err(StoreError::IdCollision);
        }
        // Indexed only once the session exists: a listing in between cannot
        // find the entry's session absent and prune it.
        self.reindex(
            id,
            false,
            record.owner.as_deref(),
            record.deadlines.absolute,
        )
        .await
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let session = Call::new(&self.shared.scripts.save, self.session_key(id).into_bytes())
            .arg(expected_version)
            .arg(record.deadlines.idle.as_millis())
            .arg(record.deadlines.absolute.as_millis())
            .arg(Timestamp::now().as_millis());
        let session = match record.owner.as_deref() {
            Some(owner) => session.arg("1").arg(owner),
            None => session.arg("0").arg(""),
        }
        .arg_bytes(encode_tail(record)?)
        .arg(record.last_seen.as_millis());
        match reply(self.eval(vec![session]).await?.into_iter().next())? {
            Reply::Status(-1) => Ok(SaveOutcome::Missing),
            Reply::Status(-2) => Ok(SaveOutcome::Conflict),
            Reply::Status(other) => Err(StoreError::corrupt(format!(
                "unexpected save status {other}"
            ))),
            Reply::List(values) => {
                let version =
                    u64::try_from(number(values.first())?).map_err(StoreError::corrupt)?;
                let indexed = number(values.get(1))? == 1;
                self.reindex(
                    id,
                    indexed,
                    record.owner.as_deref(),
                    record.deadlines.absolute,
                )
                .await?;
                Ok(SaveOutcome::Saved(version))
            }
        }
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let call = Call::new(
            &self.shared.scripts.touch,
            self.session_key(id).into_bytes(),
        )
        .arg(deadlines.idle.as_millis())
        .arg(deadlines.absolute.as_millis())
        .arg(deadlines.expires_at().as_millis())
        .arg(Timestamp::now().as_millis())
        .arg(seen_at.as_millis());
        match reply(self.eval(vec![call]).await?.into_iter().next())? {
            Reply::Status(_) => Ok(false),
            Reply::List(values) => {
                // A touch also finishes index work a failed save left undone.
                let has_owner = number(values.first())? == 1;
                let owner = values.get(1).map(text).transpose()?.unwrap_or_default();
                let indexed = number(values.get(2))? == 1;
                let owner = has_owner.then_some(owner.as_str());
                self.reindex(id, indexed, owner, deadlines.absolute).await?;
                Ok(true)
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let call = Call::new(
            &self.shared.scripts.delete,
            self.session_key(id).into_bytes(),
        );
        match reply(self.eval(vec![call]).await?.into_iter().next())? {
            Reply::List(owners) => self.unindex(id, &owners).await,
            Reply::Status(_) => Ok(()),
        }
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        let call = Call::new(
            &self.shared.scripts.delete_at_version,
            self.session_key(id).into_bytes(),
        )
        .arg(expected_version)
        .arg(Timestamp::now().as_millis());
        match reply(self.eval(vec![call]).await?.into_iter().next())? {
            Reply::Status(-2) => Ok(DeleteOutcome::Conflict),
            Reply::Status(_) => Ok(DeleteOutcome::Missing),
            Reply::List(values) => {
                self.unindex(id, values.get(1..).unwrap_or_default())
                    .await?;
                Ok(DeleteOutcome::Deleted)
            }
        }
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        let index = self.owner_key(owner);
        let members = self.index_members(&index).await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let keys = members
            .iter()
            .map(|member| self.member_key(member))
            .collect();
        let values = self.load_many(keys).await?;
        let now = Timestamp::now();
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (member, value) in members.into_iter().zip(values) {
            match (SessionId::from_hex(&member), decode(value)?) {
                (Some(id), Some(record)) => {
                    if !record.is_expired_at(now) && record.owner.as_deref() == Some(owner) {
                        live.push((id, record));
                    }
                }
                // Only an entry whose session is gone is pruned: ids are never
                // reused, so it can never be live again. An entry whose session
                // changed owner, or looks expired by this process's clock, is
                // left for the owner change (or Redis's expiry) to settle.
                _ => gone.push(member),
            }
        }
        if !gone.is_empty() {
            self.drop_index_members(&index, gone).await?;
        }
        Ok(live)
    }

    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        // A renewal racing this indexes its new session before retiring the
        // old one: a pass that found the old one already gone is followed by
        // another, which finds the new one.
        let mut deleted = 0;
        for _ in 0..DELETE_BY_OWNER_PASSES {
            match self.delete_indexed(owner, keep).await? {
                Some(count) => deleted += count,
                None => break,
            }
        }
        Ok(deleted)
    }

    /// Redis removes expired sessions itself (each key carries its TTL), so there
    /// is nothing to do.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// One pass of `delete_by_owner`: deletes the sessions the owner's index
    /// names (but `keep`) that still belong to the owner, and clears the
    /// entries of those deleted or already gone; `None` when there were none,
    /// so that another pass would find nothing new.
    async fn delete_indexed(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<Option<u64>, StoreError> {
        let index = self.owner_key(owner);
        let keep_hex = keep.map(SessionId::to_hex);
        let doomed: Vec<String> = self
            .index_members(&index)
            .await?
            .into_iter()
            .filter(|m| Some(m) != keep_hex.as_ref())
            .collect();
        if doomed.is_empty() {
            return Ok(None);
        }
        let calls = doomed
            .iter()
            .map(|member| {
                Call::new(
                    &self.shared.scripts.delete_if_owned,
                    self.member_key(member).into_bytes(),
                )
                .arg(owner)
            })
            .collect();
        let mut deleted = 0;
        let mut settled = Vec::new();
        for (member, reply) in doomed.into_iter().zip(self.eval(calls).await?) {
            match integer(Some(reply))? {
                1 => {
                    deleted += 1;
                    settled.push(member);
                }
                // Gone already: its entry can never be live again.
                -1 => settled.push(member),
                // Someone else's now: left for readers to skip, since removing
                // it could race an owner change back to this owner.
                _ => {}
            }
        }
        if settled.is_empty() {
            return Ok(None);
        }
        self.drop_index_members(&index, settled).await?;
        Ok(Some(deleted))
    }
}
