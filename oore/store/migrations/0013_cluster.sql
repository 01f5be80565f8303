-- Daemons sharing this database elect one of them for the maintenance duties (runner
-- lease sweeps, timeouts of builds whose daemon died, reservation expiry, webhook
-- retries) through a lease row per duty: the holder renews it; anyone may take it once
-- it has run out. Times are the database's own clock, so daemons on several machines
-- agree on them.
CREATE TABLE cluster_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
