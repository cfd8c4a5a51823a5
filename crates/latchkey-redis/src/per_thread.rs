//! One Redis connection per thread, so that a request's commands never cross
//! threads on their way to the socket.
//!
//! A [`ConnectionManager`] runs its socket in a task of the runtime it first
//! connected on. An application builds its store once, usually on the main
//! thread, and actix-web serves requests on worker threads, each with its own
//! single-threaded runtime: a shared connection then sends every command to
//! the main thread and every reply back, two thread wake-ups per command. Here
//! each thread that uses the store gets its own connection, made lazily on
//! first use, on that thread's runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A [`ConnectionLike`] that uses one auto-reconnecting [`ConnectionManager`]
/// per thread. Cloning is cheap; clones share the connections.
#[derive(Clone)]
pub struct PerThreadConnection {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    config: ConnectionManagerConfig,
    connections: Mutex<HashMap<ThreadId, ConnectionManager>>,
}

impl std::fmt::Debug for PerThreadConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let threads = self
            .shared
            .connections
            .lock()
            .map_or(0, |connections| connections.len());
        f.debug_struct("PerThreadConnection")
            .field("threads", &threads)
            .finish_non_exhaustive()
    }
}

impl PerThreadConnection {
    /// Connections to `client`'s server with `config`, made as threads first
    /// use them.
    pub fn new(client: Client, config: ConnectionManagerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                client,
                config,
                connections: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This thread's connection, made (lazily: it connects on its first
    /// command, on this thread's runtime) if the thread has none yet.
    fn current(&self) -> RedisResult<ConnectionManager> {
        let thread = std::thread::current().id();
        let mut connections = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(connection) = connections.get(&thread) {
            return Ok(connection.clone());
        }
        let connection = ConnectionManager::new_lazy_with_config(
            self.shared.client.clone(),
            self.shared.config.clone(),
        )?;
        connections.insert(thread, connection.clone());
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
