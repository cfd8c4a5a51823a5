//! What a store keeps for one session: data, version, owner and deadlines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The session's data: typed JSON values by key, never JSON inside strings.
pub type SessionData = Map<String, Value>;

/// A point in time as whole milliseconds since the Unix epoch.
///
/// Millisecond precision matches what Redis (`PEXPIREAT`) and PostgreSQL
/// (`timestamptz`, microseconds) can store without rounding surprises.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use latchkey_core::Timestamp;
///
/// let t = Timestamp::from_millis(1_000);
/// assert_eq!(t + Duration::from_secs(1), Timestamp::from_millis(2_000));
/// assert!(Timestamp::now() > t);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The current wall-clock time.
    ///
    /// A clock set before 1970 reads as the epoch rather than failing.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(latchkey_core::Timestamp::now().as_millis() > 0);
    /// ```
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    /// The time `millis` milliseconds after the epoch.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(latchkey_core::Timestamp::from_millis(5).as_millis(), 5);
    /// ```
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the epoch.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(latchkey_core::Timestamp::from_millis(7).as_millis(), 7);
    /// ```
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// How long from `earlier` to `self`; zero when `earlier` is later.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use latchkey_core::Timestamp;
    ///
    /// let (a, b) = (Timestamp::from_millis(10), Timestamp::from_millis(25));
    /// assert_eq!(b.saturating_since(a), Duration::from_millis(15));
    /// assert_eq!(a.saturating_since(b), Duration::ZERO);
    /// ```
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, rhs: Duration) -> Timestamp {
        let millis = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }
}

/// When a session stops being valid.
///
/// The idle deadline moves forward as the session is used; the absolute deadline
/// is fixed when the session is created and caps the idle one. A session is
/// expired from the earlier of the two on.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use latchkey_core::{Deadlines, Timestamp};
///
/// let now = Timestamp::from_millis(0);
/// let d = Deadlines::starting_at(now, Duration::from_secs(60), Duration::from_secs(3600));
/// assert_eq!(d.expires_at(), Timestamp::from_millis(60_000));
/// assert!(!d.is_expired_at(Timestamp::from_millis(59_999)));
/// assert!(d.is_expired_at(Timestamp::from_millis(60_000)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Expires here unless used again before.
    pub idle: Timestamp,
    /// Expires here however often it is used.
    pub absolute: Timestamp,
}

impl Deadlines {
    /// Deadlines for a session that starts (or was last used) at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use latchkey_core::{Deadlines, Timestamp};
    ///
    /// let d = Deadlines::starting_at(Timestamp::from_millis(0), Duration::from_secs(10), Duration::from_secs(5));
    /// // The idle deadline never outlives the absolute one.
    /// assert_eq!(d.idle, d.absolute);
    /// ```
    pub fn starting_at(now: Timestamp, idle_timeout: Duration, lifetime: Duration) -> Self {
        let absolute = now + lifetime;
        Self {
            idle: (now + idle_timeout).min(absolute),
            absolute,
        }
    }

    /// These deadlines with the idle one moved to `now + idle_timeout`, capped by
    /// the absolute deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use latchkey_core::{Deadlines, Timestamp};
    ///
    /// let d = Deadlines::starting_at(Timestamp::from_millis(0), Duration::from_secs(10), Duration::from_secs(15));
    /// let later = d.extended(Timestamp::from_millis(8_000), Duration::from_secs(10));
    /// assert_eq!(later.idle, Timestamp::from_millis(15_000));
    /// ```
    pub fn extended(self, now: Timestamp, idle_timeout: Duration) -> Self {
        Self {
            idle: (now + idle_timeout).min(self.absolute),
            absolute: self.absolute,
        }
    }

    /// The earlier of the two deadlines: when the session expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey_core::{Deadlines, Timestamp};
    ///
    /// let d = Deadlines { idle: Timestamp::from_millis(5), absolute: Timestamp::from_millis(9) };
    /// assert_eq!(d.expires_at(), Timestamp::from_millis(5));
    /// ```
    pub fn expires_at(&self) -> Timestamp {
        self.idle.min(self.absolute)
    }

