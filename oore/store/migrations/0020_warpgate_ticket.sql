-- The Warpgate access ticket (encrypted) that lets an iPhone fetch an iOS install
-- manifest and its IPA through a Warpgate proxy without an interactive sign-in.
ALTER TABLE trusted_proxy_settings ADD COLUMN warpgate_ticket_enc text;
