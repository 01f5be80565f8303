-- A fingerprint of the encryption key (HMAC-SHA256 of a fixed label under it, never the
-- key), recorded by the first daemon that starts on this database. Every daemon sharing
-- the database must hold the same key, or the secrets one writes the others cannot read.
ALTER TABLE instance ADD COLUMN key_fingerprint text;
