//! The statements, rendered once per store for its schema and table.

use crate::ident::Identifier;

/// Every statement the store prepares.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) load: String,
    pub(crate) create: String,
    pub(crate) replace_expired: String,
    pub(crate) save: String,
    pub(crate) is_live: String,
    pub(crate) touch: String,
    pub(crate) delete: String,
    pub(crate) delete_at_version: String,
    pub(crate) list_by_owner: String,
    pub(crate) delete_by_owner: String,
    pub(crate) delete_expired_batch: String,
}

const COLUMNS: &str = "data, version, owner, created_at, idle_expires_at, absolute_expires_at, \
     idle_timeout_ms, last_seen_at";

impl Statements {
    pub(crate) fn new(schema: &Identifier, table: &Identifier) -> Self {
        let t = format!("{}.{}", schema.quoted(), table.quoted());
        Self {
            // $1 id, $2 now
            load: format!("SELECT {COLUMNS} FROM {t} WHERE id = $1 AND expires_at > $2"),
            // $1 id, $2 data, $3 owner, $4 created, $5 idle, $6 absolute,
            // $7 idle timeout (ms, or NULL), $8 last seen. A
            // plain insert, the common case; a unique violation (a live
            // session, or an expired row not cleaned up yet) goes on to
            // `replace_expired`.
            create: format!(
                "INSERT INTO {t} (id, data, version, owner, created_at, idle_expires_at, absolute_expires_at, idle_timeout_ms, last_seen_at) \
                 VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8)"
            ),
            // $1 id, $2 data, $3 owner, $4 created, $5 idle, $6 absolute, $7 now,
            // $8 idle timeout, $9 last seen.
            // Takes over an expired row under the id; no row updated means a
            // live session holds it, or the row went meanwhile (`is_live` tells).
            replace_expired: format!(
                "UPDATE {t} SET data = $2, version = 1, owner = $3, created_at = $4, \
                 idle_expires_at = $5, absolute_expires_at = $6, idle_timeout_ms = $8, last_seen_at = $9 \
                 WHERE id = $1 AND expires_at <= $7"
            ),
            // $1 id, $2 expected version, $3 data, $4 owner, $5 idle, $6 absolute, $7 now,
            // $8 idle timeout, $9 last seen.
            // The idle deadline and last seen never move earlier (a touch
            // since the load moved them without a new version). No row returned: a conflict or
            // a missing session, which `is_live` tells apart.
            save: format!(
                "UPDATE {t} SET data = $3, version = version + 1, owner = $4, idle_timeout_ms = $8, \
                 last_seen_at = greatest(last_seen_at, $9), \
                 idle_expires_at = least(greatest(idle_expires_at, $5), $6), absolute_expires_at = $6 \
                 WHERE id = $1 AND version = $2 AND expires_at > $7 \
                 RETURNING version"
            ),
            // $1 id, $2 now
            is_live: format!("SELECT 1 FROM {t} WHERE id = $1 AND expires_at > $2"),
            // $1 id, $2 idle, $3 absolute, $4 now, $5 last seen
            touch: format!(
                "UPDATE {t} SET idle_expires_at = $2, absolute_expires_at = $3, \
                 last_seen_at = greatest(last_seen_at, $5) WHERE id = $1 AND expires_at > $4"
            ),
            // $1 id
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            // $1 id, $2 expected version, $3 now. Like `save`, one round trip
            // tells deleted / conflict / missing apart.
            delete_at_version: format!(
                "WITH deleted AS ( \
                   DELETE FROM {t} WHERE id = $1 AND version = $2 AND expires_at > $3 RETURNING 1) \
                 SELECT (SELECT 1 FROM deleted), \
                        (SELECT version FROM {t} WHERE id = $1 AND expires_at > $3)"
            ),
            // $1 owner, $2 now
            list_by_owner: format!(
                "SELECT id, {COLUMNS} FROM {t} WHERE owner = $1 AND expires_at > $2"
            ),
            // $1 owner, $2 now, $3 id to keep (or NULL)
            delete_by_owner: format!(
                "DELETE FROM {t} WHERE owner = $1 AND expires_at > $2 AND ($3::bytea IS NULL OR id <> $3)"
            ),
            // $1 now, $2 batch size. SKIP LOCKED lets several instances clean at once.
            delete_expired_batch: format!(
                "DELETE FROM {t} WHERE id IN ( \
                   SELECT id FROM {t} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}
