-- The unfinished builds, for the counts /metrics reads at every scrape (and the start-up
-- reads of queued and active builds): an index-only scan over the few live rows instead
-- of a scan of every build ever run.
CREATE INDEX builds_live ON builds (status, required_labels)
    WHERE status IN ('queued', 'scheduled', 'assigned', 'running');
