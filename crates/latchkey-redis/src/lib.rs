#![doc = include_str!("../README.md")]

mod builder;
mod error;
mod index;
pub mod layout;
mod per_thread;
mod replies;
mod scripts;
mod store;
mod tls;
mod transport;

pub use self::builder::RedisStoreBuilder;
pub use self::error::RedisSetupError;
pub use self::per_thread::PerThreadConnection;
pub use self::store::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisStore};

/// The `redis` crate this store is built on, for building connections by hand.
pub use redis;
