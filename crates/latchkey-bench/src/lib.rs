//! The benchmark's pieces: the servers under test, the load driver, what it
//! reads from the stores, and the report.

use std::fmt;
use std::str::FromStr;

pub mod load;
pub mod probe;
pub mod report;
pub mod server;

/// What the load generator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// A route that never touches the session, sent with a session cookie.
    Anon,
    /// The first request of a new visitor: creates a session.
    New,
    /// A logged-in request that reads the session and changes nothing.
    Read,
    /// Reads and writes one key.
    Counter,
    /// 64 clients incrementing a counter in one session.
    Hot,
}

impl Workload {
    /// Every workload, in run order.
    pub const ALL: [Workload; 5] = [
        Workload::Anon,
        Workload::New,
        Workload::Read,
        Workload::Counter,
        Workload::Hot,
    ];

    /// The name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Anon => "anon",
            Workload::New => "new",
            Workload::Read => "read",
            Workload::Counter => "counter",
            Workload::Hot => "hot",
        }
    }

    /// The route it requests.
    pub fn path(self) -> &'static str {
        match self {
            Workload::Anon => routes::ANON,
            Workload::New => routes::NEW,
            Workload::Read => routes::READ,
            Workload::Counter | Workload::Hot => routes::COUNTER,
        }
    }
}

/// Which server a `bench-server` process runs. Every kind serves the same routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// actix-web with no session layer: the upper bound.
    Bare,
    /// actix-session 0.11 with `CookieSessionStore`.
    ActixCookie,
    /// actix-session 0.11 with `RedisSessionStore`.
    ActixRedis,
    /// latchkey on its memory store.
    LatchkeyMemory,
    /// latchkey on Redis.
    LatchkeyRedis,
    /// latchkey on PostgreSQL.
    LatchkeyPostgres,
    /// latchkey on Redis behind the read-through cache, 1 s staleness bound.
    LatchkeyRedisCached,
    /// The same Redis round trips by hand, no session logic: the floor on Redis.
    RawRedis,
    /// The same PostgreSQL round trips by hand: the floor on PostgreSQL.
    RawPostgres,
}

impl Kind {
    /// Every kind, in the order runs alternate through them.
    pub const ALL: [Kind; 9] = [
        Kind::Bare,
        Kind::ActixCookie,
        Kind::ActixRedis,
        Kind::LatchkeyMemory,
        Kind::LatchkeyRedis,
        Kind::LatchkeyPostgres,
        Kind::LatchkeyRedisCached,
        Kind::RawRedis,
        Kind::RawPostgres,
    ];

    /// The name on the command line and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::ActixCookie => "actix-session-cookie",
            Kind::ActixRedis => "actix-session-redis",
            Kind::LatchkeyMemory => "latchkey-memory",
            Kind::LatchkeyRedis => "latchkey-redis",
            Kind::LatchkeyPostgres => "latchkey-postgres",
            Kind::LatchkeyRedisCached => "latchkey-redis-cached",
            Kind::RawRedis => "raw-redis",
            Kind::RawPostgres => "raw-postgres",
        }
    }

    /// Whether the kind keeps per-user state (and so has a `read`/`counter` meaning).
    pub fn has_sessions(self) -> bool {
        self != Kind::Bare
    }

    /// Whether its state lives in Redis.
    pub fn uses_redis(self) -> bool {
        matches!(
            self,
            Kind::ActixRedis | Kind::LatchkeyRedis | Kind::LatchkeyRedisCached | Kind::RawRedis
        )
    }

    /// Whether its state lives in PostgreSQL.
    pub fn uses_postgres(self) -> bool {
        matches!(self, Kind::LatchkeyPostgres | Kind::RawPostgres)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown server kind {s:?}"))
    }
}

/// The routes every server answers.
pub mod routes {
    /// Never touches the session.
    pub const ANON: &str = "/anon";
    /// Creates a session holding a user id.
    pub const NEW: &str = "/new";
    /// Reads the session, changes nothing.
    pub const READ: &str = "/read";
    /// Reads and increments a counter in the session.
    pub const COUNTER: &str = "/counter";
    /// Answers the counter's value without changing it.
    pub const COUNT: &str = "/count";
}
