//! What every worker's middleware and every `Session` share: the settings,
//! the store, and the run-time state kept with the store.

use std::sync::Arc;

use latchkey_core::{AnyStore, SessionStore as _};

use crate::config::Settings;
use crate::metrics::{ObservedStore, SessionMetrics};
use crate::write_queue::WriteQueue;

/// The settings and the store, with its run-time state. Reads of a setting go
/// through to [`Settings`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) store: ObservedStore,
    pub(crate) runtime: Arc<Runtime>,
}

impl Shared {
    pub(crate) fn new(store: AnyStore, settings: Settings) -> Self {
        let runtime = Runtime::of(&store);
        Self {
            store: ObservedStore::new(store, Arc::clone(&runtime.metrics)),
            settings,
            runtime,
        }
    }
}

impl std::ops::Deref for Shared {
    type Target = Settings;

    fn deref(&self) -> &Settings {
        &self.settings
    }
}

/// The run-time state every middleware built on one store shares: writers of a
/// session take turns across workers, and the metrics count every worker. It
/// lives in the store's [`RuntimeSlot`](latchkey_core::RuntimeSlot), not in
/// the middleware, because applications build the middleware once per worker.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) write_queue: WriteQueue,
    pub(crate) metrics: Arc<SessionMetrics>,
}

impl Runtime {
    fn of(store: &AnyStore) -> Arc<Runtime> {
        let fresh = || Runtime {
            write_queue: WriteQueue::default(),
            metrics: Arc::new(SessionMetrics::for_store(store.name())),
        };
        match store.runtime_slot() {
            Some(slot) => slot.get_or_init(fresh),
            None => Arc::new(fresh()),
        }
    }
}
