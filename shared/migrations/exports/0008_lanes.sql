-- Fairness lanes (SPEC §14, shared/lanes.py): the lane an export was queued in, chosen once at
-- create from its row count ('small' below EXPORTS_SMALL_EXPORT_ROWS rows, else 'large'). The
-- outbox relays publish the row to its lane's subject. Rows made before this migration ran in
-- the one queue there was, which is the large lane.
ALTER TABLE exports.exports ADD COLUMN IF NOT EXISTS lane text NOT NULL DEFAULT 'large';
