-- Source integrations (GitHub App, GitLab, local git) and webhook deliveries (contract §9).
-- Credentials are AES-256-GCM encrypted (columns ending in _enc).

CREATE TABLE integrations (
    id uuid PRIMARY KEY,
    provider text NOT NULL CHECK (provider IN ('github', 'gitlab', 'local_git')),
    host_url text,
    -- github_app | oauth_app | personal_token | local
    auth_mode text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'inactive', 'error')),
    display_name text,
    app_id text,
    app_slug text,
    -- Provider credentials as encrypted JSON (private key, client secret, tokens, ...).
    credentials_enc text,
    -- The GitHub App's webhook secret, kept apart so signature checks need no JSON.
    webhook_secret_enc text,
    -- A credential problem the operator must see (status 'error' while it stands).
    problem_code text,
    problem_message text,
    problem_at bigint,
    last_webhook_at bigint,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX integrations_provider ON integrations (provider, status);

CREATE TABLE integration_installations (
    id uuid PRIMARY KEY,
    integration_id uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    external_id text NOT NULL,
    account_name text NOT NULL,
    account_type text,
    created_at bigint NOT NULL,
    UNIQUE (integration_id, external_id)
);

-- Repositories gain their place under an installation. Local repositories created before
-- this migration have none until a local_git integration adopts them.
ALTER TABLE repositories
    ADD COLUMN installation_id uuid REFERENCES integration_installations (id) ON DELETE CASCADE,
    ADD COLUMN external_id text,
    ADD COLUMN is_private boolean NOT NULL DEFAULT false,
    ADD COLUMN avatar_url text,
    -- GitLab's per-repository webhook secret ("oore_" + 64 hex), encrypted.
    ADD COLUMN webhook_secret_enc text,
    ADD COLUMN webhook_secret_rotated_at bigint,
    ADD COLUMN updated_at bigint;
CREATE UNIQUE INDEX repositories_installation_external
    ON repositories (installation_id, external_id) WHERE installation_id IS NOT NULL;
CREATE INDEX repositories_full_name ON repositories (full_name);

-- Every accepted webhook delivery, processed off the request path by a durable queue.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    provider text NOT NULL CHECK (provider IN ('github', 'gitlab')),
    integration_id uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    -- The provider's delivery id, or for GitLab without one a hash of the delivery.
    delivery_key text NOT NULL,
    event text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL
        CHECK (status IN ('received', 'processing', 'processed', 'ignored', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    processing_error text,
    next_attempt_at bigint NOT NULL,
    lease_expires_at bigint,
    received_at bigint NOT NULL,
    processed_at bigint,
    UNIQUE (integration_id, delivery_key)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('received', 'processing');

-- One build per (delivery, pipeline), so reprocessing a delivery never builds twice.
CREATE TABLE webhook_build_claims (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    pipeline_id uuid NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    build_id uuid,
    created_at bigint NOT NULL,
    PRIMARY KEY (delivery_id, pipeline_id)
);
