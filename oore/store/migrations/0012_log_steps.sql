-- A log line may say which step printed it, so a reader can group a build's lines by
-- step: its position among the steps the runner reports (from 0) and its name. Runners
-- that do not say (oored's, older oore ones) leave both empty.
ALTER TABLE build_logs
    ADD COLUMN step integer CHECK (step >= 0),
    ADD COLUMN step_name text;
