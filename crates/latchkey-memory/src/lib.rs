//! The in-process session store for latchkey: the embedded default, no server needed.
//!
//! [`MemoryStore`] keeps sessions in a map split into shards, each behind its own
//! lock, so requests for different sessions rarely wait on each other. Expired
//! sessions are never returned (expiry is checked on every read), and are removed
//! by an incremental sweep that piggybacks on writes plus, optionally, a
//! background task ([`MemoryStore::spawn_sweeper`]). An optional capacity bound
//! protects the process from unbounded growth. The owner index answers "this
//! user's sessions" without scanning.
//!
//! Sessions live as long as the process: use Redis or PostgreSQL when sessions
//! must survive a restart or be shared by several instances.
//!
//! # Examples
//!
//! ```
//! use latchkey_memory::MemoryStore;
//!
//! let store = MemoryStore::builder().shards(16).capacity(100_000).build();
//! assert_eq!(store.len(), 0);
//! ```

mod store;
mod sweeper;

pub use self::store::{MemoryStore, MemoryStoreBuilder};
pub use latchkey_core::{CleanupHandle, NoRuntime};
