//! Where tests find their servers, and names that keep parallel tests apart.
//!
//! Tests read `REDIS_URL` and `DATABASE_URL`, defaulting to the usual loopback
//! addresses. Every test isolates its data with [`unique_name`] (a key prefix, a
//! schema) so that tests share one server and still run in parallel.

use std::sync::atomic::{AtomicU64, Ordering};

mod postgres;

pub use self::postgres::PrivatePostgres;

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

/// How often Redis ran each command, by its lower-case name, read from the
/// text of an `INFO commandstats` reply: how tests and benchmarks count a
/// store's commands on a private server. Lines that are not command counts
/// are skipped.
///
/// # Examples
///
/// ```
/// let info = "# Commandstats\r\ncmdstat_get:calls=3,usec=9,usec_per_call=3.00\r\n";
/// let calls = latchkey_testkit::servers::command_calls(info);
/// assert_eq!(calls.get("get"), Some(&3));
/// assert_eq!(calls.len(), 1);
/// ```
pub fn command_calls(commandstats: &str) -> std::collections::BTreeMap<String, u64> {
    commandstats
        .lines()
        .filter_map(|line| {
            let (name, counts) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = counts
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
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

/// A free port for a cluster node: Redis also listens on the port + 10000 for
/// the cluster bus, so that one must be free too, and exist (an ephemeral
/// port above 55535 has none, and the node would not start).
fn free_cluster_port() -> std::io::Result<u16> {
    for _ in 0..200 {
        let port = free_port()?;
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no free port with a free cluster-bus port (port + 10000)",
    ))
}

/// A `redis-server` of a test's own on a loopback port, for tests that need a
/// fault (a stopped server) without touching the shared one. Killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
    /// With persistence: the data directory, kept across restarts.
    data_dir: Option<std::path::PathBuf>,
    /// With TLS: the `--tls-*` arguments; `port` is then the TLS port and the
    /// plain-text one is off.
    tls: Vec<std::ffi::OsString>,
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
            tls: Vec::new(),
        };
        server.restart()?;
        Ok(server)
    }

    /// Like [`PrivateRedis::start`], but serving only TLS, with the server
    /// certificate of `certs`; clients are not asked for certificates. Its
    /// [`url`](Self::url) is a `rediss://` one.
    ///
    /// # Errors
    ///
    /// As for [`PrivateRedis::start`].
    #[cfg(feature = "tls")]
    pub fn start_tls(certs: &crate::tls::TestCertificates) -> std::io::Result<Self> {
        let tls = [
            ("--tls-cert-file", certs.cert_file()),
            ("--tls-key-file", certs.key_file()),
            ("--tls-ca-cert-file", certs.ca_file()),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.into(), file.into_os_string()])
        .chain(["--tls-auth-clients".into(), "no".into()])
        .collect();
        let mut server = Self {
            port: free_port()?,
            child: None,
            data_dir: None,
            tls,
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
            tls: Vec::new(),
        };
        server.restart()?;
        Ok(server)
    }

    /// The server's URL: `redis://127.0.0.1:port`, or `rediss://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_empty() {
            "redis"
        } else {
            "rediss"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
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
        let persistence: &[&str] = if self.data_dir.is_some() {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        self.spawn(persistence)
    }

    fn spawn(&mut self, extra: &[&str]) -> std::io::Result<()> {
        self.stop();
        let port = self.port.to_string();
        let mut command = std::process::Command::new("redis-server");
        if self.tls.is_empty() {
            command.args(["--port", &port]);
        } else {
            command
                .args(["--port", "0", "--tls-port", &port])
                .args(&self.tls);
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"])
            .args(extra);
        if let Some(dir) = &self.data_dir {
            command.arg("--dir").arg(dir);
        }
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

/// A Redis Cluster of a test's own: six `redis-server --cluster-enabled yes`
/// processes on free loopback ports (three primaries, one replica each), joined
/// with `redis-cli --cluster create`, torn down on drop.
#[derive(Debug)]
pub struct PrivateRedisCluster {
    nodes: Vec<PrivateRedis>,
}

impl PrivateRedisCluster {
    /// Starts the six nodes, creates the cluster and waits until every slot is served.
    ///
    /// # Errors
    ///
    /// When `redis-server` or `redis-cli` is missing, or the cluster does not
    /// form within 30 seconds.
    pub fn start() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(unique_name("latchkey_cluster"));
        std::fs::create_dir_all(&dir)?;
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_cluster_port()?;
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir)?;
            let mut node = PrivateRedis {
                port,
                child: None,
                data_dir: Some(node_dir),
                tls: Vec::new(),
            };
            node.spawn(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--appendonly",
                "no",
            ])?;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot run redis-cli ({err}); install redis-tools"),
                )
            })?;
        if !output.status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        let cluster = Self { nodes };
        cluster.wait_until_ok(std::time::Duration::from_secs(30))?;
        cluster.wait_for_replicas(std::time::Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(PrivateRedis::url)
            .collect()
    }

    /// Stops the node that serves slot 0 as primary (as a crash would), so its
    /// replica takes over; returns its port.
    ///
    /// # Errors
    ///
    /// When the cluster's layout cannot be read.
    pub fn stop_a_primary(&mut self) -> std::io::Result<u16> {
        let port = self.cli_any(&["cluster", "nodes"]).and_then(|nodes| {
            nodes.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let is_primary = fields.get(2).is_some_and(|flags| flags.contains("master"));
                let serves_slot_zero = fields.iter().skip(8).any(|range| range.starts_with("0-"));
                let port = fields
                    .get(1)?
                    .split(['@', ':'])
                    .nth(1)?
                    .parse::<u16>()
                    .ok()?;
                (is_primary && serves_slot_zero).then_some(port)
            })
        });
        let port = port.ok_or_else(|| std::io::Error::other("no primary serves slot 0"))?;
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.stop();
        }
        Ok(port)
    }

    /// Waits until the cluster reports `cluster_state:ok` on every running node.
    ///
    /// # Errors
    ///
    /// `TimedOut` when it does not within `limit`.
    pub fn wait_until_ok(&self, limit: std::time::Duration) -> std::io::Result<()> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let all_ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|node| {
                cli(node.port, &["cluster", "info"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if all_ok {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the cluster did not reach cluster_state:ok",
        ))
    }

    /// Waits until every replica is in sync with its primary, so that a
    /// primary's failure can be taken over.
    fn wait_for_replicas(&self, limit: std::time::Duration) -> std::io::Result<()> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let synced = self.nodes.iter().all(|node| {
                cli(node.port, &["info", "replication"]).is_some_and(|info| {
                    info.contains("role:master") || info.contains("master_link_status:up")
                })
            });
            if synced {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "replicas did not sync",
        ))
    }

    fn cli_any(&self, args: &[&str]) -> Option<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| cli(n.port, args))
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        let dirs: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.data_dir.clone())
            .collect();
        self.nodes.clear();
        if let Some(parent) = dirs.first().and_then(|d| d.parent()) {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A loopback TCP proxy that can cut a connection right after forwarding a
/// chosen request, before the server's reply reaches the client: the fault
/// that leaves a write's outcome unknown to its sender.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use latchkey_testkit::servers::CuttingProxy;
///
/// let proxy = CuttingProxy::start("127.0.0.1:6379".parse().unwrap()).await?;
/// let url = format!("redis://127.0.0.1:{}", proxy.port());
/// // ... connect a store to `url`, then:
/// proxy.cut_after(b"a marker in the next write");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CuttingProxy {
    port: u16,
    trigger: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub async fn start(upstream: std::net::SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let trigger: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>> = std::sync::Arc::default();
        let shared = std::sync::Arc::clone(&trigger);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let trigger = std::sync::Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = relay(client, upstream, trigger).await;
                });
            }
        });
        Ok(Self {
            port,
            trigger,
            accept,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next client bytes that contain `marker` are forwarded to the server,
    /// and then that connection is closed without passing on any reply.
    pub fn cut_after(&self, marker: &[u8]) {
        *self
            .trigger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(marker.to_vec());
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    upstream: std::net::SocketAddr,
    trigger: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = tokio::net::TcpStream::connect(upstream).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (mut up, mut down) = (vec![0; 64 * 1024], vec![0; 64 * 1024]);
    loop {
        tokio::select! {
            read = client_read.read(&mut up) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                server_write.write_all(&up[..n]).await?;
                let cut = {
                    let mut armed = trigger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let hit = armed
                        .as_deref()
                        .is_some_and(|marker| up[..n].windows(marker.len()).any(|w| w == marker));
                    if hit {
                        *armed = None;
                    }
                    hit
                };
                if cut {
                    // Give the server time to run the request, then drop both
                    // sides without relaying its reply.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    return Ok(());
                }
            }
            read = server_read.read(&mut down) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                client_write.write_all(&down[..n]).await?;
            }
        }
    }
}
