-- Short-lived tokens and pending sign-ins, shared by every oored on this database (any of
-- them may take any request). Tokens and states are kept only as their SHA-256; what a
-- pending sign-in must keep secret (its PKCE verifier and nonce) is encrypted with the
-- instance key. Expired rows are deleted when they are touched and, a bounded number at a
-- time, whenever a new one is issued.

-- Log stream tokens (contract §6.3): single use (redeemed by DELETE ... RETURNING), a new
-- one replaces the user's unused one for the build, and the unused, unexpired ones are
-- capped (256 total, 16 per user, 32 per build) under a transaction-scoped advisory lock.
CREATE TABLE stream_tokens (
    token_hash text PRIMARY KEY,
    build_id uuid NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_hash text NOT NULL,
    via_api_token boolean NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX stream_tokens_expiry ON stream_tokens (expires_at);
CREATE INDEX stream_tokens_user_build ON stream_tokens (user_id, build_id);

-- Local artifact storage URL tokens (contract §7.1): upload tokens are single use,
-- download tokens reusable until they expire. At most 4096 of each kind: every issue
-- drops the ones issued 4096 or more issues of that kind earlier (`seq`, one sequence per
-- kind). No foreign key: deleting an artifact revokes its URLs explicitly, first.
CREATE SEQUENCE url_tokens_upload_seq;
CREATE SEQUENCE url_tokens_download_seq;
CREATE TABLE url_tokens (
    token_hash text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('upload', 'download')),
    seq bigint NOT NULL,
    object_key text NOT NULL,
    artifact_id text NOT NULL,
    filename text NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX url_tokens_kind_seq ON url_tokens (kind, seq);
CREATE INDEX url_tokens_artifact ON url_tokens (artifact_id);
CREATE INDEX url_tokens_expiry ON url_tokens (expires_at);

-- Pending OIDC authorization requests and the reservations of public starts still talking
-- to the provider (contract §7.4), at most 1000 together. A reservation has no state yet.
-- A request is taken (deleted) by its first callback. Expired requests are kept a while so
-- a late callback learns `auth_expired`, not `invalid_state`: until room is needed, or at
-- most an hour after they were made.
CREATE TABLE pending_signins (
    id bigserial PRIMARY KEY,
    state_hash text UNIQUE,
    request_enc text,
    setup boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL,
    CHECK ((state_hash IS NULL) = (request_enc IS NULL))
);
CREATE INDEX pending_signins_created ON pending_signins (created_at);

-- Sealed states of the integration flows (GitHub App manifest and install, GitLab OAuth;
-- contract §9.1, §9.2): each nonce may be used once, before it expires. At most 1024:
-- every issue drops those issued 1024 or more issues earlier.
CREATE TABLE integration_states (
    id bigserial PRIMARY KEY,
    nonce_hash text NOT NULL UNIQUE,
    expires_at bigint NOT NULL
);
CREATE INDEX integration_states_expiry ON integration_states (expires_at);
