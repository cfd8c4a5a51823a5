//! Between records and rows: the column types the SQL uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latchkey_core::{Deadlines, Record, SessionData, StoreError, Timestamp};
use tokio_postgres::Row;
use tokio_postgres::types::Json;

pub(crate) fn system_time(at: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.as_millis())
}

pub(crate) fn timestamp(at: SystemTime) -> Timestamp {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

pub(crate) fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::encode(format!("version {version} exceeds bigint")))
}

/// A session's own idle timeout as the `idle_timeout_ms` column holds it.
pub(crate) fn idle_timeout_param(record: &Record) -> Option<i64> {
    record.idle_timeout.map(|timeout| {
        i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    })
}

/// Reads a record from the columns `data, version, owner, created_at,
/// idle_expires_at, absolute_expires_at, idle_timeout_ms, last_seen_at`
/// starting at `offset`.
pub(crate) fn decode(row: &Row, offset: usize) -> Result<Record, StoreError> {
    let get_err = StoreError::corrupt;
    let Json(data): Json<SessionData> = row.try_get(offset).map_err(get_err)?;
    let version: i64 = row.try_get(offset + 1).map_err(get_err)?;
    let created_at = timestamp(row.try_get(offset + 3).map_err(get_err)?);
    // NULL for a row written before the column existed: as good as created.
    let last_seen: Option<SystemTime> = row.try_get(offset + 7).map_err(get_err)?;
    Ok(Record {
        data,
        version: u64::try_from(version).map_err(StoreError::corrupt)?,
        owner: row.try_get(offset + 2).map_err(get_err)?,
        created_at,
        last_seen: last_seen.map_or(created_at, timestamp),
        deadlines: Deadlines {
            idle: timestamp(row.try_get(offset + 4).map_err(get_err)?),
            absolute: timestamp(row.try_get(offset + 5).map_err(get_err)?),
        },
        idle_timeout: row
            .try_get::<_, Option<i64>>(offset + 6)
            .map_err(get_err)?
            .map(|millis| u64::try_from(millis).map(Duration::from_millis))
            .transpose()
            .map_err(StoreError::corrupt)?,
    })
}
