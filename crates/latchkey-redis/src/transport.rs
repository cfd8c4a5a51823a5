//! How commands and scripts reach Redis: within the command timeout, with
//! scripts the server lost reloaded, and on a cluster, re-sent when the
//! cluster provably did not run them; and which failures are whose fault.

use std::future::Future;
use std::time::Duration;

use latchkey_core::StoreError;
use redis::aio::ConnectionLike;
use redis::{RedisError, RedisResult, Value};

use crate::scripts::{Call, is_noscript, pipeline};
use crate::store::{RedisStore, STORE};

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Runs `work` within the command timeout, mapping failures to `StoreError`.
    pub(crate) async fn bounded<T>(
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
    pub(crate) async fn send<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        resend: Resend,
    ) -> RedisResult<T> {
        self.resending(resend, |mut conn| async move {
            cmd.query_async::<T>(&mut conn).await
        })
        .await
    }

    /// Runs `op` on a connection, again as [`send`](Self::send) would
    /// re-send a command.
    pub(crate) async fn resending<T, F>(
        &self,
        resend: Resend,
        mut op: impl FnMut(C) -> F,
    ) -> RedisResult<T>
    where
        F: Future<Output = RedisResult<T>>,
    {
        let mut attempt = 0;
        loop {
            let result = op(self.conn.clone()).await;
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
    pub(crate) async fn eval(&self, calls: Vec<Call<'_>>) -> Result<Vec<Value>, StoreError> {
        if self.shared.cluster {
            return self.eval_per_key(calls).await;
        }
        if let [call] = calls.as_slice() {
            return self.eval_one(call).await.map(|value| vec![value]);
        }
        let mut conn = self.conn.clone();
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
                let mut loaded: Vec<&str> = Vec::new();
                for call in lost.iter().filter_map(|&i| calls.get(i)) {
                    let hash = call.script.get_hash();
                    if !loaded.contains(&hash) {
                        call.script.load_async(&mut conn).await?;
                        loaded.push(hash);
                    }
                }
                let again: Vec<Call<'_>> =
                    lost.iter().filter_map(|&i| calls.get(i).cloned()).collect();
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
    pub(crate) async fn eval_one(&self, call: &Call<'_>) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move {
            match call.command().query_async::<Value>(&mut conn).await {
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    tracing::debug!("redis lost its script cache; reloading");
                    call.script.load_async(&mut conn).await?;
                    call.command().query_async::<Value>(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// The cluster form of [`eval`](Self::eval): each call on its own, all at
    /// once, each routed to its key's node.
    pub(crate) async fn eval_per_key<'s>(
        &self,
        calls: Vec<Call<'s>>,
    ) -> Result<Vec<Value>, StoreError> {
        let one = |call: Call<'s>| async move {
            match self
                .send::<Value>(call.command(), Resend::OnlyIfUnsent)
                .await
            {
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    // The cluster client sends `SCRIPT LOAD` to every node it is
                    // connected to, replicas included, and fails unless all load it.
                    self.resending(Resend::Always, |mut conn| async move {
                        call.script.load_async(&mut conn).await
                    })
                    .await?;
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
    pub(crate) async fn load_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
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
}

/// How often a cluster command the cluster refused is sent again.
const CLUSTER_RESENDS: u32 = 5;

/// Whether a command may be sent again after it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resend {
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

pub(crate) fn backend(err: RedisError) -> StoreError {
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
