//! The servers under test: one process per kind, the same routes for all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::cookie::{Cookie, Key};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use latchkey::store::SessionToken;
use latchkey::{AnyStore, Session, SessionMiddleware};
use redis::aio::ConnectionManager;

use crate::Kind;
use crate::routes::{ANON, COUNT, COUNTER, NEW, READ};

/// Where the servers find their stores.
#[derive(Clone, Debug)]
pub struct Backends {
    /// Redis URL.
    pub redis_url: String,
    /// Key prefix on Redis for this run.
    pub redis_prefix: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Schema on PostgreSQL for this run.
    pub schema: String,
}

static NEXT_USER: AtomicU64 = AtomicU64::new(1);

fn next_user() -> u64 {
    NEXT_USER.fetch_add(1, Ordering::Relaxed)
}

fn unavailable(err: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(err.to_string())
}

async fn anon() -> HttpResponse {
    HttpResponse::Ok().body("anon")
}

/// Serves `kind` on 127.0.0.1:`port` with one worker until killed.
///
/// # Errors
///
/// When the store cannot be set up or the port cannot be bound.
pub async fn serve(kind: Kind, port: u16, backends: Backends) -> std::io::Result<()> {
    let key = Key::generate();
    let server = match kind {
        Kind::Bare => HttpServer::new(|| {
            App::new()
                .route(ANON, web::get().to(anon))
                .route(
                    NEW,
                    web::get().to(|| async { HttpResponse::Ok().body("new") }),
                )
                .route(
                    READ,
                    web::get().to(|| async { HttpResponse::Ok().body("read") }),
                )
                .route(
                    COUNTER,
                    web::get().to(|| async { HttpResponse::Ok().body("counter") }),
                )
                .route(
                    COUNT,
                    web::get().to(|| async { HttpResponse::Ok().body("0") }),
                )
        })
        .workers(1)
        .bind(("127.0.0.1", port))?
        .run(),
        Kind::LatchkeyMemory
        | Kind::LatchkeyRedis
        | Kind::LatchkeyPostgres
        | Kind::LatchkeyRedisCached => {
            let store = latchkey_store(kind, &backends).await?;
            HttpServer::new(move || {
                // Every session carries a device description (with the
                // network of the client) and a CSRF token, as an application
                // using them would: they must cost no store round trip.
                let metadata = if plain_sessions() {
                    latchkey::DeviceMetadata::off()
                } else {
                    latchkey::DeviceMetadata::default().client_ip(latchkey::ClientIp::Truncated)
                };
                let sessions = SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    .device_metadata(metadata)
                    .build()
                    .unwrap_or_else(|_| SessionMiddleware::new(store.clone(), key.clone()));
                App::new()
                    .wrap(sessions)
                    .route(ANON, web::get().to(anon))
                    .route(NEW, web::get().to(latchkey_new))
                    .route(READ, web::get().to(latchkey_read))
                    .route(COUNTER, web::get().to(latchkey_counter))
                    .route(COUNT, web::get().to(latchkey_count))
            })
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run()
        }
        Kind::ActixCookie => HttpServer::new(move || {
            let store = actix_session::storage::CookieSessionStore::default();
            App::new()
                .wrap(
                    actix_session::SessionMiddleware::builder(store, key.clone())
                        .cookie_secure(false)
                        .build(),
                )
                .configure(actix_routes)
        })
        .workers(1)
        .bind(("127.0.0.1", port))?
        .run(),
        Kind::ActixRedis => {
            let store =
                actix_session::storage::RedisSessionStore::builder(backends.redis_url.clone())
                    .cache_keygen({
                        let prefix = backends.redis_prefix.clone();
                        move |key| format!("{prefix}actix:{key}")
                    })
                    .build()
                    .await
                    .map_err(std::io::Error::other)?;
            HttpServer::new(move || {
                App::new()
                    .wrap(
                        actix_session::SessionMiddleware::builder(store.clone(), key.clone())
                            .cookie_secure(false)
                            .build(),
                    )
                    .configure(actix_routes)
            })
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run()
        }
        Kind::RawRedis => {
            let client =
                redis::Client::open(backends.redis_url.as_str()).map_err(std::io::Error::other)?;
            let conn = ConnectionManager::new(client)
                .await
                .map_err(std::io::Error::other)?;
            let raw = Arc::new(RawRedis {
                conn,
                prefix: format!("{}raw:", backends.redis_prefix),
            });
            HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::from(Arc::clone(&raw)))
                    .route(ANON, web::get().to(anon))
                    .route(NEW, web::get().to(raw_redis_new))
                    .route(READ, web::get().to(raw_redis_read))
                    .route(COUNTER, web::get().to(raw_redis_counter))
                    .route(COUNT, web::get().to(raw_redis_count))
            })
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run()
        }
        Kind::RawPostgres => {
            let raw = Arc::new(RawPostgres::connect(&backends).await?);
            HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::from(Arc::clone(&raw)))
                    .route(ANON, web::get().to(anon))
                    .route(NEW, web::get().to(raw_pg_new))
                    .route(READ, web::get().to(raw_pg_read))
                    .route(COUNTER, web::get().to(raw_pg_counter))
                    .route(COUNT, web::get().to(raw_pg_count))
            })
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run()
        }
    };
    server.await
}

