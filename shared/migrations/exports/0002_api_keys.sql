-- API keys for scripts (SPEC §3 "X-API-Key"): only a SHA-256 digest of each key is stored.
CREATE TABLE IF NOT EXISTS exports.api_keys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- The first characters of the key, shown in lists so a person can tell keys apart.
    prefix text NOT NULL,
    key_hash bytea NOT NULL CHECK (octet_length(key_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
-- Every authenticated request with a key looks it up by its digest.
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_hash_idx ON exports.api_keys (key_hash);
CREATE INDEX IF NOT EXISTS api_keys_user_idx ON exports.api_keys (user_id, created_at DESC);
