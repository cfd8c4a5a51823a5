//! What the example binaries share that is not about sessions: options from
//! the command line or the environment, logging, and the metrics listener.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::{App, HttpResponse, HttpServer, web};
use latchkey::{AnyStore, SessionMetrics};

/// Why an example could not start.
#[derive(Debug)]
pub struct StartError(String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<StartError> for std::io::Error {
    fn from(err: StartError) -> Self {
        std::io::Error::other(err.0)
    }
}

/// The options every example takes, on the command line or from the
/// environment (`--help` lists them).
#[derive(Debug, Clone, clap::Parser)]
pub struct Options {
    /// Port to listen on, on 127.0.0.1.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Session store: `memory`, `redis://host:port`, `redis-cluster://host:port,host:port`
    /// or `postgres://user@host/db` (migrated on start).
    #[arg(long, env = "LATCHKEY_STORE", default_value = "memory")]
    pub store: String,
    /// Cookie key: at least 64 bytes of secret text. Without it a random key is
    /// made, so sessions end when the process does.
    #[arg(long, env = "LATCHKEY_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Idle timeout in seconds (the example's own default otherwise).
    #[arg(long, env = "LATCHKEY_IDLE_SECS", value_name = "SECONDS")]
    pub idle: Option<u64>,
    /// Mark the cookie `Secure`; only behind TLS, since the example serves
    /// plain HTTP and clients would not send a `Secure` cookie back over it.
    #[arg(long, env = "LATCHKEY_SECURE_COOKIE")]
    pub secure_cookie: bool,
    /// Serve the session counters at `/metrics` on this port of 127.0.0.1,
    /// apart from the application's port (not served at all without it).
    #[arg(long, env = "LATCHKEY_METRICS_PORT", value_name = "PORT")]
    pub metrics_port: Option<u16>,
}

impl Options {
    /// The options of the binary `name`, described by `about`; `--help`
    /// prints them and a bad value stops the process with a message.
    pub fn parse(name: &'static str, about: &'static str) -> Self {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = Self::command().name(name).about(about).get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }

    /// The store the options name, connected and checked.
    ///
    /// # Errors
    ///
    /// When the store is unknown or its server does not answer.
    pub async fn store(&self) -> Result<AnyStore, StartError> {
        store_from_spec(&self.store).await
    }

    /// The cookie key, or a fresh one with a warning.
    ///
    /// # Errors
    ///
    /// When the key given is shorter than 64 bytes.
    pub fn key(&self) -> Result<Key, StartError> {
        match &self.key {
            Some(secret) => Key::try_from(secret.as_bytes()).map_err(|_| {
                StartError(format!(
                    "LATCHKEY_KEY is {} bytes; it must be at least 64 (e.g. `openssl rand -base64 64`)",
                    secret.len()
                ))
            }),
            None => {
                tracing::warn!(
                    "LATCHKEY_KEY is not set: using a random key, so sessions end when the process does"
                );
                Ok(Key::generate())
            }
        }
    }

    /// The idle timeout given, or `default`.
    pub fn idle_timeout(&self, default: Duration) -> Duration {
        self.idle.map_or(default, Duration::from_secs)
    }
}

/// The store named by `spec`: `memory`, a `redis://` / `rediss://` URL, a
/// Redis Cluster as `redis-cluster://host:port,host:port,…`, or a `postgres://`
/// URL (its migrations are applied); see [`latchkey::store_from_url`].
///
/// # Errors
///
/// When `spec` names a store this build does not know, or its server does not answer.
pub async fn store_from_spec(spec: &str) -> Result<AnyStore, StartError> {
    latchkey::store_from_url(spec).await.map_err(|err| {
        let mut message = format!("LATCHKEY_STORE={spec:?}: {err}");
        let mut cause = std::error::Error::source(&err);
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        StartError(message)
    })
}

/// Serves `metrics` in Prometheus' text format at `/metrics` on
/// 127.0.0.1:`port`, in the background, when a port is given: counters are
/// for operators, not for the application's visitors.
///
/// # Errors
///
/// When the port cannot be bound.
pub fn serve_metrics(port: Option<u16>, metrics: Arc<SessionMetrics>) -> std::io::Result<()> {
    let Some(port) = port else {
        return Ok(());
    };
    let metrics = web::Data::from(metrics);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .route("/metrics", web::get().to(metrics_text))
    })
    .workers(1)
    .bind(("127.0.0.1", port))?
    .run();
    tracing::info!("session counters at http://127.0.0.1:{port}/metrics");
    actix_web::rt::spawn(server);
    Ok(())
}

/// The session counters in Prometheus' text format.
async fn metrics_text(metrics: web::Data<SessionMetrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.snapshot().to_prometheus("latchkey"))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