async fn latchkey_store(kind: Kind, backends: &Backends) -> std::io::Result<AnyStore> {
    Ok(match kind {
        Kind::LatchkeyRedisCached => AnyStore::new(
            latchkey::cache::CachedStore::new(redis_store(backends).await?)
                .max_staleness(Duration::from_secs(1)),
        ),
        Kind::LatchkeyRedis => AnyStore::new(redis_store(backends).await?),
        Kind::LatchkeyPostgres => {
            let store = latchkey::postgres::PostgresStore::builder(&backends.database_url)
                .schema(&backends.schema)
                .and_then(|b| b.build())
                .map_err(std::io::Error::other)?;
            store.migrate().await.map_err(std::io::Error::other)?;
            AnyStore::new(store)
        }
        _ => AnyStore::new(latchkey::memory::MemoryStore::new()),
    })
}

async fn redis_store(backends: &Backends) -> std::io::Result<latchkey::redis::RedisStore> {
    let store = latchkey::redis::RedisStore::builder(&backends.redis_url)
        .prefix(format!("{}lk:", backends.redis_prefix))
        .build()
        .map_err(std::io::Error::other)?;
    store.ping().await.map_err(std::io::Error::other)?;
    Ok(store)
}

/// Whether `LATCHKEY_BENCH_PLAIN_SESSIONS` asks for sessions without a device
/// description or a CSRF token, to measure what those cost.
pub fn plain_sessions() -> bool {
    std::env::var_os("LATCHKEY_BENCH_PLAIN_SESSIONS").is_some()
}

async fn latchkey_new(session: Session) -> Result<String, latchkey::Error> {
    session.insert("user", next_user())?;
    if !plain_sessions() {
        session.csrf_token()?;
    }
    Ok("new".into())
}

async fn latchkey_read(session: Session) -> Result<String, latchkey::Error> {
    Ok(session.get::<u64>("user")?.unwrap_or(0).to_string())
}

async fn latchkey_counter(session: Session) -> Result<String, latchkey::Error> {
    Ok(session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?
        .to_string())
}

async fn latchkey_count(session: Session) -> Result<String, latchkey::Error> {
    Ok(session.get::<u64>("n")?.unwrap_or(0).to_string())
}

