-- One row per session, keyed by the SHA-256 of its token (never the token).
-- {{schema}} and {{table}} are replaced by validated, quoted identifiers;
-- {{table_name}} by the bare table name, for deriving index names.
CREATE TABLE IF NOT EXISTS {{schema}}.{{table}} (
    id                  bytea       PRIMARY KEY CHECK (octet_length(id) = 32),
    data                jsonb       NOT NULL,
    version             bigint      NOT NULL,
    owner               text,
    created_at          timestamptz NOT NULL,
    idle_expires_at     timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL
        GENERATED ALWAYS AS (least(idle_expires_at, absolute_expires_at)) STORED
);

-- "This user's sessions" and "log out everywhere" without a scan.
CREATE INDEX IF NOT EXISTS "{{table_name}}_owner_idx"
    ON {{schema}}.{{table}} (owner) WHERE owner IS NOT NULL;

-- Batched cleanup walks expired rows in expiry order.
CREATE INDEX IF NOT EXISTS "{{table_name}}_expires_at_idx"
    ON {{schema}}.{{table}} (expires_at);
