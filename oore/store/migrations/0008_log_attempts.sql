-- Each attempt of a build keeps its own log. A requeued build's next runner numbers its
-- lines from 0 again; keyed by (build, sequence) alone, those lines collided with the lost
-- attempt's and were dropped, and the log read as one run made of two.
ALTER TABLE build_logs ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1);
-- Lines stored before this cannot be told apart by attempt any more: they are filed under
-- the build's current attempt, so the log shown for each build stays what it was.
UPDATE build_logs l SET attempt = b.attempt
FROM builds b WHERE b.id = l.build_id AND b.attempt <> 1;
ALTER TABLE build_logs ALTER COLUMN attempt DROP DEFAULT;
ALTER TABLE build_logs DROP CONSTRAINT build_logs_pkey;
ALTER TABLE build_logs ADD PRIMARY KEY (build_id, attempt, sequence);
-- builds.log_lines and builds.log_truncated now describe the current attempt's log: a
-- requeue starts them again, so every attempt has the whole line limit.