fn actix_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(ANON, web::get().to(anon))
        .route(
            NEW,
            web::get().to(|session: actix_session::Session| async move {
                match session.insert("user", next_user()) {
                    Ok(()) => HttpResponse::Ok().body("new"),
                    Err(err) => unavailable(err),
                }
            }),
        )
        .route(
            READ,
            web::get().to(|session: actix_session::Session| async move {
                match session.get::<u64>("user") {
                    Ok(user) => HttpResponse::Ok().body(user.unwrap_or(0).to_string()),
                    Err(err) => unavailable(err),
                }
            }),
        )
        .route(
            COUNTER,
            web::get().to(|session: actix_session::Session| async move {
                // actix-session has no atomic update: read, then write back.
                let next = match session.get::<u64>("n") {
                    Ok(n) => n.unwrap_or(0) + 1,
                    Err(err) => return unavailable(err),
                };
                match session.insert("n", next) {
                    Ok(()) => HttpResponse::Ok().body(next.to_string()),
                    Err(err) => unavailable(err),
                }
            }),
        )
        .route(
            COUNT,
            web::get().to(|session: actix_session::Session| async move {
                match session.get::<u64>("n") {
                    Ok(n) => HttpResponse::Ok().body(n.unwrap_or(0).to_string()),
                    Err(err) => unavailable(err),
                }
            }),
        );
}

/// The raw floors' cookie: a plain random id, no signature.
const RAW_COOKIE: &str = "sid";

fn raw_sid(req: &HttpRequest) -> Option<String> {
    req.cookie(RAW_COOKIE).map(|c| c.value().to_owned())
}

fn new_sid() -> Result<String, latchkey::store::TokenError> {
    SessionToken::generate().map(|t| t.encode())
}

struct RawRedis {
    conn: ConnectionManager,
    prefix: String,
}

async fn raw_redis_new(raw: web::Data<RawRedis>) -> HttpResponse {
    let sid = match new_sid() {
        Ok(sid) => sid,
        Err(err) => return unavailable(err),
    };
    let key = format!("{}{sid}", raw.prefix);
    let mut conn = raw.conn.clone();
    let result: redis::RedisResult<()> = redis::pipe()
        .cmd("HSET")
        .arg(&key)
        .arg("user")
        .arg(next_user())
        .ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(86_400_000)
        .ignore()
        .query_async(&mut conn)
        .await;
    match result {
        Ok(()) => HttpResponse::Ok()
            .cookie(Cookie::new(RAW_COOKIE, sid))
            .body("new"),
        Err(err) => unavailable(err),
    }
}

async fn raw_redis_fields(
    raw: &RawRedis,
    sid: &str,
) -> redis::RedisResult<std::collections::HashMap<String, String>> {
    let mut conn = raw.conn.clone();
    redis::cmd("HGETALL")
        .arg(format!("{}{sid}", raw.prefix))
        .query_async(&mut conn)
        .await
}

async fn raw_redis_read(req: HttpRequest, raw: web::Data<RawRedis>) -> HttpResponse {
    let Some(sid) = raw_sid(&req) else {
        return HttpResponse::Ok().body("0");
    };
    match raw_redis_fields(&raw, &sid).await {
        Ok(fields) => HttpResponse::Ok().body(fields.get("user").cloned().unwrap_or_default()),
        Err(err) => unavailable(err),
    }
}

async fn raw_redis_counter(req: HttpRequest, raw: web::Data<RawRedis>) -> HttpResponse {
    let Some(sid) = raw_sid(&req) else {
        return HttpResponse::Ok().body("0");
    };
    // The same two round trips as a session layer: load, then write.
    if let Err(err) = raw_redis_fields(&raw, &sid).await {
        return unavailable(err);
    }
    let mut conn = raw.conn.clone();
    let result: redis::RedisResult<u64> = redis::cmd("HINCRBY")
        .arg(format!("{}{sid}", raw.prefix))
        .arg("n")
        .arg(1)
        .query_async(&mut conn)
        .await;
    match result {
        Ok(n) => HttpResponse::Ok().body(n.to_string()),
        Err(err) => unavailable(err),
    }
}

async fn raw_redis_count(req: HttpRequest, raw: web::Data<RawRedis>) -> HttpResponse {
    let Some(sid) = raw_sid(&req) else {
        return HttpResponse::Ok().body("0");
    };
    match raw_redis_fields(&raw, &sid).await {
        Ok(fields) => {
            HttpResponse::Ok().body(fields.get("n").cloned().unwrap_or_else(|| "0".into()))
        }
        Err(err) => unavailable(err),
    }
}

