-- Retention (contract §2.14, §4.2, §12). The instance's settings; no row: the defaults
-- (artifacts kept OORED_ARTIFACT_TTL_DAYS, everything else forever, a run every hour).
-- A NULL number keeps forever.
CREATE TABLE retention_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    artifact_retention_days integer CHECK (artifact_retention_days >= 1),
    log_retention_days integer CHECK (log_retention_days >= 1),
    build_retention_days integer CHECK (build_retention_days >= 1),
    keep_last_builds integer CHECK (keep_last_builds >= 1),
    target text NOT NULL CHECK (target IN ('artifacts_only', 'full')),
    cleanup_interval_secs integer NOT NULL CHECK (cleanup_interval_secs >= 60),
    updated_at bigint NOT NULL
);

-- A project's override: only the keys it sets (a key set to null keeps forever there).
CREATE TABLE project_retention (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    settings jsonb NOT NULL,
    updated_at bigint NOT NULL
);

-- The last cleanup run, whichever daemon ran it.
CREATE TABLE retention_runs (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    started_at bigint NOT NULL,
    finished_at bigint NOT NULL,
    duration_ms bigint NOT NULL,
    artifacts_deleted integer NOT NULL,
    bytes_freed bigint NOT NULL,
    builds_expired integer NOT NULL,
    builds_deleted integer NOT NULL,
    log_lines_deleted bigint NOT NULL,
    errors jsonb NOT NULL
);

-- An artifact whose object retention deleted keeps its row (its links answer 410
-- artifact_expired; its expires_at is then at most this time).
ALTER TABLE artifacts ADD COLUMN purged_at bigint;
CREATE INDEX artifacts_unpurged ON artifacts (build_id) WHERE state = 'available' AND purged_at IS NULL;
-- When retention removed a build's log lines.
ALTER TABLE builds ADD COLUMN logs_removed_at bigint;
CREATE INDEX builds_finished ON builds (finished_at) WHERE finished_at IS NOT NULL;
