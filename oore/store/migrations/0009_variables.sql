-- Project and pipeline variables and secrets. Every value is encrypted at rest (AES-GCM
-- with the instance key), plain variables too, so one code path handles both; a row with
-- no pipeline belongs to the whole project.
CREATE TABLE variables (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    pipeline_id uuid REFERENCES pipelines (id) ON DELETE CASCADE,
    name text NOT NULL,
    value_encrypted text NOT NULL,
    secret boolean NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE UNIQUE INDEX variables_scope_name ON variables
    (project_id, COALESCE(pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid), name);
