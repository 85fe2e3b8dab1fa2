-- The exports schema: this product's own state (ARCHITECTURE.md "Data").
CREATE SCHEMA IF NOT EXISTS exports;

CREATE TABLE IF NOT EXISTS exports.exports (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    format text NOT NULL CHECK (format IN ('json', 'csv', 'md')),
    export_type text NOT NULL CHECK (export_type IN ('series', 'books', 'both')),
    library_ids uuid[] NOT NULL,
    library_names text[] NOT NULL,
    fields text[] NOT NULL,
    book_fields text[] NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    rows_total bigint,
    rows_written bigint NOT NULL DEFAULT 0,
    row_count bigint,
    file_size_bytes bigint,
    sha256 text,
    file_name text NOT NULL,
    object_key text NOT NULL,
    error text,
    attempt integer NOT NULL DEFAULT 0,
    worker_id text,
    heartbeat_at timestamptz,
    request_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz,
    expires_at timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS exports_user_created_idx ON exports.exports (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS exports_active_idx ON exports.exports (user_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS exports_unpublished_idx ON exports.exports (created_at)
    WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS exports_expires_idx ON exports.exports (expires_at);

CREATE TABLE IF NOT EXISTS exports.idempotency_keys (
    user_id uuid NOT NULL,
    key text NOT NULL,
    export_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
