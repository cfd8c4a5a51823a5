//! The embedded schema migrations and how they are applied.

use deadpool_postgres::Object;
use latchkey_core::StoreError;
use sha2::{Digest as _, Sha256};

use crate::failure::Failure;
use crate::ident::Identifier;
use crate::store::PostgresStore;

/// One numbered migration from the repository's `migrations/` folder.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations run in this order, each once.
    pub version: i32,
    /// Its file name.
    pub name: &'static str,
    /// Its SQL, with `{{schema}}`, `{{table}}` and `{{table_name}}` placeholders.
    pub sql: &'static str,
}

/// Every migration, in order.
// The repository's top-level `migrations/` is the source of the schema; the
// crate embeds its own copies because a published tarball holds only the
// crate's folder, and `tests/tests/packaged_copies.rs` fails when the two differ.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_create_sessions.sql",
        sql: include_str!("../migrations/0001_create_sessions.sql"),
    },
    Migration {
        version: 2,
        name: "0002_session_idle_timeout.sql",
        sql: include_str!("../migrations/0002_session_idle_timeout.sql"),
    },
    Migration {
        version: 3,
        name: "0003_session_last_seen.sql",
        sql: include_str!("../migrations/0003_session_last_seen.sql"),
    },
];

/// The SQL of `migration` for this schema and table.
fn render(migration: &Migration, schema: &Identifier, table: &Identifier) -> String {
    migration
        .sql
        .replace("{{schema}}", &schema.quoted())
        .replace("{{table_name}}", table.as_str())
        .replace("{{table}}", &table.quoted())
}

/// The statements that make the bookkeeping table.
fn bookkeeping(schema: &Identifier, table: &Identifier) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; \
         CREATE TABLE IF NOT EXISTS {schema}.\"{table}_migrations\" ( \
           version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        schema = schema.quoted(),
        table = table.as_str()
    )
}

/// The name of the bookkeeping table, quoted with its schema.
fn bookkeeping_table(schema: &Identifier, table: &Identifier) -> String {
    format!("{}.\"{}_migrations\"", schema.quoted(), table.as_str())
}

/// The advisory-lock key that serialises migrations of one table, so that
/// application instances starting together do not race.
fn lock_key(schema: &Identifier, table: &Identifier) -> i64 {
    let digest = Sha256::digest(format!(
        "latchkey-migrate:{}.{}",
        schema.as_str(),
        table.as_str()
    ));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl PostgresStore {
    /// Creates the schema and table, or brings them up to date.
    ///
    /// Idempotent, and safe when several application instances start at once:
    /// migrations run in one transaction under an advisory lock, and each
    /// applied migration is recorded in `<table>_migrations`.
    ///
    /// # Errors
    ///
    /// When the server is unreachable or refuses a statement (e.g. the role
    /// may not create the schema).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let (schema, table) = (&self.shared.schema, &self.shared.table);
        let attempt = async {
            let mut client = Detached(Some(self.pool.get().await?));
            let Some(connection) = client.0.as_mut() else {
                return Err(Failure::Store(StoreError::corrupt("no connection")));
            };
            let tx = connection.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&lock_key(schema, table)],
            )
            .await?;
            tx.batch_execute(&bookkeeping(schema, table)).await?;
            let applied: Vec<i32> = tx
                .query(
                    &format!("SELECT version FROM {}", bookkeeping_table(schema, table)),
                    &[],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
                tx.batch_execute(&render(migration, schema, table)).await?;
                tx.execute(
                    &format!(
                        "INSERT INTO {} (version, name) VALUES ($1, $2)",
                        bookkeeping_table(schema, table)
                    ),
                    &[&migration.version, &migration.name],
                )
                .await?;
                tracing::info!(
                    migration = migration.name,
                    "applied session-store migration"
                );
            }
            tx.commit().await?;
            drop(client);
            Ok::<_, Failure>(())
        };
        // Migrations may wait on another instance's lock: allow more than one
        // operation's time.
        match tokio::time::timeout(self.shared.timeout * 10, attempt).await {
            Ok(result) => result.map_err(Failure::into_store_error),
            Err(_) => Err(self.timed_out()),
        }
    }
}

/// A connection taken out of the pool for good when dropped, whatever the exit.
/// A connection's socket is served by the runtime that made it, and `migrate`
/// usually runs on the main thread at start-up: pooled, a connection from there
/// would carry the workers' statements through the main thread.
struct Detached(Option<Object>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_fully_rendered() {
        let (schema, table) = (Identifier::new("s").unwrap(), Identifier::new("t").unwrap());
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i32::try_from(index).unwrap() + 1);
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version))
            );
            let sql = render(migration, &schema, &table);
            assert!(
                !sql.contains("{{"),
                "unrendered placeholder in {}",
                migration.name
            );
            assert!(sql.contains("\"s\".\"t\""));
        }
    }

    #[test]
    fn lock_keys_differ_per_table() {
        let s = Identifier::new("s").unwrap();
        assert_ne!(
            lock_key(&s, &Identifier::new("a").unwrap()),
            lock_key(&s, &Identifier::new("b").unwrap())
        );
    }
}
