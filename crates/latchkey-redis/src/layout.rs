//! How a session is kept in Redis: one string per session.
//!
//! One string rather than a hash makes `load` a plain `GET` and `create` a
//! plain `SET … NX PXAT`; only writes that must read the value first (save,
//! touch, the deletes, recording an index entry) run a script, and each of
//! those is one `GET`, a few string operations and at most one `SET` or
//! `DEL`. The value is
//!
//! ```text
//! 2:<version>:<created>:<idle>:<absolute>:<n>:<len>:<owner>…<last seen>:<idle timeout>:<owner length>:<owner><data>
//! ```
//!
//! - `2` names this layout (layout 1, of pre-release builds, had no last
//!   seen; its values are not read);
//! - `<version>` is the compare-and-set version;
//! - `<created>`, `<idle>` and `<absolute>` are milliseconds since the Unix
//!   epoch: creation, the idle deadline and the absolute deadline;
//! - `<n>` counts the owner indexes known to hold the session, each written as
//!   `<len>:<owner>` (the owner's length in bytes, then its bytes);
//! - `<last seen>` is when the session was last used, in milliseconds since
//!   the epoch (saves and touches keep the later of the stored and the new);
//! - `<idle timeout>` is the session's own idle timeout in milliseconds, `0`
//!   when it follows the middleware's;
//! - `<owner length>` is `-1` for a session without owner, otherwise the length
//!   in bytes of the owner that follows;
//! - `<data>`, the rest of the value, is the session's data as a JSON object.
//!
//! Everything before the data is ASCII digits, `:` and the owners' bytes, so
//! that the scripts find each field with an anchored pattern and never parse
//! the data. The key's own expiry (`PXAT`) is the earlier deadline, so Redis
//! drops a session by itself once it expires.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use latchkey_core::{Deadlines, Record, Timestamp};
//! use latchkey_redis::layout::StoredSession;
//!
//! let now = Timestamp::from_millis(1_000);
//! let mut record = Record::new(now, Deadlines::starting_at(now, Duration::from_secs(1), Duration::from_secs(2)));
//! record.version = 1;
//! record.owner = Some("ann".into());
//! record.data.insert("n".into(), 1.into());
//! let stored = StoredSession { record, indexed_by: vec!["ann".into()] };
//! let bytes = stored.encode()?;
//! assert_eq!(bytes, br#"2:1:1000:2000:3000:1:3:ann1000:0:3:ann{"n":1}"#);
//! assert_eq!(StoredSession::decode(&bytes)?, stored);
//! # Ok::<(), latchkey_core::StoreError>(())
//! ```

use std::io::Write as _;
use std::time::Duration;

use latchkey_core::{Deadlines, Record, StoreError, Timestamp};

/// The tag that starts every value of this layout.
const TAG: &[u8] = b"2:";

/// A session's value as Redis holds it: the record, and the owners whose
/// indexes are known to hold it (so that a delete can remove it from each and a
/// save need not add it again).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSession {
    /// The session.
    pub record: Record,
    /// Owners whose index holds the session; see the module documentation.
    pub indexed_by: Vec<String>,
}

impl StoredSession {
    /// The value's bytes, in the layout the module documents.
    ///
    /// # Errors
    ///
    /// [`StoreError::Encode`] when the data cannot be written as JSON.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let record = &self.record;
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(TAG);
        write_numbers(
            &mut bytes,
            &[
                record.version,
                record.created_at.as_millis(),
                record.deadlines.idle.as_millis(),
                record.deadlines.absolute.as_millis(),
                self.indexed_by.len() as u64,
            ],
        );
        for owner in &self.indexed_by {
            write_numbers(&mut bytes, &[owner.len() as u64]);
            bytes.extend_from_slice(owner.as_bytes());
        }
        write_numbers(&mut bytes, &[record.last_seen.as_millis()]);
        bytes.extend_from_slice(&encode_tail(record)?);
        Ok(bytes)
    }

    /// Reads a value in the layout the module documents.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for anything else: another layout, a field that
    /// is missing or not a number, an owner that is not UTF-8, data that is not
    /// a JSON object.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut reader = Reader(
            bytes
                .strip_prefix(TAG)
                .ok_or_else(|| StoreError::corrupt("not a latchkey session value (layout 2)"))?,
        );
        let version = reader.number("version")?;
        let created_at = Timestamp::from_millis(reader.number("created")?);
        let idle = Timestamp::from_millis(reader.number("idle deadline")?);
        let absolute = Timestamp::from_millis(reader.number("absolute deadline")?);
        let indexes = reader.number("index count")?;
        let mut indexed_by = Vec::new();
        for _ in 0..indexes {
            let len = reader.number("index owner length")?;
            indexed_by.push(reader.text(len, "index owner")?);
        }
        let last_seen = Timestamp::from_millis(reader.number("last seen")?);
        let idle_timeout = reader.number("idle timeout")?;
        let owner = match reader.signed("owner length")? {
            -1 => None,
            len => Some(reader.text(u64::try_from(len).map_err(StoreError::corrupt)?, "owner")?),
        };
        let data = serde_json::from_slice(reader.0).map_err(StoreError::corrupt)?;
        let mut record = Record::new(created_at, Deadlines { idle, absolute });
        record.version = version;
        record.owner = owner;
        record.data = data;
        record.last_seen = last_seen;
        // Zero means "the middleware's": no session has a zero idle timeout.
        record.idle_timeout = (idle_timeout != 0).then(|| Duration::from_millis(idle_timeout));
        Ok(Self { record, indexed_by })
    }
}

