#![doc = include_str!("../README.md")]

mod builder;
mod cleanup;
mod error;
mod failure;
mod ident;
mod migrate;
mod rows;
mod runner;
mod sql;
mod store;
mod tls;

pub use self::builder::{
    DEFAULT_CLEANUP_BATCH, DEFAULT_POOL_SIZE, DEFAULT_SCHEMA, DEFAULT_TABLE, DEFAULT_TIMEOUT,
    PostgresStoreBuilder,
};
pub use self::error::PostgresConfigError;
pub use self::ident::{Identifier, InvalidIdentifier};
pub use self::migrate::{MIGRATIONS, Migration};
pub use self::store::PostgresStore;
pub use latchkey_core::{CleanupHandle, NoRuntime};

/// The pool crate this store is built on, for building pools by hand.
pub use deadpool_postgres;
/// The native-tls crate of [`PostgresStoreBuilder::native_tls_connector`].
#[cfg(feature = "tls-native-tls")]
pub use native_tls;
/// The rustls crate of [`PostgresStoreBuilder::rustls_config`].
#[cfg(feature = "tls-rustls")]
pub use rustls;
