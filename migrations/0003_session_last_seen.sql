-- When the session was last used, moved with its idle deadline (at most once
-- per extension interval) and never back; NULL for rows written before this
-- column existed, read as the creation time. Nullable, without a default or a
-- constraint, so adding it neither rewrites nor scans the table; not indexed,
-- so the updates that move it stay heap-only.
ALTER TABLE {{schema}}.{{table}} ADD COLUMN IF NOT EXISTS last_seen_at timestamptz;
