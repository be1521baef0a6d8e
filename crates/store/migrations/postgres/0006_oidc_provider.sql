-- The panel as an OpenID Connect provider for its operators' services. SQLite's
-- (../sqlite/0006_oidc_provider.sql) has the same tables; only the types differ. Client
-- secrets, codes and tokens are kept as SHA-256 hashes only: a copy of the database lets
-- nobody act as a client or a user.

-- One client per operator service, made by the `oidc` provider (`<operator>-<service>`).
CREATE TABLE oidc_clients (
    client_id TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    -- A JSON array of the exact redirect URIs the client may use.
    redirect_uris TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX oidc_clients_by_operator ON oidc_clients (operator);

-- The keys ID tokens are signed with: the private key sealed under the platform key. The
-- newest key not retired signs; retired ones stay published until their tokens expired.
CREATE TABLE oidc_signing_keys (
    kid TEXT PRIMARY KEY,
    private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

-- One sign-in of a user at a client: the authorization code (single use, short-lived) and
-- everything it was bound to. The tokens it led to belong to it, so revoking it (a replayed
-- code, a reused refresh token) revokes them all.
CREATE TABLE oidc_grants (
    id BIGSERIAL PRIMARY KEY,
    code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL REFERENCES oidc_clients (client_id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    auth_time BIGINT NOT NULL,
    code_expires_at BIGINT NOT NULL,
    code_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX oidc_grants_by_client ON oidc_grants (client_id);

-- Access and refresh tokens. A refresh token is used once: `used_at` is set when it is
-- exchanged for new tokens.
CREATE TABLE oidc_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id BIGINT NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX oidc_tokens_by_grant ON oidc_tokens (grant_id);
CREATE INDEX oidc_tokens_by_expiry ON oidc_tokens (expires_at);
