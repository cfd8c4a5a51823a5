//! `RedisStore`: the session contract on Redis, and the names of its keys.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionId, SessionStore,
    StoreError, Timestamp,
};
use redis::aio::ConnectionLike;

use crate::layout::{StoredSession, encode_tail};
use crate::per_thread::PerThreadConnection;
use crate::replies::{Reply, decode, number, reply, text};
use crate::scripts::{Call, Scripts};
use crate::transport::Resend;

pub(crate) const STORE: &str = "redis";

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
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
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
    pub(crate) conn: C,
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) scripts: Scripts,
    /// Redis Cluster: a session key and an owner index live in different slots,
    /// so commands for several keys go out one per key, concurrently, instead of
    /// as one pipeline (which a cluster refuses across slots).
    pub(crate) cluster: bool,
    pub(crate) runtime: RuntimeSlot,
}

impl Shared {
    /// Scripts and runtime slot start fresh: each store owns its own.
    pub(crate) fn new(prefix: String, timeout: Duration, cluster: bool) -> Self {
        Self {
            prefix,
            timeout,
            scripts: Scripts::new(),
            cluster,
            runtime: RuntimeSlot::new(),
        }
    }
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.shared.prefix)
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(conn: C, prefix: String, timeout: Duration, cluster: bool) -> Self {
        Self {
            conn,
            shared: Arc::new(Shared::new(prefix, timeout, cluster)),
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

    /// The session key of an owner-index member (a hex id).
    pub(crate) fn member_key(&self, member: &str) -> String {
        format!("{}s:{member}", self.shared.prefix)
    }
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
