-- Build artifacts (contract §6.5). A row is `pending` from its reservation until the
-- runner completes it (`available`) or aborts it, or the reservation expires (`failed`).
CREATE TABLE artifacts (
    id uuid PRIMARY KEY,
    -- Creation order: timestamps are whole seconds, so this breaks ties in listings.
    seq bigserial NOT NULL UNIQUE,
    build_id uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    name text NOT NULL,
    artifact_type text NOT NULL CHECK (artifact_type IN ('apk', 'ipa', 'app', 'generic')),
    file_path text NOT NULL,
    file_size bigint,
    checksum text,
    metadata jsonb,
    state text NOT NULL CHECK (state IN ('pending', 'available', 'failed')),
    error_message text,
    expires_at bigint,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX artifacts_build ON artifacts (build_id, seq);
CREATE INDEX artifacts_pending ON artifacts (created_at) WHERE state = 'pending';
CREATE INDEX artifacts_checksum ON artifacts (build_id, checksum) WHERE state = 'available';

-- Artifact storage settings (contract §10.1); absent row: environment, else the default.
-- The S3 keys are stored encrypted (contract §8.4).
CREATE TABLE artifact_storage_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    provider text NOT NULL CHECK (provider IN ('disabled', 'local', 's3', 'r2')),
    local_base_dir text,
    s3_bucket text,
    s3_region text,
    s3_endpoint text,
    access_key_id_encrypted text,
    secret_access_key_encrypted text,
    updated_at bigint NOT NULL
);