/// The part of a value the application writes on every save: idle timeout,
/// owner and data. The save script puts the header it owns (version,
/// deadlines, index entries, last seen) in front.
pub(crate) fn encode_tail(record: &Record) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::with_capacity(48);
    let idle_timeout = record.idle_timeout.map_or(0, |timeout| {
        u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    });
    write_numbers(&mut bytes, &[idle_timeout]);
    match &record.owner {
        Some(owner) => {
            write_numbers(&mut bytes, &[owner.len() as u64]);
            bytes.extend_from_slice(owner.as_bytes());
        }
        None => bytes.extend_from_slice(b"-1:"),
    }
    serde_json::to_writer(&mut bytes, &record.data).map_err(StoreError::encode)?;
    Ok(bytes)
}

/// Writes each number followed by `:`.
fn write_numbers(bytes: &mut Vec<u8>, numbers: &[u64]) {
    for number in numbers {
        // Writing to a Vec cannot fail.
        let _ = write!(bytes, "{number}:");
    }
}

/// The unread rest of a value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The field up to the next `:`, which is consumed.
    fn field(&mut self, what: &str) -> Result<&'a str, StoreError> {
        let end = self
            .0
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| StoreError::corrupt(format!("session value has no {what}")))?;
        let (field, rest) = self.0.split_at(end);
        self.0 = rest.get(1..).unwrap_or_default();
        std::str::from_utf8(field)
            .map_err(|_| StoreError::corrupt(format!("session value's {what} is not text")))
    }

    fn number(&mut self, what: &str) -> Result<u64, StoreError> {
        let field = self.field(what)?;
        field.parse().map_err(|_| {
            StoreError::corrupt(format!("session value's {what} {field:?} is not a number"))
        })
    }

    fn signed(&mut self, what: &str) -> Result<i64, StoreError> {
        let field = self.field(what)?;
        field.parse().map_err(|_| {
            StoreError::corrupt(format!("session value's {what} {field:?} is not a number"))
        })
    }

    /// The next `len` bytes, as UTF-8.
    fn text(&mut self, len: u64, what: &str) -> Result<String, StoreError> {
        let len = usize::try_from(len).map_err(StoreError::corrupt)?;
        if len > self.0.len() {
            return Err(StoreError::corrupt(format!(
                "session value's {what} is cut short"
            )));
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec())
            .map_err(|_| StoreError::corrupt(format!("session value's {what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredSession {
        let now = Timestamp::from_millis(5);
        let mut record = Record::new(
            now,
            Deadlines::starting_at(now, Duration::from_millis(10), Duration::from_millis(20)),
        );
        record.version = 3;
        record.data.insert("k".into(), "a:b".into());
        StoredSession {
            record,
            indexed_by: Vec::new(),
        }
    }

    #[test]
    fn values_round_trip_with_and_without_owners() {
        let mut value = stored();
        assert_eq!(
            value.encode().unwrap(),
            br#"2:3:5:15:25:0:5:0:-1:{"k":"a:b"}"#
        );
        assert_eq!(
            StoredSession::decode(&value.encode().unwrap()).unwrap(),
            value
        );
        value.record.owner = Some("a:b".into());
        value.indexed_by = vec!["x".into(), "a:b".into()];
        assert_eq!(
            StoredSession::decode(&value.encode().unwrap()).unwrap(),
            value
        );
        value.record.owner = Some(String::new());
        assert_eq!(
            StoredSession::decode(&value.encode().unwrap()).unwrap(),
            value
        );
    }

    #[test]
    fn the_documented_example_reads_as_documented() {
        let value =
            br#"2:4:1764620000000:1764706400000:1765224800000:0:1764620300000:0:-1:{"counter":3}"#;
        let stored = StoredSession::decode(value).unwrap();
        assert_eq!(stored.record.version, 4);
        assert_eq!(
            stored.record.last_seen,
            Timestamp::from_millis(1_764_620_300_000)
        );
        assert_eq!(stored.record.owner, None);
        assert_eq!(stored.record.data["counter"], 3);
        assert_eq!(stored.encode().unwrap(), value);
    }

    #[test]
    fn foreign_or_damaged_values_are_corrupt() {
        for bad in [
            &b""[..],
            b"{}",
            b"3:1:1:1:1:0:1:0:-1:{}",
            b"1:1:1:1:1:0:0:-1:{}",
            b"2:one:1:1:1:0:1:0:-1:{}",
            b"2:1:1:1:1:1:9:ann1:0:-1:{}",
            b"2:1:1:1:1:0:1:0:-2:{}",
            b"2:1:1:1:1:0:1:0:-1:{broken",
            b"2:1:1:1:1:0:1:0:-1:[]",
            b"2:1:1:1:1:0:0:-1:{}",
            b"2:1:1:1:1:0:x:0:-1:{}",
        ] {
            assert!(
                matches!(StoredSession::decode(bad), Err(StoreError::Corrupt { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        /// Whatever a key holds (a foreign writer, an older layout), decoding
        /// it is a value or an error, never a panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = StoredSession::decode(&bytes);
        }

        #[test]
        fn any_owner_round_trips(owner in ".*", indexed in proptest::collection::vec(".*", 0..3)) {
            let mut value = stored();
            value.record.owner = Some(owner);
            value.indexed_by = indexed;
            let bytes = value.encode().unwrap();
            proptest::prop_assert_eq!(StoredSession::decode(&bytes).unwrap(), value);
        }
    }
}
