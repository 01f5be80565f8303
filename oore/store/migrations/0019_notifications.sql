-- Notification channels (webhook, Mattermost, email) and their durable delivery queue.
-- URLs (they may carry tokens), HMAC secrets and SMTP passwords are AES-256-GCM encrypted
-- (columns ending in _enc); url_host is the only part of a URL kept in the clear.

CREATE TABLE notification_channels (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('webhook', 'mattermost', 'email')),
    enabled boolean NOT NULL DEFAULT true,
    -- build_failed (failed or timed out), build_recovered, build_canceled, build_succeeded
    events text[] NOT NULL,
    -- Empty: every project.
    project_ids uuid[] NOT NULL DEFAULT '{}',
    url_enc text,
    url_host text,
    secret_enc text,
    -- Email only: {smtp_host, smtp_port, smtp_security, username?, from_address, to_addresses}
    email jsonb,
    smtp_password_enc text,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- One message to one channel. Rows for build outcomes are written by the trigger below in
-- the transaction that ends the build, so no outcome is lost to a crash after its commit.
CREATE TABLE notification_deliveries (
    id uuid PRIMARY KEY,
    -- Insertion order: timestamps are whole seconds, so this breaks ties in listings.
    seq bigserial NOT NULL,
    channel_id uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    event text NOT NULL,
    build_id uuid,
    -- The build as it ended (kept even if the build is deleted later); null for a test.
    build jsonb,
    previous_status text,
    status text NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    -- Pending: when it falls due; sending: when the sender's lease runs out.
    next_attempt_at bigint NOT NULL,
    created_at bigint NOT NULL,
    sent_at bigint
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, seq DESC);
CREATE UNIQUE INDEX notification_deliveries_once
    ON notification_deliveries (channel_id, build_id) WHERE build_id IS NOT NULL;

CREATE FUNCTION notify_build_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous text;
    at bigint := coalesce(NEW.finished_at, NEW.updated_at);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notification_channels WHERE enabled) THEN
        RETURN NULL;
    END IF;
    -- "Recovered": the build before it on the same pipeline and branch that ended with a
    -- verdict (canceled builds have none) failed or timed out.
    IF NEW.status = 'succeeded' THEN
        SELECT b.status INTO previous FROM builds b
        WHERE b.pipeline_id = NEW.pipeline_id AND b.branch IS NOT DISTINCT FROM NEW.branch
          AND b.seq < NEW.seq AND b.status IN ('succeeded', 'failed', 'timed_out')
        ORDER BY b.seq DESC
        LIMIT 1;
    END IF;
    INSERT INTO notification_deliveries (id, channel_id, event, build_id, build,
        previous_status, status, next_attempt_at, created_at)
    SELECT gen_random_uuid(), c.id, chosen.event, NEW.id,
        jsonb_build_object(
            'id', NEW.id,
            'number', NEW.build_number,
            'status', NEW.status,
            'project_id', NEW.project_id,
            'project_name', (SELECT p.name FROM projects p WHERE p.id = NEW.project_id),
            'pipeline_id', NEW.pipeline_id,
            'pipeline_name', (SELECT l.name FROM pipelines l WHERE l.id = NEW.pipeline_id),
            'branch', NEW.branch,
            'commit_sha', NEW.commit_sha,
            'trigger_actor', NEW.trigger_actor,
            'started_at', NEW.started_at,
            'finished_at', NEW.finished_at),
        previous, 'pending', at, at
    FROM notification_channels c
    CROSS JOIN LATERAL (SELECT CASE
        WHEN NEW.status IN ('failed', 'timed_out') AND 'build_failed' = ANY (c.events)
            THEN 'build_failed'
        WHEN NEW.status = 'canceled' AND 'build_canceled' = ANY (c.events)
            THEN 'build_canceled'
        WHEN NEW.status = 'succeeded' AND previous IN ('failed', 'timed_out')
            AND 'build_recovered' = ANY (c.events)
            THEN 'build_recovered'
        WHEN NEW.status = 'succeeded' AND 'build_succeeded' = ANY (c.events)
            THEN 'build_succeeded'
        END AS event) chosen
    WHERE c.enabled AND chosen.event IS NOT NULL
      AND (cardinality(c.project_ids) = 0 OR NEW.project_id = ANY (c.project_ids))
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- Fires only when a build reaches an outcome from a live state, so the hot updates of
-- claims, leases and heartbeats never run it.
CREATE TRIGGER builds_notify_outcome
    AFTER UPDATE OF status ON builds
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'canceled', 'timed_out')
          AND OLD.status IN ('queued', 'scheduled', 'assigned', 'running'))
    EXECUTE FUNCTION notify_build_outcome();
