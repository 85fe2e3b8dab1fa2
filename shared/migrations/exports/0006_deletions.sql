-- Deletions in progress (tombstones). Every deletion of an export row inserts the tombstone of
-- its object key in the same statement as the DELETE; the object is removed next, and the
-- tombstone last. A process that dies in between leaves the tombstone, and whoever comes next
-- (the janitor's sweep and its start-up, with no age grace) removes the object and the
-- tombstone, so a deleted export never leaves its file behind (shared/retention.py).
CREATE TABLE IF NOT EXISTS exports.deletions (
    object_key text PRIMARY KEY,
    export_id uuid NOT NULL,
    user_id uuid NOT NULL,
    -- Why the export was deleted: expired, completed_cap, storage_cap or deleted (by the owner);
    -- counted in exports_deletions_total{reason} by whoever finishes the deletion.
    reason text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deletions_created_idx ON exports.deletions (created_at);
