//! The async contract every session backend implements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::StoreError;
use crate::record::{Deadlines, Record, Timestamp};
use crate::runtime_slot::RuntimeSlot;
use crate::token::SessionId;

/// What a compare-and-set [`SessionStore::save`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum SaveOutcome {
    /// Written; the record now has this version.
    Saved(u64),
    /// Not written: the stored version differs from the expected one, or (on
    /// some stores) the session was deleted while this call waited for it.
    /// Reload, reapply the change and try again; a reload that finds nothing
    /// means the session is gone.
    Conflict,
    /// Not written: there is no live session under this id (deleted or expired
    /// meanwhile). The session must not be brought back.
    Missing,
}

/// What a conditional [`SessionStore::delete_at_version`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum DeleteOutcome {
    /// The session was at the expected version and is gone now.
    Deleted,
    /// Not deleted: the stored version differs from the expected one, or (on
    /// some stores) the session was deleted while this call waited for it.
    /// Reload: the reload tells which.
    Conflict,
    /// Not deleted: there is no live session under this id (deleted or expired
    /// meanwhile).
    Missing,
}

/// A session backend.
///
/// Stores see only [`SessionId`]s (hashes of tokens), never tokens. All methods
/// return `Send` futures, so a store works on any multi-threaded runtime. Use it
/// generically, or wrap it in [`AnyStore`] to choose one at run time.
///
/// # Contract
///
/// | operation | meaning |
/// | --- | --- |
/// | [`load`](Self::load) | the record, or `None` if absent or expired; never an expired record |
/// | [`create`](Self::create) | insert at version 1; [`StoreError::IdCollision`] if the id is taken by a live session |
/// | [`save`](Self::save) | compare-and-set on the version, see [`SaveOutcome`]; never moves the stored idle deadline or `last_seen` earlier |
/// | [`touch`](Self::touch) | replace the deadlines and move `last_seen` without rewriting data or version |
/// | [`delete`](Self::delete) | remove; deleting an absent session is not an error |
/// | [`delete_at_version`](Self::delete_at_version) | remove only at the expected version, see [`DeleteOutcome`] |
/// | [`list_by_owner`](Self::list_by_owner) | the owner's live sessions, from an index, not a scan |
/// | [`delete_by_owner`](Self::delete_by_owner) | remove the owner's sessions, optionally keeping one |
/// | [`delete_expired`](Self::delete_expired) | remove expired records; a no-op where the backend expires them itself |
///
/// `latchkey-testkit` checks all of this against a real instance of the store;
/// its crate documentation ("Implementing a custom store") walks through a
/// complete store that passes the whole suite.
pub trait SessionStore: Send + Sync + 'static {
    /// A short name for logs and metrics, e.g. `"redis"`.
    fn name(&self) -> &'static str {
        "custom"
    }

    /// The slot, shared by every clone of this store, where the middleware keeps
    /// its write queue and metrics; see [`RuntimeSlot`].
    ///
    /// The default, `None`, gives each middleware built on the store its own.
    /// A store whose clones share one backend should keep a `RuntimeSlot` next to
    /// that backend and return it, so that middleware built once per worker acts
    /// as one.
    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        None
    }

    /// Loads a live session.
    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Inserts a new session at version 1, ignoring `record.version`.
    ///
    /// An expired record still occupying the id does not count as a collision.
    fn create(
        &self,
        id: &SessionId,
        record: &Record,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes `record` at version `expected_version + 1` if and only if the stored
    /// live record is at `expected_version`, ignoring `record.version`.
    ///
    /// The stored idle deadline becomes the later of the stored one and
    /// `record`'s (capped at the absolute deadline): a [`touch`](Self::touch)
    /// since the writer loaded moved it without a new version, and a save must
    /// not undo it. [`Record::last_seen`] likewise becomes the later of the two.
    fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send;

    /// Replaces a live session's deadlines and moves its
    /// [`last_seen`](Record::last_seen) to `seen_at`, unless the stored one is
    /// later; `false` when there is no live session to touch.
    fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes a session and its owner-index entry. Idempotent.
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a live session if and only if it is stored at `expected_version`:
    /// the compare-and-set form of [`delete`](Self::delete).
    ///
    /// Renewal retires the old id with it, so a session that another request
    /// changed meanwhile is reloaded rather than lost, and one that was deleted
    /// meanwhile (logged out elsewhere) is never renewed back to life.
    fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send;

    /// The owner's live sessions, in no particular order.
    fn list_by_owner(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<(SessionId, Record)>, StoreError>> + Send;

    /// Removes every session of `owner` except `keep`, returning how many went.
    fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Removes expired sessions, returning how many went.
    fn delete_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl<S: SessionStore> SessionStore for Arc<S> {
    fn name(&self) -> &'static str {
        S::name(self)
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        S::runtime_slot(self)
    }

    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send {
        S::load(self, id)
    }

    fn create(
        &self,
        id: &SessionId,
        record: &Record,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::create(self, id, record)
    }

    fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        S::save(self, id, record, expected_version)
    }

    fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        S::touch(self, id, deadlines, seen_at)
    }

    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::delete(self, id)
    }

    fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send {
        S::delete_at_version(self, id, expected_version)
    }

    fn list_by_owner(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<(SessionId, Record)>, StoreError>> + Send {
        S::list_by_owner(self, owner)
    }

    fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        S::delete_by_owner(self, owner, keep)
    }

    fn delete_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        S::delete_expired(self)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe mirror of [`SessionStore`], behind [`AnyStore`].
