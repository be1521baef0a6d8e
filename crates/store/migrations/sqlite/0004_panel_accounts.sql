-- The panel's accounts, sessions and API tokens. PostgreSQL's
-- (../postgres/0004_panel_accounts.sql) has the same tables; only the types differ.

-- People who sign in to the panel: an operator's users (`operator` set) or the hosting
-- provider's administrators (`operator` NULL), who see every operator.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Lower-cased by the panel before it is stored or looked up.
    email TEXT NOT NULL UNIQUE,
    -- An argon2id hash in PHC string format; never the password.
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('operator', 'admin')),
    operator TEXT REFERENCES operators (id),
    created_at INTEGER NOT NULL,
    CHECK ((role = 'operator') = (operator IS NOT NULL))
) STRICT;
CREATE INDEX users_by_operator ON users (operator);

-- Signed-in sessions. The cookie carries a random id; only its SHA-256 is stored, so a copy of
-- the database does not let anyone sign in.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The token every form of this session carries.
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Tokens for the JSON API (`Authorization: Bearer …`), for automation. Like sessions, only the
-- SHA-256 of the token is stored; a token acts as the user who made it.
CREATE TABLE api_tokens (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
