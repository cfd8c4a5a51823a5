//! The session store contract behind [latchkey](https://docs.rs/latchkey).
//!
//! This crate names no web framework and does no I/O. It defines what every
//! session backend implements and what the middleware relies on:
//!
//! - [`SessionToken`]: the 256-bit secret a client holds in its cookie, and
//!   [`SessionId`], its SHA-256, the only thing a store ever sees.
//! - [`Record`]: one session's typed JSON data, compare-and-set version, owner,
//!   creation time and [`Deadlines`] (idle and absolute).
//! - [`SessionStore`]: the async trait (load, create, compare-and-set save,
//!   touch, delete, owner index, cleanup), and [`AnyStore`] to pick one at run time.
//! - [`StoreError`]: typed failures that keep the driver's error as `source()`.
//!
//! Backend authors implement [`SessionStore`] and run `latchkey-testkit`'s
//! conformance suite against a real instance of their backend.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use latchkey_core::{Deadlines, Record, SaveOutcome, SessionStore, SessionToken, Timestamp};
//!
//! async fn bump<S: SessionStore>(store: &S) -> Result<(), Box<dyn std::error::Error>> {
//!     let token = SessionToken::generate()?;
//!     let now = Timestamp::now();
//!     let mut record = Record::new(now, Deadlines::starting_at(now, Duration::from_secs(60), Duration::from_secs(3600)));
//!     record.data.insert("views".into(), 1.into());
//!     store.create(&token.id(), &record).await?;
//!
//!     let loaded = store.load(&token.id()).await?.ok_or("gone")?;
//!     let mut next = loaded.clone();
//!     next.data.insert("views".into(), 2.into());
//!     match store.save(&token.id(), &next, loaded.version).await? {
//!         SaveOutcome::Saved(version) => assert_eq!(version, 2),
//!         SaveOutcome::Conflict => { /* reload and reapply */ }
//!         SaveOutcome::Missing => { /* deleted meanwhile: do not recreate */ }
//!     }
//!     Ok(())
//! }
//! # let _ = bump::<latchkey_core::AnyStore>;
//! ```

#[cfg(feature = "tokio")]
mod cleanup;
mod error;
mod record;
mod runtime_slot;
mod store;
mod token;

#[cfg(feature = "tokio")]
pub use self::cleanup::{CleanupHandle, NoRuntime, spawn_cleanup};
pub use self::error::{BoxError, StoreError, TokenError};
pub use self::record::{Deadlines, Record, SessionData, Timestamp};
pub use self::runtime_slot::RuntimeSlot;
pub use self::store::{AnyStore, DeleteOutcome, SaveOutcome, SessionStore};
pub use self::token::{SessionId, SessionToken, TOKEN_ENCODED_LEN};
