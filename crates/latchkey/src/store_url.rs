//! Choosing a store from configuration: one URL names the backend and where it is.

use latchkey_core::{AnyStore, StoreError};

/// The schemes [`store_from_url`] knows, for error messages.
const SCHEMES: &str = "memory, redis://, rediss://, redis-cluster://, postgres://, postgresql://";

/// Why [`store_from_url`] could not give a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// The URL's scheme names no store.
    #[error("unknown session store {scheme:?}; use one of: {SCHEMES}")]
    UnknownScheme {
        /// The scheme found (the part before `://`, or the whole value).
        scheme: String,
    },
    /// The scheme names a store whose cargo feature this build leaves out.
    #[error("the {scheme} session store needs latchkey's `{feature}` feature")]
    FeatureDisabled {
        /// The scheme found.
        scheme: String,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The URL is not valid for its store (bad host list, unparsable URL).
    #[error("invalid {store} session store URL")]
    InvalidUrl {
        /// `"redis"`, `"redis-cluster"` or `"postgres"`.
        store: &'static str,
        /// What the store's client said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store's server did not answer the start-up check (a ping, or for
    /// PostgreSQL the migrations).
    #[error("the {store} session store is not usable")]
    Unreachable {
        /// `"redis"`, `"redis-cluster"` or `"postgres"`.
        store: &'static str,
        /// The store's error; its own source is the driver's.
        #[source]
        source: StoreError,
    },
}

/// The store a URL names, connected and checked, behind one type:
///
/// | URL | store | checked with |
/// | --- | --- | --- |
/// | `memory` (or `memory://`) | [`MemoryStore`](crate::memory::MemoryStore) (feature `memory`) | — |
/// | `redis://host:6379/0`, `rediss://…` | [`RedisStore`](crate::redis::RedisStore) (feature `redis`; `rediss` needs `redis-rustls` or `redis-native-tls`) | `PING` |
/// | `redis-cluster://host:7000,host:7001,…` | `RedisStore` on a Redis Cluster, seeded with those nodes | `PING` |
/// | `postgres://user@host/db`, `postgresql://…` | [`PostgresStore`](crate::postgres::PostgresStore) (feature `postgres`; `sslmode=require` needs `postgres-rustls` or `postgres-native-tls`) | `migrate()` |
///
/// TLS from a URL trusts the platform's root certificates (with rustls,
/// `SSL_CERT_FILE` or `SSL_CERT_DIR` replace them); for a server whose
/// certificate a private authority signed, build the store with its builder
/// and `tls_root_certificate`. PostgreSQL's `sslmode=prefer`, the default,
/// connects in plain text.
///
/// Query parameters of latchkey's own set the store's place and are taken off
/// before the URL reaches the driver: `prefix` for Redis keys (default
/// `latchkey:`), `schema` and `table` for PostgreSQL (default
/// `public.latchkey_sessions`), e.g. `postgres://app@db/app?schema=sessions`.
/// Values are taken as written (no percent-decoding). Every other parameter is
/// the driver's.
///
/// A wrong URL or an unreachable server fails here, at start-up, rather than
/// on the first request. PostgreSQL's migrations are applied (idempotent, and
/// safe from several instances at once); build the store with its builder
/// instead to manage the schema yourself or to change any other setting.
///
/// The result is already an [`AnyStore`]; handing it to
/// [`SessionMiddleware`](crate::SessionMiddleware) does not wrap it again.
///
/// # Errors
///
/// [`StoreUrlError`]: an unknown scheme, a store this build leaves out, an
/// invalid URL, or a server that does not answer.
///
/// # Examples
///
/// ```
/// # actix_web::rt::System::new().block_on(async {
/// let url = std::env::var("SESSION_STORE").unwrap_or_else(|_| "memory".into());
/// let store = latchkey::store_from_url(&url).await?;
/// let sessions = latchkey::SessionMiddleware::new(store, actix_web::cookie::Key::generate());
/// # drop(sessions);
/// assert!(matches!(
///     latchkey::store_from_url("mongodb://localhost").await,
///     Err(latchkey::StoreUrlError::UnknownScheme { .. })
/// ));
/// # Ok::<(), latchkey::StoreUrlError>(())
/// # }).unwrap();
/// ```
pub async fn store_from_url(url: &str) -> Result<AnyStore, StoreUrlError> {
    let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
    match scheme {
        "memory" => memory(),
        "redis" | "rediss" => redis(url).await,
        "redis-cluster" => redis_cluster(url).await,
        "postgres" | "postgresql" => postgres(url).await,
        other => Err(StoreUrlError::UnknownScheme {
            scheme: other.to_owned(),
        }),
    }
}

#[cfg(feature = "memory")]
fn memory() -> Result<AnyStore, StoreUrlError> {
    Ok(AnyStore::new(crate::memory::MemoryStore::new()))
}

#[cfg(not(feature = "memory"))]
fn memory() -> Result<AnyStore, StoreUrlError> {
    Err(disabled("memory", "memory"))
}

#[cfg(any(feature = "redis", feature = "postgres"))]
/// Splits latchkey's own `names` off the URL's query: the URL for the driver,
/// and the values found.
fn take_params<const N: usize>(
    url: &str,
    names: [&str; N],
) -> Result<(String, [Option<String>; N]), StoreUrlError> {
    let mut found = [const { None }; N];
    // The query starts after the host: a password may hold a `?`.
    let host_start = url.rfind('@').map_or(0, |at| at + 1);
    let (url, fragment) = match url[host_start..].find('#') {
        Some(hash) => url.split_at(host_start + hash),
        None => (url, ""),
    };
    let Some(question) = url[host_start..].find('?') else {
        return Ok((format!("{url}{fragment}"), found));
    };
    let (base, query) = (
        &url[..host_start + question],
        &url[host_start + question + 1..],
    );
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match names.iter().position(|ours| *ours == name) {
            Some(_) if value.is_empty() => {
                return Err(StoreUrlError::InvalidUrl {
                    store: "session store",
                    source: format!("the `{name}` parameter has no value").into(),
                });
            }
            Some(index) => found[index] = Some(value.to_owned()),
            None => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        format!("{base}{fragment}")
    } else {
        format!("{base}?{}{fragment}", rest.join("&"))
    };
    Ok((url, found))
}

#[cfg(feature = "redis")]
fn redis_builder(url: &str) -> Result<crate::redis::RedisStoreBuilder, StoreUrlError> {
    let (url, [prefix]) = take_params(url, ["prefix"])?;
    let builder = crate::redis::RedisStore::builder(url);
    Ok(match prefix {
        Some(prefix) => builder.prefix(prefix),
        None => builder,
    })
}

#[cfg(feature = "redis")]
async fn redis(url: &str) -> Result<AnyStore, StoreUrlError> {
    let store = redis_builder(url)?
        .build()
        .map_err(|err| StoreUrlError::InvalidUrl {
            store: "redis",
            source: Box::new(err),
        })?;
    store
        .ping()
        .await
        .map_err(|source| StoreUrlError::Unreachable {
            store: "redis",
            source,
        })?;
    Ok(AnyStore::new(store))
}

#[cfg(feature = "redis")]
async fn redis_cluster(url: &str) -> Result<AnyStore, StoreUrlError> {
    let (url, [prefix]) = take_params(url, ["prefix"])?;
    let nodes = cluster_nodes(&url);
    if nodes.is_empty() {
        return Err(StoreUrlError::InvalidUrl {
            store: "redis-cluster",
            source: "no node given; use redis-cluster://host:port,host:port".into(),
        });
    }
    let unreachable = |source| StoreUrlError::Unreachable {
        store: "redis-cluster",
        source,
    };
    let store =
        crate::redis::RedisStore::connect_cluster(nodes, crate::redis::DEFAULT_COMMAND_TIMEOUT)
            .await
            .map_err(|err| match err {
                crate::redis::RedisSetupError::CheckFailed(source) => unreachable(source),
                invalid => StoreUrlError::InvalidUrl {
                    store: "redis-cluster",
                    source: Box::new(invalid),
                },
            })?;
    let store = match prefix {
        Some(prefix) => store.with_prefix(prefix),
        None => store,
    };
    store.ping().await.map_err(unreachable)?;
    Ok(AnyStore::new(store))
}

/// One `redis://` URL per node of `redis-cluster://[user:password@]host:port,…
/// [/db][?parameters][#fragment]`: each node gets the credentials and the
/// driver's parameters.
#[cfg(feature = "redis")]
fn cluster_nodes(url: &str) -> Vec<String> {
    let rest = url.trim_start_matches("redis-cluster://");
    // Credentials end at the last `@` before the query: a password may hold a `?`
    // only percent-encoded here, as in any Redis URL.
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let (userinfo, hosts) = match rest[..query].rfind('@') {
        Some(at) => rest.split_at(at + 1),
        None => ("", rest),
    };
    let (hosts, suffix) = hosts.split_at(hosts.find(['/', '?', '#']).unwrap_or(hosts.len()));
    hosts
        .split(',')
        .filter(|node| !node.is_empty())
        .map(|node| format!("redis://{userinfo}{node}{suffix}"))
        .collect()
}

#[cfg(not(feature = "redis"))]
async fn redis(url: &str) -> Result<AnyStore, StoreUrlError> {
    Err(disabled(
        url.split_once("://").map_or(url, |(s, _)| s),
        "redis",
    ))
}

#[cfg(not(feature = "redis"))]
async fn redis_cluster(_url: &str) -> Result<AnyStore, StoreUrlError> {
    Err(disabled("redis-cluster", "redis"))
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<AnyStore, StoreUrlError> {
    let invalid = |err: crate::postgres::PostgresConfigError| StoreUrlError::InvalidUrl {
        store: "postgres",
        source: Box::new(err),
    };
    let (url, [schema, table]) = take_params(url, ["schema", "table"])?;
    let mut builder = crate::postgres::PostgresStore::builder(url);
    if let Some(schema) = schema {
        builder = builder.schema(&schema).map_err(invalid)?;
    }
    if let Some(table) = table {
        builder = builder.table(&table).map_err(invalid)?;
    }
    let store = builder.build().map_err(invalid)?;
    store
        .migrate()
        .await
        .map_err(|source| StoreUrlError::Unreachable {
            store: "postgres",
            source,
        })?;
    Ok(AnyStore::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(url: &str) -> Result<AnyStore, StoreUrlError> {
    Err(disabled(
        url.split_once("://").map_or(url, |(s, _)| s),
        "postgres",
    ))
}

#[cfg(not(all(feature = "memory", feature = "redis", feature = "postgres")))]
fn disabled(scheme: &str, feature: &'static str) -> StoreUrlError {
    StoreUrlError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature,
    }
}

#[cfg(all(test, feature = "redis", feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn own_parameters_are_taken_off_and_the_drivers_kept() {
        let (url, [schema, table]) = take_params(
            "postgres://app@db/app?sslmode=require&schema=sessions&connect_timeout=3",
            ["schema", "table"],
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://app@db/app?sslmode=require&connect_timeout=3"
        );
        assert_eq!(schema.as_deref(), Some("sessions"));
        assert_eq!(table, None);
        let (url, [prefix]) = take_params("redis://127.0.0.1/2?prefix=app:s:", ["prefix"]).unwrap();
        assert_eq!(url, "redis://127.0.0.1/2");
        assert_eq!(prefix.as_deref(), Some("app:s:"));
        let (url, [prefix]) = take_params("redis://127.0.0.1", ["prefix"]).unwrap();
        assert_eq!((url.as_str(), prefix), ("redis://127.0.0.1", None));
    }

    #[test]
    fn odd_urls_keep_their_passwords_and_fragments() {
        let (url, [prefix]) =
            take_params("rediss://cache:6380/0?prefix=app:#insecure", ["prefix"]).unwrap();
        assert_eq!(
            (url.as_str(), prefix.as_deref()),
            ("rediss://cache:6380/0#insecure", Some("app:"))
        );
        let (url, [schema, _]) = take_params(
            "postgres://app:s3cr?t@db/app?schema=sessions",
            ["schema", "table"],
        )
        .unwrap();
        assert_eq!(
            (url.as_str(), schema.as_deref()),
            ("postgres://app:s3cr?t@db/app", Some("sessions"))
        );
        assert!(
            take_params("redis://h?prefix=", ["prefix"]).is_err(),
            "an empty prefix"
        );
        assert!(
            take_params("redis://h?prefix", ["prefix"]).is_err(),
            "a bare prefix"
        );
    }

    #[test]
    fn every_cluster_node_gets_the_credentials_and_parameters() {
        assert_eq!(
            cluster_nodes("redis-cluster://:pw@h1:7000,h2:7001/0?protocol=resp3"),
            [
                "redis://:pw@h1:7000/0?protocol=resp3",
                "redis://:pw@h2:7001/0?protocol=resp3"
            ]
        );
        assert_eq!(
            cluster_nodes("redis-cluster://h1:7000,h2:7001"),
            ["redis://h1:7000", "redis://h2:7001"]
        );
        assert!(cluster_nodes("redis-cluster://").is_empty());
    }
}
