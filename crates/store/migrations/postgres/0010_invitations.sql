-- Invitations to sign up, for a panel started with `--sign-up invitation`: the hosting
-- provider decides who becomes an operator. SQLite's (../sqlite/0010_invitations.sql)
-- has the same table; only the types differ.
--
-- The link carries a random token; only its SHA-256 is stored, so a copy of the database does
-- not let anyone sign up. An invitation is used at most once: the sign-up marks it used in
-- the transaction that creates the account, only while it is unused, unrevoked and unexpired.
CREATE TABLE invitations (
    id BIGSERIAL PRIMARY KEY,
    id_hash TEXT NOT NULL UNIQUE,
    -- Whom it is for, in the administrator's words (e.g. the customer's name).
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    -- The operator it made; a record, not a reference: the operator's history outlives it.
    used_by TEXT,
    revoked_at BIGINT,
    CHECK ((used_at IS NULL) = (used_by IS NULL)),
    CHECK (used_at IS NULL OR revoked_at IS NULL)
);