struct RawPostgres {
    pool: Pool,
    table: String,
}

impl RawPostgres {
    async fn connect(backends: &Backends) -> std::io::Result<Self> {
        let config: tokio_postgres::Config = backends
            .database_url
            .parse()
            .map_err(std::io::Error::other)?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(std::io::Error::other)?;
        let table = format!("\"{}\".raw_sessions", backends.schema);
        let client = pool.get().await.map_err(std::io::Error::other)?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{}\"; CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, data jsonb NOT NULL, version bigint NOT NULL)",
                backends.schema
            ))
            .await
            .map_err(std::io::Error::other)?;
        drop(client);
        Ok(Self { pool, table })
    }

    async fn data(&self, sid: &str) -> Result<Option<(serde_json::Value, i64)>, String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT data, version FROM {} WHERE id = $1",
                self.table
            ))
            .await
            .map_err(|e| e.to_string())?;
        let row = client
            .query_opt(&stmt, &[&sid])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.map(|row| (row.get::<_, serde_json::Value>(0), row.get::<_, i64>(1))))
    }
}

async fn raw_pg_new(raw: web::Data<RawPostgres>) -> HttpResponse {
    let sid = match new_sid() {
        Ok(sid) => sid,
        Err(err) => return unavailable(err),
    };
    let result = async {
        let client = raw.pool.get().await.map_err(|e| e.to_string())?;
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO {} (id, data, version) VALUES ($1, $2, 1)",
                raw.table
            ))
            .await
            .map_err(|e| e.to_string())?;
        let data = serde_json::json!({ "user": next_user() });
        client
            .execute(&stmt, &[&sid, &data])
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(_) => HttpResponse::Ok()
            .cookie(Cookie::new(RAW_COOKIE, sid))
            .body("new"),
        Err(err) => unavailable(err),
    }
}

async fn raw_pg_read(req: HttpRequest, raw: web::Data<RawPostgres>) -> HttpResponse {
    let Some(sid) = raw_sid(&req) else {
        return HttpResponse::Ok().body("0");
    };
    match raw.data(&sid).await {
        Ok(data) => {
            HttpResponse::Ok().body(data.map(|(d, _)| d["user"].to_string()).unwrap_or_default())
        }
        Err(err) => unavailable(err),
    }
}

async fn raw_pg_counter(req: HttpRequest, raw: web::Data<RawPostgres>) -> HttpResponse {
    let Some(sid) = raw_sid(&req) else {
        return HttpResponse::Ok().body("0");
    };
    // The same two round trips as a session layer: load, then a versioned write.
    let result = async {
        let Some((data, version)) = raw.data(&sid).await? else { return Ok(0) };
        let next = data["n"].as_u64().unwrap_or(0) + 1;
        let client = raw.pool.get().await.map_err(|e| e.to_string())?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE {} SET data = jsonb_set(data, '{{n}}', to_jsonb($3::bigint)), version = version + 1 WHERE id = $1 AND version = $2",
                raw.table
            ))
            .await
            .map_err(|e| e.to_string())?;
        let next_param = i64::try_from(next).unwrap_or(i64::MAX);
        client.execute(&stmt, &[&sid, &version, &next_param]).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(next)
    }
    .await;
    match result {
        Ok(n) => HttpResponse::Ok().body(n.to_string()),
        Err(err) => unavailable(err),
    }
}

async fn raw_pg_count(req: HttpRequest, raw: web::Data<RawPostgres>) -> HttpResponse {
    let Some(sid) = raw_sid(&req) else {
        return HttpResponse::Ok().body("0");
    };
    match raw.data(&sid).await {
        Ok(data) => HttpResponse::Ok().body(
            data.map(|(d, _)| d["n"].as_u64().unwrap_or(0).to_string())
                .unwrap_or_default(),
        ),
        Err(err) => unavailable(err),
    }
}
