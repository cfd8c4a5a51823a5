//! Where tests find their servers, and names that keep parallel tests apart.
//!
//! Tests read `REDIS_URL` and `DATABASE_URL`, defaulting to the usual loopback
//! addresses. Every test isolates its data with [`unique_name`] (a key prefix, a
//! schema) so that tests share one server and still run in parallel.

use std::sync::atomic::{AtomicU64, Ordering};

/// Default Redis for tests when `REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Default PostgreSQL for tests when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Redis tests use: `REDIS_URL`, or [`DEFAULT_REDIS_URL`].
///
/// # Examples
///
/// ```
/// assert!(latchkey_testkit::servers::redis_url().starts_with("redis"));
/// ```
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// The PostgreSQL tests use: `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
///
/// # Examples
///
/// ```
/// assert!(latchkey_testkit::servers::database_url().starts_with("postgres"));
/// ```
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A name no other test in this or any concurrent run uses: `prefix`, the process
/// id, a counter and the clock, all lower-case ASCII letters, digits and `_`, so
/// it is valid as a Redis key prefix and a PostgreSQL identifier.
///
/// # Examples
///
/// ```
/// let a = latchkey_testkit::servers::unique_name("t");
/// let b = latchkey_testkit::servers::unique_name("t");
/// assert_ne!(a, b);
/// assert!(a.starts_with("t_"));
/// ```
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a private server.
///
/// # Errors
///
/// When no port can be bound.
///
/// # Examples
///
/// ```
/// let port = latchkey_testkit::servers::free_port()?;
/// assert!(port > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A `redis-server` of a test's own on a loopback port, for tests that need a
/// fault (a stopped server) without touching the shared one. Killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
    /// With persistence: the data directory, kept across restarts.
    data_dir: Option<std::path::PathBuf>,
}

impl PrivateRedis {
    /// Starts a server on a free port and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// When `redis-server` is not installed (the message says how to get it) or
    /// does not come up within 10 seconds.
    pub fn start() -> std::io::Result<Self> {
        let mut server = Self {
            port: free_port()?,
            child: None,
            data_dir: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// Like [`PrivateRedis::start`], but every acknowledged write is on disk
    /// (`appendfsync always`), so data survives [`PrivateRedis::stop`] and
    /// [`PrivateRedis::restart`] as on a production server.
    ///
    /// # Errors
    ///
    /// As for [`PrivateRedis::start`], or when the data directory cannot be made.
    pub fn start_persistent() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(unique_name("latchkey_redis"));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port: free_port()?,
            child: None,
            data_dir: Some(dir),
        };
        server.restart()?;
        Ok(server)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (as a crash would: no shutdown handshake with clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, waiting until it accepts connections.
    ///
    /// # Errors
    ///
    /// As for [`PrivateRedis::start`].
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let mut command = std::process::Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"]);
        match &self.data_dir {
            Some(dir) => command.arg("--dir").arg(dir).args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot run redis-server ({err}); install it (Debian: apt-get install redis-server) or run scripts/test.sh, which does"),
                )
            })?;
        self.child = Some(child);
        wait_for_port(self.port, std::time::Duration::from_secs(10))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
///
/// # Errors
///
/// `TimedOut` when nothing does within `limit`.
pub fn wait_for_port(port: u16, limit: std::time::Duration) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("nothing listens on 127.0.0.1:{port} after {limit:?}"),
    ))
}
