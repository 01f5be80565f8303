-- A log that reached its line limit ends with one notice line; this marks that it did.
ALTER TABLE builds ADD COLUMN log_truncated boolean NOT NULL DEFAULT false;
