//! What the benchmark reads from the stores between runs (commands counted,
//! bytes held, the server's process), over the Redis and PostgreSQL clients
//! it links rather than their command-line tools.

use std::collections::BTreeMap;

use latchkey_testkit::servers::command_calls;

use crate::Kind;
use crate::server::Backends;

type Error = Box<dyn std::error::Error>;

/// Commands the store sends itself. `commandstats` also counts the commands
/// its scripts run inside, which cost no round trip: every session script
/// reads with one `GET` and writes with at most one `SET`, so each script call
/// is taken to account for one of each (a script that found a conflict wrote
/// nothing, which the hot workload's count then understates by one).
const LATCHKEY_CLIENT_COMMANDS: [&str; 8] = [
    "evalsha", "eval", "get", "mget", "set", "del", "smembers", "srem",
];

/// Commands the benchmark and the clients' connection set-up send, which no
/// request costs.
const ADMIN_COMMANDS: [&str; 7] = [
    "info", "ping", "client", "hello", "select", "config", "memory",
];

/// Connections to the run's Redis and PostgreSQL, for reading figures.
pub struct StoreProbe {
    runtime: tokio::runtime::Runtime,
    redis: redis::Connection,
    /// Only when a server kind of the run uses PostgreSQL.
    postgres: Option<tokio_postgres::Client>,
    schema: String,
}

impl std::fmt::Debug for StoreProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreProbe")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl StoreProbe {
    /// Connects to the Redis of `backends`, and to its PostgreSQL when
    /// `with_postgres`.
    ///
    /// # Errors
    ///
    /// When a server cannot be reached.
    pub fn connect(backends: &Backends, with_postgres: bool) -> Result<Self, Error> {
        let redis = redis::Client::open(backends.redis_url.as_str())?
            .get_connection()
            .map_err(|e| format!("cannot reach Redis at {}: {e}", backends.redis_url))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let postgres = if with_postgres {
            Some(runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&backends.database_url, tokio_postgres::NoTls)
                        .await
                        .map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
                // Driven whenever the runtime runs a query.
                tokio::spawn(connection);
                Ok::<_, Error>(client)
            })?)
        } else {
            None
        };
        Ok(Self {
            runtime,
            redis,
            postgres,
            schema: backends.schema.clone(),
        })
    }

    fn redis_info(&mut self, section: &str) -> Option<String> {
        redis::cmd("INFO")
            .arg(section)
            .query::<String>(&mut self.redis)
            .ok()
    }

    /// The servers' versions, as the report names them.
    pub fn versions(&mut self) -> String {
        let redis = self
            .redis_info("server")
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.trim().strip_prefix("redis_version:"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".into());
        let Some(client) = &self.postgres else {
            return format!("Redis {redis}");
        };
        let postgres = self
            .runtime
            .block_on(client.query_one("SHOW server_version", &[]))
            .ok()
            .and_then(|row| row.try_get::<_, String>(0).ok())
            .unwrap_or_else(|| "unknown".into());
        format!("Redis {redis}; PostgreSQL {postgres}")
    }

    /// The Redis server's process id.
    pub fn redis_pid(&mut self) -> Option<u32> {
        self.redis_info("server")?
            .lines()
            .find_map(|line| line.trim().strip_prefix("process_id:"))
            .and_then(|pid| pid.parse().ok())
    }

    /// Round trips to Redis so far that `kind`'s requests cost, or `None`
    /// when `kind` does not use Redis.
    pub fn redis_commands(&mut self, kind: Kind) -> Option<u64> {
        if !kind.uses_redis() {
            return None;
        }
        let counts: BTreeMap<String, u64> = command_calls(&self.redis_info("commandstats")?);
        let latchkey = matches!(kind, Kind::LatchkeyRedis | Kind::LatchkeyRedisCached);
        let sent: u64 = counts
            .iter()
            .filter(|(name, _)| {
                if latchkey {
                    LATCHKEY_CLIENT_COMMANDS.contains(&name.as_str())
                } else {
                    !ADMIN_COMMANDS.contains(&name.as_str())
                }
            })
            .map(|(_, n)| n)
            .sum();
        if !latchkey {
            return Some(sent);
        }
        let count = |name: &str| counts.get(name).copied().unwrap_or(0);
        Some(sent.saturating_sub(2 * (count("evalsha") + count("eval"))))
    }

    /// Bytes the store holds, where the store can say: Redis `used_memory`,
    /// or the PostgreSQL table's total size.
    pub fn store_bytes(&mut self, kind: Kind) -> Option<u64> {
        if kind.uses_redis() {
            return self
                .redis_info("memory")?
                .lines()
                .find_map(|l| l.trim().strip_prefix("used_memory:"))
                .and_then(|v| v.parse().ok());
        }
        if !kind.uses_postgres() {
            return None;
        }
        let table = if kind == Kind::RawPostgres {
            "raw_sessions"
        } else {
            "latchkey_sessions"
        };
        let relation = format!("\"{}\".{table}", self.schema);
        let row = self
            .runtime
            .block_on(self.postgres.as_ref()?.query_one(
                "SELECT pg_total_relation_size(to_regclass($1))",
                &[&relation],
            ))
            .ok()?;
        let bytes: Option<i64> = row.try_get(0).ok()?;
        bytes.and_then(|b| u64::try_from(b).ok())
    }

    /// Drops the run's PostgreSQL schema, if it connected to PostgreSQL.
    ///
    /// # Errors
    ///
    /// When PostgreSQL refuses.
    pub fn drop_schema(&mut self) -> Result<(), Error> {
        let Some(client) = &self.postgres else {
            return Ok(());
        };
        let statement = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        self.runtime.block_on(client.batch_execute(&statement))?;
        Ok(())
    }
}
