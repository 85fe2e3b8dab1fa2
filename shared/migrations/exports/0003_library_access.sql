-- Library access (SPEC §2): this product's own rule, so its table lives in the exports schema and
-- never beside Codex's tables. No foreign keys to Codex's users or libraries: a foreign key would
-- add triggers to Codex's tables (and need REFERENCES on them). A row naming a deleted user or
-- library grants nothing, because the rule joins the live catalog.
-- A user with no rows may read every library; a user with rows may read only those libraries.
CREATE TABLE IF NOT EXISTS exports.user_library_access (
    user_id uuid NOT NULL,
    library_id uuid NOT NULL,
    PRIMARY KEY (user_id, library_id)
);