    /// Whether a session with these deadlines is expired at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey_core::{Deadlines, Timestamp};
    ///
    /// let d = Deadlines { idle: Timestamp::from_millis(5), absolute: Timestamp::from_millis(9) };
    /// assert!(d.is_expired_at(Timestamp::from_millis(5)));
    /// ```
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }
}

/// One session as a store keeps it.
///
/// The store assigns [`Record::version`]: `create` stores version 1 and each
/// successful `save` stores the expected version plus one. The version a caller
/// passes in a record it writes is ignored; the one it reads back is what it
/// must hand to the next compare-and-set.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use latchkey_core::{Deadlines, Record, Timestamp};
///
/// let now = Timestamp::now();
/// let mut record = Record::new(now, Deadlines::starting_at(now, Duration::from_secs(60), Duration::from_secs(600)));
/// record.data.insert("views".into(), 1.into());
/// record.owner = Some("user-42".into());
/// assert!(!record.is_expired_at(now));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The session's values.
    pub data: SessionData,
    /// The compare-and-set version; see the type's documentation.
    pub version: u64,
    /// The authenticated user this session belongs to, for the owner index.
    pub owner: Option<String>,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When the session was last used, as far as a store write recorded it.
    /// The middleware writes it once it is an [extension interval] old, with
    /// the touch or save of that request (reads touch only under
    /// `IdleExtension::OnEveryRequest`), so it trails the last use by at most
    /// that interval. Stores keep the later of the stored value and the one
    /// written, so it never moves back.
    ///
    /// [extension interval]: https://docs.rs/latchkey/latest/latchkey/struct.SessionMiddlewareBuilder.html#method.idle_extension_interval
    pub last_seen: Timestamp,
    /// When it expires.
    pub deadlines: Deadlines,
    /// The session's own idle timeout, when it opted into one ("remember
    /// me"); `None` follows the middleware's. Stores keep it as written by
    /// `create` and `save`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

impl Record {
    /// An empty, unowned record created (and last seen) at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use latchkey_core::{Deadlines, Record, Timestamp};
    ///
    /// let now = Timestamp::now();
    /// let record = Record::new(now, Deadlines::starting_at(now, Duration::from_secs(1), Duration::from_secs(1)));
    /// assert!(record.data.is_empty());
    /// assert_eq!(record.owner, None);
    /// ```
    pub fn new(now: Timestamp, deadlines: Deadlines) -> Self {
        Self {
            data: SessionData::new(),
            version: 0,
            owner: None,
            created_at: now,
            last_seen: now,
            deadlines,
            idle_timeout: None,
        }
    }

    /// Whether the record is expired at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use latchkey_core::{Deadlines, Record, Timestamp};
    ///
    /// let now = Timestamp::from_millis(0);
    /// let record = Record::new(now, Deadlines::starting_at(now, Duration::from_secs(1), Duration::from_secs(1)));
    /// assert!(record.is_expired_at(Timestamp::from_millis(1_000)));
    /// ```
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.deadlines.is_expired_at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_deadline_is_capped_by_absolute() {
        let start = Timestamp::from_millis(1_000);
        let d = Deadlines::starting_at(start, Duration::from_secs(30), Duration::from_secs(60));
        let extended = d.extended(Timestamp::from_millis(50_000), Duration::from_secs(30));
        assert_eq!(extended.idle, Timestamp::from_millis(61_000));
        assert_eq!(extended.absolute, Timestamp::from_millis(61_000));
    }

    #[test]
    fn record_serializes_data_as_typed_json() {
        let now = Timestamp::from_millis(1);
        let mut record = Record::new(
            now,
            Deadlines::starting_at(now, Duration::from_secs(1), Duration::from_secs(2)),
        );
        record.data.insert("n".into(), 3.into());
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["data"]["n"], serde_json::json!(3));
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn adding_huge_durations_saturates() {
        let t = Timestamp::from_millis(u64::MAX - 1) + Duration::from_secs(10);
        assert_eq!(t.as_millis(), u64::MAX);
    }
}
