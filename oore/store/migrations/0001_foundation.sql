-- The instance: one row holding setup state, the bootstrap token and the setup session.
CREATE TABLE instance (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    instance_id uuid NOT NULL,
    state text NOT NULL CHECK (state IN
        ('uninitialized', 'bootstrap_pending', 'idp_configured', 'owner_created', 'ready')),
    bootstrap_token_hash text,
    bootstrap_expires_at bigint,
    bootstrap_consumed_at bigint,
    bootstrap_failed_attempts integer NOT NULL DEFAULT 0,
    setup_session_hash text,
    setup_session_expires_at bigint,
    owner_email text,
    owner_subject text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- Instance preferences; absent row means runtime_mode local, remote_auth_mode oidc.
CREATE TABLE instance_preferences (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_storage_mode text NOT NULL DEFAULT 'file',
    runtime_mode text NOT NULL DEFAULT 'local' CHECK (runtime_mode IN ('local', 'remote')),
    remote_auth_mode text NOT NULL DEFAULT 'oidc'
        CHECK (remote_auth_mode IN ('oidc', 'trusted_proxy')),
    updated_at bigint NOT NULL
);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    display_name text,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'qa_viewer')),
    status text NOT NULL CHECK (status IN ('active', 'invited', 'disabled')),
    oidc_subject text NOT NULL UNIQUE,
    avatar_url text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE UNIQUE INDEX users_single_owner ON users ((role)) WHERE role = 'owner';

CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    actor_id uuid,
    actor_email text,
    action text NOT NULL,
    resource_type text NOT NULL,
    resource_id text,
    details jsonb,
    client_ip text,
    created_at bigint NOT NULL
);
CREATE INDEX audit_log_created_at ON audit_log (created_at);
