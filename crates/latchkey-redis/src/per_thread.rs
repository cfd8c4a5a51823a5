//! One Redis connection per thread, so that a request's commands never cross
//! threads on their way to the socket.
//!
//! A [`ConnectionManager`] runs its socket in a task of the runtime it first
//! connected on. An application builds its store once, usually on the main
//! thread, and actix-web serves requests on worker threads, each with its own
//! single-threaded runtime: a shared connection then sends every command to
//! the main thread and every reply back, two thread wake-ups per command. Here
//! each thread that uses the store gets its own connection, made lazily on
//! first use, on that thread's runtime, and closed when the thread ends. On
//! actix-web's single-threaded workers a request's commands then stay on its
//! worker; on a multi-threaded runtime, tasks may still move between threads.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

thread_local! {
    /// This thread's connections, by the `PerThreadConnection` they belong to;
    /// they close when the thread ends.
    static CONNECTIONS: RefCell<HashMap<u64, ConnectionManager>> = RefCell::new(HashMap::new());
}

/// Tells apart the `PerThreadConnection`s of a process (ids are never reused,
/// so a new store can never be handed an old store's connection).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A [`ConnectionLike`] that uses one auto-reconnecting [`ConnectionManager`]
/// per thread. Cloning is cheap; clones share the connections.
#[derive(Clone)]
pub struct PerThreadConnection {
    shared: Arc<Shared>,
}

struct Shared {
    id: u64,
    client: Client,
    config: ConnectionManagerConfig,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Close this thread's connection of the store now; other threads' go
        // when they next make one, or when they end.
        let _ = CONNECTIONS.try_with(|connections| connections.borrow_mut().remove(&self.id));
    }
}

impl std::fmt::Debug for PerThreadConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerThreadConnection")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl PerThreadConnection {
    /// Connections to `client`'s server with `config`, made as threads first
    /// use them.
    pub fn new(client: Client, config: ConnectionManagerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                client,
                config,
            }),
        }
    }

    /// Whether the current thread has made its connection.
    pub fn connected_here(&self) -> bool {
        CONNECTIONS
            .try_with(|connections| connections.borrow().contains_key(&self.shared.id))
            .unwrap_or(false)
    }

    /// This thread's connection, made (lazily: it connects on its first
    /// command, on this thread's runtime) if the thread has none yet.
    fn current(&self) -> RedisResult<ConnectionManager> {
        let existing = CONNECTIONS
            .try_with(|connections| connections.borrow().get(&self.shared.id).cloned())
            .ok()
            .flatten();
        if let Some(connection) = existing {
            return Ok(connection);
        }
        let connection = ConnectionManager::new_lazy_with_config(
            self.shared.client.clone(),
            self.shared.config.clone(),
        )?;
        let _ = CONNECTIONS.try_with(|connections| {
            connections
                .borrow_mut()
                .insert(self.shared.id, connection.clone())
        });
        Ok(connection)
    }
}

impl ConnectionLike for PerThreadConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self.current() {
            Ok(mut connection) => Box::pin(async move { connection.req_packed_command(cmd).await }),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self.current() {
            Ok(mut connection) => {
                Box::pin(async move { connection.req_packed_commands(cmd, offset, count).await })
            }
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }

    fn get_db(&self) -> i64 {
        self.shared
            .client
            .get_connection_info()
            .redis_settings()
            .db()
    }
}
