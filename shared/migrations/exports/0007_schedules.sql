-- Scheduled exports (SPEC §12): a user's schedules, and one row per due time that ran.
CREATE TABLE IF NOT EXISTS exports.schedules (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    -- The create body as given (validated at creation and again at every run).
    request jsonb NOT NULL,
    cron text NOT NULL,
    timezone text NOT NULL,
    keep integer NOT NULL CHECK (keep BETWEEN 1 AND 30),
    next_run_at timestamptz,
    last_run_at timestamptz,
    last_export_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS schedules_user_idx ON exports.schedules (user_id, created_at);

-- At most one run per (schedule, due time): inserted before the run is submitted, so a
-- redelivered or duplicated timer finds it (services/janitor, shared/schedules.py). A deleted
-- schedule's rows go with it; its exports stay until they expire.
CREATE TABLE IF NOT EXISTS exports.schedule_runs (
    schedule_id uuid NOT NULL REFERENCES exports.schedules (id) ON DELETE CASCADE,
    due_at timestamptz NOT NULL,
    export_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, due_at)
);

-- A scheduled run's export names its schedule (kept after the schedule is deleted: the page
-- still shows the run as scheduled, and it still does not count against the completed cap).
ALTER TABLE exports.exports ADD COLUMN IF NOT EXISTS schedule_id uuid;
CREATE INDEX IF NOT EXISTS exports_schedule_idx ON exports.exports (schedule_id, completed_at DESC)
    WHERE schedule_id IS NOT NULL;
