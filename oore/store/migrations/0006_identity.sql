-- Identity: OIDC and trusted-proxy configuration, API tokens, external-access network
-- settings. Secrets are stored AES-256-GCM encrypted (columns ending in _enc), tokens as
-- SHA-256 hashes.

-- Bumped by every change that makes a pending setup sign-in stale (preferences, OIDC
-- configuration); a pending request remembers the value it was started under.
ALTER TABLE instance ADD COLUMN setup_generation integer NOT NULL DEFAULT 0;

ALTER TABLE instance_preferences
    ADD COLUMN direct_macos_runner_paused boolean NOT NULL DEFAULT false;

-- The OpenID Provider this instance signs people in with (one row; setup and
-- PUT /v1/settings/external-access/oidc both write it).
CREATE TABLE oidc_config (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    issuer_url text NOT NULL,
    client_id text NOT NULL,
    client_secret_enc text,
    configured_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- Remote mode behind an authenticating reverse proxy (one row).
CREATE TABLE trusted_proxy_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    user_email_header text NOT NULL DEFAULT 'x-oore-user-email',
    setup_owner_email text,
    trusted_proxy_cidrs jsonb NOT NULL DEFAULT '[]'::jsonb,
    shared_secret_enc text,
    configured_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- External-access network settings saved through the settings API (one row); without a
-- row the environment (OORE_PUBLIC_URL, OORE_CORS_ORIGINS, ...) or the defaults apply.
CREATE TABLE external_access_network (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    public_url text,
    artifact_delivery_url text,
    allowed_origins jsonb NOT NULL DEFAULT '[]'::jsonb,
    updated_at bigint NOT NULL
);

-- Personal access tokens. The effective role of a token is the lower of `role` and its
-- creator's current role; tokens of a disabled creator do not authenticate.
CREATE TABLE api_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    prefix text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'qa_viewer')),
    created_at bigint NOT NULL,
    expires_at bigint,
    revoked_at bigint,
    last_used_at bigint
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE INDEX audit_log_action ON audit_log (action);
CREATE INDEX audit_log_actor_id ON audit_log (actor_id);
