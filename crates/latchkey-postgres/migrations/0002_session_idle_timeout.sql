-- A session's own idle timeout in milliseconds, for a session that opted into a
-- longer one ("remember me"); NULL follows the application's. A nullable column
-- without a default or a constraint is added without rewriting or scanning the
-- table; not indexed, so saves that write it stay heap-only updates.
ALTER TABLE {{schema}}.{{table}} ADD COLUMN IF NOT EXISTS idle_timeout_ms bigint;
