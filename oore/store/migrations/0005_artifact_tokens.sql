-- Scoped download tokens and install tokens of artifacts (contract §0.2, §7.2). Only the
-- SHA-256 of a token is kept. A single-use token is consumed by setting `used_at` with a
-- compare-and-set, so two redeems of one token cannot both succeed.
CREATE TABLE artifact_download_tokens (
    id uuid PRIMARY KEY,
    artifact_id uuid NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('download', 'install')),
    token_hash text NOT NULL UNIQUE,
    prefix text NOT NULL,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    single_use boolean NOT NULL,
    expires_at bigint NOT NULL,
    used_at bigint,
    revoked_at bigint,
    created_at bigint NOT NULL
);
CREATE INDEX artifact_download_tokens_artifact
    ON artifact_download_tokens (artifact_id, kind, created_at);
