-- Which runner last held a build, kept when the build ends and when the runner is
-- deleted (`runner_id` names only the runner holding the build now). The name is the one
-- the runner had when it claimed the build. Builds claimed before this migration get
-- theirs from their last "assigned" event.
ALTER TABLE builds ADD COLUMN last_runner_id uuid, ADD COLUMN last_runner_name text;

UPDATE builds b SET last_runner_id = held.runner_id, last_runner_name = r.name
FROM (
    SELECT DISTINCT ON (build_id) build_id, substr(actor, 8)::uuid AS runner_id
    FROM build_events
    WHERE to_status = 'assigned' AND actor ~ '^runner:[0-9a-f]{8}-[0-9a-f-]{27}$'
    ORDER BY build_id, seq DESC
) held
LEFT JOIN runners r ON r.id = held.runner_id
WHERE b.id = held.build_id;