trait ErasedStore: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn runtime_slot(&self) -> Option<&RuntimeSlot>;
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;
    fn create<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a Record,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<SaveOutcome, StoreError>>;
    fn touch<'a>(
        &'a self,
        id: &'a SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>>;
    fn delete_at_version<'a>(
        &'a self,
        id: &'a SessionId,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<DeleteOutcome, StoreError>>;
    fn list_by_owner<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(SessionId, Record)>, StoreError>>;
    fn delete_by_owner<'a>(
        &'a self,
        owner: &'a str,
        keep: Option<&'a SessionId>,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    fn delete_expired(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
}

impl<S: SessionStore> ErasedStore for S {
    fn name(&self) -> &'static str {
        SessionStore::name(self)
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        SessionStore::runtime_slot(self)
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(SessionStore::load(self, id))
    }

    fn create<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SessionStore::create(self, id, record))
    }

    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a Record,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<SaveOutcome, StoreError>> {
        Box::pin(SessionStore::save(self, id, record, expected_version))
    }

    fn touch<'a>(
        &'a self,
        id: &'a SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::touch(self, id, deadlines, seen_at))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SessionStore::delete(self, id))
    }

    fn delete_at_version<'a>(
        &'a self,
        id: &'a SessionId,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<DeleteOutcome, StoreError>> {
        Box::pin(SessionStore::delete_at_version(self, id, expected_version))
    }

    fn list_by_owner<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(SessionId, Record)>, StoreError>> {
        Box::pin(SessionStore::list_by_owner(self, owner))
    }

    fn delete_by_owner<'a>(
        &'a self,
        owner: &'a str,
        keep: Option<&'a SessionId>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(SessionStore::delete_by_owner(self, owner, keep))
    }

    fn delete_expired(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(SessionStore::delete_expired(self))
    }
}

/// Any [`SessionStore`] behind one type, for choosing a backend at run time.
///
/// Cloning is cheap (a reference count). `AnyStore` itself implements
/// [`SessionStore`], at the cost of one allocation per operation.
///
/// # Examples
///
/// ```
/// use latchkey_core::{AnyStore, SessionStore};
///
/// // Pick a backend from configuration, then use it like any other store.
/// fn choose(stores: Vec<AnyStore>, index: usize) -> Option<AnyStore> {
///     stores.get(index).cloned()
/// }
///
/// async fn count<S: SessionStore>(store: &S, owner: &str) -> usize {
///     store.list_by_owner(owner).await.map(|s| s.len()).unwrap_or(0)
/// }
/// # let _ = (choose, count::<AnyStore>);
/// ```
#[derive(Clone)]
pub struct AnyStore(Arc<dyn ErasedStore>);

impl AnyStore {
    /// Erases the type of `store`.
    ///
    /// An `AnyStore` given here is returned as it is: erasing twice adds no
    /// second indirection.
    pub fn new<S: SessionStore>(store: S) -> Self {
        // An `AnyStore` handed in (say, to a middleware builder that erases
        // whatever it gets) is shared as it is, not wrapped a second time.
        if let Some(erased) = (&store as &dyn std::any::Any).downcast_ref::<AnyStore>() {
            return erased.clone();
        }
        Self(Arc::new(store))
    }
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyStore")
    }
}

impl SessionStore for AnyStore {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        self.0.runtime_slot()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.0.load(id).await
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.0.create(id, record).await
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.0.save(id, record, expected_version).await
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.0.touch(id, deadlines, seen_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.0.delete(id).await
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        self.0.delete_at_version(id, expected_version).await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        self.0.list_by_owner(owner).await
    }

    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.0.delete_by_owner(owner, keep).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.0.delete_expired().await
    }
}

#[cfg(test)]
mod any_store_tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    impl SessionStore for Nothing {
        async fn load(&self, _: &SessionId) -> Result<Option<Record>, StoreError> {
            Ok(None)
        }
        async fn create(&self, _: &SessionId, _: &Record) -> Result<(), StoreError> {
            Ok(())
        }
        async fn save(&self, _: &SessionId, _: &Record, _: u64) -> Result<SaveOutcome, StoreError> {
            Ok(SaveOutcome::Missing)
        }
        async fn touch(
            &self,
            _: &SessionId,
            _: Deadlines,
            _: Timestamp,
        ) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn delete(&self, _: &SessionId) -> Result<(), StoreError> {
            Ok(())
        }
        async fn delete_at_version(
            &self,
            _: &SessionId,
            _: u64,
        ) -> Result<DeleteOutcome, StoreError> {
            Ok(DeleteOutcome::Missing)
        }
        async fn list_by_owner(&self, _: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
            Ok(Vec::new())
        }
        async fn delete_by_owner(&self, _: &str, _: Option<&SessionId>) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn delete_expired(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    #[test]
    fn erasing_an_erased_store_shares_it() {
        let once = AnyStore::new(Nothing);
        let twice = AnyStore::new(once.clone());
        assert!(Arc::ptr_eq(&once.0, &twice.0), "no second wrapper");
    }
}
