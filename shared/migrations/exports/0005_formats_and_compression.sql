-- More formats and compression (SPEC §10).
--
-- The formats are listed once, in shared/formats.py (ExportFormat, FORMATS): the api validates
-- every request against it before a row is written, and every row read back goes through
-- ExportFormat(...), which refuses a value it does not know. The CHECK of 0001 was a second list,
-- so every new format would have needed a migration to widen it: it goes, and compression gets
-- no list of its own here either (shared.formats.Compression is it).
ALTER TABLE exports.exports DROP CONSTRAINT IF EXISTS exports_format_check;

-- How the stored file is compressed: 'none' (the default, and every export before this) or
-- 'gzip'. The row's size and sha256 are those of the stored bytes.
ALTER TABLE exports.exports ADD COLUMN IF NOT EXISTS compression text NOT NULL DEFAULT 'none';
