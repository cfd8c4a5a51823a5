//! State that code built around a store shares across every clone of the store.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

type Entries = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// A place, shared by every clone of one store, where the code around the store
/// (the middleware) keeps its run-time state: the per-session write queue and
/// the metrics.
///
/// An application usually builds its middleware inside actix-web's
/// `HttpServer::new` closure, once per worker, from clones of one store. State
/// kept in the store's slot is then one for the whole process, as it must be:
/// writers of one session take turns across workers, and the metrics count
/// every worker. A store whose clones share one backend returns the same slot
/// from every clone (see [`SessionStore::runtime_slot`](crate::SessionStore::runtime_slot)).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use latchkey_core::RuntimeSlot;
///
/// let slot = RuntimeSlot::new();
/// let clone = slot.clone();
/// slot.get_or_init(AtomicU64::default).fetch_add(1, Ordering::Relaxed);
/// // The clone sees the same counter, not a new one.
/// assert_eq!(clone.get_or_init(AtomicU64::default).load(Ordering::Relaxed), 1);
/// ```
#[derive(Clone, Default)]
pub struct RuntimeSlot(Arc<Mutex<Entries>>);

impl RuntimeSlot {
    /// An empty slot.
    ///
    /// # Examples
    ///
    /// ```
    /// let slot = latchkey_core::RuntimeSlot::new();
    /// assert_eq!(*slot.get_or_init(|| 7_u8), 7);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of type `T` kept in the slot, made by `init` the first time it
    /// is asked for.
    ///
    /// # Examples
    ///
    /// ```
    /// let slot = latchkey_core::RuntimeSlot::new();
    /// assert_eq!(*slot.get_or_init(|| String::from("first")), "first");
    /// assert_eq!(*slot.get_or_init(|| String::from("second")), "first");
    /// ```
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Entries are keyed by their own type, so a present one always downcasts.
        if let Some(Ok(value)) = entries
            .get(&TypeId::of::<T>())
            .map(|entry| Arc::clone(entry).downcast::<T>())
        {
            return value;
        }
        let value = Arc::new(init());
        entries.insert(
            TypeId::of::<T>(),
            Arc::clone(&value) as Arc<dyn Any + Send + Sync>,
        );
        value
    }
}

impl std::fmt::Debug for RuntimeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeSlot")
    }
}
