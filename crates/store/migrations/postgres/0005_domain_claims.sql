-- The domain each operator deploys under. No two operators may hold one name, nor one a name
-- under the other's: the DNS records and certificates of one would be the other's.
CREATE TABLE domain_claims (
    operator TEXT PRIMARY KEY,
    domain TEXT NOT NULL UNIQUE,
    claimed_at BIGINT NOT NULL
);
