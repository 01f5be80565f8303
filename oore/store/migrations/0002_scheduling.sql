-- Source repositories a project can build from. Local git repositories are keyed by
-- their canonical path; hosted ones (GitHub, GitLab) arrive with the integrations.
CREATE TABLE repositories (
    id uuid PRIMARY KEY,
    provider text NOT NULL CHECK (provider IN ('github', 'gitlab', 'local_git')),
    full_name text NOT NULL,
    host_url text,
    local_path text UNIQUE,
    default_branch text,
    created_at bigint NOT NULL,
    CHECK ((provider = 'local_git') = (local_path IS NOT NULL))
);

CREATE TABLE projects (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    description text,
    repository_id uuid REFERENCES repositories (id),
    default_branch text,
    settings jsonb NOT NULL DEFAULT '{}',
    created_by uuid NOT NULL REFERENCES users (id),
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX projects_created_at ON projects (created_at);

CREATE TABLE project_members (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('maintainer', 'developer', 'viewer')),
    created_at bigint NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE pipelines (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    config_path text NOT NULL,
    config_path_explicit boolean NOT NULL,
    execution_config jsonb NOT NULL,
    trigger_config jsonb NOT NULL,
    concurrency jsonb NOT NULL,
    runner_labels text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX pipelines_project ON pipelines (project_id, created_at);

-- Runners: the token is kept only as its SHA-256. `draining` is ours (seed 002); the
-- status column is what heartbeats report (contract §5.7).
CREATE TABLE runners (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('online', 'offline', 'busy', 'draining')),
    capabilities jsonb,
    labels text[] NOT NULL DEFAULT '{}',
    max_concurrent integer NOT NULL DEFAULT 1 CHECK (max_concurrent BETWEEN 1 AND 64),
    draining boolean NOT NULL DEFAULT false,
    token_hash text NOT NULL UNIQUE,
    last_heartbeat_at bigint,
    registered_by uuid REFERENCES users (id) ON DELETE SET NULL,
    enrollment_token_id uuid,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE runner_enrollment_tokens (
    id uuid PRIMARY KEY,
    label text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    max_uses integer CHECK (max_uses IS NULL OR max_uses >= 1),
    uses integer NOT NULL DEFAULT 0,
    labels text[] NOT NULL DEFAULT '{}',
    expires_at bigint,
    revoked_at bigint,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at bigint NOT NULL
);

CREATE TABLE builds (
    id uuid PRIMARY KEY,
    -- Creation order: timestamps are whole seconds, so this breaks ties in listings.
    seq bigserial NOT NULL UNIQUE,
    project_id uuid NOT NULL REFERENCES projects (id),
    pipeline_id uuid NOT NULL REFERENCES pipelines (id),
    build_number integer NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'scheduled', 'assigned', 'running',
        'succeeded', 'failed', 'canceled', 'timed_out', 'expired')),
    trigger_type text NOT NULL CHECK (trigger_type IN ('manual', 'webhook', 'api', 'schedule')),
    trigger_actor text,
    trigger_event text,
    trigger_ref text,
    commit_sha text,
    branch text,
    changelog text,
    source_build_id uuid,
    config_snapshot jsonb NOT NULL,
    required_labels text[] NOT NULL DEFAULT '{}',
    runner_id uuid REFERENCES runners (id),
    step_results jsonb,
    exit_code integer,
    attempt integer NOT NULL DEFAULT 1,
    log_lines integer NOT NULL DEFAULT 0,
    lease_expires_at bigint,
    signing_token_hash text,
    queued_at bigint NOT NULL,
    started_at bigint,
    finished_at bigint,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    UNIQUE (project_id, build_number)
);
CREATE INDEX builds_queue ON builds (queued_at, seq) WHERE status = 'queued';
CREATE INDEX builds_active_runner ON builds (runner_id) WHERE runner_id IS NOT NULL;
CREATE INDEX builds_pipeline ON builds (pipeline_id);
CREATE INDEX builds_created ON builds (created_at DESC, seq DESC);

-- One row per transition. `seq` orders events of one build (ids are UUIDs).
CREATE TABLE build_events (
    seq bigserial PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    build_id uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    from_status text,
    to_status text NOT NULL,
    actor text,
    reason text,
    created_at bigint NOT NULL
);
CREATE INDEX build_events_build ON build_events (build_id, seq);

-- One row per log line; the runner chooses sequences (contract §6.1).
CREATE TABLE build_logs (
    build_id uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    sequence bigint NOT NULL,
    content text NOT NULL,
    stream text NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    created_at bigint NOT NULL,
    PRIMARY KEY (build_id, sequence)
);
