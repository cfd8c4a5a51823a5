//! A clock the expiry cases move forward instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use latchkey_core::Timestamp;

/// The system clock plus an offset that only grows: what a store that takes
/// its time from a function (such as `MemoryStoreBuilder::clock` of
/// `latchkey-memory`) reads, so that the expiry cases of
/// [`conformance_tests!`](crate::conformance_tests) move it past a deadline
/// rather than wait for it. Clones share the offset.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let clock = latchkey_testkit::TestClock::new();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(3600));
/// assert!(clock.now() >= before + Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug, Default)]
pub struct TestClock {
    ahead_ms: Arc<AtomicU64>,
}

impl TestClock {
    /// A clock that reads the system time, until moved.
    pub fn new() -> Self {
        Self::default()
    }

    /// The system time plus every [`advance`](Self::advance) so far.
    pub fn now(&self) -> Timestamp {
        Timestamp::now() + Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock `by` further ahead of the system time.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // Saturating, so that the offset only grows.
        let _ = self
            .ahead_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ahead| {
                Some(ahead.saturating_add(ms))
            });
    }
}
