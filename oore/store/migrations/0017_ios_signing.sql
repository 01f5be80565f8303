-- iOS signing of a pipeline (contract §8.3): one row per configured pipeline, and one row
-- per provisioning profile (one per bundle id). Every secret (the P12 and its password,
-- the profiles, the App Store Connect private key) is AES-GCM sealed with the instance key.
CREATE TABLE pipeline_ios_signing (
    pipeline_id uuid PRIMARY KEY REFERENCES pipelines (id) ON DELETE CASCADE,
    enabled boolean NOT NULL,
    mode text NOT NULL CHECK (mode IN ('manual', 'api', 'hybrid')),
    team_id text,
    export_method text NOT NULL,
    bundle_ids text[] NOT NULL,
    p12_filename text,
    p12_encrypted text,
    p12_checksum text,
    p12_password_encrypted text,
    api_key_id text,
    api_issuer_id text,
    api_private_key_encrypted text,
    last_synced_at bigint,
    updated_at bigint NOT NULL
);

CREATE TABLE pipeline_ios_profiles (
    pipeline_id uuid NOT NULL REFERENCES pipeline_ios_signing (pipeline_id) ON DELETE CASCADE,
    bundle_id text NOT NULL,
    position integer NOT NULL,
    profile_filename text NOT NULL,
    profile_encrypted text NOT NULL,
    checksum text NOT NULL,
    profile_uuid text,
    profile_name text,
    expires_at bigint,
    updated_at bigint NOT NULL,
    PRIMARY KEY (pipeline_id, bundle_id)
);
