#![doc = include_str!("../README.md")]

pub mod layout;
mod per_thread;
mod scripts;
mod store;
mod tls;

pub use self::per_thread::PerThreadConnection;
pub use self::store::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisStore, RedisStoreBuilder};

/// The `redis` crate this store is built on, for building connections by hand.
pub use redis;
