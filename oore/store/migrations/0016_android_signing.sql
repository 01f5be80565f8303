-- Android signing profiles of a pipeline (contract §8.3): one row per build type. The
-- keystore (base64), both passwords and the key alias are sealed with the instance key;
-- the file name and the keystore's SHA-256 are not secret. Other platforms keep their
-- signing material in tables of their own beside this one.
CREATE TABLE android_signing_profiles (
    pipeline_id uuid NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    build_type text NOT NULL CHECK (build_type IN ('debug', 'release')),
    enabled boolean NOT NULL,
    keystore_filename text,
    keystore_encrypted text,
    keystore_checksum text,
    store_password_encrypted text,
    key_alias_encrypted text,
    key_password_encrypted text,
    updated_at bigint NOT NULL,
    PRIMARY KEY (pipeline_id, build_type),
    CHECK (NOT enabled OR (keystore_filename IS NOT NULL AND keystore_encrypted IS NOT NULL
                           AND store_password_encrypted IS NOT NULL
                           AND key_alias_encrypted IS NOT NULL
                           AND key_password_encrypted IS NOT NULL))
);
